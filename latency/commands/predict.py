"""Predictor commands: ``latency train``, ``references``, ``predict``, ``evaluate``."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from latency.errors import InputError


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _params(pairs: list[str] | None) -> dict:
    """``key=value`` hyper-parameters; values parsed as int, float, bool or left as text."""
    out: dict = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param {pair!r} must read key=value")
        value: object = raw.strip()
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
        if raw.strip().lower() in ("true", "false"):
            value = raw.strip().lower() == "true"
        out[key.strip()] = value
    return out


def _make(name: str, space: str, params: dict, seed: int):
    import inspect

    from latency.predictors import make_predictor, registry

    classes = registry()
    if name not in classes:
        raise InputError(f"unknown predictor {name!r} (predictors: {', '.join(classes)})")
    accepted = set(inspect.signature(classes[name].__init__).parameters) - {"self", "space"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InputError(f"predictor {name!r} has no hyper-parameter {unknown[0]!r} "
                         f"(it takes: {', '.join(sorted(accepted))})")
    return make_predictor(name, space, seed=seed, **params)


def _rows(data, rows: str) -> np.ndarray | None:
    if rows == "all":
        return None
    if rows == "protocol":
        train, _ = data.protocol_rows()
        return train
    raise InputError(f"--rows must be 'protocol' or 'all', not {rows!r}")


def train(
    space: Annotated[str, typer.Option(help="Search space: nb201 or fbnet.")],
    data: Annotated[Path, typer.Option(help="Dataset folder holding <space>.csv (and splits.json).")],
    out: Annotated[Path, typer.Option(help="MODEL file to write.")],
    devices: Annotated[str, typer.Option(help="Comma-separated device columns (default: splits.json's "
                                              "meta-train + meta-valid devices).")] = "",
    predictor: Annotated[str, typer.Option(help="bayes (default), help, maml, ridge, flops.")] = "bayes",
    rows: Annotated[str, typer.Option(help="'protocol': rows below the protocol cut plus the reference "
                                           "architectures (HELP's rule); 'all': every row.")] = "protocol",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    param: Annotated[list[str] | None, typer.Option(help="Hyper-parameter key=value (repeatable).")] = None,
) -> None:
    """Meta-train a latency predictor on the device columns of DATA/SPACE.csv and save it as MODEL."""
    from latency.datasets import load_dataset

    dataset = load_dataset(data, space)
    model = _make(predictor, space, _params(param), seed)
    t0 = time.perf_counter()
    model.fit(dataset, devices=_split(devices) or None, rows=_rows(dataset, rows))
    seconds = time.perf_counter() - t0
    command = "latency " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""
    model.save(out, info={"command": command, "seed": seed, "data": str(data), "rows": rows,
                          "train_seconds": round(seconds, 2)})
    typer.echo(f"train: {predictor} on {space}, {len(model.train_devices_)} devices x "
               f"{model.n_train_archs_} archs in {seconds:.1f} s -> {out}")


def references(
    model: Annotated[Path, typer.Option(help="MODEL file.")],
    n: Annotated[int, typer.Option(help="How many architectures.")] = 10,
) -> None:
    """Print, one per line, the architectures MODEL wants measured on a new device."""
    from latency.predictors import load_model

    for arch in load_model(model).references(n):
        typer.echo(arch)


def predict(
    model: Annotated[Path, typer.Option(help="MODEL file.")],
    archs: Annotated[Path, typer.Option(help="CSV with an 'arch' column.")],
    out: Annotated[Path, typer.Option(help="CSV to write: arch,latency_ms[,lo_ms,hi_ms].")],
    adapt: Annotated[Path | None, typer.Option(help="CSV arch,latency_ms measured on the target device.")] = None,
    level: Annotated[float, typer.Option(help="Coverage of the lo/hi interval.")] = 0.9,
) -> None:
    """Predict latencies (ms) of ARCHS on the device that ADAPT was measured on."""
    from latency.datasets import read_archs, read_samples, write_predictions
    from latency.predictors import load_model

    if not 0 < level < 1:
        raise InputError(f"--level must be between 0 and 1, got {level}")
    predictor = load_model(model)
    names = read_archs(archs, predictor.space)
    if adapt is not None:
        sample_archs, sample_ms = read_samples(adapt, predictor.space)
        predictor.adapt(sample_archs, sample_ms)
    else:
        typer.echo("predict: no --adapt samples; predicting for the average training device", err=True)
    ms = predictor.predict(names)
    lo = hi = None
    if predictor.has_intervals:
        lo, hi = predictor.predict_interval(names, level)
    write_predictions(out, names, ms, lo, hi)
    typer.echo(f"predict: {len(names)} archs -> {out}")


def evaluate(
    space: Annotated[str, typer.Option(help="Search space: nb201 or fbnet.")],
    data: Annotated[Path, typer.Option(help="Dataset folder holding <space>.csv and splits.json.")],
    predictors: Annotated[str, typer.Option(help="Comma-separated predictors.")] = "bayes,ridge,flops",
    devices: Annotated[str, typer.Option(help="Target devices (default: every column).")] = "",
    n: Annotated[int, typer.Option(help="Target samples per device.")] = 10,
    samples: Annotated[str, typer.Option(help="Which samples: own (each model's references), help "
                                              "(splits.json's list), random.")] = "own",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for results.json and scatter.png.")] = Path("evaluation"),
) -> None:
    """Leave-one-device-out evaluation: train on the other devices, adapt from N samples, score unseen archs."""
    from rich.console import Console
    from rich.table import Table

    from latency.datasets import load_dataset
    from latency.evaluate import leave_one_out, save_results, scatter_png, summary_table, wins

    dataset = load_dataset(data, space)
    names = _split(predictors)
    if not names:
        raise InputError("--predictors is empty")
    for name in names:
        _make(name, space, {}, seed)
    console = Console(stderr=True)
    with console.status("evaluating") as status:
        results = leave_one_out(dataset, names, _split(devices) or None, n_samples=n, policy=samples, seed=seed,
                                progress=lambda text: status.update(f"evaluating {text}"))
    out.mkdir(parents=True, exist_ok=True)
    save_results(results, out / f"{space}-results.json")
    png = scatter_png(results, out / f"{space}-scatter.png", title=f"{space}: leave one device out, {n} samples")
    stdout = Console()
    for metric in ("spearman", "kendall", "within10", "mape"):
        header, rows = summary_table(results, metric)
        table = Table(title=f"{space} {metric} ({samples} samples, n={n})")
        for h in header:
            table.add_column(h, justify="left" if h == "device" else "right")
        for row in rows:
            table.add_row(*row)
        stdout.print(table)
    if len(names) > 1:
        for other in names[1:]:
            won, total = wins(results, names[0], other)
            typer.echo(f"{names[0]} beats {other} on {won} of {total} devices (Spearman)")
    typer.echo(f"evaluate: results and {png.name} in {out}")


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(references)
    app.command()(predict)
    app.command()(evaluate)
