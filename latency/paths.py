"""Default locations: the measurement store, the cache of exported ONNX files, the data this project ships.

Environment variables win over the XDG cache directory, which wins over ``~/.cache``; a path given on the
command line wins over all of them.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_DIR = "hw-latency"
DB_FILENAME = "measurements.sqlite"

# The repository's own data folder; code reads this copy, never the shared one it was made from.
MEASUREMENTS_DIR = Path(__file__).resolve().parent.parent / "measurements"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/hw-latency`` or ``~/.cache/hw-latency`` (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    root = Path(base).expanduser() if base else Path.home() / ".cache"
    return root / APP_DIR


def default_db_path() -> Path:
    """``$LATENCY_DB``, else the measurement store inside :func:`cache_dir`."""
    explicit = os.environ.get("LATENCY_DB", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    return cache_dir() / DB_FILENAME


def onnx_cache_dir(space: str | None = None) -> Path:
    """Where exported ONNX files are kept between runs: ``$LATENCY_ONNX_CACHE``, else ``<cache_dir>/onnx``;
    one sub-folder per search space when ``space`` is given."""
    explicit = os.environ.get("LATENCY_ONNX_CACHE", "").strip()
    root = Path(explicit).expanduser() if explicit else cache_dir() / "onnx"
    return root / space if space else root


def public_dataset_dir() -> Path:
    """The HW-NAS-Bench latencies shipped with the project (``measurements/hw-nas-bench``)."""
    return MEASUREMENTS_DIR / "hw-nas-bench"
