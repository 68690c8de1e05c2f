"""Device spec strings: parsing, the canonical form that names a device in the store, and the backend table.

Grammar (DESIGN.md)::

    local   := NAME [":" OPTION ("," OPTION)*]        OPTION := KEY "=" VALUE   (";" also separates options)
    ssh     := "ssh://" USER "@" HOST [":" PORT] "/" local     (local may add python=PATH, the board's Python)
    tvm-rpc := "tvm-rpc://" HOST [":" PORT] "/" KEY [":" OPTION ("," OPTION)*]

Canonical form: options sorted by key, options equal to their default dropped, except machine-dependent
defaults (``threads`` = the cores this process may use), which are written out, so the same spec always names
the same device: on a 2-core box ``ort-cpu`` and ``ort-cpu:opt=all,threads=2`` are both ``ort-cpu:threads=2``.
Inside ``ssh://`` the board's core count is unknown here, so ``threads`` stays as given (see ``cores``).
Default ports (22, 9190) are dropped. ``column_name`` swaps ',' for ';' so device columns can be listed
comma-separated; ``parse_spec`` reads both.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from devices.base import Device, DeviceError, DeviceSpecError
from devices.environment import usable_cores

_TOKEN = re.compile(r"^[A-Za-z0-9_.+\-]+$")
_PATH = re.compile(r"^/[^\s,;:=]*$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)$")
_USER = re.compile(r"^[A-Za-z0-9_.\-]+$")
SSH_DEFAULT_PORT = 22
TVM_RPC_DEFAULT_PORT = 9190


@dataclass(frozen=True)
class Option:
    """One option a backend takes. ``machine_default`` computes a default that depends on the machine; such
    defaults are written into the canonical spec instead of being dropped."""

    name: str
    kind: str  # "count" (int >= 1), "index" (int >= 0), "choice", "token" or "path"
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    machine_default: Callable[[], Any] | None = None

    def convert(self, value: str, spec: str) -> Any:
        def bad(rule: str) -> DeviceSpecError:
            return DeviceSpecError(f"device spec {spec!r}: option {self.name}={value!r} must be {rule}")

        if self.kind in ("count", "index"):
            lowest = 1 if self.kind == "count" else 0
            if not re.fullmatch(r"[0-9]+", value) or int(value) < lowest:
                raise bad("a positive integer" if lowest else "a non-negative integer")
            return int(value)
        if self.kind == "choice":
            if value.lower() not in self.choices:
                raise bad(f"one of {', '.join(self.choices)}")
            return value.lower()
        if self.kind == "path":
            if not _PATH.match(value):
                raise bad("an absolute path without spaces, ',', ';', ':' or '='")
            return value
        if not _TOKEN.match(value):
            raise bad("a name of letters, digits and _ . + -")
        return value

    def describe(self) -> str:
        if self.machine_default is not None:
            default = "this machine's usable cores" if self.name == "threads" else "detected"
        else:
            default = self.default
        values = "|".join(self.choices) if self.choices else self.kind
        return f"{self.name}=<{values}> (default {default}): {self.help}"


_THREADS = Option("threads", "count", help="intra-op threads", machine_default=usable_cores)
_ORT_OPT = Option("opt", "choice", "all", "onnxruntime graph optimisation level",
                  ("disable", "basic", "extended", "all"))
_GPU = Option("device", "index", 0, "CUDA device index")
_PYTHON = Option("python", "path", None, "the board's Python interpreter (ssh:// only)")


@dataclass(frozen=True)
class BackendInfo:
    """A backend name, what it runs on, its options and where its Device class lives."""

    name: str
    summary: str
    options: tuple[Option, ...] = ()
    device_class: str | None = None  # "module:Class"; None while the backend is not implemented

    @property
    def implemented(self) -> bool:
        return self.device_class is not None

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


_LOCAL_BACKENDS: tuple[BackendInfo, ...] = (
    BackendInfo("ort-cpu", "onnxruntime, CPU execution provider", (_ORT_OPT, _THREADS), "devices.ort:OrtCpuDevice"),
    BackendInfo("ort-cuda", "onnxruntime, CUDA execution provider with IO binding", (_GPU, _ORT_OPT),
                "devices.ort:OrtCudaDevice"),
    BackendInfo("tvm-llvm", "TVM Relax, compiled for this CPU with LLVM (untuned)",
                (Option("target", "token", "host", "LLVM -mcpu name; 'host' is this machine's CPU"), _THREADS),
                "devices.tvm_local:TvmLlvmDevice"),
    BackendInfo("tvm-cuda", "TVM Relax, compiled for CUDA (default dlight schedules)",
                (Option("arch", "token", "auto", "CUDA arch such as sm_80; 'auto' asks the GPU"), _GPU),
                "devices.tvm_local:TvmCudaDevice"),
    BackendInfo("torch-cpu", "PyTorch eager, the nn.Module the ONNX came from", (_THREADS,),
                "devices.torch_local:TorchCpuDevice"),
    BackendInfo("torch-cuda", "PyTorch eager on CUDA, timed with CUDA events", (_GPU,),
                "devices.torch_local:TorchCudaDevice"),
)
_REMOTE_BACKENDS: tuple[BackendInfo, ...] = (
    BackendInfo("ssh", "ssh://user@host[:port]/<local spec>: a local spec run on a board over SSH"),
    BackendInfo("tvm-rpc", "tvm-rpc://host[:port]/<key>: a TVM RPC tracker's device",
                (Option("target", "token", "llvm", "TVM target kind or LLVM -mcpu name for the remote device"),)),
)
_BY_NAME = {b.name: b for b in _LOCAL_BACKENDS + _REMOTE_BACKENDS}
_NOT_IMPLEMENTED = (
    "backend is not implemented yet: the spec parses and canonicalises, running on it is a separate issue"
)


def _names() -> str:
    return ", ".join(b.name for b in _LOCAL_BACKENDS) + ", ssh://user@host[:port]/<spec>, tvm-rpc://host[:port]/<key>"


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device spec. ``options`` holds every option of the backend: the given value, else the default
    (None for a machine-dependent default that cannot be known here, i.e. inside ``ssh://``)."""

    backend: str
    options: Mapping[str, Any] = field(default_factory=dict)
    user: str | None = None
    host: str | None = None
    port: int | None = None
    key: str | None = None
    inner: DeviceSpec | None = None

    @property
    def info(self) -> BackendInfo:
        return _BY_NAME[self.backend]

    @property
    def is_remote(self) -> bool:
        return self.backend in ("ssh", "tvm-rpc")

    @property
    def canonical(self) -> str:
        if self.backend == "ssh":
            assert self.inner is not None and self.host is not None
            port = f":{self.port}" if self.port not in (None, SSH_DEFAULT_PORT) else ""
            return f"ssh://{self.user}@{self.host}{port}/{self.inner.canonical}"
        opts = _option_text(self.info, self.options)
        if self.backend == "tvm-rpc":
            port = f":{self.port}" if self.port not in (None, TVM_RPC_DEFAULT_PORT) else ""
            return f"tvm-rpc://{self.host}{port}/{self.key}" + (f":{opts}" if opts else "")
        return self.backend + (f":{opts}" if opts else "")

    def __str__(self) -> str:
        return self.canonical

    def __hash__(self) -> int:
        return hash(self.canonical)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeviceSpec) and other.canonical == self.canonical


