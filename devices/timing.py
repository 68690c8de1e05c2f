"""The one measuring method every backend shares: warm up, calibrate a block size, repeat blocks adaptively.

Backends only say how to time ``n`` back-to-back runs (``run_block``): perf_counter around ``n``
``session.run`` calls, CUDA events around ``n`` launches, or TVM's ``time_evaluator(number=n, repeat=1)``.
Everything else -- how long to warm up, how big a block is, when to stop -- lives here, so every device's
numbers mean the same thing (cf. ``torch.utils.benchmark.Timer.blocked_autorange``).

A backend whose timer has a fixed cost per call (TVM's ``time_evaluator`` discards one untimed call every
time it is invoked; an RPC round trip) can also give ``run_blocks(number, repeat)``, which times several
blocks in one call; the timed phase then asks for blocks in chunks so that fixed cost is paid rarely.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from devices.base import DeviceError
from devices.measurement import MeasureConfig, Measurement, robust_cv, summarize

RunBlock = Callable[[int], float]
RunBlocks = Callable[[int, int], Sequence[float]]

# No block is made longer than this many runs: a model that fast is below any timer's resolution anyway.
MAX_NUMBER = 10_000_000
# Once the minimums are met but the CV target is not, chunked backends ask for this share of the blocks
# already in (small enough to stop soon after the CV settles), and for enough blocks that the runs a call
# discards stay under _DISCARD_SHARE of the runs it times.
_CHUNK_GROWTH = 0.25
_DISCARD_SHARE = 0.05


def measure_blocks(
    run_block: RunBlock,
    config: MeasureConfig | None = None,
    *,
    method: str,
    run_blocks: RunBlocks | None = None,
    run_blocks_discard: int = 0,
    **meta: Any,
) -> Measurement:
    """Time a model with the shared method and summarise the block times into a Measurement.

    ``run_block(n)`` runs the model ``n`` times back to back and returns the elapsed seconds. The optional
    ``run_blocks(number, repeat)`` returns ``repeat`` such block times from one call and runs
    ``run_blocks_discard`` untimed calls of its own first; those count as warm-up. ``meta`` goes into the
    Measurement (device_spec, model_hash, ...). ``config``, ``timestamp`` and ``wall_s`` are filled here.
    """
    config = config or MeasureConfig()
    timestamp = time.time()
    start = time.perf_counter()

    def elapsed() -> float:
        return time.perf_counter() - start

    # Warm-up. Block sizes grow towards min_block_s so the last warm-up block doubles as the calibration of
    # `number`; the warm-up is never longer than it has to be for either purpose.
    explicit_warmup = max(config.warmup_runs - (run_blocks_discard if run_blocks else 0), 1)
    n, warm_runs, warm_s, per_run = 1, 0, 0.0, 0.0
    while True:
        t = _checked(run_block(n), n, "warm-up")
        warm_runs += n
        warm_s += t
        if t > 0:
            per_run = t / n
            calibrated = t >= 0.5 * config.min_block_s or n >= MAX_NUMBER
            target = _number_for(config.min_block_s, per_run)
        elif n >= MAX_NUMBER:
            raise DeviceError(f"{method}: {n} runs took no measurable time; the timer cannot resolve them")
        else:  # faster than the timer can tell: grow the block until it can
            calibrated, target = False, min(n * 10, MAX_NUMBER)
        done = warm_runs >= explicit_warmup and warm_s >= config.warmup_s and calibrated
        if done or (elapsed() >= config.max_time_s and per_run > 0):
            break
        n = min(target, n * 10) if not calibrated else target
    number = _number_for(config.min_block_s, per_run)
    block_est = number * per_run

    times_ms: list[float] = []
    timed_s = 0.0
    discarded = 0

    def chunk_size() -> int:
        """How many blocks to run next; 0 to stop."""
        runs = len(times_ms)
        if runs >= config.max_runs:
            return 0
        time_left = config.max_time_s - elapsed()
        by_time = int(time_left // block_est) if block_est > 0 else config.max_runs
        if run_blocks is not None:
            by_time -= math.ceil(run_blocks_discard / number)  # the call's untimed runs take time too
        if runs and by_time < 1:
            return 0
        need = max(config.min_runs - runs, math.ceil((config.min_run_time_s - timed_s) / block_est)
                   if block_est > 0 else 0)
        if need <= 0:
            if robust_cv(sorted(times_ms)) <= config.target_cv:
                return 0
            if run_blocks is None:
                need = 1
            else:
                amortised = math.ceil(run_blocks_discard / (_DISCARD_SHARE * number))
                need = max(1, math.ceil(_CHUNK_GROWTH * runs), amortised)
        return max(1, min(need, config.max_runs - runs, by_time))

    while (k := chunk_size()) > 0:
        if run_blocks is not None:
            got = list(run_blocks(number, k))
            if len(got) != k:
                raise DeviceError(f"{method}: asked for {k} timed blocks, the backend returned {len(got)}")
            discarded += run_blocks_discard
            blocks = [_checked(t, number, "timed block") for t in got]
        else:
            # One block per call: check the clock between blocks so max_time_s holds even mid-chunk.
            blocks = []
            for _ in range(k):
                blocks.append(_checked(run_block(number), number, "timed block"))
                if elapsed() + block_est > config.max_time_s:
                    break
        for t in blocks:
            if t <= 0:
                raise DeviceError(
                    f"{method}: a block of {number} runs took no measurable time; the timer cannot resolve it"
                )
            times_ms.append(t / number * 1e3)
            timed_s += t

    return summarize(
        times_ms, number=number, warmup_runs=warm_runs + discarded, method=method,
        outlier_cv=config.outlier_cv, outlier_frac=config.outlier_frac,
        config=config.to_dict(), timestamp=timestamp, wall_s=elapsed(), **meta,
    )


def _number_for(min_block_s: float, per_run_s: float) -> int:
    if per_run_s <= 0:
        return MAX_NUMBER
    return max(1, min(MAX_NUMBER, math.ceil(min_block_s / per_run_s)))


def _checked(seconds: Any, n: int, what: str) -> float:
    try:
        t = float(seconds)
    except (TypeError, ValueError):
        raise DeviceError(f"{what} of {n} runs: the timer returned {seconds!r}, not a number of seconds") from None
    if not math.isfinite(t) or t < 0:
        raise DeviceError(f"{what} of {n} runs: the timer returned {t!r} seconds")
    return t
