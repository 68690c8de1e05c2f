"""``latency profile / export / devices``: real exports, real onnxruntime timings, a real SQLite store."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from latency.cli import main
from latency.commands.measure import split_device_list
from latency.store import MeasurementStore, public_index

LATENCY = str(Path(sys.executable).with_name("latency"))
ARCHS = [
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",  # cells that compute nothing
]
# Short timing so the test is about plumbing, not about precise numbers.
QUICK = ["--min-runs", "3", "--max-runs", "20", "--min-run-time", "0.02", "--max-time", "0.5", "--warmup-runs", "1"]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture
def env(onnx_cache, tmp_path):
    out = dict(os.environ)
    out["LATENCY_ONNX_CACHE"] = str(onnx_cache)
    out["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    out.pop("LATENCY_DB", None)
    out.pop("LATENCY_DEBUG", None)
    return out


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([LATENCY, *args], capture_output=True, text=True, env=env, timeout=300)


def write_archs(path: Path, archs: list[str], extra: bool = True) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["note", "arch"] if extra else ["arch"])
        for k, a in enumerate(archs):
            w.writerow([f"n{k}", a] if extra else [a])
    return path


def profile_args(archs_csv: Path, db: Path, out: Path, *extra: str) -> list[str]:
    return ["profile", "--space", "nb201", "--archs", str(archs_csv), "--device", "ort-cpu:threads=1",
            "--db", str(db), "--out", str(out), *QUICK, "--retries", "0", *extra]


def check_profile(db: Path, out: Path) -> list[dict[str, str]]:
    """The CSV and the store agree, row for row, and hold real timings."""
    rows = list(csv.DictReader(out.open()))
    assert [r["arch"] for r in rows] == ARCHS
    assert {"arch", "latency_ms", "iqr_ms", "cv", "runs", "outlier"} <= set(rows[0])
    with MeasurementStore(db, create=False) as store:
        (device,) = store.devices()
        assert device.spec.startswith("ort-cpu") and "threads=1" in device.spec
        stored = store.measurements(device=device.spec, space="nb201")
        assert [s.arch for s in stored] == ARCHS
        for row, s in zip(rows, stored, strict=True):
            assert float(row["latency_ms"]) == s.median_ms > 0
            assert int(row["runs"]) == len(s.measurement.times_ms) >= 3
            assert row["model_hash"] == s.model_hash and len(s.model_hash) == 64
            assert int(row["measurement_id"]) == s.id
            assert s.measurement.environment  # where it was measured travels with the number
        # three 3x3-conv edges per cell against cells that compute nothing: real timings, not constants
        assert stored[1].median_ms > stored[2].median_ms
    return rows


def test_profile_three_nb201_archs_then_resume_and_export(tmp_path, onnx_cache, monkeypatch):
    monkeypatch.setenv("LATENCY_ONNX_CACHE", str(onnx_cache))
    archs_csv = write_archs(tmp_path / "archs.csv", ARCHS)
    db, out = tmp_path / "m.sqlite", tmp_path / "out.csv"
    rc, stdout, err = call_main(profile_args(archs_csv, db, out))
    assert rc == 0, err
    summary = stdout.strip().splitlines()[-1]
    assert summary.startswith("profile: ") and "measured=3" in summary and "reused=0" in summary
    rows = check_profile(db, out)

    # resume: nothing is measured again, the CSV is complete from the store
    out2 = tmp_path / "out2.csv"
    rc, stdout, err = call_main(profile_args(archs_csv, db, out2, "--skip-measured"))
    assert rc == 0, err
    assert "measured=0" in stdout and "reused=3" in stdout
    rows2 = list(csv.DictReader(out2.open()))
    assert [r["source"] for r in rows2] == ["stored"] * 3
    assert [r["latency_ms"] for r in rows2] == [r["latency_ms"] for r in rows]
    with MeasurementStore(db, create=False) as store:
        assert len(store.measurements()) == 3

    # without --skip-measured every arch is measured again and kept beside the first measurement
    rc, stdout, err = call_main(profile_args(archs_csv, db, tmp_path / "out3.csv", "--remeasure"))
    assert rc == 0, err
    with MeasurementStore(db, create=False) as store:
        assert len(store.measurements()) == 6
        table = store.latency_table("nb201")

    # export in the dataset format, index from the public file, values = the store's robust latency
    exported = tmp_path / "nb201.csv"
    rc, stdout, err = call_main(["export", "--db", str(db), "--device", "ort-cpu:threads=1", "--out", str(exported)])
    assert rc == 0, err
    assert "rows=3" in stdout
    header, *body = list(csv.reader(exported.open()))
    assert header[:2] == ["index", "arch"] and len(header) == 3 and "," not in header[2]
    index = public_index("nb201")
    assert [int(r[0]) for r in body] == sorted(index[a] for a in ARCHS)
    assert {r[1]: float(r[2]) for r in body} == {a: next(iter(v.values())) for a, v in table.items()}
    # --since: only a pass taken after that moment counts
    since = ["export", "--db", str(db), "--device", "ort-cpu:threads=1", "--out", str(exported), "--since"]
    rc, stdout, err = call_main([*since, "2000-01-01T00:00"])
    assert rc == 0 and "rows=3" in stdout, err
    rc, _, err = call_main([*since, "2999-01-01T00:00"])
    assert rc != 0 and len(err.strip().splitlines()) == 1 and "since 2999-01-01T00:00" in err
    rc, _, err = call_main([*since, "yesterday"])
    assert rc != 0 and len(err.strip().splitlines()) == 1 and "ISO time" in err


@pytest.mark.slow
def test_profile_through_the_console_script(tmp_path, env):
    archs_csv = write_archs(tmp_path / "archs.csv", ARCHS)
    db, out = tmp_path / "m.sqlite", tmp_path / "out.csv"
    res = run_cli(profile_args(archs_csv, db, out), env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1].startswith("profile: ")
    check_profile(db, out)
    exported = tmp_path / "nb201.csv"
    res = run_cli(["export", "--db", str(db), "--device", "ort-cpu:threads=1", "--out", str(exported)], env)
    assert res.returncode == 0, res.stderr
    assert len(exported.read_text().splitlines()) == 4


def test_profile_one_onnx_file(tmp_path, env, onnx_cache):
    from exporters.onnx import export_arch

    model = export_arch("nb201", ARCHS[2], onnx_cache)
    db, out = tmp_path / "m.sqlite", tmp_path / "out.csv"
    rc, _, err = call_main(["profile", "--onnx", str(model.path), "--device", "ort-cpu:threads=1", "--db", str(db),
                            "--out", str(out), *QUICK])
    assert rc == 0, err
    (row,) = list(csv.DictReader(out.open()))
    assert row["arch"] == model.path.name
    with MeasurementStore(db) as store:
        (s,) = store.measurements(model_hash=model.content_hash)
        assert float(row["latency_ms"]) == s.median_ms


def call_main(args: list[str]) -> tuple[int, str, str]:
    """Run the CLI in this process (fast); returns (exit code, stdout, stderr)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def _dynamic_onnx(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "dyn", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


BAD_INPUTS = {
    # name: (files to write, args, words the one error line must contain)
    "malformed arch": ({"a.csv": f"arch\n{ARCHS[0]}\n|conv_9x9~0|+|x~0|\n"}, ["--space", "nb201", "--archs", "{a.csv}"],
                       ["a.csv", "row 2"]),
    "unknown device": ({"a.csv": f"arch\n{ARCHS[0]}\n"}, ["--space", "nb201", "--archs", "{a.csv}"],
                       ["no-such-device"]),
    "unreadable onnx": ({"m.onnx": "not a protobuf at all\n"}, ["--onnx", "{m.onnx}"], ["m.onnx"]),
    "dynamic onnx": ({"dyn.onnx": _dynamic_onnx}, ["--onnx", "{dyn.onnx}"], ["dyn.onnx", "dynamic"]),
    "empty csv": ({"e.csv": ""}, ["--space", "nb201", "--archs", "{e.csv}"], ["e.csv", "empty"]),
    "no arch column": ({"n.csv": f"name,latency\n{ARCHS[0]},1\n"}, ["--space", "nb201", "--archs", "{n.csv}"],
                       ["n.csv", "'arch'"]),
    "missing file": ({}, ["--space", "nb201", "--archs", "{absent.csv}"], ["absent.csv", "no such file"]),
    "missing onnx": ({}, ["--onnx", "{absent.onnx}"], ["absent.onnx"]),
    "unknown space": ({"a.csv": f"arch\n{ARCHS[0]}\n"}, ["--space", "nb999", "--archs", "{a.csv}"], ["nb999"]),
}


def _materialize(tmp_path: Path, files: dict, args: list[str]) -> list[str]:
    for name, content in files.items():
        if callable(content):
            content(tmp_path / name)
        else:
            (tmp_path / name).write_text(content)
    # "{name}" stands for that file in tmp_path
    return [str(tmp_path / a[1:-1]) if a.startswith("{") and a.endswith("}") else a for a in args]


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_naming_the_problem(case, tmp_path, capfd):
    files, args, words = BAD_INPUTS[case]
    device = "no-such-device" if case == "unknown device" else "ort-cpu:threads=1"
    db = tmp_path / "m.sqlite"
    rc, out, err = call_main(["profile", *_materialize(tmp_path, files, args), "--device", device,
                              "--db", str(db), "--out", str(tmp_path / "out.csv")])
    err += capfd.readouterr().err  # anything a library wrote straight to fd 2 counts as well
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], lines[0]
    # nothing was measured, so nothing was stored
    if db.exists():
        with MeasurementStore(db) as store:
            assert store.measurements() == []