def _option_text(info: BackendInfo, options: Mapping[str, Any]) -> str:
    parts = []
    for name in sorted(options):
        value = options[name]
        opt = info.option(name) or _PYTHON
        if value is None or (opt.machine_default is None and value == opt.default):
            continue
        parts.append(f"{name}={value}")
    return ",".join(parts)


def parse_spec(spec: str | DeviceSpec, *, cores: int | None = None) -> DeviceSpec:
    """Parse a device spec; DeviceSpecError naming the spec and the problem otherwise.

    ``cores`` is the core count that fills ``threads`` when it is not given: this machine's usable cores for
    a local spec; for the spec inside ``ssh://`` only when given (the SSH backend passes the board's).
    """
    if isinstance(spec, DeviceSpec):
        return spec
    if not isinstance(spec, str):
        raise DeviceSpecError(f"device spec must be a string, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise DeviceSpecError("empty device spec (backends: " + _names() + ")")
    lowered = text.lower()
    if lowered.startswith("ssh://"):
        return _parse_ssh(text, cores)
    if lowered.startswith("tvm-rpc://"):
        return _parse_tvm_rpc(text)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise DeviceSpecError(f"device spec {spec!r}: unknown scheme {scheme + '://'!r} (backends: {_names()})")
    return _parse_local(text, spec, cores if cores is not None else usable_cores(), remote=False)


def _parse_local(text: str, spec: str, cores: int | None, *, remote: bool) -> DeviceSpec:
    name, _, opt_text = text.partition(":")
    name = name.strip().lower()
    info = _BY_NAME.get(name)
    if info is None or info.name in ("ssh", "tvm-rpc"):
        raise DeviceSpecError(f"device spec {spec!r}: unknown backend {name!r} (backends: {_names()})")
    allowed = info.options + ((_PYTHON,) if remote else ())
    given = _parse_options(opt_text, spec, info.name, allowed)
    options: dict[str, Any] = {}
    for opt in allowed:
        if opt.name in given:
            options[opt.name] = given[opt.name]
        elif opt.machine_default is not None:
            options[opt.name] = cores if (opt.name == "threads" and cores is not None) else (
                None if remote else opt.machine_default())
        else:
            options[opt.name] = opt.default
    return DeviceSpec(info.name, options)


def _parse_options(opt_text: str, spec: str, backend: str, allowed: tuple[Option, ...]) -> dict[str, Any]:
    by_name = {o.name: o for o in allowed}
    valid = ", ".join(by_name) or "none"
    given: dict[str, Any] = {}
    if not opt_text.strip():
        return given
    for piece in re.split(r"[,;]", opt_text):
        piece = piece.strip()
        if not piece:
            raise DeviceSpecError(f"device spec {spec!r}: empty option (options of {backend}: {valid})")
        key, sep, value = piece.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key or not value:
            raise DeviceSpecError(f"device spec {spec!r}: option {piece!r} must read key=value "
                                  f"(options of {backend}: {valid})")
        opt = by_name.get(key)
        if opt is None:
            hint = " (python= is only for specs run over ssh://)" if key == "python" else ""
            raise DeviceSpecError(f"device spec {spec!r}: unknown option {key!r} for {backend} "
                                  f"(options: {valid}){hint}")
        if key in given:
            raise DeviceSpecError(f"device spec {spec!r}: option {key!r} given twice")
        given[key] = opt.convert(value, spec)
    return given


def _split_authority(authority: str, spec: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):  # [IPv6]:port
        end = authority.find("]")
        if end < 0:
            raise DeviceSpecError(f"device spec {spec!r}: bad host {authority!r} (unclosed '[')")
        host, rest = authority[: end + 1], authority[end + 1:]
        port_text = rest[1:] if rest.startswith(":") else (rest or None)
    else:
        host, sep, port_text = authority.partition(":")
        port_text = port_text if sep else None
    if not host or not _HOST.match(host):
        raise DeviceSpecError(f"device spec {spec!r}: bad host {host!r}")
    if port_text is None:
        return host.lower(), default_port
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 0 < int(port_text) < 65536:
        raise DeviceSpecError(f"device spec {spec!r}: port {port_text!r} must be an integer in 1..65535")
    return host.lower(), int(port_text)


def _parse_ssh(text: str, cores: int | None) -> DeviceSpec:
    rest = text[len("ssh://"):]
    authority, slash, inner = rest.partition("/")
    if not slash or not inner.strip():
        raise DeviceSpecError(f"device spec {text!r}: ssh specs read ssh://user@host[:port]/<local spec>, "
                              "e.g. ssh://pi@board/ort-cpu:threads=4")
    user, at, hostport = authority.rpartition("@")
    if not at or not _USER.match(user):
        raise DeviceSpecError(f"device spec {text!r}: ssh spec needs a user name: ssh://user@host[:port]/<spec>")
    host, port = _split_authority(hostport, text, SSH_DEFAULT_PORT)
    inner_text = inner.strip()
    if "://" in inner_text:
        raise DeviceSpecError(f"device spec {text!r}: the spec run over ssh must be a local one "
                              f"({', '.join(b.name for b in _LOCAL_BACKENDS)})")
    inner_spec = _parse_local(inner_text, text, cores, remote=True)
    return DeviceSpec("ssh", {}, user=user, host=host, port=port, inner=inner_spec)


def _parse_tvm_rpc(text: str) -> DeviceSpec:
    rest = text[len("tvm-rpc://"):]
    authority, slash, key_part = rest.partition("/")
    key, _, opt_text = key_part.partition(":")
    key = key.strip()
    if not slash or not key:
        raise DeviceSpecError(f"device spec {text!r}: tvm-rpc specs read tvm-rpc://host[:port]/<key>, "
                              "e.g. tvm-rpc://tracker:9190/rasp4")
    if not _TOKEN.match(key):
        raise DeviceSpecError(f"device spec {text!r}: device key {key!r} must be letters, digits and _ . + -")
    host, port = _split_authority(authority, text, TVM_RPC_DEFAULT_PORT)
    info = _BY_NAME["tvm-rpc"]
    given = _parse_options(opt_text, text, "tvm-rpc", info.options)
    options = {o.name: given.get(o.name, o.default) for o in info.options}
    return DeviceSpec("tvm-rpc", options, host=host, port=port, key=key)


def canonical_spec(spec: str | DeviceSpec, *, cores: int | None = None) -> str:
    """The one string that names this device (see the module docstring)."""
    return parse_spec(spec, cores=cores).canonical


def column_name(spec: str | DeviceSpec) -> str:
    """The canonical spec as a CSV column header: ',' becomes ';' so headers can be listed comma-separated."""
    return canonical_spec(spec).replace(",", ";")


def get_device(spec: str | DeviceSpec) -> Device:
    """A Device for the spec. Raises DeviceSpecError for a bad spec and DeviceError for a backend that is not
    implemented yet; a device that cannot run here is still returned (ask ``available()``)."""
    parsed = parse_spec(spec)
    info = parsed.info
    if not info.implemented:
        raise DeviceError(f"device {parsed.canonical}: the {info.name} {_NOT_IMPLEMENTED}")
    module_name, class_name = info.device_class.split(":")  # type: ignore[union-attr]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(parsed)


def list_backends() -> list[BackendInfo]:
    """Every backend the grammar knows, implemented or not, with its options."""
    return list(_LOCAL_BACKENDS + _REMOTE_BACKENDS)


class DeviceAvailability(NamedTuple):
    spec: str
    ok: bool
    why: str


def available_devices() -> list[DeviceAvailability]:
    """Each backend's default spec on this machine, whether it can run here and, if not, why.

    Asking imports each runtime (TVM takes a few seconds), so call it to list devices, not in a loop."""
    rows = []
    for info in _LOCAL_BACKENDS:
        try:
            device = get_device(info.name)
            ok, why = device.available()
            rows.append(DeviceAvailability(device.spec, ok, why))
        except (DeviceError, DeviceSpecError, ImportError) as exc:
            rows.append(DeviceAvailability(canonical_spec(info.name), False, str(exc)))
    rows.append(DeviceAvailability("ssh://user@host[:port]/<spec>", False, f"ssh {_NOT_IMPLEMENTED}"))
    rows.append(DeviceAvailability("tvm-rpc://host[:port]/<key>", False, f"tvm-rpc {_NOT_IMPLEMENTED}"))
    return rows
