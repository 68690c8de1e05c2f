"""The main job, end to end on this machine's CPU (a small run)."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys


def test_quickstart_measures_adapts_and_reports(tmp_path):
    db = tmp_path / "q.sqlite"
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "latency.cli", "quickstart", "--db", str(db), "--n", "4", "--samples", "5",
         "--seed", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"quickstart: device=(\S+) rho=(-?[\d.]+) within10=([\d.]+) mape=([\d.]+) n=4", last)
    assert m, last
    assert m.group(1) == "ort-cpu:threads=1"
    assert -1 <= float(m.group(2)) <= 1
    # Every measurement (5 references + 4 fresh archs, each repeated up to twice more when a busy machine flags
    # it as an outlier) is in the store, with its raw times.
    with sqlite3.connect(db) as con:
        assert con.execute("select count(distinct model_hash) from measurements").fetchone()[0] == 9
        assert 9 <= con.execute("select count(*) from measurements").fetchone()[0] <= 27
        assert con.execute("select min(length(times_ms)) from measurements").fetchone()[0] > 10
    assert (out / "scatter.png").stat().st_size > 1000
    assert (out / "predicted.csv").read_text().startswith("arch,latency_ms,lo_ms,hi_ms")
