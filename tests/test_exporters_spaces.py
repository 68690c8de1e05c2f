"""Search spaces as modules: shapes, structure, FLOPs/params tables against hook counts, LUT units."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from exporters.counting import count_flops, count_params
from exporters.errors import ArchError
from exporters.fbnet.model import ChannelShuffle, InvertedResidual, layer_shapes
from exporters.spaces import FIXED, SPACES, get_space

ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
NB201_MIXED = (
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
)
FBNET_ALL_SKIP = "-".join(["skip"] * 22)
FBNET_MIXED = "-".join(["k3_e1", "k5_e6", "skip", "k3_e1_g2"] * 5 + ["k5_e3", "k5_e1_g2"])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def some_archs(space: str) -> list[str]:
    fixed = [ALL_3X3, ALL_NONE, NB201_MIXED] if space == "nb201" else [FBNET_ALL_SKIP, FBNET_MIXED]
    return fixed + get_space(space).sample(3, seed=11)


@pytest.mark.parametrize("space", SPACES)
def test_built_network_maps_an_image_to_logits(space: str) -> None:
    s = get_space(space)
    assert s.input_shape == (1, 3, 32, 32)
    for arch in some_archs(space)[:3]:
        module = s.build(arch)
        assert not module.training
        with torch.no_grad():
            out = module(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, s.num_classes)
        assert torch.isfinite(out).all()
    assert get_space("nb201").num_classes == 10  # HW-NAS-Bench's CIFAR-10 networks
    assert get_space("fbnet").num_classes == 100  # HW-NAS-Bench's CIFAR-100 FBNet variant


@pytest.mark.parametrize("space", SPACES)
def test_same_arch_same_weights(space: str) -> None:
    s = get_space(space)
    arch = some_archs(space)[-1]
    a, b = s.build(arch).state_dict(), s.build(arch).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("space", SPACES)
def test_flops_params_table_equals_hook_count(space: str) -> None:
    s = get_space(space)
    for arch in some_archs(space):
        module = s.build(arch)
        assert s.flops(arch) == count_flops(module, s.input_shape), arch
        assert s.params(arch) == count_params(module), arch


def check_units(space: str, keys: list[str] | None = None) -> None:
    s = get_space(space)
    for layer in s.layers():
        if keys is not None and layer.key not in keys:
            continue
        out_shapes = set()
        for choice in layer.choices:
            module, shape = s.layer_module(layer.key, choice)
            assert shape == layer.input_shape
            cost = s.layer_cost(layer.key, choice)
            assert cost.flops == count_flops(module, shape), (layer.key, choice)
            assert cost.params == count_params(module), (layer.key, choice)
            with torch.no_grad():
                out_shapes.add(tuple(module(torch.zeros(shape)).shape))
        assert len(out_shapes) == 1, layer.key  # every choice of a unit yields the same shape


@pytest.mark.parametrize("space", SPACES)
def test_every_lut_unit_matches_its_table_entry(space: str) -> None:
    check_units(space, None)


def test_fbnet_units_form_the_network_chain() -> None:
    s = get_space("fbnet")
    layers = s.layers()
    assert [layer.key for layer in layers] == ["stem", *(f"layer{i:02d}" for i in range(22)), "head"]
    for here, after in zip(layers, layers[1:], strict=False):
        module, shape = s.layer_module(here.key, here.choices[0])
        with torch.no_grad():
            assert tuple(module(torch.zeros(shape)).shape) == after.input_shape
    assert layers[-1].input_shape == (1, 352, 4, 4)


def test_nb201_units_and_their_justification() -> None:
    s = get_space("nb201")
    keys = [layer.key for layer in s.layers()]
    assert keys[0] == "stem" and keys[-1] == "head"
    assert "reduce1" in keys and "reduce2" in keys
    assert len(keys) == 3 * 6 + 4
    assert s.layer("stage1.node3.from2").input_shape == (1, 32, 16, 16)
    assert s.layer("reduce2").input_shape == (1, 32, 16, 16)
    assert s.layer("head").input_shape == (1, 64, 8, 8)
    units = s.arch_layers(NB201_MIXED)
    assert len(units) == 3 * 5 * 6 + 4
    assert units.count(("stage2.node2.from1", "skip_connect")) == 5
    assert units[0] == ("stem", FIXED) and units[-1] == ("head", FIXED)
    # edges from node i >= 1 carry the addition into their node, edges from node 0 do not
    for key, joins in (("stage0.node3.from0", False), ("stage0.node3.from2", True)):
        module, shape = s.layer_module(key, "none")
        x = torch.randn(shape)
        with torch.no_grad():
            assert torch.equal(module(x), x if joins else torch.zeros_like(x))


def test_lut_sum_of_table_entries_is_the_whole_network() -> None:
    for space in SPACES:
        s = get_space(space)
        for arch in some_archs(space):
            units = s.arch_layers(arch)
            assert sum(s.layer_cost(k, c).flops for k, c in units) == s.flops(arch)
            assert sum(s.layer_cost(k, c).params for k, c in units) == s.params(arch)


def test_nb201_matches_published_figures() -> None:
    # NAS-Bench-201 (CIFAR-10, 10 classes): FLOPs range 7.78M .. 220.11M, params 0.073M .. 1.531M over the space.
    s = get_space("nb201")
    assert abs(s.flops(ALL_NONE) / 1e6 - 7.78) < 0.01
    assert abs(s.flops(ALL_3X3) / 1e6 - 220.11) < 0.02
    assert abs(s.params(ALL_NONE) / 1e6 - 0.073) < 0.001
    assert abs(s.params(ALL_3X3) / 1e6 - 1.531) < 0.001
    flops = [s.flops(a) for a in s.enumerate()]
    assert min(flops) == s.flops(ALL_NONE) and max(flops) == s.flops(ALL_3X3)


def test_nb201_cost_of_the_whole_space_is_fast() -> None:
    s = get_space("nb201")
    archs = s.enumerate()
    s.flops(archs[0])
    start = time.perf_counter()
    for a in archs:
        s.flops(a)
    # generous bound for a shared, noisy machine; typically ~0.3 s
    assert time.perf_counter() - start < 3.0


def test_nb201_cell_wiring_sums_the_right_nodes() -> None:
    # node1 = x, node2 = 0*x + node1, node3 = avgpool(x) + 0*node1 + node2: output = avgpool(x) + x
    arch = "|skip_connect~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|skip_connect~2|"
    cell = get_space("nb201").build(arch).cells[0]
    x = torch.randn(1, 16, 32, 32)
    pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    with torch.no_grad():
        assert torch.allclose(cell(x), pool(x) + x, atol=1e-6)


def test_fbnet_blocks_follow_hw_nas_bench() -> None:
    s = get_space("fbnet")
    net = s.build(FBNET_MIXED)
    shapes = layer_shapes()
    assert [sh.stride for sh in shapes if sh.stride == 2] == [2, 2, 2]
    assert [shapes[i].c_out for i in (0, 1, 5, 9, 13, 17, 21)] == [16, 24, 32, 64, 112, 184, 352]
    for block, shape, layer in zip(FBNET_MIXED.split("-"), shapes, net.layers, strict=True):
        identity_ok = shape.stride == 1 and shape.c_in == shape.c_out
        if block == "skip":
            assert isinstance(layer, nn.Identity) == identity_ok
            continue
        assert isinstance(layer, InvertedResidual)
        assert layer.residual == identity_ok
        assert isinstance(layer.shuffle, ChannelShuffle) == block.endswith("_g2")
        depthwise = layer.depthwise[0]
        assert depthwise.groups == depthwise.in_channels == shape.c_in * int(block.split("_")[1][1])
        assert depthwise.kernel_size == (int(block[1]),) * 2
        assert depthwise.stride == (shape.stride,) * 2


def test_channel_shuffle_interleaves_the_two_groups() -> None:
    x = torch.arange(6.0).reshape(1, 6, 1, 1)
    assert ChannelShuffle(6, 2)(x).flatten().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


def test_layer_lookups_name_the_fault() -> None:
    s = get_space("fbnet")
    with pytest.raises(ArchError, match="no layer 'layer22'"):
        s.layer_module("layer22", "skip")
    with pytest.raises(ArchError, match="layer 'layer03' has no choice 'k7_e6'"):
        s.layer_module("layer03", "k7_e6")
    with pytest.raises(ArchError, match="'stem' has no choice 'skip'"):
        s.layer_cost("stem", "skip")
