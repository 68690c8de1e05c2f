"""FBNet (CIFAR-100 variant of HW-NAS-Bench) architecture strings: 22 block names joined by '-'."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from exporters.errors import ArchError

BLOCKS: tuple[str, ...] = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
NUM_LAYERS = 22
ENCODING_SIZE = NUM_LAYERS * len(BLOCKS)
_BLOCK_INDEX = {b: k for k, b in enumerate(BLOCKS)}


def parse(arch: str) -> tuple[str, ...]:
    """The 22 block names of ``arch``; ArchError naming the fault otherwise."""
    if not isinstance(arch, str):
        raise ArchError(f"fbnet arch must be a string, got {type(arch).__name__}")
    blocks = tuple(arch.strip().split("-"))
    if len(blocks) != NUM_LAYERS:
        raise ArchError(f"fbnet arch {arch!r}: expected {NUM_LAYERS} blocks joined by '-', found {len(blocks)}")
    for layer, block in enumerate(blocks):
        if block not in _BLOCK_INDEX:
            raise ArchError(
                f"fbnet arch {arch!r}: unknown block {block!r} at layer {layer} (blocks: {', '.join(BLOCKS)})"
            )
    return blocks


def to_string(blocks: Sequence[str]) -> str:
    arch = "-".join(blocks)
    parse(arch)
    return arch


def validate(arch: str) -> str:
    return to_string(parse(arch))


def sample(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct archs, each layer's block drawn uniformly."""
    if n < 0:
        raise ArchError(f"cannot sample {n} fbnet archs")
    rng = np.random.default_rng(seed)
    seen: dict[str, None] = {}
    while len(seen) < n:
        picks = rng.integers(len(BLOCKS), size=NUM_LAYERS)
        seen.setdefault("-".join(BLOCKS[k] for k in picks))
    return list(seen)


def encode(archs: Iterable[str]) -> np.ndarray:
    """One-hot encoding, shape (n, 198): layer-major, blocks in ``BLOCKS`` order."""
    rows = [parse(a) for a in archs]
    out = np.zeros((len(rows), ENCODING_SIZE), dtype=np.float32)
    for r, blocks in enumerate(rows):
        for layer, block in enumerate(blocks):
            out[r, layer * len(BLOCKS) + _BLOCK_INDEX[block]] = 1.0
    return out


def decode(encoding: np.ndarray) -> list[str]:
    """The arch strings of one-hot rows as ``encode`` makes them, shape (n, 198) or (198,)."""
    rows = np.atleast_2d(np.asarray(encoding))
    if rows.shape[1] != ENCODING_SIZE:
        raise ArchError(f"fbnet encoding must have {ENCODING_SIZE} columns, got {rows.shape[1]}")
    out = []
    for r, row in enumerate(rows):
        one_hot = row.reshape(NUM_LAYERS, len(BLOCKS))
        if not np.all((one_hot == 0) | (one_hot == 1)) or not np.all(one_hot.sum(axis=1) == 1):
            raise ArchError(f"fbnet encoding row {r} is not one-hot per layer")
        out.append(to_string([BLOCKS[k] for k in one_hot.argmax(axis=1)]))
    return out
