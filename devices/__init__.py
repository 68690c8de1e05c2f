"""Devices: where models are timed. One measuring method (``measure_blocks``) shared by every backend, device
specs (``parse_spec`` / ``canonical_spec`` / ``get_device``), and the environment kept with each Measurement.

Backends import their runtime (onnxruntime, TVM, torch) only when a device of theirs is created.
"""

from devices.base import Device, DeviceError, DeviceSpecError
from devices.environment import capture_environment
from devices.measurement import MeasureConfig, MeasureConfigError, Measurement, summarize
from devices.spec import (
    DeviceSpec,
    available_devices,
    canonical_spec,
    column_name,
    get_device,
    list_backends,
    parse_spec,
)
from devices.timing import measure_blocks

__all__ = [
    "Device",
    "DeviceError",
    "DeviceSpec",
    "DeviceSpecError",
    "MeasureConfig",
    "MeasureConfigError",
    "Measurement",
    "available_devices",
    "canonical_spec",
    "capture_environment",
    "column_name",
    "get_device",
    "list_backends",
    "measure_blocks",
    "parse_spec",
    "summarize",
]
