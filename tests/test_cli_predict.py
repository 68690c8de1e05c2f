"""The predictor CLI as outside checks call it: train, references, predict; bad input is one line."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from latency.datasets import load_dataset

DATA = "measurements/hw-nas-bench"
LATENCY = [sys.executable, "-m", "latency.cli"]


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*LATENCY, *args], capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "nb201.pt"
    # Train without silver_4210r: it plays the unseen device.
    devices = "1080ti_1,1080ti_32,silver_4114,samsung_a50,pixel3,titanx_1,titanx_256,gold_6240"
    run("train", "--space", "nb201", "--data", DATA, "--devices", devices, "--out", str(out))
    return out


@pytest.fixture(scope="module")
def fb_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "fbnet.pt"
    run("train", "--space", "fbnet", "--data", DATA, "--devices", "1080ti_1,silver_4114,pixel3",
        "--out", str(out), "--param", "tau=0.01", "--param", "noise=0.05")
    return out


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_train_references_predict_end_to_end(model, tmp_path):
    data = load_dataset(DATA, "nb201")
    refs = run("references", "--model", str(model), "--n", "10").stdout.split()
    assert len(refs) == 10
    train, query = data.protocol_rows()
    assert set(refs) <= {data.archs[i] for i in train}
    target = data.column("silver_4210r")
    samples = write_csv(tmp_path / "s.csv", ["arch", "latency_ms"],
                        [[a, target[data.rows_of([a])[0]]] for a in refs])
    query_archs = [data.archs[i] for i in query[:300]]
    archs = write_csv(tmp_path / "q.csv", ["arch"], [[a] for a in query_archs])
    out = tmp_path / "pred.csv"
    run("predict", "--model", str(model), "--adapt", str(samples), "--archs", str(archs), "--out", str(out))
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["arch"] for r in rows] == query_archs
    pred = np.array([float(r["latency_ms"]) for r in rows])
    lo = np.array([float(r["lo_ms"]) for r in rows])
    hi = np.array([float(r["hi_ms"]) for r in rows])
    assert np.all(lo <= pred) and np.all(pred <= hi)
    assert spearmanr(pred, target[query[:300]])[0] > 0.9


def test_predict_any_valid_arch_and_more_samples(model, tmp_path):
    from exporters.spaces import get_space

    data = load_dataset(DATA, "nb201")
    target = data.column("silver_4210r")
    refs = run("references", "--model", str(model), "--n", "30").stdout.split()
    samples = write_csv(tmp_path / "s.csv", ["arch", "latency_ms"],
                        [[a, target[data.rows_of([a])[0]]] for a in refs])
    fresh = get_space("nb201").sample(5, seed=99)
    archs = write_csv(tmp_path / "q.csv", ["arch"], [[a] for a in fresh])
    run("predict", "--model", str(model), "--adapt", str(samples), "--archs", str(archs),
        "--out", str(tmp_path / "p.csv"))
    assert len((tmp_path / "p.csv").read_text().strip().splitlines()) == 6


def test_bad_adapt_files_are_one_line_errors(model, fb_model, tmp_path):
    data = load_dataset(DATA, "nb201")
    good = data.archs[0]
    archs = write_csv(tmp_path / "q.csv", ["arch"], [[good]])
    cases = {
        "unknown arch": ([["|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|", 3.0]], "bogus"),
        "nan": ([[good, "nan"]], "finite"),
        "negative": ([[good, -2.0]], "not positive"),
        "empty": ([], "no rows"),
    }
    for name, (rows, needle) in cases.items():
        path = write_csv(tmp_path / f"{name}.csv", ["arch", "latency_ms"], rows)
        line = one_line_error(run("predict", "--model", str(model), "--adapt", str(path), "--archs", str(archs),
                                  "--out", str(tmp_path / "o.csv"), ok=False))
        assert needle in line, (name, line)
        assert str(path) in line
    empty = tmp_path / "really-empty.csv"
    empty.write_text("")
    assert "empty" in one_line_error(run("predict", "--model", str(model), "--adapt", str(empty), "--archs",
                                         str(archs), "--out", str(tmp_path / "o.csv"), ok=False))
    # An FBNet model given NB201 archs names both spaces.
    samples = write_csv(tmp_path / "nb.csv", ["arch", "latency_ms"], [[good, 3.0]])
    line = one_line_error(run("predict", "--model", str(fb_model), "--adapt", str(samples), "--archs", str(archs),
                              "--out", str(tmp_path / "o.csv"), ok=False))
    assert "nb201" in line and "fbnet" in line
    # Not a model file at all.
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    assert "not a model file" in one_line_error(run("references", "--model", str(junk), ok=False))


def test_train_rejects_unknown_device_and_space(tmp_path):
    line = one_line_error(run("train", "--space", "nb201", "--data", DATA, "--devices", "nope",
                              "--out", str(tmp_path / "m.pt"), ok=False))
    assert "nope" in line
    line = one_line_error(run("train", "--space", "mobilenet", "--data", DATA, "--out", str(tmp_path / "m.pt"),
                              ok=False))
    assert "mobilenet" in line
    assert not (tmp_path / "m.pt").exists()
