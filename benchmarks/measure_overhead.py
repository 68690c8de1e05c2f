"""Profiling overhead and median drift of the shared measuring method, per local CPU backend.

For each device it loads one NB201-sized model (load / compile time printed on its own), then measures it
``--repeats`` times and prints:

- overhead = wall time of one ``device.measure`` call / (runs x number x median): how much longer a
  measurement takes than the timed inferences it reports (target <= 1.10);
- drift = max_i |median_i / median of medians - 1| over the repeats (target <= 3%).

Targets are printed, not asserted: the numbers depend on the machine and on what else runs on it.

    python benchmarks/measure_overhead.py [--devices ort-cpu:threads=1,...] [--repeats 5] [--arch ARCH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

OVERHEAD_TARGET = 1.10
DRIFT_TARGET = 0.03
# A mid-cost NB201 cell (the CIFAR-10 optimum of NAS-Bench-201): six edges, four of them 3x3 convolutions.
DEFAULT_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
DEFAULT_DEVICES = ["ort-cpu:threads=1", "tvm-llvm:threads=1", "torch-cpu:threads=1"]


def _model(arch: str, out_dir: Path):
    from exporters.onnx import export_arch

    return export_arch("nb201", arch, out_dir), f"nb201 {arch}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default=",".join(DEFAULT_DEVICES),
                        help="device specs separated by '|' or by ',' between specs (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--arch", default=DEFAULT_ARCH)
    parser.add_argument("--min-block-s", type=float, default=None, help="override MeasureConfig.min_block_s")
    parser.add_argument("--keep-tvm-cache", action="store_true",
                        help="use the user's TVM cache (default: a fresh one, so compile time is shown)")
    args = parser.parse_args(argv)

    from devices.measurement import MeasureConfig
    from devices.spec import get_device

    specs = _split_specs(args.devices)
    work = Path(tempfile.mkdtemp(prefix="measure-overhead-"))
    if not args.keep_tvm_cache:
        os.environ["LATENCY_TVM_CACHE"] = str(work / "tvm")
    start = time.perf_counter()
    model, what = _model(args.arch, work)
    print(f"model: {what} (hash {model.content_hash[:12]}), exported in {time.perf_counter() - start:.2f} s")
    config = MeasureConfig() if args.min_block_s is None else MeasureConfig(min_block_s=args.min_block_s)
    print(f"config: {config}")

    rows = []
    for spec in specs:
        device = get_device(spec)
        ok, why = device.available()
        if not ok:
            print(f"\n{device.spec}: skipped ({why})")
            continue
        start = time.perf_counter()
        loaded = device.load(model)
        load_wall = time.perf_counter() - start
        details = loaded.details or {}
        extra = f", compile {details['compile_s']:.2f} s" if "compile_s" in details else ""
        print(f"\n{device.spec}: load {load_wall:.2f} s (backend load {loaded.load_s:.3f} s{extra}, "
              f"first run {loaded.first_run_s * 1e3:.1f} ms; includes importing the runtime)")
        medians, overheads = [], []
        for i in range(args.repeats):
            start = time.perf_counter()
            m = device.measure(model, config)
            wall = time.perf_counter() - start
            timed = m.runs * m.number * m.median_ms / 1e3
            medians.append(m.median_ms)
            overheads.append(wall / timed)
            print(f"  measure {i + 1}: median {m.median_ms:8.3f} ms  IQR {m.iqr_ms:7.3f}  {m.runs:3d} runs x "
                  f"{m.number:<3d} warm-up {m.warmup_runs:3d}  wall {wall:6.2f} s  overhead {wall / timed:5.3f}"
                  f"{'  OUTLIER' if m.outlier else ''}  load avg {m.environment['load_avg'][0]}")
        centre = statistics.median(medians)
        drift = max(abs(x / centre - 1) for x in medians)
        rows.append((device.spec, load_wall, max(overheads), statistics.mean(overheads), drift, centre))

    print(f"\n{'device':28s} {'load s':>8s} {'median ms':>10s} {'overhead max':>13s} {'mean':>6s} {'drift':>7s}")
    for spec, load_wall, worst, mean, drift, centre in rows:
        flag_o = "" if worst <= OVERHEAD_TARGET else " (above target)"
        flag_d = "" if drift <= DRIFT_TARGET else " (above target)"
        print(f"{spec:28s} {load_wall:8.2f} {centre:10.3f} {worst:13.3f} {mean:6.3f} {drift:7.2%}{flag_o}{flag_d}")
    print(f"targets: overhead <= {OVERHEAD_TARGET:.2f}, drift <= {DRIFT_TARGET:.0%} "
          f"over {args.repeats} measurements of one model")
    return 0


def _split_specs(text: str) -> list[str]:
    if "|" in text:
        return [s.strip() for s in text.split("|") if s.strip()]
    specs: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        if "=" in piece and ":" not in piece.split("=", 1)[0] and specs:
            specs[-1] += "," + piece  # an option of the spec before it
        else:
            specs.append(piece)
    return specs


if __name__ == "__main__":
    sys.exit(main())
