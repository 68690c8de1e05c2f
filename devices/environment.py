"""The environment recorded with every Measurement: runtimes, CPU, OS, and what the machine was doing.

The static part (versions, CPU model, kernel, hostname) is read once per process; only the load average and
the frequency governor are read at each call, so capturing costs microseconds and can sit inside a measure.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

# Distribution names to try for each runtime, in order (GPU wheels and source builds are named differently).
_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "tvm": ("apache-tvm", "tvm", "mlc-ai-nightly", "mlc-ai-nightly-cu121"),
    "torch": ("torch",),
    "numpy": ("numpy",),
    "onnx": ("onnx",),
}
_GOVERNOR = "/sys/devices/system/cpu/cpu{}/cpufreq/scaling_governor"


def usable_cores() -> int:
    """Logical cores this process may run on (its affinity mask), the default thread count of CPU backends."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def static_environment() -> dict[str, Any]:
    """What does not change while the process runs; cached."""
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": _package_versions(),
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count() or 1,
        "usable_cores": usable_cores(),
        "physical_cores": _physical_cores(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "kernel": platform.release(),
        "hostname": socket.gethostname(),
        "memory_gb": _memory_gb(),
    }


def capture_environment(*, threads: int | None = None, gpu_index: int | None = None) -> dict[str, Any]:
    """The environment of one measurement: the static part, the thread setting used, the load average and
    frequency governor now, and for a CUDA backend (``gpu_index``) the GPU name and driver."""
    env = dict(static_environment())
    env["packages"] = dict(env["packages"])
    env["threads"] = threads
    env["cpufreq_governor"] = cpufreq_governor()
    try:
        env["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        env["load_avg"] = None
    if gpu_index is not None:
        env["gpu"] = gpu_info(gpu_index)
    return env


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (x86 'model name', ARM boards' 'Model' / 'Hardware')."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                key = key.strip()
                if sep and value.strip() and key not in fields:
                    fields[key] = value.strip()
    except OSError:
        pass
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if key in fields:
            return fields[key]
    return platform.processor() or platform.machine() or "unknown"


def cpufreq_governor() -> str | None:
    """The frequency governor of the first CPU, or None where cpufreq is not exposed (VMs, containers)."""
    cpu = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    try:
        with open(_GOVERNOR.format(cpu), encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


@functools.lru_cache(maxsize=8)
def gpu_info(index: int = 0) -> dict[str, Any]:
    """Name, memory and driver of CUDA GPU ``index``; fields that cannot be read are None."""
    info: dict[str, Any] = {"index": index, "name": None, "driver": None, "memory_gb": None, "cuda": None}
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--id={index}", "--query-gpu=name,driver_version,memory.total",
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip().splitlines()
        if out:
            name, driver, mem = (part.strip() for part in out[0].split(","))
            info.update(name=name, driver=driver, memory_gb=round(float(mem) / 1024, 1))
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    if "torch" in sys.modules:  # only when a torch backend already paid for the import
        torch = sys.modules["torch"]
        try:
            if torch.cuda.is_available():
                info["name"] = info["name"] or torch.cuda.get_device_name(index)
                info["cuda"] = torch.version.cuda
        except Exception:  # noqa: BLE001 - a broken CUDA install only means fewer fields
            pass
    return info


def _package_versions() -> dict[str, str]:
    versions = {}
    for name, dists in _DISTRIBUTIONS.items():
        for dist in dists:
            try:
                versions[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            module = sys.modules.get(name)
            if module is not None and getattr(module, "__version__", None):
                versions[name] = str(module.__version__)
    return versions


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except Exception:  # noqa: BLE001 - psutil missing or unsupported platform
        return None


def _memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001
        return None


class CpuActivity:
    """What the whole machine did while one measurement ran, from ``/proc/stat`` (Linux; empty elsewhere):
    ``steal`` = share of CPU time the hypervisor gave to other guests, ``others`` = share of the machine's CPU
    time busy with work other than this process. A latency taken while either is high is suspect even when
    its own spread is small."""

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[list[int], float, float] | None:
        try:
            with open("/proc/stat") as fh:
                fields = fh.readline().split()
        except OSError:
            return None
        if not fields or fields[0] != "cpu":
            return None
        return [int(v) for v in fields[1:9]], time.process_time(), time.perf_counter()

    def finish(self) -> dict[str, float]:
        end = self._snapshot()
        if self._start is None or end is None:
            return {}
        (t0, cpu0, w0), (t1, cpu1, w1) = self._start, end
        delta = [b - a for a, b in zip(t0, t1, strict=True)]
        total = sum(delta)
        if total <= 0 or w1 <= w0:
            return {}
        # user nice system idle iowait irq softirq steal
        idle = delta[3] + delta[4]
        steal = delta[7]
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy_s = (total - idle - steal) / tick
        ours_s = cpu1 - cpu0
        capacity_s = total / tick
        return {"steal": round(steal / total, 4), "others": round(max(0.0, busy_s - ours_s) / capacity_s, 4)}

