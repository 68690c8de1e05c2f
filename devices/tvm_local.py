"""TVM backends: ``tvm-llvm`` (this CPU) and ``tvm-cuda``. The ONNX graph is imported with Relax, compiled
with ``tvm.compile`` (no tuning), run by a ``relax.VirtualMachine`` and timed with the VM's ``time_evaluator``.

``tvm-cuda`` uses TVM's default pipeline (dlight GPU rules). ``tvm-llvm`` uses TVM's CPU pipeline plus the
rule-based schedules below: TVM 0.27 schedules nothing for CPU by default (its dlight CPU rules cover only
GEMV and softmax-like reductions), so convolutions would run as naive scalar loop nests, ~40x slower than
onnxruntime. The schedules tile, vectorize and parallelize each kernel without tuning; schedule primitives
are checked by TVM, so a kernel they do not fit stays unscheduled (slow, never wrong).

Compiling takes seconds, so compiled libraries are kept on disk, keyed by the model's content hash, the
exact target, the TVM version and the compile pipeline (``pipeline_name``): a model compiles once per machine. The cache lives in ``$LATENCY_TVM_CACHE``,
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


# ---------------------------------------------------------------------------------------------------------
# CPU schedules for tvm-llvm. Legalized Relax kernels are plain loop nests: one or more injective blocks
# (pad, elementwise, reshape) around at most one reduction block (conv, pool, matmul, mean). The reduction
# becomes a register-tiled direct kernel: out[.., f, y, x] keeps a tile of F_TILE x VEC accumulators (F: an
# axis the vector-loaded input does not depend on, e.g. output channels, so one input vector load feeds
# F_TILE FMAs), the reduction loops run around that tile, then the fused epilogue (bias, relu, residual add)
# runs on the tile while it is hot. Injective blocks are vectorized along their innermost axis.

CPU_PIPELINE = "hw-latency-cpu-v2"
_ACCUMULATORS = 8  # vector registers of accumulators per tile: enough to hide FMA latency, few enough to spill none
_MAX_UNROLLED_WINDOW = 7  # kernel windows up to 7 taps are unrolled into the tile (code size stays small)
_PARALLEL_MIN_ELEMENTS = 4096  # below this a thread-pool launch costs more than it saves


def cpu_pipeline(target):
    """TVM's CPU pipeline (legalize, fuse, lower) with ``schedule_cpu_kernel`` applied to each fused kernel."""
    tvm = _tvm()
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

    @tvm.transform.module_pass(opt_level=0, name="HwLatencyCpuPipeline")
    def pipeline(mod, _ctx):
        with target:
            return tvm.transform.Sequential(
                cpu_generic.library_dispatch_passes(target)
                + cpu_generic.legalize_passes(target)
                + [_schedule_pass(target)]
                + cpu_generic.dataflow_lower_passes(target)
                + cpu_generic.finalize_passes(target)
            )(mod)

    return pipeline


def _schedule_pass(target):
    tvm = _tvm()
    from tvm import tirx

    @tvm.transform.module_pass(opt_level=0, name="HwLatencyScheduleCpuKernels")
    def schedule(mod, _ctx):
        updates = {}
        for gvar, func in mod.functions_items():
            if isinstance(func, tirx.PrimFunc) and not func.attrs.get("tirx.is_scheduled", False):
                scheduled = schedule_cpu_kernel(func, target)
                if scheduled is not None:
                    updates[gvar] = scheduled.with_attr("tirx.is_scheduled", True)
        for gvar, func in updates.items():
            mod[gvar] = func
        return mod

    return schedule


