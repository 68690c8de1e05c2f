"""What every backend running in this process shares: model resolution, a cache of loaded models, and the
``measure`` flow (load once, time with the shared method, fill device, environment and model hash).

A backend subclasses ``LocalDevice`` and supplies ``available()``, ``_load(model) -> LoadedModel`` (a ready
session / compiled library plus its ``run_block``) and, if it has a global thread setting, ``_threads()``.
"""

from __future__ import annotations

import contextlib
import os
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from devices.base import DeviceError
from devices.environment import CpuActivity, capture_environment, cpu_model
from devices.measurement import MeasureConfig, Measurement
from devices.timing import RunBlock, RunBlocks, measure_blocks

if TYPE_CHECKING:
    from devices.spec import DeviceSpec
    from exporters.onnx import OnnxModel

ModelLike = Any  # an exporters.onnx.OnnxModel, or a str / PathLike naming an .onnx file

# Validated OnnxModels by (path, mtime, size): measuring the same file again skips the checker and hashing.
_RESOLVED: OrderedDict[tuple[str, int, int], OnnxModel] = OrderedDict()
_RESOLVED_MAX = 256


def resolve_model(model: ModelLike) -> OnnxModel:
    """An OnnxModel for ``model``; a path is loaded and validated by exporters.onnx (ExportError if unusable)."""
    if hasattr(model, "content_hash") and hasattr(model, "input_shape") and hasattr(model, "path"):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise DeviceError(f"measure() takes an OnnxModel or a path to an .onnx file, got {type(model).__name__}")
    from exporters.onnx import load_onnx

    path = Path(model)
    try:
        st = path.stat()
    except OSError:
        return load_onnx(path)  # raises ExportError naming the file
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    cached = _RESOLVED.get(key)
    if cached is None:
        cached = load_onnx(path)
        _RESOLVED[key] = cached
        while len(_RESOLVED) > _RESOLVED_MAX:
            _RESOLVED.popitem(last=False)
    else:
        _RESOLVED.move_to_end(key)
    return cached


@dataclass
class LoadedModel:
    """A model made ready on a device: how to time it, and what loading cost."""

    run_block: RunBlock
    method: str
    load_s: float = 0.0
    first_run_s: float = 0.0
    run_blocks: RunBlocks | None = None
    run_blocks_discard: int = 0
    details: dict[str, Any] | None = None  # how loading went (e.g. a compile-cache hit), for reports
    state: Any = None  # the session / VM / module, kept alive while cached


class LocalDevice(ABC):
    """A Device that runs models in this process. ``spec`` is the canonical spec string."""

    backend: ClassVar[str]
    # Loaded models kept per device; a LUT build measures thousands of layers, so this must stay bounded.
    max_loaded: ClassVar[int] = 8

    def __init__(self, spec: DeviceSpec) -> None:
        if spec.backend != self.backend:
            raise DeviceError(f"{type(self).__name__} runs {self.backend}, not {spec.canonical}")
        self.device_spec = spec
        self.spec = spec.canonical
        self.options: dict[str, Any] = dict(spec.options)
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"

    @property
    def threads(self) -> int | None:
        return self.options.get("threads")

    @property
    def gpu_index(self) -> int | None:
        """The CUDA device index for GPU backends, None for CPU ones."""
        return None

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """Whether this device can run here, and if not, why (one line)."""

    @abstractmethod
    def _load(self, model: OnnxModel) -> LoadedModel:
        """Make ``model`` ready to run (session, compiled library, module on device); time nothing yet."""

    def _runtime(self) -> dict[str, Any]:
        """Backend facts for describe(): runtime version, providers, target."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The static descriptor: backend, options, the hardware it runs on, runtime facts."""
        info = {"backend": self.backend, "spec": self.spec, "options": dict(self.options), "cpu_model": cpu_model()}
        if self.gpu_index is not None:
            from devices.environment import gpu_info

            info["gpu"] = gpu_info(self.gpu_index).get("name")
        ok, _ = self.available()
        if ok:
            info.update(self._runtime())
        return info

    def environment(self) -> dict[str, Any]:
        return capture_environment(threads=self.threads, gpu_index=self.gpu_index)

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        """Apply a process-wide thread setting while loading / measuring and restore it after."""
        yield

    def load(self, model: ModelLike) -> LoadedModel:
        """Load ``model`` (cached by content hash, so a structurally equal model loads once), run it once to
        surface errors and first-run costs, and return it ready to time."""
        ok, why = self.available()
        if not ok:
            raise DeviceError(f"device {self.spec} cannot run here: {why}")
        onnx_model = resolve_model(model)
        key = onnx_model.content_hash
        loaded = self._loaded.get(key)
        if loaded is not None:
            self._loaded.move_to_end(key)
            return loaded
        with self._threads():
            start = time.perf_counter()
            loaded = self._load(onnx_model)
            loaded.load_s = time.perf_counter() - start
            loaded.first_run_s = loaded.run_block(1)
        self._loaded[key] = loaded
        while len(self._loaded) > self.max_loaded:
            self._loaded.popitem(last=False)
        return loaded

    def unload(self) -> None:
        """Drop every loaded model (sessions, libraries, modules)."""
        self._loaded.clear()

    def measure(self, model: ModelLike, config: MeasureConfig | None = None) -> Measurement:
        """Time the model with the shared method; the Measurement carries spec, device, environment, hash."""
        onnx_model = resolve_model(model)
        loaded = self.load(onnx_model)
        device = self.describe()
        activity = CpuActivity()
        with self._threads():
            m = measure_blocks(
                loaded.run_block, config, method=loaded.method, run_blocks=loaded.run_blocks,
                run_blocks_discard=loaded.run_blocks_discard, device_spec=self.spec, device=device,
                environment=self.environment(), model_hash=onnx_model.content_hash,
            )
        # What else the machine did meanwhile: the one disturbance a small spread does not reveal.
        m.environment = {**m.environment, "cpu_during": activity.finish()}
        return m


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message: runtimes raise pages of C++ context we never show."""
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


def guard_run(run: Callable[..., Any], spec: str, model: OnnxModel) -> Callable[..., Any]:
    """``run`` (a run_block or run_blocks) with runtime failures turned into one-line DeviceErrors naming the
    device and the model."""

    def guarded(*args: int) -> Any:
        try:
            return run(*args)
        except DeviceError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the runtime raises, the user sees one line
            raise DeviceError(f"device {spec}: running {model.path} failed: {first_line(exc)}") from None

    return guarded
