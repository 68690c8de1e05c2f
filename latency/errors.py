"""Errors a user can cause, across the three packages; the CLI prints them as one line."""

from __future__ import annotations

from devices.base import DeviceError, DeviceSpecError
from devices.measurement import MeasureConfigError
from exporters.errors import ArchError, ExportError


class InputError(ValueError):
    """Bad input to a latency command: a file, a column, a value, a model that does not fit."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    InputError,
    ArchError,
    ExportError,
    DeviceError,
    DeviceSpecError,
    MeasureConfigError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
)


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, USER_ERRORS)
