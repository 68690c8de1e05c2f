"""PyTorch eager backends: ``torch-cpu`` and ``torch-cuda`` time the ``nn.Module`` an ONNX file was exported
from (``OnnxModel.module``), under ``torch.inference_mode`` on the same fixed input.

They answer "how fast is this architecture in PyTorch", the framework a search trains in; a path to an
.onnx file alone cannot be timed here, since ONNX does not carry the module.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from devices.base import DeviceError
from devices.local import LoadedModel, LocalDevice, first_line, guard_run

if TYPE_CHECKING:
    from exporters.onnx import OnnxModel


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise DeviceError(f"torch is not importable: {first_line(exc)}") from None
    return torch


def _module_of(model: OnnxModel, spec: str):
    module = getattr(model, "module", None)
    if module is None:
        raise DeviceError(
            f"device {spec}: {model.path} comes without its nn.Module; torch backends time the module, so pass "
            "the OnnxModel from export_module / export_arch (or measure the .onnx on ort-cpu / tvm-llvm)"
        )
    return module


class _TorchDevice(LocalDevice):
    def _runtime(self) -> dict[str, Any]:
        return {"runtime": "torch", "runtime_version": _torch().__version__}

    def load(self, model: Any) -> LoadedModel:
        # Cached by content hash like every backend, but a module-less model must fail even on a cache hit.
        from devices.local import resolve_model

        resolved = resolve_model(model)
        _module_of(resolved, self.spec)
        return super().load(resolved)


class TorchCpuDevice(_TorchDevice):
    """PyTorch eager on the CPU with ``threads`` intra-op threads (``torch.set_num_threads`` while timing)."""

    backend = "torch-cpu"

    def available(self) -> tuple[bool, str]:
        try:
            torch = _torch()
        except DeviceError as exc:
            return False, str(exc)
        return True, f"torch {torch.__version__}, {self.threads} thread(s)"

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        torch = _torch()
        before = torch.get_num_threads()
        want = int(self.threads or before)
        if want != before:
            torch.set_num_threads(want)
        try:
            yield
        finally:
            if want != before:
                torch.set_num_threads(before)

    def _load(self, model: OnnxModel) -> LoadedModel:
        torch = _torch()
        from exporters.onnx import example_input

        # A copy in eval mode: timing must not flip the caller's module out of training mode.
        module = copy.deepcopy(_module_of(model, self.spec)).eval()
        x = torch.from_numpy(example_input(model.input_shape))

        def run_block(n: int) -> float:
            with torch.inference_mode():
                start = time.perf_counter()
                for _ in range(n):
                    module(x)
                return time.perf_counter() - start

        return LoadedModel(run_block=guard_run(run_block, self.spec, model), method="torch-cpu perf_counter",
                           state=module)


class TorchCudaDevice(_TorchDevice):
    """PyTorch eager on CUDA GPU ``device``; blocks are timed with CUDA events, so only GPU time counts."""

    backend = "torch-cuda"

    @property
    def gpu_index(self) -> int:
        return int(self.options["device"])

    def available(self) -> tuple[bool, str]:
        try:
            torch = _torch()
        except DeviceError as exc:
            return False, str(exc)
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            return False, f"torch {torch.__version__} ({build}) sees no CUDA GPU"
        if self.gpu_index >= torch.cuda.device_count():
            return False, f"no CUDA GPU with index {self.gpu_index} ({torch.cuda.device_count()} visible)"
        return True, f"torch {torch.__version__} on {torch.cuda.get_device_name(self.gpu_index)}"

    def _load(self, model: OnnxModel) -> LoadedModel:
        torch = _torch()
        from exporters.onnx import example_input

        device = torch.device("cuda", self.gpu_index)
        module = copy.deepcopy(_module_of(model, self.spec)).eval().to(device)
        x = torch.from_numpy(example_input(model.input_shape)).to(device)
        start_event = torch.cuda.Event(enable_timing=True)
        end_event = torch.cuda.Event(enable_timing=True)

        def run_block(n: int) -> float:
            with torch.inference_mode(), torch.cuda.device(device):
                start_event.record()
                for _ in range(n):
                    module(x)
                end_event.record()
                end_event.synchronize()
                return start_event.elapsed_time(end_event) / 1e3

        return LoadedModel(run_block=guard_run(run_block, self.spec, model), method="torch-cuda cuda-events",
                           state=(module, x))
