"""ONNX export and validation: a static-shape ``.onnx`` file plus the content hash that identifies it.

The content hash is the model's identity in the measurement store. It is a sha256 over a canonical form of the
graph that keeps everything a runtime's speed can depend on and nothing else:

- the default-domain opset and every other imported domain with its version;
- each node's op type, domain and attributes (tensor attributes by dtype and dims; their values only when
  they hold at most ``_SMALL_TENSOR`` elements, e.g. a Reshape target, so folded weights do not count);
- the wiring, with every tensor renamed by position (graph input k, initializer k, output j of node i), so
  the names an exporter happens to pick do not count;
- each initializer's dtype and dims, never its values;
- the graph inputs' and outputs' element types and shapes.

Doc strings, producer name/version, model version, metadata and tensor names are left out. Two exports of
the same architecture with different weights therefore hash equal, while a different architecture or a
different input shape hashes differently.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, ModelProto, TensorProto

from exporters.errors import ExportError

if TYPE_CHECKING:
    import torch

DEFAULT_OPSET = 17
# Tensor attributes with at most this many elements are hashed by value: they are shapes, axes, pads,
# constants that change the computation, not weights.
_SMALL_TENSOR = 64
_INPUT_SEED = 0


@dataclass
class OnnxModel:
    """A validated static-shape ONNX file and what other parts need to know about it."""

    path: Path
    content_hash: str
    input_name: str
    input_shape: tuple[int, ...]
    output_names: list[str]
    opset: int
    space: str | None = None
    arch: str | None = None
    module: torch.nn.Module | None = None


# ----------------------------------------------------------------------------------------------------------
# canonical form and hash


def _tensor_meta(t: TensorProto) -> dict[str, Any]:
    return {"dtype": int(t.data_type), "dims": [int(d) for d in t.dims]}


def _value_info_shape(vi: onnx.ValueInfoProto) -> dict[str, Any]:
    tt = vi.type.tensor_type
    dims = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(f"?{d.dim_param}")
        else:
            dims.append("?")
    return {"elem": int(tt.elem_type), "dims": dims}


def _canonical_attr(attr: AttributeProto, names: dict[str, str]) -> Any:
    kind = attr.type
    if kind == AttributeProto.FLOAT:
        return ["f", float(attr.f)]
    if kind == AttributeProto.INT:
        return ["i", int(attr.i)]
    if kind == AttributeProto.STRING:
        return ["s", attr.s.decode("utf-8", "replace")]
    if kind == AttributeProto.FLOATS:
        return ["fs", [float(v) for v in attr.floats]]
    if kind == AttributeProto.INTS:
        return ["is", [int(v) for v in attr.ints]]
    if kind == AttributeProto.STRINGS:
        return ["ss", [s.decode("utf-8", "replace") for s in attr.strings]]
    if kind == AttributeProto.TENSOR:
        return ["t", _canonical_tensor_attr(attr.t)]
    if kind == AttributeProto.TENSORS:
        return ["ts", [_canonical_tensor_attr(t) for t in attr.tensors]]
    if kind == AttributeProto.GRAPH:
        return ["g", _canonical_graph(attr.g, dict(names))]
    if kind == AttributeProto.GRAPHS:
        return ["gs", [_canonical_graph(g, dict(names)) for g in attr.graphs]]
    return ["other", int(kind)]


def _canonical_tensor_attr(t: TensorProto) -> dict[str, Any]:
    out = _tensor_meta(t)
    if int(np.prod(t.dims, dtype=np.int64)) <= _SMALL_TENSOR:
        arr = onnx.numpy_helper.to_array(t)
        out["values"] = arr.ravel().tolist() if arr.dtype.kind in "biuf" else str(arr.ravel().tolist())
    return out


def _canonical_graph(graph: GraphProto, names: dict[str, str]) -> dict[str, Any]:
    """``names`` maps tensor names visible from an enclosing scope to their positional ids."""
    init_names = {t.name for t in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in init_names]
    for k, vi in enumerate(inputs):
        names[vi.name] = f"in{k}"
    for k, t in enumerate(graph.initializer):
        names[t.name] = f"w{k}"
    nodes = []
    for i, node in enumerate(graph.node):
        ins = [names.get(n, "ext:" + n) if n else "" for n in node.input]
        for j, n in enumerate(node.output):
            if n:
                names[n] = f"n{i}.{j}"
        nodes.append(
            {
                "op": node.op_type,
                "domain": node.domain or "ai.onnx",
                "in": ins,
                "out": len(node.output),
                "attrs": sorted((a.name, _canonical_attr(a, names)) for a in node.attribute),
            }
        )
    return {
        "inputs": [_value_info_shape(vi) for vi in inputs],
        "initializers": [_tensor_meta(t) for t in graph.initializer],
        "nodes": nodes,
        "outputs": [[names.get(vi.name, "ext:" + vi.name), _value_info_shape(vi)] for vi in graph.output],
    }


def content_hash(model: ModelProto) -> str:
    """Hex sha256 of the canonical form described in the module docstring."""
    opsets = sorted((op.domain or "ai.onnx", int(op.version)) for op in model.opset_import)
    canonical = {"opsets": opsets, "graph": _canonical_graph(model.graph, {})}
    return hashlib.sha256(repr(canonical).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------------------
# loading and validation


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _default_opset(model: ModelProto) -> int:
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    raise ExportError("model imports no default-domain (ai.onnx) opset")


def _validate(model: ModelProto, where: str) -> tuple[onnx.ValueInfoProto, list[str]]:
    """Checker, single static-shape input, strict shape inference; the graph input and output names."""
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # the checker raises several exception types, all mean "not a valid model"
        raise ExportError(f"{where}: ONNX checker failed: {_first_line(exc)}") from None
    init_names = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in init_names]
    if len(inputs) != 1:
        found = ", ".join(vi.name for vi in inputs) or "none"
        raise ExportError(f"{where}: expected exactly one graph input, found {len(inputs)} ({found})")
    (graph_input,) = inputs
    tt = graph_input.type.tensor_type
    if not graph_input.type.HasField("tensor_type") or not tt.HasField("shape"):
        raise ExportError(f"{where}: graph input {graph_input.name!r} has no static tensor shape")
    for axis, d in enumerate(tt.shape.dim):
        if not d.HasField("dim_value") or d.dim_value <= 0:
            label = d.dim_param if d.HasField("dim_param") else "unknown"
            raise ExportError(
                f"{where}: graph input {graph_input.name!r} has a dynamic dim {label!r} at axis {axis}; "
                "only static shapes are supported"
            )
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        raise ExportError(f"{where}: shape inference failed: {_first_line(exc)}") from None
    return graph_input, [vi.name for vi in model.graph.output]


def load_onnx(path: str | os.PathLike[str]) -> OnnxModel:
    """Load and validate an ONNX file: checker, one graph input, static shapes, strict shape inference.

    Raises ExportError with a one-line message naming the file when any of these fail.
    """
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such ONNX file")
    if not path.is_file():
        raise ExportError(f"{path}: not a file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise ExportError(f"{path}: not an ONNX protobuf ({_first_line(exc)})") from None
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise ExportError(f"{path}: not an ONNX model (no graph nodes)")
    graph_input, output_names = _validate(model, str(path))
    shape = tuple(int(d.dim_value) for d in graph_input.type.tensor_type.shape.dim)
    return OnnxModel(
        path=path,
        content_hash=content_hash(model),
        input_name=graph_input.name,
        input_shape=shape,
        output_names=output_names,
        opset=_default_opset(model),
    )


# ----------------------------------------------------------------------------------------------------------
# export


def example_input(input_shape: tuple[int, ...]) -> np.ndarray:
    """The fixed input used to compare onnxruntime with torch (same shape, same values every time)."""
    rng = np.random.default_rng(_INPUT_SEED)
    return rng.standard_normal(input_shape).astype(np.float32)


def _outputs_as_list(out: Any) -> list[Any]:
    if isinstance(out, (list, tuple)):
        return [o for item in out for o in _outputs_as_list(item)]
    return [out]


def export_module(
    module: torch.nn.Module,
    input_shape: tuple[int, ...],
    path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    atol: float = 1e-4,
) -> OnnxModel:
    """Export ``module`` (put in eval mode) for one static ``input_shape`` and validate the file.

    The file is written atomically, so a reader never sees half a model. With ``check``, onnxruntime (CPU)
    runs the file on a fixed input and its outputs must equal torch's: max abs diff <= ``atol`` times
    max(1, max |torch output|); otherwise the file is removed and ExportError names the max diff.
    """
    import torch

    path = Path(path)
    input_shape = tuple(int(d) for d in input_shape)
    if not input_shape or any(d <= 0 for d in input_shape):
        raise ExportError(f"{path}: input shape {input_shape} must be non-empty with positive dims")
    module = module.eval()
    x = torch.from_numpy(example_input(input_shape))
    try:
        with torch.no_grad():
            reference = [o.detach().numpy() for o in _outputs_as_list(module(x))]
    except Exception as exc:
        raise ExportError(f"{path}: module fails on input shape {input_shape}: {_first_line(exc)}") from None
    output_names = ["output"] if len(reference) == 1 else [f"output{i}" for i in range(len(reference))]

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module,
                    (x,),
                    str(tmp),
                    dynamo=False,
                    opset_version=opset,
                    input_names=["input"],
                    output_names=output_names,
                    do_constant_folding=True,
                )
        except Exception as exc:
            raise ExportError(f"{path}: torch.onnx.export failed: {_first_line(exc)}") from None
        loaded = load_onnx(tmp)
        if check:
            _compare_with_onnxruntime(tmp, loaded.input_name, x.numpy(), reference, atol, path)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    loaded.path = path
    loaded.module = module
    return loaded


def _compare_with_onnxruntime(
    onnx_path: Path, input_name: str, x: np.ndarray, reference: list[np.ndarray], atol: float, where: Path
) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # The check is about the graph meaning what the module means, so onnxruntime runs it op by op: fused
    # kernels (Conv+BN folding, ...) round differently and on deep nets drift past atol without any fault.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        got = session.run(None, {input_name: x})
    except Exception as exc:
        raise ExportError(f"{where}: onnxruntime cannot run the export: {_first_line(exc)}") from None
    if len(got) != len(reference):
        raise ExportError(f"{where}: onnxruntime gives {len(got)} outputs, torch {len(reference)}")
    for k, (a, b) in enumerate(zip(got, reference, strict=True)):
        if a.shape != b.shape:
            raise ExportError(f"{where}: output {k} shape {a.shape} from onnxruntime, {b.shape} from torch")
        if not a.size:
            continue
        diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
        # float32 error grows with magnitude: atol is absolute up to |output| 1, relative beyond.
        allowed = atol * max(1.0, float(np.max(np.abs(b))))
        if not diff <= allowed:
            raise ExportError(
                f"{where}: onnxruntime output {k} differs from torch by max abs {diff:.3g} > {allowed:.3g} "
                f"(atol {atol:g})"
            )


def arch_file_name(space: str, arch: str) -> str:
    """Cache file name of an architecture: arch strings hold '|' and run to 200 characters."""
    digest = hashlib.sha256(f"{space}:{arch}".encode()).hexdigest()[:20]
    return f"{space}-{digest}.onnx"


def export_arch(space: str, arch: str, out_dir: str | os.PathLike[str]) -> OnnxModel:
    """Export one architecture of a search space into ``out_dir``, reusing a valid file already there.

    Weights are seeded from the architecture string, so the same arch always gives the same file.
    """
    from exporters.spaces import get_space

    search_space = get_space(space)
    arch = search_space.validate(arch)
    module = search_space.build(arch)
    path = Path(out_dir) / arch_file_name(search_space.name, arch)
    model = None
    if path.exists():
        try:
            model = load_onnx(path)
        except ExportError:
            model = None  # a damaged cache entry is rebuilt below, never trusted
        if model is not None and model.input_shape != tuple(search_space.input_shape):
            model = None
        if model is not None:
            model.module = module
    if model is None:
        model = export_module(module, search_space.input_shape, path)
    model.space = search_space.name
    model.arch = arch
    return model
