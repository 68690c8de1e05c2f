"""The environment recorded with every Measurement."""

from __future__ import annotations

import json
import os
import platform

import pytest

from devices.environment import capture_environment, cpu_model, static_environment, usable_cores


def test_environment_has_the_fields_a_measurement_needs():
    env = capture_environment(threads=3)
    assert env["python"] == platform.python_version()
    for package in ("onnxruntime", "torch", "numpy"):
        assert env["packages"][package]
    assert env["cpu_model"] == cpu_model() and env["cpu_model"] != "unknown"
    assert env["logical_cores"] == os.cpu_count()
    assert 1 <= env["usable_cores"] == usable_cores() <= env["logical_cores"]
    assert env["threads"] == 3
    assert env["kernel"] == platform.release() and env["os"] and env["hostname"]
    assert isinstance(env["load_avg"], list) and len(env["load_avg"]) == 3
    assert "cpufreq_governor" in env  # None on VMs without cpufreq, a governor name elsewhere
    assert "gpu" not in env
    json.dumps(env)  # stored as JSON in the measurement store


def test_static_part_is_read_once_and_not_shared_mutably():
    static_environment()
    hits = static_environment.cache_info().hits
    first = capture_environment(threads=1)
    second = capture_environment(threads=2)
    assert static_environment.cache_info().hits >= hits + 2
    first["packages"]["torch"] = "edited"
    assert second["packages"]["torch"] != "edited"
    assert static_environment()["packages"]["torch"] != "edited"
    assert (first["threads"], second["threads"]) == (1, 2)


def test_gpu_fields_are_present_for_a_cuda_backend_even_without_a_gpu():
    env = capture_environment(threads=None, gpu_index=0)
    assert set(env["gpu"]) >= {"index", "name", "driver"}
    assert env["gpu"]["index"] == 0


def test_cpu_activity_sees_other_work_on_the_machine():
    import subprocess
    import sys
    import time

    from devices.environment import CpuActivity

    if not os.path.exists("/proc/stat"):
        pytest.skip("needs Linux /proc/stat")
    quiet = CpuActivity()
    time.sleep(0.3)
    got = quiet.finish()
    assert set(got) == {"steal", "others"} and all(0.0 <= v <= 1.0 for v in got.values())
    # a process spinning on one core for the whole window is other work: at least ~1/cores of the machine
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<3: pass"])
    try:
        time.sleep(0.5)
        busy = CpuActivity()
        time.sleep(1.5)
        seen = busy.finish()
    finally:
        spinner.wait()
    assert seen["others"] >= 0.8 / (os.cpu_count() or 1)
