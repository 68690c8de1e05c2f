"""Fixed-size one-hot encodings shared by the search spaces: one slot per edge / layer, one column per choice."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from exporters.errors import ArchError


def encode_one_hot(rows: Sequence[Sequence[str]], choices: Sequence[str]) -> np.ndarray:
    """(n, slots * len(choices)) float32: slot-major, choices in the given order."""
    index = {c: k for k, c in enumerate(choices)}
    slots = len(rows[0]) if rows else 0
    out = np.zeros((len(rows), slots * len(choices)), dtype=np.float32)
    for r, picks in enumerate(rows):
        for slot, choice in enumerate(picks):
            out[r, slot * len(choices) + index[choice]] = 1.0
    return out


def decode_one_hot(encoding: np.ndarray, slots: int, choices: Sequence[str], space: str,
                   slot_word: str) -> list[list[str]]:
    """The choices of each one-hot row; ArchError naming the space and row when a row is not one-hot."""
    rows = np.atleast_2d(np.asarray(encoding))
    width = slots * len(choices)
    if rows.shape[1] != width:
        raise ArchError(f"{space} encoding must have {width} columns, got {rows.shape[1]}")
    out = []
    for r, row in enumerate(rows):
        one_hot = row.reshape(slots, len(choices))
        if not np.all((one_hot == 0) | (one_hot == 1)) or not np.all(one_hot.sum(axis=1) == 1):
            raise ArchError(f"{space} encoding row {r} is not one-hot per {slot_word}")
        out.append([choices[k] for k in one_hot.argmax(axis=1)])
    return out
