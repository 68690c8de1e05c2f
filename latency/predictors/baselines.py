"""Baselines the meta-learned predictors are judged against.

* ``flops``: latency = a * MFLOPs + b * Mparams + c with non-negative a, b, c, fitted on the target's samples.
* ``ridge``: one regressor per public device (an additive cost model over the encoding), and on the target a ridge
  regression that combines the public devices' predictions, fitted on the target's samples.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.optimize import nnls
from scipy.stats import spearmanr

from exporters.spaces import get_space
from latency.datasets import LatencyDataset
from latency.predictors.base import LatencyPredictor
from latency.predictors.bayes import fit_cost_vectors, greedy_design, with_bias

RIDGE_GRID = (0.003, 0.01, 0.03, 0.1, 1.0)


class FlopsPredictor(LatencyPredictor):
    """FLOPs / parameter-count proxy, scaled by the adaptation samples."""

    name: ClassVar[str] = "flops"

    def _fit(self, data: LatencyDataset) -> None:
        cost = self._cost(data.archs)
        # Measure along the FLOPs range: quantiles of the training architectures' FLOPs.
        order = np.argsort(cost[:, 0], kind="stable")
        picks = order[np.linspace(0, len(order) - 1, min(50, len(order))).round().astype(int)]
        spread = [int(i) for i in _interleave(picks)]
        self.reference_archs_ = [data.archs[i] for i in spread]
        self.fallback_ms_ = float(np.exp(np.mean(np.log(np.nanmean(data.latency, axis=0)))))
        self.coef_ = None

    def _cost(self, archs) -> np.ndarray:
        space = get_space(self.space)
        return np.array([[space.flops(a) / 1e6, space.params(a) / 1e6] for a in archs], dtype=np.float64)

    def encode(self, archs) -> np.ndarray:
        return self._cost(archs)

    def _reference_order(self) -> list[str]:
        return self.reference_archs_

    def _adapt(self, x: np.ndarray, y: np.ndarray, archs: list[str]) -> Any:
        cols = [0] if len(y) < 4 else [0, 1]
        a = np.concatenate([x[:, cols], np.ones((len(x), 1))], axis=1)
        if len(y) < 2:
            a = a[:, :1]
        # Scale columns so nnls is well conditioned; undo afterwards.
        norms = np.linalg.norm(a, axis=0)
        coef, _ = nnls(a / norms, y)
        coef = coef / norms
        full = np.zeros(3)
        full[cols] = coef[: len(cols)]
        if len(coef) > len(cols):
            full[2] = coef[-1]
        return full

    def _predict_encoded(self, x: np.ndarray) -> np.ndarray:
        if self.target_ is None:
            # Not adapted: proportional to FLOPs around the public devices' typical latency.
            ref = self._cost(self.reference_archs_)[:, 0].mean()
            return self.fallback_ms_ * x[:, 0] / ref
        c = self.target_
        return np.maximum(x[:, 0] * c[0] + x[:, 1] * c[1] + c[2], 1e-6)


def _interleave(picks: np.ndarray) -> list[int]:
    """Reorder picks so every prefix spreads over the range: ends first, then successive midpoints."""
    n = len(picks)
    if n <= 2:
        return list(picks)
    order = [0, n - 1]
    segments = [(0, n - 1)]
    while len(order) < n:
        nxt = []
        for lo, hi in segments:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                order.append(mid)
                nxt += [(lo, mid), (mid, hi)]
        if not nxt:
            break
        segments = nxt
    order += [i for i in range(n) if i not in order]
    return [picks[i] for i in order]


def combine_fit(p: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """Ridge weights (and intercept) combining source predictions ``p`` (n, k) to targets ``y``."""
    pm, ym = p.mean(axis=0), y.mean()
    pc = p - pm
    gram = pc.T @ pc
    reg = lam * max(np.trace(gram) / gram.shape[0], 1e-12)
    w = np.linalg.solve(gram + reg * np.eye(len(gram)), pc.T @ (y - ym))
    return w, float(ym - pm @ w)


class RidgeEnsemblePredictor(LatencyPredictor):
    """Per-device regressors on the public devices, combined by ridge regression on the target's samples."""

    name: ClassVar[str] = "ridge"

    def __init__(self, space: str, alpha: float | str = "auto", ridge: float = 1e-2, n_references: int = 50,
                 seed: int = 0):
        super().__init__(space, seed)
        self.alpha = alpha
        self.ridge = ridge
        self.n_references = n_references

    def _fit(self, data: LatencyDataset) -> None:
        f = with_bias(self.encode(data.archs).astype(np.float64))
        scales = data.latency.mean(axis=0)
        theta = fit_cost_vectors(f, data.latency / scales, self.ridge)
        self.device_costs_ = theta * scales[:, None]  # each device's regressor, in ms
        p = f @ self.device_costs_.T
        # Where the public devices disagree most (after removing their common part) is where a target's
        # measurements say the most about how to weigh them.
        pn = p / p.mean(axis=0)
        pc = pn - pn.mean(axis=1, keepdims=True)
        cov = np.eye(pc.shape[1])
        picks = greedy_design(pc, cov, 0.05, self.n_references)
        self.reference_archs_ = [data.archs[i] for i in picks]
        if self.alpha == "auto":
            self.alpha_ = self._choose_alpha(p, data.latency, picks[:10])
        else:
            self.alpha_ = float(self.alpha)
        self.fallback_ = np.full(len(self.device_costs_), 1.0 / len(self.device_costs_))

    def _choose_alpha(self, p: np.ndarray, latency: np.ndarray, refs: list[int]) -> float:
        best = None
        rest = np.setdiff1d(np.arange(len(p)), refs)
        for lam in RIDGE_GRID:
            losses = []
            for k in range(p.shape[1]):
                src = np.delete(p, k, axis=1)
                w, b = combine_fit(src[refs], latency[refs, k], lam)
                pred = np.maximum(src[rest] @ w + b, 1e-6)
                rho = spearmanr(pred, latency[rest, k])[0]
                losses.append(1 - (rho if np.isfinite(rho) else 0) + np.mean(np.abs(np.log(pred / latency[rest, k]))))
            loss = float(np.mean(losses))
            if best is None or loss < best[0]:
                best = (loss, lam)
        return best[1]

    def _reference_order(self) -> list[str]:
        return self.reference_archs_

    def _adapt(self, x: np.ndarray, y: np.ndarray, archs: list[str]) -> Any:
        p = with_bias(x.astype(np.float64)) @ self.device_costs_.T
        if len(y) < 2:
            return {"w": self.fallback_ * y[0] / float(p[0] @ self.fallback_), "b": 0.0}
        w, b = combine_fit(p, y, self.alpha_)
        return {"w": w, "b": b}

    def _predict_encoded(self, x: np.ndarray) -> np.ndarray:
        t = self.target_ or {"w": self.fallback_, "b": 0.0}
        coef = self.device_costs_.T @ t["w"]
        out = x @ coef[:-1].astype(x.dtype, copy=False) + coef[-1] + t["b"]
        return np.maximum(out, 1e-6)
