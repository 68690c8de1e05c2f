"""The ``Device`` protocol every backend implements."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from devices.measurement import MeasureConfig, Measurement


class DeviceError(RuntimeError):
    """A device that cannot run here or failed while running (one-line message for the CLI)."""


class DeviceSpecError(ValueError):
    """A device spec string that names no known device or carries bad options."""


@runtime_checkable
class Device(Protocol):
    """A place a model can be timed.

    ``spec`` is the canonical spec string (options sorted and defaulted) so the same spec always names the same
    device in the store. ``describe()`` is the static descriptor (backend, options, CPU model / GPU name).
    """

    spec: str

    def describe(self) -> dict[str, Any]: ...

    def available(self) -> tuple[bool, str]:
        """Whether this device can run here, and if not, why (one line)."""
        ...

    def measure(self, model: Any, config: MeasureConfig | None = None) -> Measurement:
        """Time a static-shape ONNX model (an ``exporters.onnx.OnnxModel`` or a path to an .onnx file); the
        Measurement carries the canonical spec, device, environment, model hash and config."""
        ...
