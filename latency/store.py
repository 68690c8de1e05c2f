"""The measurement store: every Measurement ever taken, in one SQLite file shared by several processes.

WAL mode lets readers run beside a writer; every write is one short ``BEGIN IMMEDIATE`` transaction and the
busy timeout makes a second writer wait instead of failing. Inserting the same Measurement twice is harmless:
a fingerprint of device, model hash, timestamp and raw times is unique.

A model is identified by its ONNX content hash. An architecture name (space, arch) points at the hashes it was
exported to, and one hash may carry several names (two arch strings can export to the same graph), so names
live in their own table.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sqlite3
import statistics
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devices.measurement import Measurement
from latency.errors import InputError
from latency.paths import public_dataset_dir

if TYPE_CHECKING:
    from exporters.onnx import OnnxModel

SCHEMA_VERSION = 1
# Rows that are not in the public dataset get indices from here up, far above any public index.
NEW_INDEX_START = 1_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL,
    applied REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    spec TEXT NOT NULL UNIQUE,
    descriptor TEXT NOT NULL,
    first_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    hash TEXT PRIMARY KEY,
    space TEXT,
    arch TEXT,
    input_name TEXT,
    input_shape TEXT,
    opset INTEGER,
    flops REAL,
    params REAL,
    first_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS model_names (
    space TEXT NOT NULL,
    arch TEXT NOT NULL,
    hash TEXT NOT NULL REFERENCES models(hash),
    PRIMARY KEY (space, arch, hash)
);
CREATE INDEX IF NOT EXISTS model_names_by_hash ON model_names(hash);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    device_id INTEGER NOT NULL REFERENCES devices(id),
    model_hash TEXT NOT NULL REFERENCES models(hash),
    median_ms REAL NOT NULL,
    iqr_ms REAL NOT NULL,
    q1_ms REAL NOT NULL,
    q3_ms REAL NOT NULL,
    mean_ms REAL NOT NULL,
    std_ms REAL NOT NULL,
    min_ms REAL NOT NULL,
    cv REAL NOT NULL,
    runs INTEGER NOT NULL,
    number INTEGER NOT NULL,
    warmup_runs INTEGER NOT NULL,
    n_outliers INTEGER NOT NULL,
    outlier INTEGER NOT NULL,
    times_ms TEXT NOT NULL,
    device TEXT NOT NULL,
    environment TEXT NOT NULL,
    config TEXT NOT NULL,
    method TEXT NOT NULL,
    timestamp REAL NOT NULL,
    wall_s REAL NOT NULL,
    stored REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_by_device_model ON measurements(device_id, model_hash);
CREATE INDEX IF NOT EXISTS measurements_by_model ON measurements(model_hash);
"""


@dataclass(frozen=True)
class StoredDevice:
    spec: str
    descriptor: dict[str, Any]
    first_seen: float
    n_measurements: int


@dataclass(frozen=True)
class StoredMeasurement:
    """One stored row: its id, the name it was found under and the Measurement itself."""

    id: int
    space: str | None
    arch: str | None
    measurement: Measurement

    @property
    def device_spec(self) -> str:
        return self.measurement.device_spec

    @property
    def model_hash(self) -> str:
        return self.measurement.model_hash

    @property
    def median_ms(self) -> float:
        return self.measurement.median_ms

    @property
    def outlier(self) -> bool:
        return self.measurement.outlier


