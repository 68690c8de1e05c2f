"""What every backend returns: one ``Measurement`` per (model, device), with its raw times and spread."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class MeasureConfig:
    """One measuring config shared by every backend (cf. MetaSchedule's EvaluatorConfig).

    A *block* runs the model ``number`` times back to back and is timed once; ``number`` is chosen so a block
    lasts at least ``min_block_s`` (timer overhead negligible). Blocks repeat until ``min_run_time_s`` has been
    spent and ``min_runs`` blocks are in, then stop early once the CV of the block times is below
    ``target_cv``, or at ``max_runs`` blocks or ``max_time_s`` seconds.
    """

    warmup_runs: int = 3
    warmup_s: float = 0.1
    min_block_s: float = 0.005
    min_runs: int = 10
    max_runs: int = 200
    min_run_time_s: float = 0.3
    max_time_s: float = 10.0
    target_cv: float = 0.02
    outlier_cv: float = 0.10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def summarize(times_ms: list[float], *, number: int, warmup_runs: int, method: str, outlier_cv: float = 0.10,
              **meta: Any) -> Measurement:
    """A Measurement from raw per-block times (ms per inference)."""
    if not times_ms:
        raise ValueError("no timed runs to summarize")
    xs = sorted(times_ms)
    n = len(xs)

    def quantile(q: float) -> float:
        pos = q * (n - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    q1, med, q3 = quantile(0.25), quantile(0.5), quantile(0.75)
    iqr = q3 - q1
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    cv = std / mean if mean > 0 else 0.0
    n_out = sum(1 for x in xs if x < q1 - 1.5 * iqr or x > q3 + 1.5 * iqr)
    # A robust CV (IQR over median) flags a run whose spread is bad even after dropping a few stray blocks.
    robust_cv = iqr / 1.349 / med if med > 0 else 0.0
    return Measurement(
        times_ms=list(times_ms), number=number, warmup_runs=warmup_runs, median_ms=med, iqr_ms=iqr, q1_ms=q1,
        q3_ms=q3, mean_ms=mean, std_ms=std, min_ms=xs[0], cv=cv, n_outliers=n_out,
        outlier=robust_cv > outlier_cv, method=method, **meta,
    )
