"""The SQLite measurement store: round trip, idempotence, WAL, concurrent writers, dataset CSV export."""

from __future__ import annotations

import csv
import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from devices.measurement import Measurement, summarize
from exporters.fbnet import arch as fbnet_arch
from exporters.onnx import OnnxModel
from latency.errors import InputError
from latency.paths import public_dataset_dir
from latency.store import NEW_INDEX_START, SCHEMA_VERSION, MeasurementStore, public_index

NB201_ROW0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
NB201_ROW1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def model(space: str | None, arch: str | None, content_hash: str) -> OnnxModel:
    return OnnxModel(path=Path(f"/tmp/{content_hash}.onnx"), content_hash=content_hash, input_name="input",
                     input_shape=(1, 3, 32, 32), output_names=["output"], opset=17, space=space, arch=arch)


def measurement(times: list[float], *, device: str = "ort-cpu:opt=all;threads=1", model_hash: str = "h0",
                timestamp: float = 1000.0, outlier: bool | None = None) -> Measurement:
    m = summarize(times, number=4, warmup_runs=3, method="test-blocks", device_spec=device,
                  device={"backend": device.split(":")[0]}, environment={"cpu": "test", "threads": 1},
                  model_hash=model_hash, config={"min_runs": 10}, timestamp=timestamp, wall_s=0.5)
    if outlier is not None:
        m.outlier = outlier
    return m


@pytest.fixture
def store(tmp_path):
    with MeasurementStore(tmp_path / "m.sqlite") as s:
        yield s


def test_round_trip_keeps_every_field(store):
    m = measurement([1.0, 1.1, 0.9, 1.05, 0.95, 1.02], model_hash="abc")
    mid = store.add_measurement(m, model("nb201", NB201_ROW0, "abc"))
    (got,) = store.measurements()
    assert got.id == mid
    assert (got.space, got.arch) == ("nb201", NB201_ROW0)
    assert got.measurement.to_dict() == m.to_dict()
    assert [d.spec for d in store.devices()] == [m.device_spec]
    assert store.devices()[0].descriptor == {"backend": "ort-cpu"}
    assert store.devices()[0].n_measurements == 1


def test_same_measurement_twice_is_stored_once(store):
    m = measurement([2.0, 2.1, 1.9], model_hash="abc")
    first = store.add_measurement(m, model("nb201", NB201_ROW0, "abc"))
    second = store.add_measurement(Measurement.from_dict(m.to_dict()), model("nb201", NB201_ROW0, "abc"))
    assert first == second
    assert len(store.measurements()) == 1
    # a new measurement of the same model on the same device is a new row
    store.add_measurement(measurement([2.0, 2.1, 1.9], model_hash="abc", timestamp=1001.0))
    assert len(store.measurements()) == 2


def test_filters_by_device_space_and_arch(store):
    store.add_measurement(measurement([1.0], model_hash="a"), model("nb201", NB201_ROW0, "a"))
    store.add_measurement(measurement([2.0], model_hash="b"), model("nb201", NB201_ROW1, "b"))
    store.add_measurement(measurement([3.0], model_hash="b", device="tvm-llvm"), model("nb201", NB201_ROW1, "b"))
    assert len(store.measurements(device="tvm-llvm")) == 1
    assert [s.median_ms for s in store.measurements(space="nb201", arch=NB201_ROW1)] == [2.0, 3.0]
    assert store.measurements(space="fbnet") == []
    with pytest.raises(InputError, match="needs the space"):
        store.measurements(arch=NB201_ROW0)


def test_one_hash_with_two_names_is_found_under_both(store):
    store.add_measurement(measurement([1.0], model_hash="same"), model("nb201", NB201_ROW0, "same"))
    store.add_model(model("nb201", NB201_ROW1, "same"))
    assert [s.arch for s in store.measurements(space="nb201", arch=NB201_ROW1)] == [NB201_ROW1]
    assert set(store.latency_table("nb201")) == {NB201_ROW0, NB201_ROW1}


def test_model_hash_mismatch_is_refused(store):
    with pytest.raises(InputError, match="model"):
        store.add_measurement(measurement([1.0], model_hash="a"), model("nb201", NB201_ROW0, "b"))
    assert store.measurements() == []


def test_wal_mode_is_on_and_persistent(tmp_path):
    path = tmp_path / "m.sqlite"
    with MeasurementStore(path) as s:
        assert s.journal_mode == "wal"
        assert s.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "m.sqlite"
    MeasurementStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version(version, applied) VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(InputError, match="schema version"):
        MeasurementStore(path)


def test_bad_paths_give_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="no measurement store"):
        MeasurementStore(tmp_path / "absent.sqlite", create=False)
    assert not (tmp_path / "absent.sqlite").exists()
    junk = tmp_path / "junk.sqlite"
    junk.write_text("this is not a database\n" * 100)
    with pytest.raises(InputError, match="junk.sqlite"):
        MeasurementStore(junk)


def _write_many(path: str, worker: int, n: int, start) -> None:
    with MeasurementStore(path, timeout_s=60) as s:
        start.wait(60)  # both writers begin together, so their transactions really interleave
        for k in range(n):
            h = f"w{worker}-{k % 5}"
            s.add_measurement(measurement([1.0 + k, 1.1 + k], model_hash=h, timestamp=worker * 1e6 + k),
                              model("nb201", f"arch-{h}", h))
            time.sleep(0.001)  # as between real measurements: lets the other writer in


