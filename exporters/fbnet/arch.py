"""FBNet (CIFAR-100 variant of HW-NAS-Bench) architecture strings: 22 block names joined by '-'."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from exporters.errors import ArchError
from exporters.onehot import decode_one_hot, encode_one_hot

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
    return encode_one_hot([parse(a) for a in archs], BLOCKS)


def decode(encoding: np.ndarray) -> list[str]:
    """The arch strings of one-hot rows as ``encode`` makes them, shape (n, 198) or (198,)."""
    return [to_string(picks) for picks in decode_one_hot(encoding, NUM_LAYERS, BLOCKS, "fbnet", "layer")]
