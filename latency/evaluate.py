"""The evaluation protocol: leave one device out, adapt from a few samples, score on unseen architectures.

For every target device: each predictor is trained on the other devices, using only the protocol's training rows
(HELP: index < 900 / 4000 plus the reference architectures); it is adapted from ``n`` measurements of the
target (by default the architectures the predictor itself asks for, always among its training rows); it is
scored on the query rows, which no predictor saw on any device, after removing the 10% fastest and 10% slowest
of them by the target's latency.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from latency.datasets import TRIM, LatencyDataset
from latency.errors import InputError
from latency.predictors import make_predictor
from latency.predictors.base import LatencyPredictor

SAMPLE_POLICIES = ("own", "help", "random")


@dataclass
class Scores:
    spearman: float
    kendall: float
    within10: float
    mape: float
    coverage: float | None = None

    @classmethod
    def of(cls, pred: np.ndarray, truth: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None,
           trim: float = TRIM) -> Scores:
        keep = trimmed(truth, trim)
        p, t = pred[keep], truth[keep]
        rel = p / t - 1.0
        cov = None
        if lo is not None and hi is not None:
            cov = float(np.mean((t >= lo[keep]) & (t <= hi[keep])))
        return cls(
            spearman=float(spearmanr(p, t)[0]), kendall=float(kendalltau(p, t)[0]),
            within10=float(np.mean(np.abs(rel) <= 0.10)), mape=float(np.mean(np.abs(rel)) * 100), coverage=cov,
        )


def trimmed(truth: np.ndarray, trim: float = TRIM) -> np.ndarray:
    """Indices of ``truth`` without its ``trim`` fastest and ``trim`` slowest share."""
    order = np.argsort(truth, kind="stable")
    cut = int(round(len(order) * trim))
    return np.sort(order[cut: len(order) - cut]) if cut else np.sort(order)


@dataclass
class DeviceResult:
    device: str
    predictor: str
    scores: Scores
    n_samples: int
    fit_s: float
    adapt_s: float
    pred: list[float] = field(default_factory=list, repr=False)
    truth: list[float] = field(default_factory=list, repr=False)


def choose_samples(policy: str, model: LatencyPredictor, data: LatencyDataset, train_rows: np.ndarray, n: int,
                   seed: int) -> list[str]:
    if policy == "own":
        return model.references(n)
    if policy == "help":
        refs = data.reference_archs()
        if not refs:
            raise InputError("sample policy 'help' needs reference_architectures in splits.json")
        return refs[:n]
    if policy == "random":
        rng = np.random.default_rng(seed)
        return [data.archs[i] for i in rng.choice(train_rows, size=n, replace=False)]
    raise InputError(f"unknown sample policy {policy!r} (policies: {', '.join(SAMPLE_POLICIES)})")


def leave_one_out(data: LatencyDataset, predictors: Sequence[str], targets: Sequence[str] | None = None,
                  n_samples: int = 10, policy: str = "own", seed: int = 0,
                  params: dict[str, dict] | None = None,
                  progress: Callable[[str], None] | None = None) -> list[DeviceResult]:
    """Run the protocol; one DeviceResult per (target device, predictor)."""
    train_rows, query_rows = data.protocol_rows()
    targets = list(targets) if targets else list(data.devices)
    unknown = [d for d in targets if d not in data.devices]
    if unknown:
        raise InputError(f"device {unknown[0]!r} is not a column of {data.source}")
    if len(data.devices) < 3:
        raise InputError("leave-one-device-out needs at least 3 devices")
    results = []
    query_archs = [data.archs[i] for i in query_rows]
    for target in targets:
        sources = [d for d in data.devices if d != target]
        truth = data.column(target)
        fitted: dict[str, LatencyPredictor] = {}
        # hybrid = help + bayes: when all three are asked for with default settings, fit the parts once
        reuse_parts = {"hybrid", "help", "bayes"} <= set(predictors) and not any(
            (params or {}).get(n) for n in ("hybrid", "help", "bayes"))
        order = sorted(predictors, key=lambda n: n == "hybrid") if reuse_parts else list(predictors)
        for name in order:
            if progress:
                progress(f"{target}: {name}")
            t0 = time.perf_counter()
            if name == "hybrid" and reuse_parts:
                from latency.predictors.meta import HybridPredictor

                model = HybridPredictor.from_parts(fitted["bayes"], fitted["help"])
                fit_s = fitted["bayes"].fit_seconds_ + fitted["help"].fit_seconds_
            else:
                model = make_predictor(name, data.space, seed=seed, **(params or {}).get(name, {}))
                model.fit(data, devices=sources, rows=train_rows)
                fit_s = time.perf_counter() - t0
            fitted[name] = model
            archs = choose_samples(policy, model, data, train_rows, n_samples, seed)
            t0 = time.perf_counter()
            model.adapt(archs, truth[data.rows_of(archs)])
            adapt_s = time.perf_counter() - t0
            pred = model.predict(query_archs)
            lo = hi = None
            if model.has_intervals:
                lo, hi = model.predict_interval(query_archs)
            y = truth[query_rows]
            results.append(DeviceResult(
                device=target, predictor=name, scores=Scores.of(pred, y, lo, hi), n_samples=len(archs),
                fit_s=fit_s, adapt_s=adapt_s, pred=pred.tolist(), truth=y.tolist(),
            ))
    return results


def summary_table(results: list[DeviceResult], metric: str = "spearman") -> tuple[list[str], list[list[str]]]:
    """Rows: devices then mean; columns: predictors (the metric), as text."""
    devices = list(dict.fromkeys(r.device for r in results))
    names = list(dict.fromkeys(r.predictor for r in results))
    by = {(r.device, r.predictor): getattr(r.scores, metric) for r in results}
    rows = []
    for d in devices:
        rows.append([d] + [_fmt(by.get((d, n))) for n in names])
    rows.append(["mean"] + [_fmt(np.mean([by[(d, n)] for d in devices if by.get((d, n)) is not None]))
                            for n in names])
    return ["device"] + names, rows


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def wins(results: list[DeviceResult], a: str, b: str, metric: str = "spearman") -> tuple[int, int]:
    """On how many devices predictor ``a`` beats ``b`` (strictly), out of how many."""
    by = {(r.device, r.predictor): getattr(r.scores, metric) for r in results}
    devices = [d for d in dict.fromkeys(r.device for r in results) if (d, a) in by and (d, b) in by]
    return sum(by[(d, a)] > by[(d, b)] for d in devices), len(devices)


def save_results(results: list[DeviceResult], path: str | Path) -> None:
    import json

    Path(path).write_text(json.dumps([
        {**{k: v for k, v in asdict(r).items() if k not in ("pred", "truth")}} for r in results
    ], indent=1))


def scatter_png(results: list[DeviceResult], path: str | Path, title: str = "") -> Path:
    """Predicted vs measured, one panel per predictor, every target device in its own colour (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r.predictor for r in results))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for r in (r for r in results if r.predictor == name):
            ax.scatter(r.truth, r.pred, s=3, alpha=0.35, label=r.device)
        lims = [min(min(r.truth) for r in results), max(max(r.truth) for r in results)]
        ax.plot(lims, lims, "k--", lw=0.8)
        ax.fill_between(lims, [v * 0.9 for v in lims], [v * 1.1 for v in lims], color="k", alpha=0.08, lw=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        mean_rho = np.mean([r.scores.spearman for r in results if r.predictor == name])
        ax.set_title(f"{name}: mean Spearman {mean_rho:.3f}")
        ax.set_xlabel("measured (ms)")
        ax.set_ylabel("predicted (ms)")
    if len(results) <= 20 * len(names):
        axes[0][-1].legend(fontsize=6, markerscale=3, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def score_on_device(model: LatencyPredictor, data: LatencyDataset, device: str, n_samples: int = 10,
                    trim: float = 0.0, samples: Sequence[str] | None = None) -> tuple[Scores, list[str]]:
    """Adapt a trained ``model`` to ``device`` from its own references (or ``samples``) measured in ``data``,
    and score it on every other architecture of ``data`` measured there. Returns (scores, samples used)."""
    truth = data.column(device)
    samples = list(samples) if samples is not None else model.references(n_samples)
    missing = [a for a in samples if not data.has(a) or np.isnan(truth[data.rows_of([a])[0]])]
    if missing:
        raise InputError(f"reference {missing[0]!r} is not measured on {device} in {data.source}")
    rows = data.rows_of(samples)
    adapted = model.adapted(samples, truth[rows])
    rest = np.array([i for i in range(len(data)) if i not in set(rows) and not np.isnan(truth[i])])
    archs = [data.archs[i] for i in rest]
    lo = hi = None
    if adapted.has_intervals:
        lo, hi = adapted.predict_interval(archs)
    return Scores.of(adapted.predict(archs), truth[rest], lo, hi, trim=trim), samples
