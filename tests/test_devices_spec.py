"""Device specs: canonical forms, column names, one-line errors, the backend table."""

from __future__ import annotations

import pytest

from devices.base import DeviceError, DeviceSpecError
from devices.environment import usable_cores
from devices.spec import (
    available_devices,
    canonical_spec,
    column_name,
    get_device,
    list_backends,
    parse_spec,
)

CORES = usable_cores()


@pytest.mark.parametrize(
    "variants",
    [
        ["ort-cpu", f"ort-cpu:threads={CORES}", f"ort-cpu:opt=all,threads={CORES}", " ORT-CPU : opt=ALL ",
         f"ort-cpu:threads={CORES};opt=all"],
        ["ort-cpu:threads=1,opt=basic", "ort-cpu:opt=basic,threads=1", "ort-cpu:opt=basic;threads=1"],
        ["tvm-llvm", "tvm-llvm:target=host", f"tvm-llvm:threads={CORES},target=host"],
        ["torch-cuda", "torch-cuda:device=0"],
        ["ort-cuda:device=1,opt=extended", "ort-cuda:opt=extended,device=1"],
        ["ssh://pi@board/ort-cpu:threads=4", "ssh://pi@Board:22/ort-cpu:threads=4,opt=all"],
        ["tvm-rpc://tracker/rasp4", "tvm-rpc://tracker:9190/rasp4", "tvm-rpc://tracker:9190/rasp4:target=llvm"],
    ],
)
def test_the_same_device_always_canonicalises_the_same_way(variants):
    forms = {canonical_spec(v) for v in variants}
    assert len(forms) == 1, forms
    (form,) = forms
    assert canonical_spec(form) == form  # canonical form is a fixed point


def test_machine_dependent_defaults_are_filled_and_plain_defaults_dropped():
    assert canonical_spec("ort-cpu") == f"ort-cpu:threads={CORES}"
    assert canonical_spec("ort-cpu:opt=disable") == f"ort-cpu:opt=disable,threads={CORES}"
    assert canonical_spec("torch-cpu") == f"torch-cpu:threads={CORES}"
    assert canonical_spec("ort-cuda") == "ort-cuda"
    assert canonical_spec("tvm-cuda:arch=sm_80") == "tvm-cuda:arch=sm_80"
    # On an SSH board the core count is the board's: left as given unless the caller knows it.
    assert canonical_spec("ssh://pi@board/ort-cpu") == "ssh://pi@board/ort-cpu"
    assert canonical_spec("ssh://pi@board/ort-cpu", cores=4) == "ssh://pi@board/ort-cpu:threads=4"
    assert canonical_spec("ssh://pi@b:2222/ort-cpu:python=/opt/venv/bin/python,threads=4") == (
        "ssh://pi@b:2222/ort-cpu:python=/opt/venv/bin/python,threads=4")
    assert canonical_spec("tvm-rpc://10.0.0.2:9000/rk3399") == "tvm-rpc://10.0.0.2:9000/rk3399"


def test_parse_spec_exposes_typed_options_and_remote_parts():
    spec = parse_spec("ort-cpu:threads=1")
    assert spec.backend == "ort-cpu" and spec.options == {"threads": 1, "opt": "all"}
    ssh = parse_spec("ssh://pi@board:2200/tvm-llvm:threads=4,python=/usr/bin/python3")
    assert (ssh.backend, ssh.user, ssh.host, ssh.port) == ("ssh", "pi", "board", 2200)
    assert ssh.inner.backend == "tvm-llvm" and ssh.inner.options["python"] == "/usr/bin/python3"
    rpc = parse_spec("tvm-rpc://tracker:9191/rasp4")
    assert (rpc.backend, rpc.host, rpc.port, rpc.key) == ("tvm-rpc", "tracker", 9191, "rasp4")
    assert parse_spec(spec) is spec
    assert parse_spec("ort-cpu") == parse_spec(f"ort-cpu:threads={CORES}")


def test_column_name_swaps_commas_and_parses_back():
    col = column_name("ort-cpu:threads=1,opt=basic")
    assert col == "ort-cpu:opt=basic;threads=1"
    assert "," not in col
    assert canonical_spec(col) == canonical_spec("ort-cpu:threads=1,opt=basic")


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("", ["empty", "ort-cpu"]),
        ("ort-gpu", ["ort-gpu", "unknown backend", "ort-cpu", "tvm-llvm"]),
        ("ort-cpu:thread=2", ["thread", "unknown option", "threads", "opt"]),
        ("ort-cpu:threads=0", ["threads", "positive integer"]),
        ("ort-cpu:threads=two", ["threads", "two"]),
        ("ort-cpu:opt=fast", ["opt", "fast", "disable, basic, extended, all"]),
        ("ort-cpu:threads", ["threads", "key=value"]),
        ("ort-cpu:threads=1,threads=2", ["threads", "twice"]),
        ("ort-cpu:python=/usr/bin/python3", ["python", "ssh://"]),
        ("torch-cuda:device=-1", ["device", "non-negative"]),
        ("tvm-llvm:target=a b", ["target"]),
        ("ssh://board/ort-cpu", ["user"]),
        ("ssh://pi@board", ["ssh://user@host"]),
        ("ssh://pi@board:0/ort-cpu", ["port"]),
        ("ssh://pi@board/tvm-rpc://t/k", ["local"]),
        ("ssh://pi@board/onnx-cpu", ["onnx-cpu", "unknown backend"]),
        ("tvm-rpc://tracker:9190/", ["tvm-rpc://host"]),
        ("tvm-rpc://tracker:http/k", ["port"]),
        ("http://host/ort-cpu", ["http://", "scheme"]),
    ],
)
def test_bad_specs_give_one_line_errors_naming_the_problem(spec, names):
    with pytest.raises(DeviceSpecError) as err:
        parse_spec(spec)
    message = str(err.value)
    assert "\n" not in message
    for name in names:
        assert name in message, (name, message)


def test_get_device_builds_the_backend_and_refuses_remote_backends_plainly():
    device = get_device("ort-cpu:threads=1")
    assert device.spec == "ort-cpu:threads=1"
    assert type(device).__name__ == "OrtCpuDevice"
    for spec in ("ssh://pi@board/ort-cpu", "tvm-rpc://tracker:9190/rasp4"):
        with pytest.raises(DeviceError, match="not implemented yet") as err:
            get_device(spec)
        assert "\n" not in str(err.value)
    with pytest.raises(DeviceSpecError):
        get_device("nope")


def test_list_backends_names_every_backend_and_its_options():
    backends = {b.name: b for b in list_backends()}
    assert set(backends) == {"ort-cpu", "ort-cuda", "tvm-llvm", "tvm-cuda", "torch-cpu", "torch-cuda", "ssh",
                             "tvm-rpc"}
    assert {o.name for o in backends["ort-cpu"].options} == {"threads", "opt"}
    assert backends["tvm-llvm"].implemented and not backends["ssh"].implemented
    assert all(o.describe() for b in backends.values() for o in b.options)


def test_available_devices_says_what_runs_here_and_why_not_otherwise():
    rows = {row.spec.split(":")[0].split("://")[0]: row for row in available_devices()}
    assert rows["ort-cpu"].ok and rows["ort-cpu"].spec == canonical_spec("ort-cpu")
    assert rows["torch-cpu"].ok
    for row in rows.values():
        assert row.why and "\n" not in row.why
        spec, ok, why = row  # a plain (spec, ok, why) tuple for callers
        assert isinstance(ok, bool)
    assert not rows["ssh"].ok and "not implemented" in rows["ssh"].why
