"""onnxruntime backends: ``ort-cpu`` (CPU execution provider) and ``ort-cuda`` (CUDA provider, IO binding).

Sessions run sequentially with one inter-op thread, so ``threads`` is the only parallelism; a session is built
once per model (content hash) and reused by every later measurement on the same device object.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from devices.base import DeviceError
from devices.local import LoadedModel, LocalDevice, first_line, guard_run
from exporters.errors import ExportError

if TYPE_CHECKING:
    from exporters.onnx import OnnxModel

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}
_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
           "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
           "tensor(int8)": np.int8}


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise DeviceError(f"onnxruntime is not importable: {first_line(exc)}") from None
    return onnxruntime


def model_input(model: OnnxModel, ort_type: str) -> np.ndarray:
    """The fixed example input of ``model`` in the element type the session expects."""
    from exporters.onnx import example_input

    dtype = _DTYPES.get(ort_type)
    if dtype is None:
        raise ExportError(f"{model.path}: input {model.input_name!r} has type {ort_type}, which cannot be timed "
                          f"(supported: {', '.join(sorted(_DTYPES))})")
    x = example_input(model.input_shape)
    return x.astype(dtype) if np.issubdtype(dtype, np.floating) else np.abs(x * 10).astype(dtype)


class _OrtDevice(LocalDevice):
    providers: tuple[Any, ...] = ()

    def _session_options(self):
        ort = _ort()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(self.threads or 0)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[self.options["opt"]])
        options.log_severity_level = 3
        return options

    def _session(self, model: OnnxModel):
        ort = _ort()
        try:
            session = ort.InferenceSession(str(model.path), self._session_options(), providers=list(self.providers))
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / RuntimeError types
            raise DeviceError(f"device {self.spec}: onnxruntime cannot load {model.path}: {first_line(exc)}") from None
        return session

    def _runtime(self) -> dict[str, Any]:
        return {"runtime": "onnxruntime", "runtime_version": _ort().__version__}


class OrtCpuDevice(_OrtDevice):
    """onnxruntime on the CPU: ``threads`` intra-op threads (default all usable cores), graph ``opt`` level."""

    backend = "ort-cpu"
    providers = ("CPUExecutionProvider",)

    def available(self) -> tuple[bool, str]:
        try:
            ort = _ort()
        except DeviceError as exc:
            return False, str(exc)
        if "CPUExecutionProvider" not in ort.get_available_providers():
            return False, "this onnxruntime build has no CPUExecutionProvider"
        return True, f"onnxruntime {ort.__version__}, {self.threads} thread(s)"

    def _load(self, model: OnnxModel) -> LoadedModel:
        session = self._session(model)
        feeds = {model.input_name: model_input(model, session.get_inputs()[0].type)}
        outputs = [o.name for o in session.get_outputs()]
        run = session.run

        def run_block(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                run(outputs, feeds)
            return time.perf_counter() - start

        return LoadedModel(run_block=guard_run(run_block, self.spec, model), method="ort-cpu perf_counter",
                           state=session)


class OrtCudaDevice(_OrtDevice):
    """onnxruntime with the CUDA execution provider; input and outputs stay on the GPU (IO binding) so a run
    times the model, not host-device copies."""

    backend = "ort-cuda"

    @property
    def gpu_index(self) -> int:
        return int(self.options["device"])

    @property
    def providers(self) -> tuple[Any, ...]:  # type: ignore[override]
        return (("CUDAExecutionProvider", {"device_id": self.gpu_index}), "CPUExecutionProvider")

    def available(self) -> tuple[bool, str]:
        try:
            ort = _ort()
        except DeviceError as exc:
            return False, str(exc)
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return False, (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                           "(install onnxruntime-gpu on a machine with an NVIDIA GPU)")
        from devices.environment import gpu_info

        name = gpu_info(self.gpu_index).get("name")
        if name is None:
            return False, f"no CUDA GPU with index {self.gpu_index} is visible (nvidia-smi finds none)"
        return True, f"onnxruntime {ort.__version__} on {name}"

    def _load(self, model: OnnxModel) -> LoadedModel:
        ort = _ort()
        session = self._session(model)
        if session.get_providers()[:1] != ["CUDAExecutionProvider"]:
            # onnxruntime falls back to the CPU silently; timing that would be a wrong number under a GPU name.
            raise DeviceError(f"device {self.spec}: onnxruntime did not place {model.path} on CUDA "
                              f"(providers: {', '.join(session.get_providers())})")
        x = model_input(model, session.get_inputs()[0].type)
        binding = session.io_binding()
        binding.bind_ortvalue_input(model.input_name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", self.gpu_index))
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda", self.gpu_index)
        session.run_with_iobinding(binding)
        # Rebind the outputs to the buffers the first run allocated, so timed runs allocate nothing.
        for out, value in zip(session.get_outputs(), binding.get_outputs(), strict=True):
            binding.bind_ortvalue_output(out.name, value)
        binding.synchronize_inputs()

        def run_block(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            return time.perf_counter() - start

        return LoadedModel(run_block=guard_run(run_block, self.spec, model),
                           method="ort-cuda iobinding perf_counter+sync", state=(session, binding))

