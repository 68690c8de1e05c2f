"""TVM backends: ``tvm-llvm`` (this CPU) and ``tvm-cuda``. The ONNX graph is imported with Relax, compiled
with ``tvm.compile`` (default pipeline, no tuning), run by a ``relax.VirtualMachine`` and timed with the VM's
``time_evaluator``.

Compiling takes seconds, so compiled libraries are kept on disk, keyed by the model's content hash, the
exact target and the TVM version: a model compiles once per machine. The cache lives in ``$LATENCY_TVM_CACHE``,
else ``$XDG_CACHE_HOME/hw-latency/tvm`` or ``~/.cache/hw-latency/tvm``. Weights are baked into the library as
constants; the content hash ignores weight values, which is right for timing (same shapes, same code).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devices.base import DeviceError
from devices.environment import usable_cores
from devices.local import LoadedModel, LocalDevice, first_line, guard_run

if TYPE_CHECKING:
    from exporters.onnx import OnnxModel


def tvm_cache_dir() -> Path:
    explicit = os.environ.get("LATENCY_TVM_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "hw-latency" / "tvm"


def _tvm():
    # TVM's thread pool reads these once, when first used: without them it caps its threads at what it
    # guesses are physical cores (1 on a 2-vCPU VM, whatever `threads` asks) and pins the calling thread to
    # core 0, which would leave every later backend in this process on one core.
    os.environ.setdefault("TVM_NUM_THREADS", str(usable_cores()))
    os.environ.setdefault("TVM_BIND_THREADS", "0")
    try:
        import tvm
        from tvm import relax  # noqa: F401 - Relax is what we compile with; fail here if the build lacks it
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken libtvm raising at import
        raise DeviceError(f"TVM is not importable: {first_line(exc)}") from None
    return tvm


def _global(name: str):
    import tvm_ffi

    return tvm_ffi.get_global_func(name, allow_missing=True)


class _TvmDevice(LocalDevice):
    """Shared compile / cache / run flow; subclasses give the target and the runtime device."""

    def _target_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _tvm_device(self):
        raise NotImplementedError

    def target(self):
        """The resolved ``tvm.target.Target`` this device compiles for."""
        tvm = _tvm()
        try:
            return tvm.target.Target(self._target_dict())
        except Exception as exc:  # noqa: BLE001
            raise DeviceError(f"device {self.spec}: TVM rejects target {self._target_dict()}: {first_line(exc)}") from None

    def _runtime(self) -> dict[str, Any]:
        tvm = _tvm()
        return {"runtime": "tvm", "runtime_version": tvm.__version__, "target": self._target_dict()}

    def _library_path(self, model: OnnxModel, target) -> Path:
        tvm = _tvm()
        key = json.dumps({"model": model.content_hash, "target": str(target), "tvm": tvm.__version__},
                         sort_keys=True)
        return tvm_cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.so"

    def _compile(self, model: OnnxModel, target):
        import onnx
        from tvm.relax.frontend.onnx import from_onnx

        tvm = _tvm()
        try:
            mod = from_onnx(onnx.load(str(model.path)), shape_dict={model.input_name: list(model.input_shape)},
                            keep_params_in_input=False)
        except Exception as exc:  # noqa: BLE001 - unsupported op, bad attribute: one line for the user
            raise DeviceError(f"device {self.spec}: TVM cannot import {model.path}: {first_line(exc)}") from None
        try:
            return tvm.compile(mod, target)
        except Exception as exc:  # noqa: BLE001
            raise DeviceError(f"device {self.spec}: TVM cannot compile {model.path}: {first_line(exc)}") from None

    def _library(self, model: OnnxModel) -> tuple[Any, dict[str, Any]]:
        """The compiled module: from the disk cache, else compiled now and stored there."""
        tvm = _tvm()
        target = self.target()
        path = self._library_path(model, target)
        if path.exists():
            try:
                return tvm.runtime.load_module(str(path)), {"compile_cache": "hit", "library": str(path)}
            except Exception:  # noqa: BLE001 - a truncated or foreign file is rebuilt, never trusted
                with contextlib.suppress(OSError):
                    path.unlink()
        start = time.perf_counter()
        executable = self._compile(model, target)
        details = {"compile_cache": "miss", "compile_s": time.perf_counter() - start, "library": str(path)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".so", dir=path.parent)
            os.close(fd)
            try:
                executable.export_library(tmp)
                os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            return tvm.runtime.load_module(str(path)), details
        except Exception as exc:  # noqa: BLE001 - no C compiler, read-only cache: run without caching
            details.update(compile_cache=f"not stored: {first_line(exc)}", library=None)
            return executable, details

    def _load(self, model: OnnxModel) -> LoadedModel:
        tvm = _tvm()
        from tvm import relax

        from exporters.onnx import example_input

        lib, details = self._library(model)
        dev = self._tvm_device()
        try:
            vm = relax.VirtualMachine(lib, dev)
            vm.set_input("main", tvm.runtime.tensor(example_input(model.input_shape), dev))
        except DeviceError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise DeviceError(f"device {self.spec}: TVM cannot set up {model.path}: {first_line(exc)}") from None
        invoke = vm.module["invoke_stateful"]
        sync = dev.sync

        def run_block(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                invoke("main")
            sync()
            return time.perf_counter() - start

        def run_blocks(number: int, repeat: int) -> list[float]:
            evaluator = vm.time_evaluator("invoke_stateful", dev, number=number, repeat=repeat)
            # results are seconds per run, averaged over each block of `number` runs
            return [r * number for r in evaluator("main").results]

        return LoadedModel(
            run_block=guard_run(run_block, self.spec, model), method=f"{self.backend} time_evaluator",
            run_blocks=guard_run(run_blocks, self.spec, model),
            # time_evaluator runs the function once, untimed, before its blocks
            run_blocks_discard=1, details=details, state=(vm, lib),
        )


class TvmLlvmDevice(_TvmDevice):
    """TVM on this CPU: LLVM code for ``target`` (an -mcpu name, default the host CPU), ``threads`` workers."""

    backend = "tvm-llvm"

    def available(self) -> tuple[bool, str]:
        try:
            tvm = _tvm()
        except DeviceError as exc:
            return False, str(exc)
        if not tvm.runtime.enabled("llvm"):
            return False, f"TVM {tvm.__version__} was built without LLVM"
        mcpu = self._mcpu()
        valid = _global("target.llvm_is_valid_cpu")
        if valid is not None and not valid(mcpu, ""):
            return False, f"LLVM does not know the CPU {mcpu!r} (target option)"
        return True, f"TVM {tvm.__version__}, llvm -mcpu={mcpu}, {self.threads} thread(s)"

    def _mcpu(self) -> str:
        mcpu = self.options.get("target") or "host"
        if mcpu == "host":
            _tvm()
            host = _global("tvm.codegen.llvm.GetHostCPUName")
            return str(host()) if host is not None else "generic"
        return mcpu

    def _target_dict(self) -> dict[str, Any]:
        return {"kind": "llvm", "mcpu": self._mcpu()}

    def _tvm_device(self):
        return _tvm().cpu(0)

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        _tvm()
        configure, current = _global("runtime.config_threadpool"), _global("runtime.NumThreads")
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        want = int(self.threads or 0)
        before = int(current()) if current is not None else None
        try:
            if configure is not None and want and before != want:
                configure(1, want)  # 1: the big cores, i.e. all of them on a homogeneous CPU
                got = int(current())
                if got != want:
                    raise DeviceError(
                        f"device {self.spec}: TVM's thread pool gives {got} thread(s), not {want} "
                        f"(TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS')} caps it)"
                    )
            yield
        finally:
            if configure is not None and before is not None and want and before != want:
                configure(1, before)
            if affinity is not None and os.sched_getaffinity(0) != affinity:
                os.sched_setaffinity(0, affinity)  # never leave this process pinned by TVM


class TvmCudaDevice(_TvmDevice):
    """TVM on CUDA GPU ``device``; ``arch`` (e.g. sm_80) defaults to the GPU's own compute capability."""

    backend = "tvm-cuda"

    @property
    def gpu_index(self) -> int:
        return int(self.options["device"])

    def available(self) -> tuple[bool, str]:
        try:
            tvm = _tvm()
        except DeviceError as exc:
            return False, str(exc)
        if not tvm.runtime.enabled("cuda"):
            return False, f"TVM {tvm.__version__} was built without CUDA (this wheel is CPU-only)"
        if not tvm.cuda(self.gpu_index).exist:
            return False, f"no CUDA GPU with index {self.gpu_index} is visible to TVM"
        return True, f"TVM {tvm.__version__} on {tvm.cuda(self.gpu_index).device_name}"

    def _target_dict(self) -> dict[str, Any]:
        arch = self.options.get("arch") or "auto"
        if arch == "auto":
            tvm = _tvm()
            dev = tvm.cuda(self.gpu_index)
            if not dev.exist:
                return {"kind": "cuda"}
            arch = "sm_" + str(dev.compute_version).replace(".", "")
        return {"kind": "cuda", "arch": arch}

    def _tvm_device(self):
        return _tvm().cuda(self.gpu_index)
