"""Measuring commands: ``latency profile``, ``latency export``, ``latency devices``.

``profile`` stores each Measurement the moment it exists and appends its CSV row at once, so a run that is
killed loses at most the model being timed; ``--skip-measured`` resumes from the store. The functions below the
commands are what ``measurements/local/collect.py`` drives too, so the project's data set is made by exactly the
code a user runs.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from devices.base import DeviceError, DeviceSpecError
from devices.measurement import MeasureConfig, Measurement
from latency.datasets import read_archs
from latency.errors import InputError
from latency.paths import default_db_path, onnx_cache_dir
from latency.store import MeasurementStore, StoredMeasurement

if TYPE_CHECKING:
    from devices.base import Device
    from exporters.onnx import OnnxModel

PROFILE_COLUMNS = (
    "arch", "latency_ms", "iqr_ms", "q1_ms", "q3_ms", "min_ms", "mean_ms", "std_ms", "cv", "runs", "number",
    "outlier", "source", "model_hash", "measurement_id",
)


# ---------------------------------------------------------------------------------------------------------
# inputs


def _space(name: str) -> Any:
    """The search space object; exporters' ArchError names an unknown space and lists the known ones."""
    from exporters.spaces import get_space

    return get_space(name)


def get_available_device(spec: str) -> Device:
    """The device for ``spec``; DeviceSpecError for a bad spec, DeviceError when it cannot run here."""
    from devices.spec import get_device

    if not spec.strip():
        raise DeviceSpecError("empty device spec")
    device = get_device(spec)
    ok, why = device.available()
    if not ok:
        raise DeviceError(f"device {device.spec} cannot run here: {why}")
    return device


def split_device_list(text: str) -> list[str]:
    """Comma-separated specs, where a spec's own options also use commas (``ort-cpu:threads=2,opt=all``).

    A piece is an option of the spec before it when it reads ``key=value`` with no ``backend:`` in front."""
    specs: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        eq, colon = piece.find("="), piece.find(":")
        is_option = eq > 0 and (colon < 0 or colon > eq)
        if is_option and specs:
            specs[-1] += "," + piece
        else:
            specs.append(piece)
    return specs


# ---------------------------------------------------------------------------------------------------------
# profiling


@dataclass
class ProfileRow:
    """One line of the profile CSV: an arch (or ONNX file) and the Measurement that answers it."""

    arch: str
    measurement: Measurement
    source: str  # "measured" now, or "stored" when reused from the store
    measurement_id: int

    def cells(self) -> list[Any]:
        m = self.measurement
        return [self.arch, repr(m.median_ms), repr(m.iqr_ms), repr(m.q1_ms), repr(m.q3_ms), repr(m.min_ms),
                repr(m.mean_ms), repr(m.std_ms), repr(m.cv), m.runs, m.number, int(bool(m.outlier)),
                self.source, m.model_hash, self.measurement_id]


@dataclass
class ProfileSummary:
    device: str
    rows: list[ProfileRow] = field(default_factory=list)
    wall_s: float = 0.0
    retried: int = 0  # measurements repeated because they came out flagged

    @property
    def measured(self) -> int:
        return sum(r.source == "measured" for r in self.rows)

    @property
    def reused(self) -> int:
        return sum(r.source == "stored" for r in self.rows)

    @property
    def outliers(self) -> int:
        return sum(bool(r.measurement.outlier) for r in self.rows)


