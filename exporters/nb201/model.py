"""NAS-Bench-201 networks as torch modules, as HW-NAS-Bench builds them (``TinyNetwork``, C=16, N=5).

Structure (NAS-Bench-201 / AutoDL-Projects ``TinyNetwork`` with ``InferCell`` and ``ResNetBasicblock``):
stem Conv3x3(3->C)+BN; N cells at C; basic block to 2C (stride 2); N cells at 2C; basic block to 4C; N cells
at 4C; BN+ReLU; global average pool; Linear. Every BatchNorm is affine with running statistics. Cell edge
operations, all C->C with stride 1:

- ``none``: the input times zero (computed, as the reference ``Zero`` op does: the runtime pays for it);
- ``skip_connect``: identity;
- ``nor_conv_1x1`` / ``nor_conv_3x3``: ReLU, Conv (no bias, padding keeps the size), BN;
- ``avg_pool_3x3``: AvgPool 3x3, stride 1, padding 1, ``count_include_pad=False``.

Node j of a cell is the sum over i < j of op_(j,i)(node_i); the cell's output is node 3. The classifier has
10 outputs by default: HW-NAS-Bench's latency columns used in this project are the CIFAR-10 networks (the
pixel3 value of architecture 0 is the one HW-NAS-Bench reports for CIFAR-10).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from exporters.nb201.arch import EDGES, NUM_NODES, OPS

STEM_CHANNELS = 16
CELLS_PER_STAGE = 5
NUM_STAGES = 3
INPUT_SIZE = 32
NUM_CLASSES = 10


def stage_channels(stage: int, C: int = STEM_CHANNELS) -> int:
    return C * 2**stage


def stage_size(stage: int, size: int = INPUT_SIZE) -> int:
    return size // 2**stage


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(op: str, channels: int) -> nn.Module:
    """One cell edge operation, ``channels`` -> ``channels``, stride 1."""
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown nb201 op {op!r} (ops: {', '.join(OPS)})")


class Cell(nn.Module):
    """A 4-node cell; ``ops`` are the six edge operations in arch-string order (see ``arch.EDGES``)."""

    def __init__(self, ops: Sequence[str], channels: int):
        super().__init__()
        self.ops = tuple(ops)
        self.edges = nn.ModuleList(make_op(op, channels) for op in self.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        k = 0
        for j in range(1, NUM_NODES):
            total = self.edges[k](nodes[0])
            for i in range(1, j):
                total = total + self.edges[k + i](nodes[i])
            nodes.append(total)
            k += j
        return nodes[-1]


class ResidualReduction(nn.Module):
    """The ResNet basic block between stages: halves the size, doubles the channels."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class Stem(nn.Sequential):
    def __init__(self, channels: int = STEM_CHANNELS):
        super().__init__(
            nn.Conv2d(3, channels, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )


class Head(nn.Module):
    """Last BN+ReLU, global average pool, classifier."""

    def __init__(self, channels: int, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.lastact = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.global_pooling(self.lastact(x)), 1))


class TinyNetwork(nn.Module):
    """The whole NB201 network for one cell; ``forward`` returns the logits only."""

    def __init__(
        self,
        ops: Sequence[str],
        C: int = STEM_CHANNELS,
        N: int = CELLS_PER_STAGE,
        num_classes: int = NUM_CLASSES,
    ):
        super().__init__()
        self.ops = tuple(ops)
        self.stem = Stem(C)
        cells: list[nn.Module] = []
        for stage in range(NUM_STAGES):
            if stage > 0:
                cells.append(ResidualReduction(stage_channels(stage - 1, C), stage_channels(stage, C)))
            cells.extend(Cell(self.ops, stage_channels(stage, C)) for _ in range(N))
        self.cells = nn.ModuleList(cells)
        self.head = Head(stage_channels(NUM_STAGES - 1, C), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.head(x)


class EdgeUnit(nn.Module):
    """One cell edge measured alone, for lookup tables.

    Edges from node i >= 1 carry the addition that joins their output into node j's sum (node j adds j
    terms, so j-1 additions, one per edge from a node i >= 1); the second term is the input itself.
    """

    def __init__(self, op: str, channels: int, joins_sum: bool):
        super().__init__()
        self.op = make_op(op, channels)
        self.joins_sum = joins_sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op(x)
        return y + x if self.joins_sum else y


def edge_joins_sum(edge: int) -> bool:
    """Whether the edge at string position ``edge`` adds into its node's sum (its source is not node 0)."""
    return EDGES[edge][1] != 0
