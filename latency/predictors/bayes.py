"""A meta-learned Bayesian cost model: the default predictor.

Every public device is summarised by an additive cost model over the architecture encoding (one cost per
(layer, choice) plus a constant), fitted on latencies divided by the device's mean latency. The spread of those
per-device cost vectors is a prior over what a new device can look like: a Gaussian with the devices' mean and
(low-rank) covariance, plus an isotropic part for what no public device shows. Adapting to a new device is then
exact Bayesian linear regression from a handful of measurements:

* the measured samples pull the cost vector only in the directions the public devices vary in, so 10 samples
  are enough where a free fit would need ~30 (NB201) or ~200 (FBNet);
* the posterior gives a predictive spread for every architecture, hence ``lo_ms`` / ``hi_ms`` (the width is
  calibrated on held-out public devices so the nominal level is met in practice);
* the same prior says which architectures to measure: references are picked greedily, each the one that most
  reduces the summed posterior variance over the training architectures (a V-optimal design), instead of a
  fixed list.

This is the "per-device regressors combined on the target's samples" idea done with a prior learned across
devices instead of a hand-set ridge penalty. The isotropic spread (tau) and the noise are not fixed: at
adaptation the posteriors under a grid of both are averaged, weighted by their evidence on the target's own
samples. The design's tau and noise were chosen on HW-NAS-Bench's meta-validation devices, never on a target.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.stats import norm

from latency.datasets import LatencyDataset
from latency.errors import InputError
from latency.predictors.base import LatencyPredictor

# Settings averaged over at adaptation time, weighted by their evidence on the target's own samples: how far a
# device may stray from the public devices' span (tau) and how noisy its measurements are (noise), both relative
# to the device's mean latency.
TAU_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)
NOISE_GRID = (0.01, 0.02, 0.05, 0.1, 0.2)


def with_bias(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((len(x), 1), dtype=x.dtype)], axis=1)


def fit_cost_vectors(f: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge fits of every column of ``y`` on features ``f`` (last column = unpenalised bias): (devices, p)."""
    reg = ridge * np.eye(f.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(f.T @ f + reg, f.T @ y).T


def prior_of(theta: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    mu = theta.mean(axis=0)
    dev = theta - mu
    cov = dev.T @ dev / max(len(theta) - 1, 1) + tau**2 * np.eye(theta.shape[1])
    return mu, cov


def greedy_design(pool: np.ndarray, cov: np.ndarray, noise: float, n: int, criterion: str = "v") -> list[int]:
    """Indices into ``pool`` (features with bias), chosen one at a time.

    ``"v"``: the sample that most reduces the summed posterior variance over the whole pool (V-optimal), which
    favours typical architectures; ``"d"``: where the current posterior spread is largest (D-optimal), which favours
    extremes and is fragile when the cost model is not exactly additive.
    """
    cov = cov.copy()
    chosen: list[int] = []
    n = min(n, len(pool))
    gram = pool.T @ pool
    for _ in range(n):
        spread = np.einsum("ij,ij->i", pool @ cov, pool)
        if criterion == "v":
            gain = np.einsum("ij,ij->i", pool @ (cov @ gram @ cov), pool) / (spread + noise**2)
        else:
            gain = spread
        gain[chosen] = -np.inf
        i = int(np.argmax(gain))
        chosen.append(i)
        z = pool[i]
        cz = cov @ z
        cov -= np.outer(cz, cz) / (z @ cz + noise**2)
    return chosen


def posterior(mu: np.ndarray, cov: np.ndarray, noise: float, f: np.ndarray, y: np.ndarray
              ) -> tuple[float, np.ndarray, np.ndarray, float]:
    """(scale, posterior mean, posterior covariance, log evidence) of a device's normalised cost vector.

    ``y`` is in ms; the device's scale is the maximum-marginal-likelihood value, and the log evidence is
    log p(y / scale) plus the Jacobian of the scaling, so settings can be compared on the same samples.
    """
    prior_ms = f @ mu
    k = f @ cov @ f.T + noise**2 * np.eye(len(f))
    # d/du of log N(u y; m, K) + n log u = 0 is a quadratic in u = 1/scale with one positive root.
    ky = np.linalg.solve(k, y)
    a, b = float(y @ ky), float(prior_ms @ ky)
    u = (b + np.sqrt(b * b + 4 * a * len(y))) / (2 * a)
    resid = u * y - prior_ms
    gain = np.linalg.solve(k, f @ cov).T  # cov f^T k^-1, shape (p, n)
    mean = mu + gain @ resid
    post = cov - gain @ f @ cov
    _, logdet = np.linalg.slogdet(k)
    log_ev = -0.5 * float(resid @ np.linalg.solve(k, resid)) - 0.5 * logdet + len(y) * np.log(u)
    return 1.0 / u, mean, (post + post.T) / 2, log_ev


def adapt_mixture(theta: np.ndarray, taus: tuple[float, ...], noises: tuple[float, ...], f: np.ndarray,
                  y: np.ndarray, min_weight: float = 1e-4) -> list[dict[str, Any]]:
    """Posteriors under every (tau, noise) setting, weighted by their evidence on the samples (type-II BMA)."""
    parts = []
    for tau in taus:
        mu, cov = prior_of(theta, tau)
        for noise in noises:
            scale, mean, post, log_ev = posterior(mu, cov, noise, f, y)
            parts.append({"tau": tau, "noise": noise, "scale": scale, "mean": mean, "cov": post, "log_ev": log_ev})
    log_ev = np.array([p["log_ev"] for p in parts])
    w = np.exp(log_ev - log_ev.max())
    w /= w.sum()
    kept = [dict(p, weight=float(wi)) for p, wi in zip(parts, w, strict=True) if wi >= min_weight]
    total = sum(p["weight"] for p in kept)
    for p in kept:
        p["weight"] /= total
    return kept


def mixture_coef(parts: list[dict[str, Any]]) -> np.ndarray:
    """The mixture's mean cost vector in ms: predictions stay one matrix product."""
    return sum(p["weight"] * p["scale"] * p["mean"] for p in parts)


def mixture_moments(parts: list[dict[str, Any]], f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and standard deviation (ms) of the mixture at features ``f`` (with bias)."""
    means = np.stack([p["scale"] * (f @ p["mean"]) for p in parts])
    vars_ = np.stack([p["scale"] ** 2 * (np.einsum("ij,ij->i", f @ p["cov"], f) + p["noise"] ** 2) for p in parts])
    w = np.array([p["weight"] for p in parts])[:, None]
    mean = (w * means).sum(axis=0)
    var = (w * (vars_ + (means - mean) ** 2)).sum(axis=0)
    return mean, np.sqrt(var)


class BayesCostPredictor(LatencyPredictor):
    """Hierarchical Bayesian additive cost model (see module docstring)."""

    name: ClassVar[str] = "bayes"
    has_intervals: ClassVar[bool] = True

    def __init__(self, space: str, tau: float | str = "auto", noise: float | str = "auto", ridge: float = 1e-2,
                 n_references: int = 50, design: str = "v", design_tau: float = 0.01, design_noise: float = 0.02,
                 calibration_samples: int = 10, seed: int = 0):
        super().__init__(space, seed)
        self.tau = tau
        self.noise = noise
        self.ridge = ridge
        self.n_references = n_references
        self.design = design
        self.design_tau = design_tau
        self.design_noise = design_noise
        self.calibration_samples = calibration_samples

    def _grid(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        taus = TAU_GRID if self.tau == "auto" else (float(self.tau),)
        noises = NOISE_GRID if self.noise == "auto" else (float(self.noise),)
        return taus, noises

    def _design(self, f: np.ndarray, theta: np.ndarray, n: int) -> list[int]:
        _, cov = prior_of(theta, self.design_tau)
        return greedy_design(f, cov, self.design_noise, n, self.design)

    # -- fit -------------------------------------------------------------------------------------------------
    def _fit(self, data: LatencyDataset) -> None:
        f = with_bias(self.encode(data.archs).astype(np.float64))
        scales = data.latency.mean(axis=0)
        theta = fit_cost_vectors(f, data.latency / scales, self.ridge)
        self.device_costs_ = theta
        self.device_scales_ = scales
        self.mu_, _ = prior_of(theta, self.design_tau)
        picks = self._design(f, theta, self.n_references)
        self.reference_archs_ = [data.archs[i] for i in picks]
        self.interval_z_ = self._calibrate(f, data.latency, theta)
        self.target_ = None

    def _calibrate(self, f: np.ndarray, latency: np.ndarray, theta: np.ndarray) -> float:
        """The multiplier on the predictive sd that makes 90% intervals cover 90% on held-out public devices:
        each device in turn is treated as new (prior from the others, adapted at the design's samples)."""
        if len(theta) < 3:
            return 1.0
        z = []
        for k in range(len(theta)):
            others = np.delete(theta, k, axis=0)
            refs = self._design(f, others, self.calibration_samples)
            parts = adapt_mixture(others, *self._grid(), f[refs], latency[refs, k])
            rest = np.setdiff1d(np.arange(len(f)), refs)
            mean, sd = mixture_moments(parts, f[rest])
            z.append(np.abs(latency[rest, k] - mean) / sd)
        return float(np.quantile(np.concatenate(z), 0.90) / norm.ppf(0.95))

    # -- adapt / predict -------------------------------------------------------------------------------------
    def _reference_order(self) -> list[str]:
        return self.reference_archs_

    def _adapt(self, x: np.ndarray, y: np.ndarray, archs: list[str]) -> dict[str, Any]:
        f = with_bias(x.astype(np.float64))
        parts = adapt_mixture(self.device_costs_, *self._grid(), f, y)
        coef = mixture_coef(parts)
        return {"parts": parts, "coef": coef}

    def _target(self) -> dict[str, Any]:
        if self.target_ is not None:
            return self.target_
        # Not adapted: the average public device at the geometric-mean scale of the training devices.
        _, cov = prior_of(self.device_costs_, self.design_tau)
        scale = float(np.exp(np.mean(np.log(self.device_scales_))))
        parts = [{"weight": 1.0, "scale": scale, "mean": self.mu_, "cov": cov, "noise": self.design_noise}]
        return {"parts": parts, "coef": mixture_coef(parts)}

    def _predict_encoded(self, x: np.ndarray) -> np.ndarray:
        coef = self._target()["coef"]
        out = x @ coef[:-1].astype(x.dtype, copy=False) + coef[-1]
        return np.maximum(out, 1e-3 * abs(coef[-1]) + 1e-9)

    def predict_interval(self, archs, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        if not 0 < level < 1:
            raise InputError(f"interval level must be between 0 and 1, got {level}")
        f = with_bias(self.encode(archs).astype(np.float64))
        mean = self._predict_encoded(f[:, :-1])
        _, sd = mixture_moments(self._target()["parts"], f)
        half = self.interval_z_ * norm.ppf(0.5 + level / 2) * sd
        return np.maximum(mean - half, 1e-6), mean + half
