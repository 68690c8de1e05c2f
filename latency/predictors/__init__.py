"""Latency predictors, selectable by name, and MODEL files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latency.errors import InputError
from latency.predictors.base import LatencyPredictor, _from_storable, load_blob


def registry() -> dict[str, type[LatencyPredictor]]:
    from latency.predictors.baselines import FlopsPredictor, RidgeEnsemblePredictor
    from latency.predictors.bayes import BayesCostPredictor

    classes: list[type[LatencyPredictor]] = [BayesCostPredictor, RidgeEnsemblePredictor, FlopsPredictor]
    try:
        from latency.predictors.meta import HelpPredictor, HybridPredictor, MamlPredictor

        classes += [HelpPredictor, MamlPredictor, HybridPredictor]
    except ImportError:
        pass
    return {c.name: c for c in classes}


def make_predictor(name: str, space: str, **params: Any) -> LatencyPredictor:
    classes = registry()
    if name not in classes:
        raise InputError(f"unknown predictor {name!r} (predictors: {', '.join(classes)})")
    return classes[name](space=space, **params)


def load_model(path: str | Path, space: str | None = None) -> LatencyPredictor:
    """A predictor from a MODEL file; ``space`` (if given) must match the file's."""
    blob = load_blob(path)
    kind, file_space = blob.get("kind"), blob.get("space")
    if space is not None and file_space != space:
        raise InputError(f"model file {path} is for space {file_space!r}, not {space!r}")
    model = make_predictor(kind, file_space, **{k: v for k, v in blob["params"].items() if k != "space"})
    model.load_state(_from_storable(blob["state"]))
    model.info_ = blob.get("info", {})
    return model


__all__ = ["LatencyPredictor", "load_model", "make_predictor", "registry"]
