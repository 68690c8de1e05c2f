"""Build this project's own real-device latency data set (run from the repository root, on a quiet machine).

    python measurements/local/collect.py                      # the full campaign into measurements/local/
    python measurements/local/collect.py --limit 3 --out-dir /tmp/try   # a dry run on 3 archs per space

Architectures are rows of measurements/hw-nas-bench, so public latencies exist for every one of them:
the 10 reference architectures of splits.json, then, drawn with a fixed seed, a large share of the query range
(NB201 900..1899, FBNet 4000..4999) and the rest below it (the range a predictor may train on), then the
10 references the shipped predictor (latency/models/<space>.pt) asks for.

Every model is measured by the code behind ``latency profile`` (latency.commands.measure.profile_archs): each
Measurement is stored in the SQLite store before the next model starts, and a rerun skips what is stored, so an
interrupted campaign resumes where it stopped. At the end the store is exported to ``<space>.csv`` in the
dataset format (one column per device, named by devices.spec.column_name), with ``splits.json`` and
``README.md`` (how, where, when, with which versions and config) beside them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DEVICES = ("ort-cpu:threads=1", "ort-cpu:threads=2", "tvm-llvm")
# (number of archs, query range) per space; the query range is where predictors are scored.
PLAN = {"nb201": (300, range(900, 1900)), "fbnet": (200, range(4000, 5000))}
QUERY_SHARE = 2 / 3  # of the non-reference archs; the rest come from below the query range
SEED = 2024


def choose_archs(space: str, n_total: int, seed: int = SEED) -> list[tuple[int, str]]:
    """(public index, arch) pairs: the reference archs first, then a seeded draw, query range first."""
    from latency.paths import public_dataset_dir
    from latency.store import public_index

    by_index = {i: a for a, i in public_index(space).items()}
    splits = json.loads((public_dataset_dir() / "splits.json").read_text())[space]
    refs = [int(i) for i in splits["reference_architectures"]]
    query = PLAN[space][1]
    rng = np.random.default_rng(seed)
    n_other = max(0, n_total - len(refs))
    n_query = round(n_other * QUERY_SHARE)
    taken = set(refs)
    query_pool = [i for i in query if i in by_index and i not in taken]
    below_pool = [i for i in range(query.start) if i in by_index and i not in taken]
    picks = [int(i) for i in rng.choice(query_pool, size=min(n_query, len(query_pool)), replace=False)]
    picks += [int(i) for i in rng.choice(below_pool, size=min(n_other - len(picks), len(below_pool)),
                                         replace=False)]
    chosen = refs + picks
    # The shipped predictor's own references too, so it can be adapted from exactly what it asks for.
    from latency.pretrained import load_pretrained

    index_of = public_index(space)
    extra = [index_of[a] for a in load_pretrained(space).references(10) if index_of.get(a) not in set(chosen)]
    return [(i, by_index[i]) for i in chosen + extra]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("hw-latency", "torch", "onnx", "onnxruntime", "apache-tvm", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _progress_console():
    from rich.console import Console

    return Console(stderr=True)


def run_campaign(out_dir: Path, db_path: Path, device_specs: list[str], spaces: list[str], limit: int | None,
                 seed: int, onnx_dir: Path | None, retries: int = 2, since: float | None = None) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from devices.measurement import MeasureConfig
    from devices.spec import column_name
    from latency.commands.measure import get_available_device, profile_archs
    from latency.paths import onnx_cache_dir
    from latency.store import MeasurementStore

    devices = [get_available_device(s) for s in device_specs]  # refuse early: no half-usable campaign
    config = MeasureConfig()
    chosen = {}
    for space in spaces:
        picks = choose_archs(space, PLAN[space][0], seed)
        chosen[space] = picks[:limit] if limit is not None else picks
    started = time.time()
    per_device_wall: dict[tuple[str, str], float] = {}
    per_device_measured: dict[tuple[str, str], int] = {}
    with MeasurementStore(db_path) as store:
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[last]}"),
                            console=_progress_console())
        with progress:
            for space in spaces:
                archs = [a for _, a in chosen[space]]
                cache = (onnx_dir / space) if onnx_dir is not None else onnx_cache_dir(space)
                for device in devices:
                    task = progress.add_task(f"{space} {device.spec}", total=len(archs), last="")

                    def advance(row, task=task):
                        progress.update(task, advance=1, last=f"{row.measurement.median_ms:.3f} ms {row.source}")

                    summary = profile_archs(space, archs, device, store, config=config, skip_measured=True,
                                            onnx_dir=cache, on_row=advance, retries=retries, since=since)
                    per_device_wall[(space, device.spec)] = summary.wall_s
                    per_device_measured[(space, device.spec)] = summary.measured
        finished = time.time()
        specs = [d.spec for d in devices]
        columns = [column_name(s) for s in specs]
        out_dir.mkdir(parents=True, exist_ok=True)
        counts = {}
        for space in spaces:
            counts[space] = store.export_csv(out_dir / f"{space}.csv", space, specs, columns,
                                             archs=[a for _, a in chosen[space]], since=since)
        stats = _store_stats(store, spaces, chosen, specs, since)
        older = 0 if since is None else len(store.measurements()) - len(store.measurements(since=since))
        environment = _first_environment(store, specs)
        descriptors = {d.spec: d.descriptor for d in store.devices() if d.spec in specs}
    _write_splits(out_dir / "splits.json", chosen, columns, seed)
    facts = {
        "started": started, "finished": finished, "devices": specs, "columns": columns, "counts": counts,
        "stats": stats, "environment": environment, "descriptors": descriptors, "config": config.to_dict(),
        "per_device_wall": {f"{s} {d}": round(w, 1) for (s, d), w in per_device_wall.items()},
        "per_device_measured": {f"{s} {d}": n for (s, d), n in per_device_measured.items()},
        "seed": seed, "limit": limit, "db": str(db_path), "argv": " ".join(sys.argv), "retries": retries,
        "since": since, "older": older,
    }
    _write_readme(out_dir / "README.md", facts)
    return facts


def _store_stats(store, spaces, chosen, specs, since=None) -> dict[str, dict[str, Any]]:
    """Per (space, device): attempts stored, archs left with only flagged attempts, median CV of the attempts
    the CSV uses (the non-outlier ones), and the first and last timestamps."""
    out: dict[str, dict[str, Any]] = {}
    for space in spaces:
        wanted = {a for _, a in chosen[space]}
        for spec in specs:
            rows = [s for s in store.measurements(device=spec, space=space, since=since) if s.arch in wanted]
            if not rows:
                continue
            by_arch: dict[str, list] = {}
            for r in rows:
                by_arch.setdefault(r.arch, []).append(r)
            used = [r for found in by_arch.values() for r in ([x for x in found if not x.outlier] or found)]
            out[f"{space} {spec}"] = {
                "archs": len(by_arch),
                "measurements": len(rows),
                "outliers": sum(s.outlier for s in rows),
                "all_flagged": sum(all(x.outlier for x in found) for found in by_arch.values()),
                "median_cv": statistics.median(s.measurement.cv for s in used),
                "median_wall_s": statistics.median(s.measurement.wall_s for s in rows),
                "first": min(s.measurement.timestamp for s in rows),
                "last": max(s.measurement.timestamp for s in rows),
            }
    return out


def _first_environment(store, specs) -> dict[str, Any]:
    envs = {}
    for spec in specs:
        found = store.measurements(device=spec)
        if found:
            envs[spec] = found[-1].measurement.environment
    return envs


def _write_splits(path: Path, chosen: dict[str, list[tuple[int, str]]], columns: list[str], seed: int) -> None:
    splits: dict[str, Any] = {}
    for space, picks in chosen.items():
        indices = [i for i, _ in picks]
        query = PLAN[space][1]
        splits[space] = {
            "architectures": len(indices),
            "reference_architectures": indices[:10],
            "query_architectures": sorted(i for i in indices if i in query),
            "train_architectures": sorted(i for i in indices[10:] if i not in query),
            "meta_train_devices": [],
            "meta_valid_devices": [],
            "meta_test_devices": columns,
            "devices_in_file": columns,
            "seed": seed,
        }
    path.write_text(json.dumps(splits, indent=1) + "\n")


def _write_readme(path: Path, facts: dict[str, Any]) -> None:
    from devices.environment import cpu_model

    def when(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    device_lines = []
    for spec, column in zip(facts["devices"], facts["columns"], strict=True):
        desc = json.dumps(facts["descriptors"].get(spec, {}), sort_keys=True)
        device_lines.append(f"- `{column}` (spec `{spec}`): {desc}")
    stat_lines = [
        f"- {key}: {v['archs']} archs, {v['measurements']} measurements of which {v['outliers']} flagged as "
        f"outliers; {v['all_flagged']} archs kept only flagged "
        f"attempts; median CV of the measurements used {v['median_cv']:.3f}; median {v['median_wall_s']:.2f} s "
        f"per measurement; measured {when(v['first'])} to {when(v['last'])}"
        for key, v in facts["stats"].items()
    ]
    stamps = [v[k] for v in facts["stats"].values() for k in ("first", "last")] or [facts["started"],
                                                                                  facts["finished"]]
    first, last = min(stamps), max(stamps)
    env_lines = [f"- `{spec}`: {json.dumps(env, sort_keys=True)}" for spec, env in facts["environment"].items()]
    values = {
        "started": when(first),
        "finished": when(last),
        "retries": str(1 + facts["retries"]),
        "pass": ("every stored measurement counts" if facts["since"] is None else
                 f"only measurements taken since {when(facts['since'])} count (a fresh pass); "
                 f"{facts['older']} older measurements stay in the store but are not used"),
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "load": _load_average(),
        "versions": ", ".join(f"{k} {v}" for k, v in _versions().items()),
        "config": json.dumps(facts["config"], sort_keys=True),
        "devices": "\n".join(device_lines) or "- none",
        "environment": "\n".join(env_lines) or "- none",
        "counts": ", ".join(f"{s}.csv: {n} rows" for s, n in facts["counts"].items()),
        "stats": "\n".join(stat_lines) or "- none",
        "seed": str(facts["seed"]),
        "limit": "none (full campaign)" if facts["limit"] is None else f"{facts['limit']} archs per space (trial)",
        "argv": facts["argv"],
        "db": _relative(facts["db"], path.parent),
    }
    template = Template((HERE / "README.template.md").read_text())
    path.write_text(template.substitute(values))


def _relative(target: str, base: Path) -> str:
    try:
        return os.path.relpath(target, base)
    except ValueError:
        return target


def estimate_full_hours(facts: dict[str, Any]) -> float | None:
    """The full campaign's duration: each (space, device) pass's time per newly measured arch, times the
    full number of archs; None when this run measured nothing (everything came from the store)."""
    total_s, known = 0.0, False
    for key, wall in facts["per_device_wall"].items():
        measured = facts["per_device_measured"][key]
        if measured:
            total_s += wall / measured * PLAN[key.split(" ", 1)[0]][0]
            known = True
    return total_s / 3600 if known else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where <space>.csv, splits.json, README go")
    parser.add_argument("--db", type=Path, default=None,
                        help="measurement store (default: <out-dir>/measurements.sqlite); reruns resume from it")
    parser.add_argument("--devices", default=",".join(DEFAULT_DEVICES),
                        help="comma-separated device specs (default: %(default)s)")
    parser.add_argument("--spaces", default=",".join(PLAN), help="comma-separated spaces (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="measure only the first N archs of each space")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--onnx-cache", type=Path, default=None, help="folder of exported ONNX files")
    parser.add_argument("--list", action="store_true", help="print the chosen archs (index,arch) and stop")
    parser.add_argument("--since", default=None,
                        help="a fresh pass: only measurements taken at or after this UTC time (ISO, e.g. "
                             "2026-11-24T12:45) count, for resuming and for the CSVs; older ones stay in the store")
    parser.add_argument("--retries", type=int, default=2,
                        help="measure an arch again while all its stored attempts are flagged, up to 1 + N attempts")
    args = parser.parse_args(argv)

    from latency.commands.measure import parse_since, split_device_list
    from latency.errors import is_user_error

    spaces = [s.strip() for s in args.spaces.split(",") if s.strip()]
    unknown = [s for s in spaces if s not in PLAN]
    if unknown:
        print(f"error: unknown space {unknown[0]!r} (spaces: {', '.join(PLAN)})", file=sys.stderr)
        return 2
    if args.list:
        for space in spaces:
            for index, arch in choose_archs(space, PLAN[space][0], args.seed)[: args.limit]:
                print(f"{space},{index},{arch}")
        return 0
    db_path = args.db if args.db is not None else args.out_dir / "measurements.sqlite"
    try:
        facts = run_campaign(args.out_dir, db_path, split_device_list(args.devices), spaces, args.limit,
                             args.seed, args.onnx_cache, args.retries, parse_since(args.since))
    except Exception as exc:
        if not is_user_error(exc):
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    hours = (facts["finished"] - facts["started"]) / 3600
    estimate = estimate_full_hours(facts)
    if args.limit and estimate is not None:
        print(f"collect: estimated full campaign {estimate:.1f} h "
              f"(this run's time per measured arch, scaled to {', '.join(f'{s}={PLAN[s][0]}' for s in spaces)} archs)")
    print(f"collect: {', '.join(f'{s}={n}' for s, n in facts['counts'].items())} rows, "
          f"devices={','.join(facts['devices'])}, {hours * 60:.1f} min, out={args.out_dir}, db={db_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