def fingerprint(measurement: Measurement) -> str:
    """What makes two Measurements the same one: where, what, when and the raw times."""
    key = json.dumps(
        [measurement.device_spec, measurement.model_hash, repr(float(measurement.timestamp)),
         [repr(float(t)) for t in measurement.times_ms]],
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def robust_latency(medians: Sequence[float], outliers: Sequence[bool]) -> float:
    """The median over non-outlier measurements, or over all of them when every one is an outlier."""
    kept = [m for m, bad in zip(medians, outliers, strict=True) if not bad]
    return float(statistics.median(kept or medians))


@lru_cache(maxsize=8)
def _public_index_cached(path: str, mtime_ns: int, size: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or header[:2] != ["index", "arch"]:
            raise InputError(f"{path}: expected columns 'index,arch,...', found {header}")
        for row in reader:
            if len(row) >= 2:
                out.setdefault(row[1], int(row[0]))
    return out


def public_index(space: str, data_dir: str | Path | None = None) -> dict[str, int]:
    """{arch: index} of ``<data_dir>/<space>.csv`` (default: the shipped HW-NAS-Bench copy); {} when absent.

    Read once per process and file version (mtime, size), so every export after the first costs nothing."""
    path = Path(data_dir) if data_dir is not None else public_dataset_dir()
    path = path / f"{space}.csv"
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    return _public_index_cached(str(path), st.st_mtime_ns, st.st_size)


class MeasurementStore:
    """A SQLite file of devices, models and measurements.

    ``create=False`` refuses a path where no store exists yet (for commands that only read). The connection
    is opened in the constructor; use the store as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | Path, *, create: bool = True, timeout_s: float = 60.0):
        self.path = Path(path).expanduser()
        self.timeout_s = timeout_s
        if self.path.is_dir():
            raise InputError(f"measurement store {self.path} is a directory, not a SQLite file")
        if not self.path.exists():
            if not create:
                raise InputError(f"no measurement store at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # autocommit mode: transactions are opened explicitly, so each one is as short as it looks.
            self._conn = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise InputError(f"cannot open measurement store {self.path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            if self._conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise InputError(f"{self.path} is not a usable measurement store: {exc}") from exc

    # -- lifecycle ----------------------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> MeasurementStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MeasurementStore({str(self.path)!r})"

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so two writers queue on the busy timeout instead of
        # deadlocking on a read lock that each would have to upgrade.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as conn:
            # executescript would commit the open transaction first, so statements go one by one.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0]
            if version is None:
                conn.execute("INSERT INTO schema_version(version, applied) VALUES (?, ?)",
                             (SCHEMA_VERSION, time.time()))
            elif version > SCHEMA_VERSION:
                raise InputError(
                    f"measurement store {self.path} has schema version {version}; this toolkit reads up to "
                    f"{SCHEMA_VERSION} (upgrade the toolkit)"
                )

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    @property
    def journal_mode(self) -> str:
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])

    # -- writing ------------------------------------------------------------------------------------------

    def add_model(self, model: OnnxModel, *, flops: float | None = None, params: float | None = None) -> str:
        """Record a model (and its arch name, if it has one); returns its content hash."""
        with self._write() as conn:
            self._insert_model(conn, model.content_hash, model, flops, params)
        return model.content_hash

    def add_measurement(self, measurement: Measurement, model: OnnxModel | None = None, *,
                        flops: float | None = None, params: float | None = None) -> int:
        """Store one Measurement in a single transaction and return its row id.

        ``model`` gives the hash its arch name and shape; without it the hash must be stored already or is
        stored bare. Storing a Measurement that is already there returns the existing row's id."""
        if not measurement.device_spec:
            raise InputError("measurement has no device_spec; cannot store it")
        model_hash = measurement.model_hash or (model.content_hash if model is not None else "")
        if not model_hash:
            raise InputError("measurement has no model_hash and no model was given; cannot store it")
        if model is not None and model.content_hash != model_hash:
            raise InputError(
                f"measurement is of model {model_hash[:12]} but was stored with model "
                f"{model.content_hash[:12]} ({model.path})"
            )
        m = measurement
        fp = fingerprint(m) if m.model_hash else fingerprint(_with_hash(m, model_hash))
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO devices(spec, descriptor, first_seen) VALUES (?, ?, ?)",
                (m.device_spec, _dumps(m.device), now),
            )
            device_id = conn.execute("SELECT id FROM devices WHERE spec = ?", (m.device_spec,)).fetchone()[0]
            self._insert_model(conn, model_hash, model, flops, params)
            cur = conn.execute(
                """INSERT OR IGNORE INTO measurements(
                       fingerprint, device_id, model_hash, median_ms, iqr_ms, q1_ms, q3_ms, mean_ms, std_ms,
                       min_ms, cv, runs, number, warmup_runs, n_outliers, outlier, times_ms, device,
                       environment, config, method, timestamp, wall_s, stored)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (fp, device_id, model_hash, m.median_ms, m.iqr_ms, m.q1_ms, m.q3_ms, m.mean_ms, m.std_ms,
                 m.min_ms, m.cv, m.runs, m.number, m.warmup_runs, m.n_outliers, int(bool(m.outlier)),
                 json.dumps([float(t) for t in m.times_ms]), _dumps(m.device), _dumps(m.environment),
                 _dumps(m.config), m.method, float(m.timestamp), float(m.wall_s), now),
            )
            if cur.rowcount == 1:
                return int(cur.lastrowid)
            return int(conn.execute("SELECT id FROM measurements WHERE fingerprint = ?", (fp,)).fetchone()[0])

    @staticmethod
    def _insert_model(conn: sqlite3.Connection, model_hash: str, model: OnnxModel | None,
                      flops: float | None, params: float | None) -> None:
        if model is None:
            conn.execute("INSERT OR IGNORE INTO models(hash, first_seen) VALUES (?, ?)", (model_hash, time.time()))
            return
        shape = json.dumps([int(d) for d in model.input_shape])
        conn.execute(
            """INSERT OR IGNORE INTO models(hash, space, arch, input_name, input_shape, opset, flops, params,
                                            first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (model_hash, model.space, model.arch, model.input_name, shape, model.opset, flops, params,
             time.time()),
        )
        # A hash first stored bare (or without sizes) gains what this call knows.
        conn.execute(
            """UPDATE models SET space = COALESCE(space, ?), arch = COALESCE(arch, ?),
                   input_name = COALESCE(input_name, ?), input_shape = COALESCE(input_shape, ?),
                   opset = COALESCE(opset, ?), flops = COALESCE(flops, ?), params = COALESCE(params, ?)
               WHERE hash = ?""",
            (model.space, model.arch, model.input_name, shape, model.opset, flops, params, model_hash),
        )
        if model.space and model.arch:
            conn.execute("INSERT OR IGNORE INTO model_names(space, arch, hash) VALUES (?, ?, ?)",
                         (model.space, model.arch, model_hash))

    # -- reading ------------------------------------------------------------------------------------------

    def devices(self) -> list[StoredDevice]:
        rows = self._conn.execute(
            """SELECT d.spec, d.descriptor, d.first_seen, COUNT(m.id) AS n
               FROM devices d LEFT JOIN measurements m ON m.device_id = d.id
               GROUP BY d.id ORDER BY d.first_seen, d.spec"""
        ).fetchall()
        return [StoredDevice(r["spec"], json.loads(r["descriptor"]), r["first_seen"], r["n"]) for r in rows]

    def spaces(self, devices: Iterable[str] | None = None) -> list[str]:
        """The search spaces that have measurements (on any of ``devices``, when given)."""
        sql = """SELECT DISTINCT n.space FROM model_names n JOIN measurements m ON m.model_hash = n.hash
                 JOIN devices d ON d.id = m.device_id"""
        args: list[Any] = []
        if devices is not None:
            specs = list(devices)
            sql += f" WHERE d.spec IN ({','.join('?' * len(specs))})"
            args += specs
        return sorted(r[0] for r in self._conn.execute(sql + " ORDER BY n.space", args))

    def archs(self, space: str) -> list[str]:
        """Arch names stored for ``space``, in the order they were first stored."""
        rows = self._conn.execute(
            "SELECT arch FROM model_names WHERE space = ? GROUP BY arch ORDER BY MIN(rowid)", (space,)
        ).fetchall()
        return [r[0] for r in rows]

    def measurements(self, device: str | None = None, space: str | None = None, arch: str | None = None,
                     model_hash: str | None = None, since: float | None = None) -> list[StoredMeasurement]:
        """Stored measurements matching every filter given (``since``: taken at or after this Unix time),
        oldest first.

        A row's space and arch are the name it matched under when ``space`` is given, else the model's first
        name (None for a bare ONNX file)."""
        if arch is not None and space is None:
            raise InputError("filtering measurements by arch needs the space too")
        where, args = [], []
        if device is not None:
            where.append("d.spec = ?")
            args.append(device)
        if model_hash is not None:
            where.append("m.model_hash = ?")
            args.append(model_hash)
        if since is not None:
            where.append("m.timestamp >= ?")
            args.append(float(since))
        name_cols = "mo.space AS space, mo.arch AS arch"
        name_args: list[Any] = []
        if space is not None:
            cond = "n.hash = m.model_hash AND n.space = ?"
            cond_args: list[Any] = [space]
            if arch is not None:
                cond += " AND n.arch = ?"
                cond_args.append(arch)
            where.append(f"EXISTS (SELECT 1 FROM model_names n WHERE {cond})")
            args += cond_args
            name_cols = f"? AS space, (SELECT MIN(n.arch) FROM model_names n WHERE {cond}) AS arch"
            name_args = [space, *cond_args]
        sql = f"""SELECT m.*, d.spec AS device_spec, {name_cols}
                  FROM measurements m JOIN devices d ON d.id = m.device_id JOIN models mo ON mo.hash = m.model_hash
                  {'WHERE ' + ' AND '.join(where) if where else ''}
                  ORDER BY m.timestamp, m.id"""
        rows = self._conn.execute(sql, [*name_args, *args]).fetchall()
        return [StoredMeasurement(r["id"], r["space"], r["arch"], _measurement_from_row(r)) for r in rows]

    def latency(self, device: str, space: str, arch: str) -> float | None:
        """The robust latency of one arch on one device (see :func:`robust_latency`); None if unmeasured."""
        found = self.measurements(device=device, space=space, arch=arch)
        if not found:
            return None
        return robust_latency([s.median_ms for s in found], [s.outlier for s in found])

    def latency_table(self, space: str, devices: Iterable[str] | None = None,
                      since: float | None = None) -> dict[str, dict[str, float]]:
        """{arch: {device spec: ms}} for every arch of ``space`` measured on any of ``devices`` (default: all),
        counting only measurements taken at or after ``since`` (Unix time) when given.

        Each value is the median over that arch's stored non-outlier measurements on that device, or over all of
        them when every one is an outlier."""
        sql = """SELECT n.arch, d.spec, m.median_ms, m.outlier
                 FROM measurements m JOIN devices d ON d.id = m.device_id JOIN model_names n ON n.hash = m.model_hash
                 WHERE n.space = ?"""
        args: list[Any] = [space]
        if since is not None:
            sql += " AND m.timestamp >= ?"
            args.append(float(since))
        if devices is not None:
            specs = list(devices)
            sql += f" AND d.spec IN ({','.join('?' * len(specs))})"
            args += specs
        groups: dict[str, dict[str, tuple[list[float], list[bool]]]] = {}
        for arch, spec, median, outlier in self._conn.execute(sql + " ORDER BY m.id", args):
            meds, outs = groups.setdefault(arch, {}).setdefault(spec, ([], []))
            meds.append(median)
            outs.append(bool(outlier))
        return {arch: {spec: robust_latency(*v) for spec, v in per.items()} for arch, per in groups.items()}

    # -- export -------------------------------------------------------------------------------------------

    def export_csv(self, path: str | Path, space: str, devices: Sequence[str],
                   columns: Sequence[str] | None = None, *, archs: Iterable[str] | None = None,
                   public_data_dir: str | Path | None = None, since: float | None = None) -> int:
        """Write ``index,arch,<column per device>`` (ms) for every arch of ``space`` measured on any device
        (only those among ``archs``, when given).

        ``index`` is the arch's row index in the public dataset of ``space`` when it is there; other archs get
        indices from 1,000,000 up, in the order they were first stored. Rows are sorted by index; a device
        that did not measure an arch leaves its cell empty. ``columns`` names the device columns (default: the
        spec with ',' written ';' so the header stays one CSV cell). Returns the number of rows written."""
        devices = list(devices)
        if not devices:
            raise InputError("export needs at least one device")
        cols = list(columns) if columns is not None else [_column_name(d) for d in devices]
        if len(cols) != len(devices):
            raise InputError(f"export got {len(devices)} devices but {len(cols)} column names")
        table = self.latency_table(space, devices, since=since)
        if archs is not None:
            wanted = set(archs)
            table = {a: v for a, v in table.items() if a in wanted}
        public = public_index(space, public_data_dir)
        rows: list[tuple[int, str]] = []
        next_new = NEW_INDEX_START
        # archs() gives first-stored order, so new archs keep a stable numbering across exports.
        for arch in self.archs(space):
            if arch not in table:
                continue
            if arch in public:
                rows.append((public[arch], arch))
            else:
                rows.append((next_new, arch))
                next_new += 1
        rows.sort()
        out = Path(path)
        if out.parent != Path(""):
            out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["index", "arch", *cols])
            for index, arch in rows:
                cells = table[arch]
                writer.writerow([index, arch, *(repr(cells[d]) if d in cells else "" for d in devices)])
        os.replace(tmp, out)
        return len(rows)


def _column_name(spec: str) -> str:
    # Stored specs are canonical already; this is devices.spec.column_name without re-parsing, so a spec
    # this version of devices no longer parses can still be exported.
    return spec.replace(",", ";")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _with_hash(m: Measurement, model_hash: str) -> Measurement:
    return Measurement.from_dict({**m.to_dict(), "model_hash": model_hash})


def _measurement_from_row(r: sqlite3.Row) -> Measurement:
    return Measurement(
        times_ms=json.loads(r["times_ms"]), number=r["number"], warmup_runs=r["warmup_runs"],
        median_ms=r["median_ms"], iqr_ms=r["iqr_ms"], q1_ms=r["q1_ms"], q3_ms=r["q3_ms"], mean_ms=r["mean_ms"],
        std_ms=r["std_ms"], min_ms=r["min_ms"], cv=r["cv"], n_outliers=r["n_outliers"],
        outlier=bool(r["outlier"]), method=r["method"], device_spec=r["device_spec"],
        device=json.loads(r["device"]), environment=json.loads(r["environment"]),
        config=json.loads(r["config"]), model_hash=r["model_hash"], timestamp=r["timestamp"],
        wall_s=r["wall_s"],
    )
