"""Predictors shipped with the package, meta-trained on the 13 public devices of HW-NAS-Bench.

Each MODEL file records the exact ``latency train`` command and seed that made it (``model.info_``);
``latency/models/README.md`` lists them.
"""

from __future__ import annotations

from pathlib import Path

from latency.errors import InputError
from latency.predictors import LatencyPredictor, load_model

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_PREDICTOR = "bayes"


def pretrained_path(space: str, predictor: str = DEFAULT_PREDICTOR) -> Path:
    """Where the shipped MODEL file for ``space`` lies (``<space>.pt`` holds the default predictor)."""
    name = f"{space}.pt" if predictor == DEFAULT_PREDICTOR else f"{space}-{predictor}.pt"
    path = MODELS_DIR / name
    if not path.exists():
        shipped = sorted(p.name for p in MODELS_DIR.glob("*.pt"))
        raise InputError(f"no shipped {predictor} model for space {space!r} (shipped: {', '.join(shipped)})")
    return path


def load_pretrained(space: str, predictor: str = DEFAULT_PREDICTOR) -> LatencyPredictor:
    """A fresh copy of the shipped predictor for ``space``, ready for ``references`` / ``adapt`` / ``predict``."""
    return load_model(pretrained_path(space, predictor), space)
