"""ONNX export and loading: validation, onnxruntime == torch, content hash identity, one-line rejections."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from exporters.errors import ExportError
from exporters.nb201.model import TinyNetwork
from exporters.onnx import DEFAULT_OPSET, example_input, export_arch, export_module, load_onnx
from exporters.spaces import get_space

NB201_A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
NB201_B = "|nor_conv_1x1~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
FBNET_A = "-".join(["k3_e1", "k5_e6", "skip", "k3_e1_g2"] * 5 + ["k5_e3", "k5_e1_g2"])
FBNET_B = "-".join(["k5_e1_g2", "k3_e6", "k3_e3", "skip"] * 5 + ["skip", "k5_e6"])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("onnx")
    return {
        (space, arch): export_arch(space, arch, out)
        for space, arch in (("nb201", NB201_A), ("nb201", NB201_B), ("fbnet", FBNET_A), ("fbnet", FBNET_B))
    }


def test_exported_archs_are_valid_static_and_match_torch(exported: dict) -> None:
    for (space, arch), model in exported.items():
        assert model.space == space and model.arch == arch
        assert model.input_shape == (1, 3, 32, 32)
        assert model.opset == DEFAULT_OPSET
        proto = onnx.load(str(model.path))
        onnx.checker.check_model(proto)
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        x = example_input(model.input_shape)
        with torch.no_grad():
            expected = model.module(torch.from_numpy(x)).numpy()
        got = ort_run(model.path, x)
        assert got.shape == (1, get_space(space).num_classes)
        assert np.max(np.abs(got - expected)) <= 1e-4
        # the module has calibrated BatchNorm, so the logits are ordinary numbers, not 0 or 1e9
        assert 1e-3 < np.abs(expected).max() < 1e3


def test_content_hash_identifies_the_architecture(exported: dict, tmp_path: Path) -> None:
    hashes = {key: model.content_hash for key, model in exported.items()}
    assert len(set(hashes.values())) == len(hashes)  # different archs, different hashes
    # re-export elsewhere: the same hash and the same bytes
    again = export_arch("nb201", NB201_A, tmp_path)
    first = exported["nb201", NB201_A]
    assert again.content_hash == first.content_hash
    assert again.path.read_bytes() == first.path.read_bytes()
    assert load_onnx(again.path).content_hash == first.content_hash


def test_content_hash_ignores_weights_but_not_input_shape(tmp_path: Path) -> None:
    ops = get_space("nb201").parse(NB201_B)
    # a narrow, shallow NB201 network keeps this quick; the hash rules do not depend on size
    torch.manual_seed(1)
    a = export_module(TinyNetwork(ops, C=4, N=1).eval(), (1, 3, 32, 32), tmp_path / "a.onnx")
    torch.manual_seed(2)
    b = export_module(TinyNetwork(ops, C=4, N=1).eval(), (1, 3, 32, 32), tmp_path / "b.onnx")
    c = export_module(TinyNetwork(ops, C=4, N=1).eval(), (1, 3, 64, 64), tmp_path / "c.onnx")
    assert a.path.read_bytes() != b.path.read_bytes()
    assert a.content_hash == b.content_hash
    assert c.content_hash != a.content_hash
    # doc strings and producer fields do not count either
    proto = onnx.load(str(a.path))
    proto.producer_name, proto.producer_version, proto.doc_string = "someone-else", "9.9", "notes"
    proto.graph.doc_string = "more notes"
    onnx.save(proto, str(tmp_path / "d.onnx"))
    assert load_onnx(tmp_path / "d.onnx").content_hash == a.content_hash


def test_export_arch_reuses_a_valid_cache_and_rebuilds_a_damaged_one(tmp_path: Path) -> None:
    first = export_arch("fbnet", FBNET_B, tmp_path)
    stamp = first.path.stat().st_mtime_ns
    second = export_arch("fbnet", FBNET_B, tmp_path)
    assert second.path == first.path and second.path.stat().st_mtime_ns == stamp
    assert second.module is not None and second.arch == FBNET_B
    first.path.write_bytes(b"\x00damaged")
    third = export_arch("fbnet", FBNET_B, tmp_path)
    assert third.content_hash == first.content_hash
    assert list(tmp_path.iterdir()) == [first.path]  # no temporary files left behind


class _DriftsAfterFirstCall(nn.Module):
    """Returns x on its first call (torch's reference) and x + 1 afterwards (what gets exported)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x if self.calls == 1 else x + 1.0


def test_export_module_rejects_a_mismatch_and_keeps_no_file(tmp_path: Path) -> None:
    target = tmp_path / "drift.onnx"
    with pytest.raises(ExportError) as info:
        export_module(_DriftsAfterFirstCall(), (1, 4), target)
    message = str(info.value)
    assert "differs from torch by max abs 1" in message and str(target) in message
    assert "\n" not in message
    assert not target.exists() and list(tmp_path.iterdir()) == []


def _write_dynamic(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            nn.Conv2d(3, 4, 3),
            (torch.randn(1, 3, 8, 8),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )


def _write_two_inputs(path: Path) -> None:
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "two", [a, b], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _write_broken_graph(path: Path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["y"])], "broken", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize(
    ("writer", "fragment"),
    [
        (None, "no such ONNX file"),
        (lambda p: p.write_bytes(b"this is not a protobuf\xff\xfe" * 20), "not an ONNX"),
        (_write_dynamic, "dynamic dim 'batch' at axis 0"),
        (_write_two_inputs, "expected exactly one graph input, found 2 (a, b)"),
        (_write_broken_graph, "ONNX checker failed"),
    ],
)
def test_load_onnx_rejects_with_one_line_naming_the_file(tmp_path: Path, writer, fragment: str) -> None:
    path = tmp_path / "model.onnx"
    if writer is not None:
        writer(path)
    with pytest.raises(ExportError) as info:
        load_onnx(path)
    message = str(info.value)
    assert fragment in message
    assert str(path) in message
    assert "\n" not in message


def test_exported_lut_unit_runs_in_onnxruntime(tmp_path: Path) -> None:
    module, shape = get_space("fbnet").layer_module("layer05", "k5_e1_g2")
    model = export_module(module, shape, tmp_path / "unit.onnx")
    assert model.input_shape == shape
    ops = {n.op_type for n in onnx.load(str(model.path)).graph.node}
    assert "Transpose" in ops  # the channel shuffle survives export
