"""Latency datasets in the HW-NAS-Bench CSV format, the evaluation protocol, and target-device sample files.

A dataset folder holds ``<space>.csv`` (``index, arch, <device>...``, milliseconds, one row per architecture)
and optionally ``splits.json`` naming the reference architectures and the meta-train / meta-valid devices.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exporters.errors import ArchError
from exporters.spaces import get_space
from latency.errors import InputError

# HELP's protocol (shared/data/hw-nas-bench/README.md): meta-training sees rows with index below the cut plus the
# reference architectures; the query set is the next 1,000 indices.
PROTOCOL_CUT = {"nb201": 900, "fbnet": 4000}
QUERY_SIZE = 1000
TRIM = 0.10


@dataclass
class LatencyDataset:
    """Latencies (ms) of ``archs`` on ``devices``; ``latency[i, j]`` is NaN where arch i was not measured on j."""

    space: str
    archs: list[str]
    index: np.ndarray
    devices: list[str]
    latency: np.ndarray
    splits: dict = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        self._row = {a: i for i, a in enumerate(self.archs)}

    def __len__(self) -> int:
        return len(self.archs)

    # -- lookups ------------------------------------------------------------------------------------------------
    def column(self, device: str) -> np.ndarray:
        if device not in self.devices:
            raise InputError(
                f"device {device!r} is not a column of {self.source or 'the dataset'} "
                f"(columns: {', '.join(self.devices)})"
            )
        return self.latency[:, self.devices.index(device)]

    def rows_of(self, archs: Sequence[str]) -> np.ndarray:
        missing = [a for a in archs if a not in self._row]
        if missing:
            raise InputError(f"arch {missing[0]!r} is not in {self.source or 'the dataset'}")
        return np.array([self._row[a] for a in archs], dtype=int)

    def has(self, arch: str) -> bool:
        return arch in self._row

    def rows_with_index(self, indices: Sequence[int]) -> np.ndarray:
        where = {int(v): i for i, v in enumerate(self.index)}
        missing = [int(v) for v in indices if int(v) not in where]
        if missing:
            raise InputError(f"index {missing[0]} is not in {self.source or 'the dataset'}")
        return np.array([where[int(v)] for v in indices], dtype=int)

    def subset(self, rows: np.ndarray | None = None, devices: Sequence[str] | None = None) -> LatencyDataset:
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=int)
        devices = list(self.devices) if devices is None else list(devices)
        cols = [self.devices.index(d) for d in devices]
        return LatencyDataset(
            space=self.space, archs=[self.archs[i] for i in rows], index=self.index[rows], devices=devices,
            latency=self.latency[np.ix_(rows, cols)], splits=self.splits, source=self.source,
        )

    # -- protocol -----------------------------------------------------------------------------------------------
    def reference_archs(self) -> list[str]:
        """HELP's fixed reference architectures, when splits.json names them."""
        refs = self.splits.get("reference_architectures", [])
        return [self.archs[i] for i in self.rows_with_index(refs)] if refs else []

    def default_train_devices(self) -> list[str]:
        named = list(self.splits.get("meta_train_devices", [])) + list(self.splits.get("meta_valid_devices", []))
        named = [d for d in named if d in self.devices]
        return named or list(self.devices)

    def protocol_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(training rows, query rows) of HELP's protocol: index < cut plus the references / the next 1,000."""
        cut = PROTOCOL_CUT.get(self.space)
        if cut is None:
            raise InputError(f"no evaluation protocol is defined for space {self.space!r}")
        train = self.index < cut
        refs = self.splits.get("reference_architectures", [])
        if refs:
            train[self.rows_with_index(refs)] = True
        query = (self.index >= cut) & (self.index < cut + QUERY_SIZE) & ~train
        return np.flatnonzero(train), np.flatnonzero(query)


def validate_arch(space: str, arch: str, where: str) -> str:
    """The canonical arch, or an InputError naming ``where`` -- and the space the arch belongs to, if another."""
    from exporters.spaces import SPACES

    try:
        return get_space(space).validate(arch)
    except ArchError as exc:
        for other in SPACES:
            if other == space:
                continue
            try:
                get_space(other).validate(arch)
            except ArchError:
                continue
            raise InputError(f"{where}: {arch.strip()!r} is an {other} architecture, but this is for {space}") from None
        raise InputError(f"{where}: {exc}") from None


def _space_of(path: Path) -> str:
    return path.stem


