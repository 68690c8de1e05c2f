"""The predictor interface every latency model follows, and the MODEL file that stores one.

Shape (scikit-learn style): hyper-parameters in ``__init__``; ``fit(dataset)`` learns from the public devices and
returns self; ``references(n)`` names the architectures worth measuring on a new device; ``adapt(archs, ms)``
fits the target device from a few measurements and returns self; ``predict(archs)`` returns milliseconds.
Learned state lives in attributes ending in ``_``.
"""

from __future__ import annotations

import copy
import hashlib
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from exporters.spaces import get_space
from latency.datasets import LatencyDataset
from latency.errors import InputError

FORMAT = "hw-latency-model"
FORMAT_VERSION = 1


class NotFittedError(InputError):
    pass


class LatencyPredictor:
    """Base class. Subclasses set ``name`` and implement ``_fit``, ``_adapt``, ``_predict_encoded``."""

    name: ClassVar[str] = ""
    #: whether predict() can give lo/hi bounds
    has_intervals: ClassVar[bool] = False

    def __init__(self, space: str, seed: int = 0):
        self.space = space
        self.seed = seed

    # -- public API ---------------------------------------------------------------------------------------------
    def fit(self, dataset: LatencyDataset, devices: Sequence[str] | None = None,
            rows: np.ndarray | None = None) -> LatencyPredictor:
        """Learn from ``devices`` (default: the dataset's meta-train + meta-valid devices) on ``rows``."""
        if dataset.space != self.space:
            raise InputError(f"dataset is {dataset.space} but the predictor is for {self.space}")
        devices = list(devices) if devices else dataset.default_train_devices()
        unknown = [d for d in devices if d not in dataset.devices]
        if unknown:
            raise InputError(f"device {unknown[0]!r} is not a column of {dataset.source or 'the dataset'}")
        rows = np.arange(len(dataset)) if rows is None else np.asarray(rows, dtype=int)
        data = dataset.subset(rows, devices)
        keep = ~np.isnan(data.latency).any(axis=1)
        if keep.sum() < 10:
            raise InputError(f"fewer than 10 architectures are measured on all of {', '.join(devices)}")
        data = data.subset(np.flatnonzero(keep))
        torch.manual_seed(self.seed)
        t0 = time.perf_counter()
        self.train_devices_ = list(devices)
        # The training set is recorded by size and digest: model files stay small, and two models can still be
        # told apart by what they saw.
        self.n_train_archs_ = len(data.archs)
        self.train_archs_sha256_ = hashlib.sha256("\n".join(data.archs).encode()).hexdigest()
        self._fit(data)
        self.fit_seconds_ = time.perf_counter() - t0
        self.target_ = None
        return self

    def references(self, n: int = 10) -> list[str]:
        """The ``n`` architectures this model wants measured on a new device (among its training archs)."""
        self._check_fitted()
        if n < 1:
            raise InputError(f"--n must be at least 1, got {n}")
        order = self._reference_order()
        if n > len(order):
            raise InputError(f"the model ranks {len(order)} reference architectures; asked for {n}")
        return list(order[:n])

    def adapt(self, archs: Sequence[str], latency_ms: Sequence[float]) -> LatencyPredictor:
        """Fit the target device from measured (arch, ms) pairs; returns self."""
        self._check_fitted()
        y = np.asarray(latency_ms, dtype=np.float64)
        if len(archs) != len(y):
            raise InputError(f"{len(archs)} archs but {len(y)} latencies")
        if len(archs) == 0:
            raise InputError("no adaptation samples given")
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise InputError("adaptation latencies must be finite and positive")
        self.target_ = self._adapt(self.encode(archs), y, list(archs))
        return self

    def adapted(self, archs: Sequence[str], latency_ms: Sequence[float]) -> LatencyPredictor:
        """A copy adapted to the target; the meta-trained state of ``self`` is left as it is."""
        return copy.deepcopy(self).adapt(archs, latency_ms)

    def predict(self, archs: Sequence[str]) -> np.ndarray:
        return self.predict_encoded(self.encode(archs))

    def predict_interval(self, archs: Sequence[str], level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        raise InputError(f"predictor {self.name!r} gives no prediction intervals")

    def predict_encoded(self, x: np.ndarray) -> np.ndarray:
        """Milliseconds for encoded architectures (the fast path a search loop uses)."""
        self._check_fitted()
        return self._predict_encoded(np.asarray(x))

    def encode(self, archs: Sequence[str]) -> np.ndarray:
        return get_space(self.space).encode(list(archs))

    # -- persistence --------------------------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def state(self) -> dict[str, Any]:
        """Learned state (attributes ending in '_'), as plain types and arrays; a target adaptation is not kept."""
        return {k: v for k, v in vars(self).items()
                if k.endswith("_") and not k.startswith("_") and k not in ("target_", "info_")}

    def load_state(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def save(self, path: str | Path, info: dict[str, Any] | None = None) -> Path:
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from importlib.metadata import version

        blob = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.name, "space": self.space,
            "params": self.get_params(), "state": _to_storable(self.state()),
            "info": {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "toolkit": version("hw-latency"),
                     "torch": str(torch.__version__), "python": platform.python_version(), **(info or {})},
        }
        torch.save(blob, path)
        return path

    # -- for subclasses -----------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "train_devices_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet")

    def _fit(self, data: LatencyDataset) -> None:
        raise NotImplementedError

    def _reference_order(self) -> list[str]:
        raise NotImplementedError

    def _adapt(self, x: np.ndarray, y: np.ndarray, archs: list[str]) -> Any:
        raise NotImplementedError

    def _predict_encoded(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _to_storable(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return {k: _to_storable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_storable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def _from_storable(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: _from_storable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_storable(v) for v in obj]
    return obj


def load_blob(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"model file {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise InputError(f"{path} is not a model file ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputError(f"{path} is not a {FORMAT} file")
    if blob.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(f"{path} was written by a newer toolkit (format {blob['format_version']})")
    return blob