def test_device_that_cannot_run_here_is_one_line(tmp_path):
    archs_csv = write_archs(tmp_path / "archs.csv", ARCHS[:1])
    rc, _, err = call_main(["profile", "--space", "nb201", "--archs", str(archs_csv), "--device", "ort-cuda",
                            "--db", str(tmp_path / "m.sqlite"), "--out", str(tmp_path / "o.csv")])
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "ort-cuda" in err and "cannot run here" in err


def test_archs_csv_from_a_spreadsheet_with_bom(tmp_path):
    from latency.datasets import read_archs

    path = tmp_path / "bom.csv"
    path.write_text("arch,acc\n" + ARCHS[0] + " ,0.9\n", encoding="utf-8-sig")
    assert read_archs(path, "nb201") == [ARCHS[0]]


def test_unknown_device_from_a_fresh_process_is_one_line(tmp_path, env):
    archs_csv = write_archs(tmp_path / "archs.csv", ARCHS[:1])
    res = run_cli(["profile", "--space", "nb201", "--archs", str(archs_csv), "--device", "quantum-tpu:qubits=9",
                   "--db", str(tmp_path / "m.sqlite"), "--out", str(tmp_path / "o.csv")], env)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "quantum-tpu" in res.stderr


def test_export_errors_are_one_line(tmp_path):
    rc, _, err = call_main(["export", "--db", str(tmp_path / "none.sqlite"), "--device", "ort-cpu",
                            "--out", str(tmp_path / "x.csv")])
    assert rc != 0 and len(err.strip().splitlines()) == 1 and "none.sqlite" in err
    assert not (tmp_path / "none.sqlite").exists()
    MeasurementStore(tmp_path / "empty.sqlite").close()
    rc, _, err = call_main(["export", "--db", str(tmp_path / "empty.sqlite"), "--device", "ort-cpu:threads=1",
                            "--out", str(tmp_path / "x.csv")])
    assert rc != 0 and len(err.strip().splitlines()) == 1 and "no measurements" in err


