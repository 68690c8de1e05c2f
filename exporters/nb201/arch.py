"""NAS-Bench-201 cell strings: parsing, validation, enumeration, sampling and the fixed-size encoding.

A cell has 4 nodes; node j sums an operation applied to every earlier node i. The string lists the six
edges grouped by target node: ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from exporters.errors import ArchError
from exporters.onehot import decode_one_hot, encode_one_hot

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
# (target node, source node) for each of the six edges, in string order.
EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(1, NUM_NODES) for i in range(j))
NUM_EDGES = len(EDGES)
ENCODING_SIZE = NUM_EDGES * len(OPS)
_OP_INDEX = {op: k for k, op in enumerate(OPS)}


def parse(arch: str) -> tuple[str, ...]:
    """The six edge operations of ``arch`` in string order; ArchError naming the fault otherwise."""
    if not isinstance(arch, str):
        raise ArchError(f"nb201 arch must be a string, got {type(arch).__name__}")
    text = arch.strip()
    nodes = text.split("+")
    if len(nodes) != NUM_NODES - 1:
        raise ArchError(f"nb201 arch {arch!r}: expected 3 node groups joined by '+', found {len(nodes)}")
    ops: list[str] = []
    for j, group in enumerate(nodes, start=1):
        if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
            raise ArchError(f"nb201 arch {arch!r}: node group {group!r} must be written |op~i|...|")
        entries = group[1:-1].split("|")
        if len(entries) != j:
            raise ArchError(f"nb201 arch {arch!r}: node {j} needs {j} inputs, found {len(entries)}")
        for i, entry in enumerate(entries):
            op, sep, src = entry.partition("~")
            if not sep or src != str(i):
                raise ArchError(f"nb201 arch {arch!r}: entry {entry!r} of node {j} must read op~{i}")
            if op not in _OP_INDEX:
                raise ArchError(f"nb201 arch {arch!r}: unknown op {op!r} (ops: {', '.join(OPS)})")
            ops.append(op)
    return tuple(ops)


def to_string(ops: Sequence[str]) -> str:
    """The arch string of six edge operations given in string order."""
    if len(ops) != NUM_EDGES:
        raise ArchError(f"nb201 needs {NUM_EDGES} edge ops, got {len(ops)}")
    groups, k = [], 0
    for j in range(1, NUM_NODES):
        groups.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(j)) + "|")
        k += j
    arch = "+".join(groups)
    parse(arch)
    return arch


def validate(arch: str) -> str:
    """The canonical form of ``arch`` (surrounding blanks removed)."""
    return to_string(parse(arch))


def enumerate_archs() -> Iterator[str]:
    """All 5**6 = 15,625 cells, in a fixed order."""
    for ops in itertools.product(OPS, repeat=NUM_EDGES):
        yield to_string(ops)


def sample(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct cells drawn uniformly without replacement."""
    total = len(OPS) ** NUM_EDGES
    if not 0 <= n <= total:
        raise ArchError(f"nb201 has {total} archs; cannot sample {n}")
    rng = np.random.default_rng(seed)
    picks = rng.choice(total, size=n, replace=False)
    out = []
    for code in picks:
        ops, c = [], int(code)
        for _ in range(NUM_EDGES):
            c, r = divmod(c, len(OPS))
            ops.append(OPS[r])
        out.append(to_string(ops))
    return out


def encode(archs: Iterable[str]) -> np.ndarray:
    """One-hot encoding, shape (n, 30): edge-major, ops in ``OPS`` order."""
    return encode_one_hot([parse(a) for a in archs], OPS)


def decode(encoding: np.ndarray) -> list[str]:
    """The arch strings of one-hot rows as ``encode`` makes them, shape (n, 30) or (30,)."""
    return [to_string(picks) for picks in decode_one_hot(encoding, NUM_EDGES, OPS, "nb201", "edge")]
