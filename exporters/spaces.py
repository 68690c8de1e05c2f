"""The search spaces behind one interface: ``get_space("nb201")`` / ``get_space("fbnet")``.

A ``SearchSpace`` turns architecture strings into encodings and eval-mode torch modules, counts FLOPs and
parameters from per-layer tables, and cuts the network into the (layer, block) units a lookup table measures.

Lookup-table units (``layers()``) cover the whole network, fixed parts included, so that for any arch
``sum(lut[key][choice] for key, choice in arch_layers(arch))`` stands for the whole network:

- FBNet: ``stem``, ``layer00`` .. ``layer21`` (9 blocks each, at that layer's channels/stride/input size),
  ``head`` (Conv1x1 to 1504 + BN + ReLU, pool, classifier). The network is a plain chain of these.
- NB201: ``stem``, ``stage{s}.node{j}.from{i}`` (5 ops each; s = 0, 1, 2 is the stage, j <- i the cell
  edge), ``reduce1``, ``reduce2`` (the fixed residual blocks between stages) and ``head``. An edge's cost
  depends only on its op and the stage's shape, never on which of the 5 identical cells of a stage holds it,
  so the unit is (stage, edge, op) and ``arch_layers`` lists each stage's 6 edges once per cell (5 times).
  The edge is kept in the key (rather than pooling the 6 edges of a stage) because edges differ in one
  thing: an edge from node i >= 1 also pays the addition that joins it into node j's sum, which an edge
  from node 0 does not; so the LUT also covers the cells' additions.

Fixed units have the single choice ``FIXED``. FLOPs follow ``exporters.counting`` (NAS-Bench-201's rule).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from exporters.errors import ArchError
from exporters.fbnet import arch as fbnet_arch
from exporters.nb201 import arch as nb201_arch

if TYPE_CHECKING:
    from torch import nn

SPACES: tuple[str, ...] = ("nb201", "fbnet")
FIXED = "fixed"
INPUT_SHAPE: tuple[int, int, int, int] = (1, 3, 32, 32)


@dataclass(frozen=True)
class Layer:
    """One lookup-table unit: a stable key, the input shape it is measured at, the blocks it can hold."""

    key: str
    input_shape: tuple[int, ...]
    choices: tuple[str, ...]

    @property
    def fixed(self) -> bool:
        return self.choices == (FIXED,)


@dataclass(frozen=True)
class Cost:
    flops: int
    params: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.params + other.params)

    def __mul__(self, n: int) -> Cost:
        return Cost(self.flops * n, self.params * n)


ZERO = Cost(0, 0)


def conv_cost(c_in: int, c_out: int, kernel: int, size_out: int, groups: int = 1, bias: bool = False) -> Cost:
    positions = size_out * size_out
    flops = kernel * kernel * (c_in // groups) * c_out * positions + (c_out * positions if bias else 0)
    params = kernel * kernel * (c_in // groups) * c_out + (c_out if bias else 0)
    return Cost(flops, params)


def bn_cost(channels: int) -> Cost:
    return Cost(0, 2 * channels)


def linear_cost(c_in: int, c_out: int) -> Cost:
    return Cost(c_in * c_out + c_out, c_in * c_out + c_out)


class SearchSpace:
    """Common interface; ``NB201Space`` and ``FBNetSpace`` fill it in."""

    name: str
    choices: tuple[str, ...]
    encoding_size: int
    input_shape: tuple[int, ...] = INPUT_SHAPE
    num_classes: int
    _arch: Any  # the space's arch module

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_classes={self.num_classes})"

    # ---- strings and encodings (delegated to the space's arch module)
    def parse(self, arch: str) -> tuple[str, ...]:
        return self._arch.parse(arch)

    def validate(self, arch: str) -> str:
        return self._arch.validate(arch)

    def sample(self, n: int, seed: int = 0) -> list[str]:
        return self._arch.sample(n, seed=seed)

    def encode(self, archs: str | list[str]) -> np.ndarray:
        return self._arch.encode([archs] if isinstance(archs, str) else archs)

    def decode(self, encoding: np.ndarray) -> list[str]:
        return self._arch.decode(encoding)

    def enumerate(self) -> list[str]:
        raise NotImplementedError

    # ---- modules
    def build(self, arch: str) -> nn.Module:
        """The eval-mode network for ``arch``; same arch, same weights (see ``exporters.weights``)."""
        from exporters.weights import build_seeded

        arch = self.validate(arch)
        choices = self.parse(arch)
        return build_seeded(
            lambda: self._network(choices), f"{self.name}:{self.num_classes}:{arch}", self.input_shape
        )

    def layers(self) -> list[Layer]:
        return list(self._layers_by_key().values())

    def layer(self, key: str) -> Layer:
        layers = self._layers_by_key()
        if key not in layers:
            raise ArchError(
                f"{self.name} has no layer {key!r} (layers: {', '.join(list(layers)[:4])}, ..., see layers())"
            )
        return layers[key]

    def layer_module(self, key: str, choice: str) -> tuple[nn.Module, tuple[int, ...]]:
        """The eval-mode module of one unit holding ``choice``, and the input shape it runs on."""
        from exporters.weights import build_seeded

        layer = self.layer(key)
        if choice not in layer.choices:
            raise ArchError(
                f"{self.name} layer {key!r} has no choice {choice!r} (choices: {', '.join(layer.choices)})"
            )
        module = build_seeded(
            lambda: self._unit_module(key, choice),
            f"{self.name}:{self.num_classes}:{key}:{choice}",
            layer.input_shape,
        )
        return module, layer.input_shape

    def arch_layers(self, arch: str) -> list[tuple[str, str]]:
        """The (key, choice) units ``arch`` is made of, in network order, repeated units repeated."""
        raise NotImplementedError

    # ---- costs
    def layer_cost(self, key: str, choice: str) -> Cost:
        layer = self.layer(key)
        if choice not in layer.choices:
            raise ArchError(
                f"{self.name} layer {key!r} has no choice {choice!r} (choices: {', '.join(layer.choices)})"
            )
        return self._cost_table()[key, choice]

    def cost(self, arch: str) -> Cost:
        table = self._cost_table()
        total = ZERO
        for unit in self.arch_layers(arch):
            total = total + table[unit]
        return total

    def flops(self, arch: str) -> int:
        """Conv/Linear multiply-accumulates (NAS-Bench-201's FLOPs) of the whole network, from the table."""
        return self.cost(arch).flops

    def params(self, arch: str) -> int:
        return self.cost(arch).params

    # ---- filled in per space
    def _network(self, choices: tuple[str, ...]) -> nn.Module:
        raise NotImplementedError

    def _unit_module(self, key: str, choice: str) -> nn.Module:
        raise NotImplementedError

    def _layers_by_key(self) -> dict[str, Layer]:
        raise NotImplementedError

    def _cost_table(self) -> dict[tuple[str, str], Cost]:
        raise NotImplementedError


class NB201Space(SearchSpace):
    """NAS-Bench-201 (C=16, N=5, 32x32 input, 10 classes as in the HW-NAS-Bench CIFAR-10 latencies)."""

    name = "nb201"
    choices = nb201_arch.OPS
    encoding_size = nb201_arch.ENCODING_SIZE
    _arch = nb201_arch

    def __init__(self, num_classes: int = 10):
        self.num_classes = int(num_classes)
        if self.num_classes < 1:
            raise ArchError(f"nb201 num_classes must be >= 1, got {num_classes}")

    def enumerate(self) -> list[str]:
        return list(nb201_arch.enumerate_archs())

    def _network(self, choices: tuple[str, ...]) -> nn.Module:
        from exporters.nb201.model import TinyNetwork

        return TinyNetwork(choices, num_classes=self.num_classes)

    @staticmethod
    def edge_key(stage: int, edge: int) -> str:
        j, i = nb201_arch.EDGES[edge]
        return f"stage{stage}.node{j}.from{i}"

    @functools.cache  # noqa: B019 -- spaces are few and live as long as the process
    def _layers_by_key(self) -> dict[str, Layer]:
        from exporters.nb201 import model as m

        def shape(stage: int) -> tuple[int, ...]:
            return (1, m.stage_channels(stage), m.stage_size(stage), m.stage_size(stage))

        layers = [Layer("stem", INPUT_SHAPE, (FIXED,))]
        for stage in range(m.NUM_STAGES):
            if stage > 0:
                layers.append(Layer(f"reduce{stage}", shape(stage - 1), (FIXED,)))
            layers.extend(
                Layer(self.edge_key(stage, e), shape(stage), self.choices)
                for e in range(nb201_arch.NUM_EDGES)
            )
        layers.append(Layer("head", shape(m.NUM_STAGES - 1), (FIXED,)))
        return {layer.key: layer for layer in layers}

    def arch_layers(self, arch: str) -> list[tuple[str, str]]:
        from exporters.nb201 import model as m

        ops = self.parse(arch)
        units = [("stem", FIXED)]
        for stage in range(m.NUM_STAGES):
            if stage > 0:
                units.append((f"reduce{stage}", FIXED))
            for _ in range(m.CELLS_PER_STAGE):
                units.extend((self.edge_key(stage, e), op) for e, op in enumerate(ops))
        units.append(("head", FIXED))
        return units

    def _unit_module(self, key: str, choice: str) -> nn.Module:
        from exporters.nb201 import model as m

        if key == "stem":
            return m.Stem()
        if key == "head":
            return m.Head(m.stage_channels(m.NUM_STAGES - 1), self.num_classes)
        if key.startswith("reduce"):
            stage = int(key[len("reduce") :])
            return m.ResidualReduction(m.stage_channels(stage - 1), m.stage_channels(stage))
        stage = int(key[len("stage")])
        edge = next(e for e in range(nb201_arch.NUM_EDGES) if self.edge_key(stage, e) == key)
        return m.EdgeUnit(choice, m.stage_channels(stage), m.edge_joins_sum(edge))

    @functools.cache  # noqa: B019
    def _op_costs(self) -> dict[tuple[int, str], Cost]:
        """Cost of one edge holding ``op`` in ``stage``."""
        from exporters.nb201 import model as m

        out = {}
        for stage in range(m.NUM_STAGES):
            c, size = m.stage_channels(stage), m.stage_size(stage)
            for op in self.choices:
                if op == "nor_conv_1x1":
                    out[stage, op] = conv_cost(c, c, 1, size) + bn_cost(c)
                elif op == "nor_conv_3x3":
                    out[stage, op] = conv_cost(c, c, 3, size) + bn_cost(c)
                else:
                    out[stage, op] = ZERO
        return out

    @functools.cache  # noqa: B019
    def _fixed_costs(self) -> dict[str, Cost]:
        from exporters.nb201 import model as m

        out = {"stem": conv_cost(3, m.STEM_CHANNELS, 3, m.INPUT_SIZE) + bn_cost(m.STEM_CHANNELS)}
        for stage in range(1, m.NUM_STAGES):
            c_in, c_out, size = m.stage_channels(stage - 1), m.stage_channels(stage), m.stage_size(stage)
            out[f"reduce{stage}"] = (
                conv_cost(c_in, c_out, 3, size)
                + bn_cost(c_out)
                + conv_cost(c_out, c_out, 3, size)
                + bn_cost(c_out)
                + conv_cost(c_in, c_out, 1, size)
            )
        c_last = m.stage_channels(m.NUM_STAGES - 1)
        out["head"] = bn_cost(c_last) + linear_cost(c_last, self.num_classes)
        return out

    @functools.cache  # noqa: B019
    def _cost_table(self) -> dict[tuple[str, str], Cost]:
        from exporters.nb201 import model as m

        table = {(key, FIXED): cost for key, cost in self._fixed_costs().items()}
        op_costs = self._op_costs()
        for stage in range(m.NUM_STAGES):
            for e in range(nb201_arch.NUM_EDGES):
                for op in self.choices:
                    table[self.edge_key(stage, e), op] = op_costs[stage, op]
        return table

    def cost(self, arch: str) -> Cost:
        # Fast path (15,625 archs well under a second): per cell, sum the six edges over the stages.
        from exporters.nb201 import model as m

        ops = self.parse(arch)
        op_costs = self._op_costs()
        total = functools.reduce(Cost.__add__, self._fixed_costs().values(), ZERO)
        for stage in range(m.NUM_STAGES):
            for op in ops:
                total = total + op_costs[stage, op] * m.CELLS_PER_STAGE
        return total


class FBNetSpace(SearchSpace):
    """HW-NAS-Bench's FBNet space, CIFAR-100 variant (32x32 input, 100 classes)."""

    name = "fbnet"
    choices = fbnet_arch.BLOCKS
    encoding_size = fbnet_arch.ENCODING_SIZE
    _arch = fbnet_arch

    def __init__(self, num_classes: int = 100):
        self.num_classes = int(num_classes)
        if self.num_classes < 1:
            raise ArchError(f"fbnet num_classes must be >= 1, got {num_classes}")

    def enumerate(self) -> list[str]:
        total = len(self.choices) ** fbnet_arch.NUM_LAYERS
        raise ArchError(f"fbnet has 9^22 = {total:.2e} archs and cannot be enumerated; use sample(n)")

    def _network(self, choices: tuple[str, ...]) -> nn.Module:
        from exporters.fbnet.model import FBNet

        return FBNet(choices, num_classes=self.num_classes)

    @staticmethod
    def layer_key(index: int) -> str:
        return f"layer{index:02d}"

    @functools.cache  # noqa: B019
    def _layers_by_key(self) -> dict[str, Layer]:
        from exporters.fbnet import model as m

        shapes = m.layer_shapes()
        layers = [Layer("stem", INPUT_SHAPE, (FIXED,))]
        layers.extend(
            Layer(self.layer_key(s.index), (1, s.c_in, s.size_in, s.size_in), self.choices) for s in shapes
        )
        last = shapes[-1]
        layers.append(Layer("head", (1, last.c_out, last.size_out, last.size_out), (FIXED,)))
        return {layer.key: layer for layer in layers}

    def arch_layers(self, arch: str) -> list[tuple[str, str]]:
        blocks = self.parse(arch)
        return [("stem", FIXED), *((self.layer_key(i), b) for i, b in enumerate(blocks)), ("head", FIXED)]

    def _unit_module(self, key: str, choice: str) -> nn.Module:
        from exporters.fbnet import model as m

        if key == "stem":
            return m.Stem()
        if key == "head":
            return m.Head(self.num_classes)
        return m.make_block(choice, m.layer_shapes()[int(key[len("layer") :])])

    @functools.cache  # noqa: B019
    def _cost_table(self) -> dict[tuple[str, str], Cost]:
        from exporters.fbnet import model as m

        table = {("stem", FIXED): conv_cost(3, m.STEM_CHANNELS, 3, m.INPUT_SIZE) + bn_cost(m.STEM_CHANNELS)}
        for s in m.layer_shapes():
            for block in self.choices:
                spec = m.BLOCK_SPECS[block]
                if spec is None:
                    identity = s.stride == 1 and s.c_in == s.c_out
                    cost = ZERO if identity else conv_cost(s.c_in, s.c_out, 1, s.size_out) + bn_cost(s.c_out)
                else:
                    mid = s.c_in * spec.expansion
                    cost = (
                        conv_cost(s.c_in, mid, 1, s.size_in, groups=spec.groups)
                        + bn_cost(mid)
                        + conv_cost(mid, mid, spec.kernel, s.size_out, groups=mid)
                        + bn_cost(mid)
                        + conv_cost(mid, s.c_out, 1, s.size_out, groups=spec.groups)
                        + bn_cost(s.c_out)
                    )
                table[self.layer_key(s.index), block] = cost
        size = m.layer_shapes()[-1].size_out
        table["head", FIXED] = (
            conv_cost(m.STAGE_CHANNELS[-1], m.HEAD_CHANNELS, 1, size)
            + bn_cost(m.HEAD_CHANNELS)
            + linear_cost(m.HEAD_CHANNELS, self.num_classes)
        )
        return table


_ALIASES = {"nb201": "nb201", "nasbench201": "nb201", "nas-bench-201": "nb201", "fbnet": "fbnet"}


@functools.cache
def _default_space(name: str) -> SearchSpace:
    return NB201Space() if name == "nb201" else FBNetSpace()


def get_space(name: str) -> SearchSpace:
    """The search space called ``name`` (``nb201`` or ``fbnet``); ArchError for any other name."""
    canonical = _ALIASES.get(str(name).strip().lower())
    if canonical is None:
        raise ArchError(f"unknown search space {name!r} (spaces: {', '.join(SPACES)})")
    return _default_space(canonical)


def iter_spaces() -> Iterator[SearchSpace]:
    for name in SPACES:
        yield get_space(name)
