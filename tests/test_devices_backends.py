"""The local backends measure real ONNX models: onnxruntime and TVM really compile and run them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from devices.base import DeviceError
from devices.local import resolve_model
from devices.measurement import MeasureConfig
from devices.spec import get_device
from exporters.errors import ExportError
from exporters.onnx import export_module

# Short but real: enough blocks for a median, little enough to keep the default test run fast.
FAST = MeasureConfig(warmup_runs=1, warmup_s=0.0, min_runs=5, max_runs=30, min_run_time_s=0.05, max_time_s=3.0)


def _small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())


def _big() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    small = export_module(_small(), (1, 3, 16, 16), root / "small.onnx")
    big = export_module(_big(), (1, 3, 32, 32), root / "big.onnx")
    return small, big


@pytest.fixture(scope="module")
def tvm_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("tvm-cache")
    before = os.environ.get("LATENCY_TVM_CACHE")
    os.environ["LATENCY_TVM_CACHE"] = str(path)
    yield path
    if before is None:
        os.environ.pop("LATENCY_TVM_CACHE", None)
    else:
        os.environ["LATENCY_TVM_CACHE"] = before


def _check_measurement(m, device, model, threads):
    assert m.median_ms > 0 and m.min_ms > 0 and m.runs >= FAST.min_runs
    assert m.device_spec == device.spec
    assert m.model_hash == model.content_hash
    assert m.device["backend"] == device.backend and m.device["cpu_model"]
    assert m.environment["threads"] == threads
    assert m.environment["cpu_model"] and m.environment["packages"]["numpy"]
    if os.path.exists("/proc/stat"):  # what else ran meanwhile travels with the number
        assert set(m.environment["cpu_during"]) == {"steal", "others"}
    assert m.config == FAST.to_dict()
    assert m.number >= 1 and m.warmup_runs >= 1
    assert m.timestamp > 0 and m.wall_s > 0


def test_ort_cpu_measures_a_real_model(models):
    small, _ = models
    device = get_device("ort-cpu:threads=1")
    assert device.available()[0]
    m = device.measure(small, FAST)
    _check_measurement(m, device, small, threads=1)
    assert m.device["runtime"] == "onnxruntime"
    # a path works as well, and names the same model
    assert device.measure(str(small.path), FAST).model_hash == small.content_hash


def test_ort_cpu_builds_a_session_once_per_model(models):
    small, _ = models
    device = get_device("ort-cpu:threads=1,opt=basic")
    first = device.load(small)
    assert device.load(resolve_model(str(small.path))) is first
    device.measure(small, FAST)
    assert device.load(small) is first


def test_torch_cpu_measures_the_module_and_restores_threads(models):
    small, _ = models
    device = get_device("torch-cpu:threads=1")
    before = torch.get_num_threads()
    training = small.module.training
    m = device.measure(small, FAST)
    _check_measurement(m, device, small, threads=1)
    assert torch.get_num_threads() == before
    assert small.module.training == training


def test_torch_cpu_refuses_a_path_without_its_module(models):
    small, _ = models
    with pytest.raises(DeviceError, match="nn.Module") as err:
        get_device("torch-cpu:threads=1").measure(str(small.path), FAST)
    assert "\n" not in str(err.value)


def test_tvm_llvm_compiles_once_and_measures(models, tvm_cache):
    small, _ = models
    device = get_device("tvm-llvm:threads=1")
    ok, why = device.available()
    assert ok, why
    m = device.measure(small, FAST)
    _check_measurement(m, device, small, threads=1)
    assert m.device["target"]["kind"] == "llvm"
    assert "time_evaluator" in m.method
    first = device.load(small)
    assert first.details["compile_cache"] == "miss"
    assert len(list(tvm_cache.glob("*.so"))) == 1
    # A fresh device object (a new process, in effect) finds the library on disk instead of compiling.
    again = get_device("tvm-llvm:threads=1").load(small)
    assert again.details["compile_cache"] == "hit"


def test_tvm_llvm_recompiles_a_damaged_cache_entry(tmp_path, tvm_cache):
    # A model of its own: a library this process has loaded stays mapped, and must not be damaged under it.
    torch.manual_seed(1)
    model = export_module(nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU()), (1, 3, 8, 8), tmp_path / "m.onnx")
    device = get_device("tvm-llvm:threads=1")
    library = device._library_path(model, device.target())
    library.parent.mkdir(parents=True, exist_ok=True)
    library.write_bytes(b"not a shared library")
    loaded = device.load(model)
    assert loaded.details["compile_cache"] == "miss"
    assert library.stat().st_size > 100
    assert device.measure(model, FAST).median_ms > 0


def test_ort_and_tvm_rank_a_cheap_and_an_expensive_model_the_same_way(models, tvm_cache):
    small, big = models
    for spec in ("ort-cpu:threads=1", "tvm-llvm:threads=1"):
        device = get_device(spec)
        cheap, costly = device.measure(small, FAST), device.measure(big, FAST)
        assert costly.median_ms > 3 * cheap.median_ms, (spec, cheap.median_ms, costly.median_ms)


def test_a_file_that_is_not_onnx_is_a_one_line_export_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    for spec in ("ort-cpu:threads=1", "tvm-llvm:threads=1"):
        with pytest.raises(ExportError) as err:
            get_device(spec).measure(bad, FAST)
        assert str(bad) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ExportError, match="no such ONNX file"):
        get_device("ort-cpu:threads=1").measure(tmp_path / "missing.onnx", FAST)
    with pytest.raises(DeviceError, match="OnnxModel or a path"):
        get_device("ort-cpu:threads=1").measure(42, FAST)


@pytest.mark.parametrize("spec", ["ort-cuda", "tvm-cuda", "torch-cuda"])
def test_cuda_backends_say_why_they_cannot_run_here(spec, models):
    device = get_device(spec)
    ok, why = device.available()
    if ok:
        pytest.skip(f"{spec} can run here; see the gpu-marked tests")
    assert why and "\n" not in why
    with pytest.raises(DeviceError, match="cannot run here") as err:
        device.measure(models[0], FAST)
    assert "\n" not in str(err.value)


@pytest.mark.gpu
@pytest.mark.parametrize("spec", ["ort-cuda", "tvm-cuda", "torch-cuda"])
def test_cuda_backends_measure_a_real_model(spec, models, tvm_cache):
    small, big = models
    device = get_device(spec)
    ok, why = device.available()
    assert ok, why
    m = device.measure(big, FAST)
    assert m.median_ms > 0 and m.device_spec == device.spec
    assert m.environment["gpu"]["name"]
    assert device.measure(small, FAST).median_ms < m.median_ms


def test_resolve_model_caches_validation_of_an_unchanged_file(models, tmp_path):
    small, _ = models
    first = resolve_model(str(small.path))
    assert resolve_model(Path(small.path)) is first
    assert first.content_hash == small.content_hash