def load_dataset(path: str | Path, space: str | None = None) -> LatencyDataset:
    """Read ``DIR/<space>.csv`` (with ``DIR/splits.json``) or a CSV file given directly."""
    path = Path(path)
    if path.is_dir():
        if space is None:
            raise InputError(f"{path} is a folder: name the space (--space nb201|fbnet)")
        csv_path = path / f"{space}.csv"
    else:
        csv_path = path
        space = space or _space_of(path)
    if not csv_path.exists():
        raise InputError(f"dataset file {csv_path} does not exist")
    get_space(space)  # an unknown space fails here with its own one-line error
    with open(csv_path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise InputError(f"{csv_path} is empty")
        header = [h.strip() for h in header]
        if "arch" not in header:
            raise InputError(f"{csv_path} has no 'arch' column (header: {', '.join(header)})")
        a_col = header.index("arch")
        i_col = header.index("index") if "index" in header else None
        dev_cols = [k for k, h in enumerate(header) if h not in ("arch", "index")]
        if not dev_cols:
            raise InputError(f"{csv_path} has no device columns")
        archs, index, values = [], [], []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise InputError(f"{csv_path} line {line_no}: {len(row)} fields, header has {len(header)}")
            archs.append(validate_arch(space, row[a_col], f"{csv_path} line {line_no}"))
            try:
                index.append(int(row[i_col]) if i_col is not None else line_no - 2)
                values.append([float(row[k]) if row[k].strip() else math.nan for k in dev_cols])
            except ValueError:
                raise InputError(f"{csv_path} line {line_no}: a value is not a number") from None
    if not archs:
        raise InputError(f"{csv_path} has a header but no rows")
    latency = np.asarray(values, dtype=np.float64)
    bad = np.argwhere(latency <= 0)
    if len(bad):
        r, c = bad[0]
        raise InputError(f"{csv_path} line {r + 2}: non-positive latency in column {header[dev_cols[c]]!r}")
    splits: dict = {}
    splits_path = csv_path.parent / "splits.json"
    if splits_path.exists():
        try:
            splits = json.loads(splits_path.read_text()).get(space, {})
        except json.JSONDecodeError as exc:
            raise InputError(f"{splits_path} is not valid JSON: {exc}") from None
    return LatencyDataset(
        space=space, archs=archs, index=np.asarray(index, dtype=np.int64), devices=[header[k] for k in dev_cols],
        latency=latency, splits=splits, source=str(csv_path),
    )


def read_samples(path: str | Path, space: str) -> tuple[list[str], np.ndarray]:
    """Target-device samples: a CSV with ``arch,latency_ms``; every fault is a one-line InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"samples file {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as fh:  # a spreadsheet's BOM must not hide the header
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in (reader.fieldnames or [])]
        if not fields:
            raise InputError(f"samples file {path} is empty")
        if "arch" not in fields or "latency_ms" not in fields:
            raise InputError(f"samples file {path} needs columns arch,latency_ms (found: {', '.join(fields)})")
        archs, values = [], []
        get_space(space)
        for line_no, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not row.get("arch") and not row.get("latency_ms"):
                continue
            arch = validate_arch(space, row["arch"], f"{path} line {line_no}")
            try:
                value = float(row["latency_ms"])
            except ValueError:
                raise InputError(f"{path} line {line_no}: latency_ms {row['latency_ms']!r} is not a number") from None
            if not math.isfinite(value):
                raise InputError(f"{path} line {line_no}: latency_ms is {row['latency_ms']} (must be finite)")
            if value <= 0:
                raise InputError(f"{path} line {line_no}: latency_ms {value} is not positive")
            archs.append(arch)
            values.append(value)
    if not archs:
        raise InputError(f"samples file {path} has no rows")
    return archs, np.asarray(values, dtype=np.float64)


def read_archs(path: str | Path, space: str) -> list[str]:
    """The ``arch`` column of a CSV (other columns ignored), each arch validated and canonical.

    Errors name the file and, for a bad arch, its row and line (and the space it belongs to, if another)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a CSV file")
    get_space(space)
    try:
        # utf-8-sig: a spreadsheet's byte-order mark must not hide the 'arch' header
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames
            if not header:
                raise InputError(f"{path}: empty file (expected a CSV with an 'arch' column)")
            names = [h.strip() for h in header]
            if "arch" not in names:
                raise InputError(f"{path}: no 'arch' column (columns: {', '.join(names)})")
            reader.fieldnames = names
            archs: list[str] = []
            for row_no, row in enumerate(reader, start=1):
                raw = (row.get("arch") or "").strip()
                where = f"{path}: row {row_no} (line {reader.line_num})"
                if not raw:
                    raise InputError(f"{where}: empty arch")
                archs.append(validate_arch(space, raw, where))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text CSV file") from None
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV: {exc}") from None
    if not archs:
        raise InputError(f"{path}: no rows under the 'arch' column")
    return archs


def write_predictions(path: str | Path, archs: Sequence[str], ms: np.ndarray, lo: np.ndarray | None = None,
                      hi: np.ndarray | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["arch", "latency_ms"] + (["lo_ms", "hi_ms"] if lo is not None else []))
        for k, arch in enumerate(archs):
            row = [arch, f"{ms[k]:.6g}"]
            if lo is not None and hi is not None:
                row += [f"{lo[k]:.6g}", f"{hi[k]:.6g}"]
            writer.writerow(row)
