"""FBNet-space networks (HW-NAS-Bench's CIFAR-100 variant) as torch modules.

As HW-NAS-Bench's ``FBNet_Infer`` builds them for CIFAR-100: stem Conv3x3(3->16, stride 1)+BN+ReLU;
22 searchable layers in 7 stages of [1, 4, 4, 4, 4, 4, 1] layers with [16, 24, 32, 64, 112, 184, 352]
output channels, the first layer of each stage using stride [1, 1, 2, 2, 1, 2, 1]; head Conv1x1(352->1504)
+BN+ReLU, global average pool, Linear(1504->100).

Blocks ``k{3,5}_e{1,3,6}[_g2]`` (inverted residual): Conv1x1 expand to e*C_in (groups g) + BN + ReLU,
channel shuffle when g > 1, kxk depthwise conv (stride, padding keeps size / stride) + BN + ReLU,
Conv1x1 project (groups g) + BN, plus the input when stride is 1 and C_in == C_out. ``skip`` is the identity
when stride is 1 and C_in == C_out, otherwise Conv1x1(stride) + BN + ReLU, as in HW-NAS-Bench.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from exporters.fbnet.arch import BLOCKS

STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
STAGE_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
STAGE_STRIDES = (1, 1, 2, 2, 1, 2, 1)
STEM_CHANNELS = 16
HEAD_CHANNELS = 1504
INPUT_SIZE = 32
NUM_CLASSES = 100


@dataclass(frozen=True)
class BlockSpec:
    kernel: int
    expansion: int
    groups: int


BLOCK_SPECS: dict[str, BlockSpec | None] = {
    "k3_e1": BlockSpec(3, 1, 1),
    "k3_e1_g2": BlockSpec(3, 1, 2),
    "k3_e3": BlockSpec(3, 3, 1),
    "k3_e6": BlockSpec(3, 6, 1),
    "k5_e1": BlockSpec(5, 1, 1),
    "k5_e1_g2": BlockSpec(5, 1, 2),
    "k5_e3": BlockSpec(5, 3, 1),
    "k5_e6": BlockSpec(5, 6, 1),
    "skip": None,
}
assert tuple(BLOCK_SPECS) == BLOCKS


@dataclass(frozen=True)
class LayerShape:
    """Where a searchable layer sits: its channels, stride and input size."""

    index: int
    c_in: int
    c_out: int
    stride: int
    size_in: int

    @property
    def size_out(self) -> int:
        return self.size_in // self.stride


def layer_shapes(input_size: int = INPUT_SIZE) -> tuple[LayerShape, ...]:
    """The 22 searchable layers in order."""
    shapes, c_in, size, index = [], STEM_CHANNELS, input_size, 0
    for n_layers, c_out, stride in zip(STAGE_LAYERS, STAGE_CHANNELS, STAGE_STRIDES, strict=True):
        for i in range(n_layers):
            s = stride if i == 0 else 1
            shapes.append(LayerShape(index, c_in, c_out, s, size))
            c_in, size, index = c_out, size // s, index + 1
    return tuple(shapes)


def same_padding(kernel: int, stride: int) -> int:
    """Padding so the output size is input size / stride (HW-NAS-Bench's ConvNorm rule)."""
    return -(-(kernel - stride) // 2)


class ChannelShuffle(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.channels = channels
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        g = self.groups
        return x.reshape(n, g, self.channels // g, h, w).transpose(1, 2).reshape(n, self.channels, h, w)


class ConvBNReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=same_padding(kernel, stride), bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, spec: BlockSpec):
        super().__init__()
        mid = c_in * spec.expansion
        k, g = spec.kernel, spec.groups
        self.expand = nn.Sequential(
            nn.Conv2d(c_in, mid, 1, groups=g, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True)
        )
        self.shuffle = ChannelShuffle(mid, g) if g > 1 else nn.Identity()
        self.depthwise = nn.Sequential(
            nn.Conv2d(mid, mid, k, stride=stride, padding=same_padding(k, stride), groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
        )
        self.project = nn.Sequential(nn.Conv2d(mid, c_out, 1, groups=g, bias=False), nn.BatchNorm2d(c_out))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.shuffle(self.expand(x))))
        return y + x if self.residual else y


def make_block(block: str, shape: LayerShape) -> nn.Module:
    if block not in BLOCK_SPECS:
        raise ValueError(f"unknown fbnet block {block!r} (blocks: {', '.join(BLOCKS)})")
    spec = BLOCK_SPECS[block]
    if spec is not None:
        return InvertedResidual(shape.c_in, shape.c_out, shape.stride, spec)
    if shape.stride == 1 and shape.c_in == shape.c_out:
        return nn.Identity()
    return ConvBNReLU(shape.c_in, shape.c_out, 1, shape.stride)


class Stem(ConvBNReLU):
    def __init__(self) -> None:
        super().__init__(3, STEM_CHANNELS, 3, 1)


class Head(nn.Module):
    """Conv1x1 to 1504 + BN + ReLU, global average pool, classifier."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.header = ConvBNReLU(STAGE_CHANNELS[-1], HEAD_CHANNELS, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.header(x)), 1))


class FBNet(nn.Module):
    """The whole network for 22 block names; ``forward`` returns the logits."""

    def __init__(self, blocks: Sequence[str], num_classes: int = NUM_CLASSES, input_size: int = INPUT_SIZE):
        super().__init__()
        shapes = layer_shapes(input_size)
        if len(blocks) != len(shapes):
            raise ValueError(f"fbnet needs {len(shapes)} blocks, got {len(blocks)}")
        self.blocks = tuple(blocks)
        self.stem = Stem()
        self.layers = nn.ModuleList(make_block(b, s) for b, s in zip(self.blocks, shapes, strict=True))
        self.head = Head(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)
