"""Latency prediction for hardware-aware NAS: measurement store, datasets, predictors, evaluation, CLI.

Most used entry points (imported lazily so ``latency --help`` stays fast):

- ``load_pretrained(space)``: the shipped predictor for ``nb201`` or ``fbnet``;
- ``load_model(path)`` / ``make_predictor(name, space)``: any MODEL file / a fresh predictor;
- ``load_dataset(folder, space)``: a latency dataset in the HW-NAS-Bench CSV format.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "load_pretrained": "latency.pretrained",
    "load_model": "latency.predictors",
    "make_predictor": "latency.predictors",
    "load_dataset": "latency.datasets",
    "MeasurementStore": "latency.store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'latency' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
