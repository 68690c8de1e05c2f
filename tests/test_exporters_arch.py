"""Arch strings of both spaces: errors name the fault; every arch of the shipped data round-trips."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from exporters.errors import ArchError
from exporters.spaces import SPACES, get_space

DATA = Path(__file__).resolve().parents[1] / "measurements" / "hw-nas-bench"
NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
FBNET_ARCH = "-".join(["k3_e1", "k5_e6", "skip", "k3_e1_g2"] * 5 + ["k5_e3", "k5_e1_g2"])


def data_archs(space: str) -> list[str]:
    with open(DATA / f"{space}.csv", newline="") as f:
        return [row["arch"] for row in csv.DictReader(f)]


@pytest.mark.parametrize(
    ("arch", "fragment"),
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "expected 3 node groups"),
        (
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
            "node 2 needs 2",
        ),
        (
            "|conv_5x5~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
            "'conv_5x5'",
        ),
        (
            "|nor_conv_3x3~1|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
            "op~0",
        ),
        (
            "nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
            "|op~i|",
        ),
    ],
)
def test_nb201_parse_errors_name_the_fault(arch: str, fragment: str) -> None:
    with pytest.raises(ArchError) as info:
        get_space("nb201").parse(arch)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("arch", "fragment"),
    [
        ("-".join(["k3_e1"] * 21), "found 21"),
        ("-".join(["k3_e1"] * 10 + ["k7_e6"] + ["k3_e1"] * 11), "'k7_e6' at layer 10"),
        ("k3_e1," * 21 + "k3_e1", "found 1"),
    ],
)
def test_fbnet_parse_errors_name_the_fault(arch: str, fragment: str) -> None:
    with pytest.raises(ArchError) as info:
        get_space("fbnet").parse(arch)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_space_is_a_one_line_arch_error() -> None:
    with pytest.raises(ArchError, match=r"unknown search space 'nb101' \(spaces: nb201, fbnet\)"):
        get_space("nb101")
    assert SPACES == ("nb201", "fbnet")
    assert get_space("NB201") is get_space("nb201")


def test_non_string_arch_is_rejected() -> None:
    for space in SPACES:
        with pytest.raises(ArchError, match="must be a string"):
            get_space(space).validate(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("space", SPACES)
def test_every_data_arch_round_trips(space: str) -> None:
    s = get_space(space)
    archs = data_archs(space)
    assert len(archs) == (15625 if space == "nb201" else 5000)
    assert [s.validate(a) for a in archs] == archs
    encoding = s.encode(archs)
    assert encoding.shape == (len(archs), s.encoding_size)
    assert np.all(encoding.sum(axis=1) == (6 if space == "nb201" else 22))
    assert s.decode(encoding) == archs


def test_nb201_data_holds_exactly_the_enumerated_space() -> None:
    s = get_space("nb201")
    everything = s.enumerate()
    assert len(everything) == len(set(everything)) == 5**6
    assert set(everything) == set(data_archs("nb201"))


def test_fbnet_cannot_be_enumerated_and_samples_are_valid() -> None:
    s = get_space("fbnet")
    with pytest.raises(ArchError, match="cannot be enumerated"):
        s.enumerate()
    picks = s.sample(50, seed=3)
    assert len(set(picks)) == 50
    assert picks == s.sample(50, seed=3)
    assert [s.validate(a) for a in picks] == picks


def test_decode_rejects_what_is_not_one_hot() -> None:
    s = get_space("nb201")
    bad = s.encode([NB201_ARCH])
    bad[0, 0] = 1.0  # edge 0 now has two ops
    with pytest.raises(ArchError, match="row 0 is not one-hot"):
        s.decode(bad)
    with pytest.raises(ArchError, match="must have 198 columns"):
        get_space("fbnet").decode(np.zeros((1, 30)))