def test_devices_lists_what_runs_here():
    rc, out, err = call_main(["devices"])
    assert rc == 0, err
    assert "ort-cpu" in out and "yes" in out


def test_device_lists_keep_spec_options_together():
    assert split_device_list("ort-cpu:threads=2,opt=all,tvm-llvm") == ["ort-cpu:threads=2,opt=all", "tvm-llvm"]
    assert split_device_list("ssh://pi@b/ort-cpu:threads=4,python=/opt/v/bin/python, ort-cpu") == [
        "ssh://pi@b/ort-cpu:threads=4,python=/opt/v/bin/python", "ort-cpu"]
    assert split_device_list("tvm-rpc://host:9190/rk3399,tvm-llvm") == ["tvm-rpc://host:9190/rk3399", "tvm-llvm"]


def test_export_picks_the_space_or_asks_for_it(tmp_path):
    from devices.measurement import summarize
    from devices.spec import canonical_spec
    from exporters.onnx import OnnxModel

    spec = canonical_spec("ort-cpu:threads=1")
    fbnet_arch = next(a for a, i in public_index("fbnet").items() if i == 7)
    with MeasurementStore(tmp_path / "m.sqlite") as store:
        for k, (space, arch) in enumerate([("nb201", ARCHS[0]), ("fbnet", fbnet_arch)]):
            model = OnnxModel(Path(f"{k}.onnx"), f"hash{k}", "input", (1, 3, 32, 32), ["output"], 17, space, arch)
            store.add_measurement(summarize([1.0 + k, 1.2 + k], number=1, warmup_runs=0, method="t",
                                            device_spec=spec, model_hash=f"hash{k}", timestamp=k), model)
    args = ["export", "--db", str(tmp_path / "m.sqlite"), "--device", "ort-cpu:threads=1"]
    rc, _, err = call_main([*args, "--out", str(tmp_path / "both.csv")])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--space" in err and "nb201" in err
    rc, out, err = call_main([*args, "--out", str(tmp_path / "fbnet.csv")])
    assert rc == 0, err
    assert list(csv.reader((tmp_path / "fbnet.csv").open()))[1][:2] == ["7", fbnet_arch]
    rc, out, err = call_main([*args, "--space", "nb201", "--out", str(tmp_path / "x.csv")])
    assert rc == 0, err
    assert list(csv.reader((tmp_path / "x.csv").open()))[1][:2] == ["0", ARCHS[0]]


