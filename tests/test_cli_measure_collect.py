"""measurements/local/collect.py: which archs the project's data set measures, and a one-arch campaign."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from latency.pretrained import load_pretrained
from latency.store import MeasurementStore, public_index

COLLECT = Path(__file__).resolve().parent.parent / "measurements" / "local" / "collect.py"


@pytest.fixture(scope="module")
def collect():
    spec = importlib.util.spec_from_file_location("collect", COLLECT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("space,n,query,refs", [
    ("nb201", 300, range(900, 1900), [11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462]),
    ("fbnet", 200, range(4000, 5000), [3328, 3790, 3313, 890, 3052, 2538, 1640, 2514, 457, 2100]),
])
def test_choose_archs_follows_the_plan(collect, space, n, query, refs):
    picks = full = collect.choose_archs(space, n)
    # the plan's n archs, then the shipped predictor's own references that the plan did not draw
    shipped_refs = load_pretrained(space).references(10)
    extra = picks[n:]
    assert [a for _, a in extra] == [a for a in shipped_refs if a not in {b for _, b in picks[:n]}]
    assert {a for _, a in picks} >= set(shipped_refs)
    assert len({a for _, a in picks}) == len(picks)
    picks = picks[:n]
    assert [i for i, _ in picks[:10]] == refs
    index = public_index(space)
    assert all(index[a] == i for i, a in picks)  # every arch has public latencies
    others = [i for i, _ in picks[10:]]
    in_query = sum(i in query for i in others)
    assert in_query == round((n - 10) * 2 / 3)
    assert all(i < query.start for i in others if i not in query)
    assert collect.choose_archs(space, n) == full  # fixed seed
    assert collect.choose_archs(space, n, seed=1) != full


def test_one_arch_campaign_writes_dataset_splits_and_readme(collect, tmp_path):
    out = tmp_path / "local"
    rc = collect.main(["--limit", "1", "--spaces", "nb201", "--devices", "ort-cpu:threads=1",
                       "--out-dir", str(out), "--onnx-cache", str(tmp_path / "onnx"), "--retries", "0"])
    assert rc == 0
    header, row = list(csv.reader((out / "nb201.csv").open()))
    assert header == ["index", "arch", "ort-cpu:threads=1"]
    assert row[0] == "11982" and float(row[2]) > 0
    splits = json.loads((out / "splits.json").read_text())
    assert splits["nb201"]["reference_architectures"] == [11982]
    assert splits["nb201"]["devices_in_file"] == ["ort-cpu:threads=1"]
    readme = (out / "README.md").read_text()
    assert "$" not in readme and "onnxruntime" in readme and "ort-cpu:threads=1" in readme
    with MeasurementStore(out / "measurements.sqlite", create=False) as store:
        (m,) = store.measurements()
        assert float(row[2]) == m.median_ms
    # a rerun resumes: nothing new is measured
    assert collect.main(["--limit", "1", "--spaces", "nb201", "--devices", "ort-cpu:threads=1",
                         "--out-dir", str(out), "--onnx-cache", str(tmp_path / "onnx"), "--retries", "0"]) == 0
    with MeasurementStore(out / "measurements.sqlite", create=False) as store:
        assert len(store.measurements()) == 1
