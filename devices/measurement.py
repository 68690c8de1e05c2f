"""What every backend returns: one ``Measurement`` per (model, device), with its raw times and spread."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


class MeasureConfigError(ValueError):
    """A MeasureConfig whose values cannot describe a measurement (one-line message naming the field)."""


@dataclass(frozen=True)
class MeasureConfig:
    """One measuring config shared by every backend (cf. MetaSchedule's EvaluatorConfig).

    Warm-up runs the model until at least ``warmup_runs`` runs and ``warmup_s`` seconds are spent; its block
    times also calibrate ``number``. A *block* runs the model ``number`` times back to back and is timed once;
    ``number`` is chosen so a block lasts at least ``min_block_s`` (timer and call overhead negligible).
    Blocks repeat until ``min_run_time_s`` of block time has been spent and ``min_runs`` blocks are in, then
    stop early once the robust CV of the block times (IQR / 1.349 / median, which a few stray blocks do not
    inflate the way they inflate std / mean) is at most ``target_cv``; otherwise they go on to ``max_runs``
    blocks or ``max_time_s`` seconds of wall time for the whole call, whichever comes first.

    A Measurement is flagged ``outlier`` when its robust CV exceeds ``outlier_cv`` or more than
    ``outlier_frac`` of its blocks lie outside Tukey's fences (1.5 IQR beyond the quartiles): either the
    spread is wide, or the machine was disturbed often enough that the median deserves a second look.

    Why these defaults: the profiling overhead (wall time of a call over the time spent in timed blocks) is
    about ``warmup_s / min_run_time_s`` for fast models and ``warmup_runs / min_runs`` for slow ones, so
    20 ms / 0.5 s and 2 / 25 keep it near 5% (the rest is the right skew of block times: their sum exceeds
    runs x median). Two warm-up runs pass first-run effects (lazy allocation, cold caches); backends whose
    timer discards a call of its own (TVM's time_evaluator) count that call as one of them. Blocks last
    20 ms, several scheduler time slices: on a busy machine, blocks of one slice or less are either
    preempted or not, their times come out bimodal and the median jumps between the modes (a 4 ms model on
    a 2-core VM at load 4: median drift 40-50% over 5 measurements with 5 ms blocks, 2-6% with 25 ms
    blocks); per-call overhead (~10 us) is then negligible too. On that VM the robust CV of a 4 ms model is
    typically 2-3% and 5-10% of blocks fall outside Tukey's fences, hence ``target_cv`` 0.03 and
    ``outlier_frac`` 0.20 (a fifth of the blocks disturbed means something ran alongside).
    """

    warmup_runs: int = 2
    warmup_s: float = 0.02
    min_block_s: float = 0.02
    min_runs: int = 25
    max_runs: int = 200
    min_run_time_s: float = 0.5
    max_time_s: float = 10.0
    target_cv: float = 0.03
    outlier_cv: float = 0.10
    outlier_frac: float = 0.20

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise MeasureConfigError(f"measure config: {name} must be {rule}, got {getattr(self, name)!r}")

        for name in ("warmup_runs", "min_runs", "max_runs"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool), name, "an integer")
        for name in ("warmup_s", "min_block_s", "min_run_time_s", "max_time_s", "target_cv", "outlier_cv",
                     "outlier_frac"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and math.isfinite(value), name, "a finite number")
        need(self.warmup_runs >= 0, "warmup_runs", ">= 0")
        need(self.min_runs >= 1, "min_runs", ">= 1")
        need(self.max_runs >= self.min_runs, "max_runs", f">= min_runs ({self.min_runs})")
        for name in ("warmup_s", "min_block_s", "min_run_time_s", "target_cv", "outlier_cv", "outlier_frac"):
            need(getattr(self, name) >= 0, name, ">= 0")
        need(self.max_time_s > 0, "max_time_s", "> 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasureConfig:
        """The config stored with a Measurement; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Measurement:
    """Latency of one model on one device. ``times_ms`` holds one entry per block: block time / number."""

    times_ms: list[float]
    number: int
    warmup_runs: int
    median_ms: float
    iqr_ms: float
    q1_ms: float
    q3_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    cv: float
    n_outliers: int
    outlier: bool
    method: str
    device_spec: str = ""
    device: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    model_hash: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    timestamp: float = 0.0
    wall_s: float = 0.0

    @property
    def runs(self) -> int:
        return len(self.times_ms)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        return cls(**data)

    def __str__(self) -> str:
        return (
            f"{self.median_ms:.4f} ms median (IQR {self.iqr_ms:.4f}, CV {self.cv:.3f}, "
            f"{self.runs} runs x {self.number}{', OUTLIER' if self.outlier else ''})"
        )


def robust_cv(sorted_ms: list[float]) -> float:
    """IQR / 1.349 / median of already sorted times: the CV a normal spread would have, blind to rare spikes."""
    med = _quantile(sorted_ms, 0.5)
    return (_quantile(sorted_ms, 0.75) - _quantile(sorted_ms, 0.25)) / 1.349 / med if med > 0 else 0.0


def _quantile(xs: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default), on sorted ``xs``."""
    n = len(xs)
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(times_ms: list[float], *, number: int, warmup_runs: int, method: str, outlier_cv: float = 0.10,
              outlier_frac: float = 0.20, **meta: Any) -> Measurement:
    """A Measurement from raw per-block times (ms per inference); outlier rule as in MeasureConfig."""
    if not times_ms:
        raise ValueError("no timed runs to summarize")
    xs = sorted(times_ms)
    n = len(xs)
    q1, med, q3 = _quantile(xs, 0.25), _quantile(xs, 0.5), _quantile(xs, 0.75)
    iqr = q3 - q1
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    cv = std / mean if mean > 0 else 0.0
    n_out = sum(1 for x in xs if x < q1 - 1.5 * iqr or x > q3 + 1.5 * iqr)
    outlier = robust_cv(xs) > outlier_cv or n_out > outlier_frac * n
    return Measurement(
        times_ms=list(times_ms), number=number, warmup_runs=warmup_runs, median_ms=med, iqr_ms=iqr, q1_ms=q1,
        q3_ms=q3, mean_ms=mean, std_ms=std, min_ms=xs[0], cv=cv, n_outliers=n_out,
        outlier=outlier, method=method, **meta,
    )