def test_flagged_measurements_are_repeated_and_every_attempt_kept(tmp_path, onnx_cache):
    from devices.measurement import MeasureConfig
    from devices.spec import get_device
    from latency.commands.measure import profile_archs

    quick = dict(min_runs=3, max_runs=10, min_run_time_s=0.01, max_time_s=0.3, warmup_runs=1)
    always_flagged = MeasureConfig(outlier_cv=0.0, **quick)  # any spread at all counts as disturbed
    never_flagged = MeasureConfig(outlier_cv=10.0, outlier_frac=1.0, **quick)
    device = get_device("ort-cpu:threads=1")
    arch = ARCHS[0]
    with MeasurementStore(tmp_path / "m.sqlite") as store:
        summary = profile_archs("nb201", [arch], device, store, config=always_flagged, onnx_dir=onnx_cache,
                                retries=2)
        stored = store.measurements(device=device.spec, space="nb201", arch=arch)
        assert len(stored) == 3 and all(s.outlier for s in stored) and summary.retried == 2
        assert summary.rows[0].measurement_id == stored[-1].id
        # resuming does not exceed 1 + retries attempts, and a larger budget measures the remainder
        again = profile_archs("nb201", [arch], device, store, config=always_flagged, onnx_dir=onnx_cache,
                              retries=2, skip_measured=True)
        assert again.measured == 0 and len(store.measurements(device=device.spec)) == 3
        profile_archs("nb201", [arch], device, store, config=always_flagged, onnx_dir=onnx_cache, retries=3,
                      skip_measured=True)
        assert len(store.measurements(device=device.spec)) == 4
        # a clean measurement ends the retries at once and is what a resumed run reuses
        clean = profile_archs("nb201", [arch], device, store, config=never_flagged, onnx_dir=onnx_cache,
                              retries=5)
        assert clean.retried == 0 and len(store.measurements(device=device.spec)) == 5
        reused = profile_archs("nb201", [arch], device, store, config=always_flagged, onnx_dir=onnx_cache,
                               retries=5, skip_measured=True)
        assert reused.rows[0].source == "stored" and reused.rows[0].measurement_id == clean.rows[0].measurement_id


@pytest.mark.parametrize("args,needle", [
    (["profile", "--space", "nb201"], "latency profile: Missing option '--device'"),
    (["profile", "--device", "ort-cpu", "--out", "x.csv", "--bogus"], "No such option: --bogus"),
    (["nosuch"], "No such command 'nosuch'"),
    (["quickstart", "--n", "abc"], "latency quickstart: Invalid value for '--n'"),
])
def test_usage_errors_are_one_line_too(args, needle):
    rc, out, err = call_main(args)
    assert rc == 2 and err.count("\n") == 1 and needle in err and out == ""


def test_help_still_prints():
    rc, out, _ = call_main(["--help"])
    assert rc == 0 and "profile" in out and "quickstart" in out
    rc, out, _ = call_main([])
    assert rc == 0 and "Usage" in out