class ProfileWriter:
    """The profile CSV, written row by row and flushed each time, so a killed run keeps what it measured."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"--out {self.path} is a directory")
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = open(self.path, "w", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.writer(self._fh)
        self._writer.writerow(PROFILE_COLUMNS)
        self._fh.flush()

    def write(self, row: ProfileRow) -> None:
        self._writer.writerow(row.cells())
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _latest_usable(found: Sequence[StoredMeasurement]) -> StoredMeasurement:
    good = [s for s in found if not s.outlier]
    return (good or list(found))[-1]


def _store_name(model: OnnxModel, space: str | None, arch: str | None) -> OnnxModel:
    if space and arch:
        model.space, model.arch = model.space or space, model.arch or arch
    return model


def measure_one(device: Device, model: OnnxModel, config: MeasureConfig) -> Measurement:
    """Time ``model`` on ``device``; the Measurement is completed with what the device may leave blank."""
    measurement = device.measure(model, config)
    if not measurement.device_spec:
        measurement.device_spec = device.spec
    if not measurement.model_hash:
        measurement.model_hash = model.content_hash
    return measurement


# How many times a measurement flagged as an outlier is repeated before its row keeps the noisy one.
DEFAULT_RETRIES = 2


def profile_archs(
    space: str,
    archs: Sequence[str],
    device: Device,
    store: MeasurementStore,
    *,
    config: MeasureConfig | None = None,
    out: ProfileWriter | None = None,
    skip_measured: bool = False,
    onnx_dir: str | Path | None = None,
    on_row: Callable[[ProfileRow], None] | None = None,
    retries: int = 0,
    since: float | None = None,
) -> ProfileSummary:
    """Export (cached), measure and store each arch in turn; each Measurement is stored before the next starts.

    A measurement flagged as an outlier (too noisy: something else ran) is repeated up to ``retries`` more
    times; every attempt is stored and the row takes the first one that is not flagged (else the last).
    With ``skip_measured`` an arch already measured on this device is not measured again unless all its
    stored attempts are flagged and fewer than ``1 + retries``; its latest non-outlier stored measurement
    fills its row. ``since`` (Unix time) makes older stored measurements not count: a fresh pass that can still
    resume."""
    from exporters.onnx import export_arch

    config = config or MeasureConfig()
    cache = Path(onnx_dir) if onnx_dir is not None else onnx_cache_dir(space)
    summary = ProfileSummary(device=device.spec)
    start = time.perf_counter()
    for arch in archs:
        found = store.measurements(device=device.spec, space=space, arch=arch, since=since) if skip_measured else []
        attempts_left = 1 + max(0, retries) - len(found)
        if found and (any(not s.outlier for s in found) or attempts_left <= 0):
            kept = _latest_usable(found)
            row = ProfileRow(arch, kept.measurement, "stored", kept.id)
        else:
            model = export_arch(space, arch, cache)
            while True:
                measurement = measure_one(device, model, config)
                mid = store.add_measurement(measurement, _store_name(model, space, arch))
                attempts_left -= 1
                if not measurement.outlier or attempts_left <= 0:
                    break
                summary.retried += 1
            row = ProfileRow(arch, measurement, "measured", mid)
        summary.rows.append(row)
        if out is not None:
            out.write(row)
        if on_row is not None:
            on_row(row)
    summary.wall_s = time.perf_counter() - start
    return summary


def profile_onnx(path: str | Path, device: Device, store: MeasurementStore, *,
                 config: MeasureConfig | None = None, out: ProfileWriter | None = None,
                 skip_measured: bool = False) -> ProfileSummary:
    """Measure one given ONNX file (its row's arch is the file name)."""
    from exporters.onnx import load_onnx

    model = load_onnx(path)
    summary = ProfileSummary(device=device.spec)
    start = time.perf_counter()
    found = store.measurements(device=device.spec, model_hash=model.content_hash) if skip_measured else []
    if found:
        kept = _latest_usable(found)
        row = ProfileRow(Path(path).name, kept.measurement, "stored", kept.id)
    else:
        measurement = measure_one(device, model, config or MeasureConfig())
        row = ProfileRow(Path(path).name, measurement, "measured", store.add_measurement(measurement, model))
    summary.rows.append(row)
    if out is not None:
        out.write(row)
    summary.wall_s = time.perf_counter() - start
    return summary


# ---------------------------------------------------------------------------------------------------------
# terminal output


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[ProfileRow], None]]:
    """A rich progress bar on stderr; yields the per-row callback that advances it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), TextColumn("{task.fields[last]}"),
                        console=_stderr_console(), transient=True)
    task = progress.add_task(label, total=total, last="")
    with progress:
        def advance(row: ProfileRow) -> None:
            m = row.measurement
            flag = " outlier" if m.outlier else ""
            progress.update(task, advance=1, last=f"{m.median_ms:.3f} ms ({row.source}{flag})")

        yield advance


def _config(min_runs: int | None, max_runs: int | None, min_run_time_s: float | None,
            max_time_s: float | None, target_cv: float | None, warmup_runs: int | None) -> MeasureConfig:
    given = {"min_runs": min_runs, "max_runs": max_runs, "min_run_time_s": min_run_time_s,
             "max_time_s": max_time_s, "target_cv": target_cv, "warmup_runs": warmup_runs}
    try:
        config = MeasureConfig(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        raise InputError(f"bad measuring option: {exc}") from None
    if config.min_runs > config.max_runs:
        raise InputError(f"--min-runs {config.min_runs} exceeds --max-runs {config.max_runs}")
    return config


# ---------------------------------------------------------------------------------------------------------
# commands


def profile(
    device_spec: Annotated[str, typer.Option("--device", help="Device spec, e.g. ort-cpu:threads=1.")],
    out: Annotated[Path, typer.Option("--out", help="CSV written row by row: arch,latency_ms and spread.")],
    space: Annotated[str | None, typer.Option("--space", help="Search space of --archs (nb201, fbnet).")] = None,
    archs_csv: Annotated[Path | None, typer.Option("--archs", help="CSV with an 'arch' column.")] = None,
    onnx_file: Annotated[Path | None, typer.Option("--onnx", help="Measure this ONNX file instead of archs.")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="Measurement store (default: $LATENCY_DB or cache).")] = None,
    skip_measured: Annotated[bool, typer.Option(
        "--skip-measured/--remeasure",
        help="Reuse an arch's stored measurement on this device instead of measuring it again (resume)."),
    ] = False,
    onnx_cache: Annotated[Path | None, typer.Option("--onnx-cache", help="Folder of exported ONNX files.")] = None,
    min_runs: Annotated[int | None, typer.Option("--min-runs", min=1, help="Fewest timed blocks.")] = None,
    max_runs: Annotated[int | None, typer.Option("--max-runs", min=1, help="Most timed blocks.")] = None,
    min_run_time_s: Annotated[float | None, typer.Option("--min-run-time", min=0.0,
                                                         help="Seconds of timed blocks at least.")] = None,
    max_time_s: Annotated[float | None, typer.Option("--max-time", min=0.001,
                                                     help="Seconds of timing at most per model.")] = None,
    target_cv: Annotated[float | None, typer.Option("--target-cv", min=0.0,
                                                    help="Stop early once block CV is below this.")] = None,
    warmup_runs: Annotated[int | None, typer.Option("--warmup-runs", min=0, help="Untimed runs first.")] = None,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Repeat a measurement flagged as an outlier "
                                                                 "up to this many times (every attempt is stored)."
                                         )] = DEFAULT_RETRIES,
) -> None:
    """Measure each architecture (or one ONNX file) on a device, store every measurement, write a CSV."""
    if (archs_csv is None) == (onnx_file is None):
        raise InputError("profile needs exactly one of --archs ARCHS.csv or --onnx FILE")
    if archs_csv is not None and not space:
        raise InputError("--archs needs --space (nb201 or fbnet)")
    config = _config(min_runs, max_runs, min_run_time_s, max_time_s, target_cv, warmup_runs)
    # Every input is checked before anything is measured, so a typo never costs a half-finished run.
    archs = read_archs(archs_csv, space) if archs_csv is not None else []
    model_path = None
    if onnx_file is not None:
        from exporters.onnx import load_onnx

        model_path = load_onnx(onnx_file).path
    device = get_available_device(device_spec)
    db_path = db if db is not None else default_db_path()
    with MeasurementStore(db_path) as store:
        writer = ProfileWriter(out)
        try:
            if model_path is not None:
                summary = profile_onnx(model_path, device, store, config=config, out=writer,
                                       skip_measured=skip_measured)
            else:
                with _progress(len(archs), f"{space} on {device.spec}") as advance:
                    summary = profile_archs(space, archs, device, store, config=config, out=writer,
                                            skip_measured=skip_measured, onnx_dir=onnx_cache, on_row=advance,
                                            retries=retries)
        finally:
            writer.close()
    meds = sorted(r.measurement.median_ms for r in summary.rows)
    typer.echo(
        f"profile: device={device.spec} models={len(summary.rows)} measured={summary.measured} "
        f"reused={summary.reused} retried={summary.retried} outliers={summary.outliers} median_ms={meds[len(meds) // 2]:.4f} "
        f"wall_s={summary.wall_s:.1f} out={out} db={db_path}"
    )


def export(
    out: Annotated[Path, typer.Option("--out", help="Dataset CSV: index,arch,<device>... (ms).")],
    device_specs: Annotated[list[str], typer.Option(
        "--device", help="Device spec(s): repeat the option or separate specs by commas.")],
    db: Annotated[Path | None, typer.Option("--db", help="Measurement store (default: $LATENCY_DB or cache).")] = None,
    space: Annotated[str | None, typer.Option("--space", help="Search space (default: the only one stored).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Use only measurements taken at or after this "
                                                              "UTC time (ISO, e.g. 2026-11-24T12:34).")] = None,
) -> None:
    """Write stored measurements in the dataset format of measurements/hw-nas-bench."""
    since_ts = parse_since(since)
    from devices.spec import canonical_spec

    # a dataset column name (',' written ';') names its device too
    specs = [canonical_spec(s) for text in device_specs for s in split_device_list(text.replace(";", ","))]
    if not specs:
        raise InputError("--device names no device")
    specs = list(dict.fromkeys(specs))
    if out.is_dir():
        raise InputError(f"--out {out} is a directory")
    db_path = db if db is not None else default_db_path()
    with MeasurementStore(db_path, create=False) as store:
        stored = {d.spec: d.n_measurements for d in store.devices()}
        for spec in specs:
            if not stored.get(spec):
                known = ", ".join(s for s, n in stored.items() if n) or "none"
                raise InputError(f"device {spec} has no measurements in {db_path} (stored devices: {known})")
        if space is None:
            spaces = store.spaces(specs)
            if len(spaces) == 1:
                space = spaces[0]
            elif out.stem in spaces:  # nb201.csv: the dataset's own naming says which space
                space = out.stem
            else:
                raise InputError(
                    f"{db_path} holds measurements of {', '.join(spaces) or 'no search space'} on these "
                    "devices; name one with --space"
                )
        else:
            _space(space)
        n = store.export_csv(out, space, specs, since=since_ts)
    if n == 0:
        after = f" since {since}" if since else ""
        raise InputError(f"no {space} measurements on {', '.join(specs)}{after} in {db_path}")
    typer.echo(f"export: space={space} devices={','.join(specs)} rows={n} out={out}")


def parse_since(text: str | None) -> float | None:
    """``--since`` as Unix time: an ISO moment, UTC unless it names its zone; None stays None."""
    import datetime as dt

    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--since {text!r} is not an ISO time such as 2026-11-24T12:34") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def devices() -> None:
    """List the device backends and specs this machine can run, and why the others cannot."""
    from rich.console import Console
    from rich.table import Table

    from devices.spec import available_devices

    table = Table(title="latency devices")
    table.add_column("spec")
    table.add_column("available")
    table.add_column("details / why not")
    for row in available_devices():
        table.add_row(row.spec, "yes" if row.ok else "no", row.why)
    width = os.get_terminal_size(1).columns if sys.stdout.isatty() else 160
    Console(file=sys.stdout, width=max(100, width)).print(table)


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
    app.command("export")(export)
    app.command("devices")(devices)