def schedule_cpu_kernel(func, target):
    """``func`` (a legalized, fused PrimFunc) scheduled for the CPU ``target``, or None to leave it as is.

    Tries the full schedule, then simpler ones (no epilogue fusion, no padding split); a schedule error (a
    kernel these rules do not fit) falls back to the next, finally to the unscheduled function."""
    from tvm import s_tir

    lanes = max(4, _llvm_vector_bits(target) // 32)  # float32 lanes
    for fuse_epilogue, split_padding in ((True, True), (False, True), (False, False)):
        try:
            sch = s_tir.Schedule(func)
            if _schedule(sch, lanes, fuse_epilogue, split_padding):
                return sch.mod["main"]
        except Exception:  # noqa: BLE001, S112 - tvm.s_tir.ScheduleError and TVM FFI errors alike
            continue
    return None


def _llvm_vector_bits(target) -> int:
    from tvm.target.codegen import llvm_get_vector_width

    try:
        bits = int(llvm_get_vector_width(target))
    except Exception:  # noqa: BLE001
        bits = -1
    return bits if bits > 0 else 128


def _schedule(sch, lanes: int, fuse_epilogue: bool, split_padding: bool) -> bool:
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import try_inline_contiguous_spatial

    blocks = normalize_prim_func(sch)
    if not blocks:
        return False
    reductions = [i for i, b in enumerate(blocks) if not b.is_injective()]
    if not reductions:
        for block in try_inline_contiguous_spatial(sch, blocks):
            _vectorize_innermost(sch, block.block_rv, lanes)
        return True
    if len(reductions) > 1:
        return False
    at = reductions[0]
    consumers = [b.block_rv for b in blocks[at + 1:]]
    if not _tile_reduction(sch, blocks[at], lanes, consumers if fuse_epilogue else []):
        return False
    for block in blocks[:at]:
        if split_padding and block.is_data_pad(sch):
            # zero fill + interior copy: two branch-free loops instead of one if_then_else per element
            const = sch.decompose_padding(block.block_rv, sch.get_loops(block.block_rv)[0])
            _vectorize_fill(sch, const, lanes)
        _vectorize_innermost(sch, block.block_rv, lanes)
    if not fuse_epilogue:
        for block in consumers:
            _vectorize_innermost(sch, block, lanes)
    return True


def _extent(sch, loop) -> int | None:
    extent = sch.get(loop).extent
    return int(extent.value) if hasattr(extent, "value") else None


def _pow2_divisor(n: int, cap: int) -> int:
    """The largest power of two that divides ``n`` and is at most ``cap``: splits without a remainder, so
    loops stay free of bound checks that would block vectorization."""
    d = 1
    while d * 2 <= cap and n % (d * 2) == 0:
        d *= 2
    return d


def _parallel(sch, loops, elements: int) -> None:
    if not loops or elements < _PARALLEL_MIN_ELEMENTS:
        return
    sch.parallel(sch.fuse(*loops) if len(loops) > 1 else loops[0])


def _vectorize_innermost(sch, block, lanes: int) -> None:
    loops = sch.get_loops(block)
    extents = [_extent(sch, loop) for loop in loops]
    if not loops or any(e is None for e in extents):
        return
    outer, inner = list(loops[:-1]), loops[-1]
    width = _pow2_divisor(extents[-1], lanes)
    if width > 1:
        if width < extents[-1]:
            rest, inner = sch.split(inner, factors=[None, width])
            outer.append(rest)
        sch.vectorize(inner)
    _parallel(sch, outer, _product(extents))


def _vectorize_fill(sch, block, lanes: int) -> None:
    """Vectorize a constant fill along its innermost axis, whole (an odd-sized constant store is still cheap
    as one vector), or split when too long; fusing all its axes would leave div/mod in every index."""
    loops = sch.get_loops(block)
    extent = _extent(sch, loops[-1])
    if extent is None or extent < 2:
        return
    inner = loops[-1]
    if extent > 4 * lanes:
        width = _pow2_divisor(extent, lanes)
        if width < 2:
            return
        _, inner = sch.split(inner, factors=[None, width])
    sch.vectorize(inner)


def _product(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _names_in(expr) -> set[str]:
    from tvm import tirx

    return {var.name for var in tirx.analysis.undefined_vars(expr)}


def _rows_are_contiguous(stmt, rows: int, cols: int) -> bool:
    """Whether iterating spatial axes ``rows`` and ``cols`` as one flat axis walks every buffer the block
    touches through them contiguously (offset y * X + x + c, c free of y and x): then a narrow map (4x4 after
    a 1x1 conv) can fill a whole vector instead of a quarter of one. Padding or striding breaks this."""
    from tvm.sym.analyzer import Analyzer

    y, x = stmt.iter_vars[rows].var, stmt.iter_vars[cols].var
    width = int(stmt.iter_vars[cols].dom.extent)
    analyzer = Analyzer()
    for access in [*stmt.reads, *stmt.writes]:
        index = [r.min for r in access.region]
        used = [_names_in(i) & {y.name, x.name} for i in index]
        if not any(used):
            continue
        if len(index) < 2 or any(used[:-2]) or not hasattr(access.source.shape[-1], "value"):
            return False
        offset = index[-2] * access.source.shape[-1] + index[-1]
        if _names_in(analyzer.simplify(offset - (y * width + x))) & {y.name, x.name}:
            return False
    return True


def _tile_reduction(sch, block_info, lanes: int, epilogue) -> bool:
    kinds = block_info.dom_kind()
    n_spatial = len(kinds) - len(kinds.lstrip("S"))
    if n_spatial == 0 or kinds[n_spatial:].strip("R"):
        return False  # not "spatial axes, then reduction axes"
    block = block_info.block_rv
    loops = sch.get_loops(block)
    extents = [_extent(sch, loop) for loop in loops]
    if any(e is None for e in extents):
        return False
    stmt = sch.get(block)
    names = [{iv.var.name} for iv in stmt.iter_vars]
    vec = next((i for i in reversed(range(n_spatial)) if extents[i] > 1), None)
    if vec is None:
        return False
    if (_pow2_divisor(extents[vec], lanes) < lanes and vec > 0 and extents[vec - 1] > 1
            and _rows_are_contiguous(stmt, vec - 1, vec)):
        fused = sch.fuse(loops[vec - 1], loops[vec])
        loops = [*loops[:vec - 1], fused, *loops[vec + 1:]]
        extents = [*extents[:vec - 1], extents[vec - 1] * extents[vec], *extents[vec + 1:]]
        names = [*names[:vec - 1], names[vec - 1] | names[vec], *names[vec + 1:]]
        n_spatial -= 1
        vec -= 1
    spatial = range(n_spatial)
    reads = [set().union(*(_names_in(r.min) for r in region.region)) for region in stmt.reads]
    # reuse axis: absent from the vector-loaded operand, so each loaded vector serves a whole tile column
    vector_reads = [r for r in reads if names[vec] & r]
    other_reads = [r for r in reads if not names[vec] & r]
    reuse = None
    for pool in (vector_reads, other_reads):
        candidates = [i for i in spatial if i != vec and extents[i] > 1 and any(not names[i] & r for r in pool)]
        if candidates:
            reuse = max(candidates, key=lambda i: (_pow2_divisor(extents[i], _ACCUMULATORS), extents[i]))
            break
    width = _pow2_divisor(extents[vec], lanes)
    # narrow rows (8x8, 4x4 maps): tile one more spatial axis so the tile still holds enough accumulators
    rows_axis, rows = None, 1
    if width < lanes:
        rest = [i for i in spatial if i not in (vec, reuse) and extents[i] > 1]
        if rest:
            rows_axis = rest[-1]
            rows = _pow2_divisor(extents[rows_axis], lanes // width)
    vec_outer, vec_inner = sch.split(loops[vec], factors=[None, width])
    outer, tile = [], []
    for i in spatial:
        if i == vec:
            outer.append(vec_outer)
        elif i == reuse:
            depth = _pow2_divisor(extents[i], max(1, _ACCUMULATORS // rows))
            o, t = sch.split(loops[i], factors=[None, depth])
            outer.append(o)
            tile.append(t)
        elif i == rows_axis and rows > 1:
            o, t = sch.split(loops[i], factors=[None, rows])
            outer.append(o)
            tile.append(t)
        else:
            outer.append(loops[i])
    reduction = list(loops[n_spatial:])
    # Depthwise-like tiles (the reuse axis is y): the tile's rows read overlapping input rows (y + ry); with
    # the window loop unrolled next to them, LLVM loads each input row once per tile, not once per (row, ry).
    tiled_names = names[reuse] if reuse is not None else set()
    first = len(stmt.iter_vars) - len(reduction)
    window = []
    for j in range(len(reduction)):
        name = stmt.iter_vars[first + j].var.name
        shares_a_row = any(tiled_names & _names_in(r.min) and name in _names_in(r.min)
                           for region in stmt.reads for r in region.region)
        if shares_a_row and extents[n_spatial + j] <= _MAX_UNROLLED_WINDOW:
            window.append(j)
    window_loops = [reduction[j] for j in window]
    reduction = [loop for j, loop in enumerate(reduction) if j not in window]
    sch.reorder(*outer, *reduction, *window_loops, *tile, vec_inner)
    if epilogue:
        for consumer in epilogue[:-1]:
            sch.compute_inline(consumer)
        last = epilogue[-1]
        sch.reverse_compute_at(last, outer[-1], preserve_unit_loops=True)
        tail = sch.get_loops(last)[len(outer):]
        if tail:
            sch.vectorize(tail[-1])
            for loop in tail[:-1]:
                sch.unroll(loop)
    _parallel(sch, outer[:-1], _product(extents[:n_spatial]))
    for loop in [*window_loops, *tile]:
        sch.unroll(loop)
    sch.vectorize(vec_inner)
    if reduction or window_loops:
        sch.decompose_reduction(block, [*reduction, *window_loops][0])
    return True


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

    # Which compile pipeline made a library: part of the cache key and of describe(); change it whenever the
    # generated code would change, so no library built by an older pipeline is ever reused.
    pipeline_name = "tvm-default"

    def _relax_pipeline(self, target):
        """The Relax pipeline ``tvm.compile`` runs; ``"default"`` is TVM's own for the target."""
        return "default"

    def _runtime(self) -> dict[str, Any]:
        tvm = _tvm()
        return {"runtime": "tvm", "runtime_version": tvm.__version__, "target": self._target_dict(),
                "pipeline": self.pipeline_name}

    def _library_path(self, model: OnnxModel, target) -> Path:
        tvm = _tvm()
        key = json.dumps({"model": model.content_hash, "target": str(target), "tvm": tvm.__version__,
                          "pipeline": self.pipeline_name}, sort_keys=True)
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
            return tvm.compile(mod, target, relax_pipeline=self._relax_pipeline(target))
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
    pipeline_name = CPU_PIPELINE

    def _relax_pipeline(self, target):
        return cpu_pipeline(target)

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
