"""Exporter fidelity: do our exported models rank like HW-NAS-Bench's measured ones?

Picks 40 NB201 query archs (rows with index 900..1899 of nb201.csv) and 30 FBNet query archs (4000..4999
of fbnet.csv) with a fixed seed, exports each with ``exporters.onnx.export_arch``, times it with onnxruntime
on the CPU (1 intra-op thread, all graph optimisations), and prints Spearman's rho between our latencies and
the HW-NAS-Bench columns. A wrong cell wiring or block shows up as a clear drop.

Timing: ``devices.spec.get_device("ort-cpu:threads=1").measure`` (``--timer local``: a bare onnxruntime
loop, as a cross-check of the measuring method); the output says which. Either way the models are interleaved
(round-robin rounds) so a burst of load from elsewhere on the shared machine hits all models alike rather than
a few of them; a model's latency is the median over its rounds (device) or over all its runs (local loop).

    python benchmarks/exporter_fidelity.py [--rounds 6] [--runs-per-round 5] [--cache DIR]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from exporters.onnx import OnnxModel, export_arch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "measurements" / "hw-nas-bench"
DEVICES = ("silver_4114", "silver_4210r", "gold_6240", "pixel3", "samsung_a50")
QUERY = {"nb201": (900, 1899, 40), "fbnet": (4000, 4999, 30)}


def pick_rows(space: str, seed: int) -> list[dict[str, str]]:
    lo, hi, n = QUERY[space]
    with open(DATA / f"{space}.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if lo <= int(r["index"]) <= hi]
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(rows), size=n, replace=False))
    return [rows[i] for i in picks]


def ort_session(model: OnnxModel):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(model.path), options, providers=["CPUExecutionProvider"])


def time_locally(models: list[OnnxModel], rounds: int, runs_per_round: int, warmup: int = 5) -> list[float]:
    """Median ms per model over ``rounds * runs_per_round`` runs, models interleaved round by round."""
    sessions, feeds = [], []
    for m in models:
        s = ort_session(m)
        x = np.random.default_rng(0).standard_normal(m.input_shape).astype(np.float32)
        feeds.append({m.input_name: x})
        for _ in range(warmup):
            s.run(None, feeds[-1])
        sessions.append(s)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for k, (s, feed) in enumerate(zip(sessions, feeds, strict=True)):
            for _ in range(runs_per_round):
                t0 = time.perf_counter()
                s.run(None, feed)
                times[k].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(t) for t in times]


def time_with_device(models: list[OnnxModel], rounds: int) -> list[float]:
    """Median over ``rounds`` of the device's median ms, the models interleaved round by round."""
    from devices.measurement import MeasureConfig
    from devices.spec import get_device

    device = get_device("ort-cpu:threads=1")
    config = MeasureConfig(min_runs=10, min_run_time_s=0.1, max_time_s=2.0)
    medians: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for k, m in enumerate(models):
            medians[k].append(device.measure(m, config).median_ms)
    return [statistics.median(v) for v in medians]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--runs-per-round", type=int, default=5)
    parser.add_argument(
        "--cache", type=Path, default=None, help="where exported models are kept (default: temp)"
    )
    parser.add_argument("--timer", choices=("local", "device"), default="device",
                        help="device: the product's measuring method; local: a bare onnxruntime loop (cross-check)")
    args = parser.parse_args(argv)

    timer = args.timer
    how = (
        f"devices.spec ort-cpu:threads=1 measure(), median of {args.rounds} interleaved rounds"
        if timer == "device"
        else f"local loop: onnxruntime CPU, 1 thread, ORT_ENABLE_ALL, 5 warm-up runs, "
        f"median of {args.rounds * args.runs_per_round} runs interleaved in {args.rounds} rounds"
    )
    print(f"timing: {how}")

    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        results = {}
        for space in QUERY:
            rows = pick_rows(space, args.seed)
            t0 = time.perf_counter()
            models = [export_arch(space, r["arch"], cache / space) for r in rows]
            print(f"{space}: exported {len(models)} archs in {time.perf_counter() - t0:.1f} s", flush=True)
            t0 = time.perf_counter()
            ours = (
                time_with_device(models, args.rounds)
                if timer == "device"
                else time_locally(models, args.rounds, args.runs_per_round)
            )
            print(
                f"{space}: timed in {time.perf_counter() - t0:.1f} s, ours {min(ours):.3f}..{max(ours):.3f} ms",
                flush=True,
            )
            rhos = {}
            for device in DEVICES:
                theirs = [float(r[device]) for r in rows]
                rhos[device] = float(spearmanr(ours, theirs).statistic)
            results[space] = (len(rows), rhos)

    print()
    print(f"{'space':<7}{'n':>4}  " + "  ".join(f"{d:>12}" for d in DEVICES))
    for space, (n, rhos) in results.items():
        print(f"{space:<7}{n:>4}  " + "  ".join(f"{rhos[d]:>12.3f}" for d in DEVICES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