def test_two_processes_write_concurrently(tmp_path):
    path = str(tmp_path / "m.sqlite")
    MeasurementStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_write_many, args=(path, w, 150, start)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with MeasurementStore(path) as s:
        rows = s.measurements()
        assert len(rows) == 300
        assert len({r.id for r in rows}) == 300
        assert len(s.archs("nb201")) == 10
        writer_order = [r.model_hash[1] for r in sorted(rows, key=lambda r: r.id)]
        assert sum(a != b for a, b in zip(writer_order, writer_order[1:], strict=False)) > 2, "writes did not interleave"


def test_latency_table_skips_outliers_unless_all_are(store):
    m0 = model("nb201", NB201_ROW0, "a")
    store.add_measurement(measurement([1.0], model_hash="a", timestamp=1, outlier=False), m0)
    store.add_measurement(measurement([3.0], model_hash="a", timestamp=2, outlier=False), m0)
    store.add_measurement(measurement([50.0], model_hash="a", timestamp=3, outlier=True), m0)
    m1 = model("nb201", NB201_ROW1, "b")
    store.add_measurement(measurement([4.0], model_hash="b", timestamp=4, outlier=True), m1)
    store.add_measurement(measurement([6.0], model_hash="b", timestamp=5, outlier=True), m1)
    table = store.latency_table("nb201", ["ort-cpu:opt=all;threads=1"])
    assert table == {NB201_ROW0: {"ort-cpu:opt=all;threads=1": 2.0}, NB201_ROW1: {"ort-cpu:opt=all;threads=1": 5.0}}
    assert store.latency("ort-cpu:opt=all;threads=1", "nb201", NB201_ROW0) == 2.0
    assert store.latency("tvm-llvm", "nb201", NB201_ROW0) is None


def test_export_csv_uses_public_index_and_stored_medians(store, tmp_path):
    new_archs = [a for a in fbnet_arch.sample(30, seed=7) if a not in public_index("fbnet")][:2]
    public = public_index("fbnet")
    known = next(a for a, i in public.items() if i == 3328)
    cpu1, cpu2 = "ort-cpu:opt=all,threads=1", "ort-cpu:opt=all,threads=2"
    # stored out of index order, the second new arch first
    plan = [(new_archs[1], cpu1, [7.0, 7.5]), (known, cpu1, [3.0, 3.25]), (known, cpu2, [2.0]),
            (new_archs[0], cpu2, [9.0])]
    for k, (arch, dev, times) in enumerate(plan):
        h = f"h-{arch}"
        store.add_measurement(measurement(times, device=dev, model_hash=h, timestamp=k), model("fbnet", arch, h))
    out = tmp_path / "sub" / "fbnet.csv"
    n = store.export_csv(out, "fbnet", [cpu1, cpu2])
    assert n == 3
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["index", "arch", "ort-cpu:opt=all;threads=1", "ort-cpu:opt=all;threads=2"]
    body = {r[1]: r for r in rows[1:]}
    assert body[known][0] == "3328"
    assert body[new_archs[1]][0] == str(NEW_INDEX_START)
    assert body[new_archs[0]][0] == str(NEW_INDEX_START + 1)
    assert [r[0] for r in rows[1:]] == sorted((r[0] for r in rows[1:]), key=int)
    table = store.latency_table("fbnet", [cpu1, cpu2])
    assert float(body[known][2]) == table[known][cpu1] == 3.125
    assert float(body[known][3]) == table[known][cpu2] == 2.0
    assert body[new_archs[1]][3] == ""  # not measured there: empty cell
    assert float(body[new_archs[0]][3]) == 9.0
    # only the archs asked for
    assert store.export_csv(out, "fbnet", [cpu1, cpu2], archs=[known]) == 1
    assert [r[1] for r in csv.reader(out.open())][1:] == [known]


def test_public_index_is_read_once(tmp_path):
    first = public_index("nb201")
    assert len(first) == 15625
    assert first[NB201_ROW1] == 1
    assert public_index("nb201") is first
    assert public_index("no-such-space") == {}
    assert public_dataset_dir().name == "hw-nas-bench"


def test_since_counts_only_a_fresh_pass_and_keeps_the_old_one(store, tmp_path):
    spec = "ort-cpu:opt=all;threads=1"
    store.add_measurement(measurement([5.0, 5.1, 4.9], timestamp=1000.0, model_hash="a"), model("nb201", NB201_ROW0, "a"))
    store.add_measurement(measurement([2.0, 2.1, 1.9], timestamp=2000.0, model_hash="a"), model("nb201", NB201_ROW0, "a"))
    assert len(store.measurements(device=spec)) == 2
    (fresh,) = store.measurements(device=spec, space="nb201", arch=NB201_ROW0, since=1500.0)
    assert fresh.median_ms == pytest.approx(2.0)
    assert store.latency_table("nb201", since=1500.0)[NB201_ROW0][spec] == pytest.approx(2.0)
    assert store.latency_table("nb201")[NB201_ROW0][spec] == pytest.approx(3.5)  # both passes
    assert store.latency_table("nb201", since=2500.0) == {}
    out = tmp_path / "nb201.csv"
    store.export_csv(out, "nb201", [spec], since=1500.0)
    (_, row) = list(csv.reader(out.open()))
    assert float(row[2]) == pytest.approx(2.0)
