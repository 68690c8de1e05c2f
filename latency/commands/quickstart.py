"""``latency quickstart``: the whole product on this machine in a few minutes.

Measure the shipped predictor's reference architectures on the local CPU (onnxruntime), adapt, predict a fresh
random sample of architectures, measure those too, and compare predicted with measured next to the baselines.
Every measurement goes into the SQLite store.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from latency.errors import InputError

BASELINES = ("ridge", "flops")


def quickstart(
    db: Annotated[Path | None, typer.Option(help="Measurement store (default: $LATENCY_DB or the user cache).")] = None,
    device: Annotated[str, typer.Option(help="Device spec to measure on.")] = "ort-cpu:threads=1",
    space: Annotated[str, typer.Option(help="Search space: nb201 or fbnet.")] = "nb201",
    n: Annotated[int, typer.Option(help="Fresh random architectures to predict and measure.")] = 50,
    samples: Annotated[int, typer.Option(help="Reference architectures measured for adaptation.")] = 10,
    seed: Annotated[int | None, typer.Option(help="Seed of the fresh sample (default: new each run).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the scatter PNG and CSVs.")] = None,
) -> None:
    """Measure references on this machine, adapt the shipped predictor, check it on fresh architectures."""
    from rich.console import Console
    from rich.table import Table

    from exporters.spaces import get_space
    from latency.commands.measure import DEFAULT_RETRIES, _progress, get_available_device, profile_archs
    from latency.datasets import write_predictions
    from latency.evaluate import DeviceResult, Scores, scatter_png
    from latency.paths import cache_dir, default_db_path
    from latency.pretrained import load_pretrained
    from latency.store import MeasurementStore

    if n < 3:
        raise InputError(f"--n must be at least 3, got {n}")
    if samples < 1:
        raise InputError(f"--samples must be at least 1, got {samples}")
    t_start = time.perf_counter()
    dev = get_available_device(device)
    db_path = Path(db) if db is not None else default_db_path()
    out_dir = Path(out) if out is not None else cache_dir() / "quickstart"
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_pretrained(space)
    baselines = {name: load_pretrained(space, name) for name in BASELINES}
    refs = model.references(samples)
    seed = int(time.time()) % 100_000 if seed is None else seed
    taken = set(refs)
    fresh = [a for a in get_space(space).sample(n + len(refs), seed=seed) if a not in taken][:n]
    typer.echo(f"quickstart: {space} on {dev.spec}; store {db_path}; {len(refs)} references + {n} fresh archs "
               f"(seed {seed})")

    with MeasurementStore(db_path) as store:
        with _progress(len(refs), "measuring references") as advance:
            ref_rows = profile_archs(space, refs, dev, store, on_row=advance, retries=DEFAULT_RETRIES).rows
        ref_ms = np.array([r.measurement.median_ms for r in ref_rows])
        typer.echo(f"quickstart: measured {len(refs)} references in {time.perf_counter() - t_start:.0f} s")
        t0 = time.perf_counter()
        model.adapt(refs, ref_ms)
        adapt_ms = (time.perf_counter() - t0) * 1e3
        predictions = {"bayes": model.predict(fresh)}
        lo, hi = model.predict_interval(fresh)
        for name, baseline in baselines.items():
            predictions[name] = baseline.adapt(refs, ref_ms).predict(fresh)
        write_predictions(out_dir / "predicted.csv", fresh, predictions["bayes"], lo, hi)
        t1 = time.perf_counter()
        with _progress(len(fresh), "measuring fresh archs") as advance:
            fresh_rows = profile_archs(space, fresh, dev, store, on_row=advance,
                                      retries=DEFAULT_RETRIES).rows
        typer.echo(f"quickstart: measured {len(fresh)} fresh archs in {time.perf_counter() - t1:.0f} s")
    truth = np.array([r.measurement.median_ms for r in fresh_rows])
    write_predictions(out_dir / "measured.csv", fresh, truth)

    results = []
    table = Table(title=f"predicted vs measured on {dev.spec}: {n} fresh {space} archs, {len(refs)} samples")
    for col in ("predictor", "Spearman", "within ±10%", "MAPE %", "90% interval coverage"):
        table.add_column(col, justify="left" if col == "predictor" else "right")
    for name, pred in predictions.items():
        scores = Scores.of(pred, truth, lo if name == "bayes" else None, hi if name == "bayes" else None, trim=0.0)
        results.append(DeviceResult(device=dev.spec, predictor=name, scores=scores, n_samples=len(refs),
                                    fit_s=0.0, adapt_s=0.0, pred=pred.tolist(), truth=truth.tolist()))
        table.add_row(name, f"{scores.spearman:.3f}", f"{scores.within10:.2f}", f"{scores.mape:.1f}",
                      "-" if scores.coverage is None else f"{scores.coverage:.2f}")
    Console().print(table)
    png = scatter_png(results, out_dir / "scatter.png", title=f"quickstart: {space} on {dev.spec}")
    best = results[0].scores
    typer.echo(f"quickstart: adapt {adapt_ms:.1f} ms; scatter {png}; predictions {out_dir / 'predicted.csv'}; "
               f"total {time.perf_counter() - t_start:.0f} s")
    typer.echo(f"quickstart: device={dev.spec} rho={best.spearman:.3f} within10={best.within10:.2f} "
               f"mape={best.mape:.1f} n={n}")


def register(app: typer.Typer) -> None:
    app.command()(quickstart)
