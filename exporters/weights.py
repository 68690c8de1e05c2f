"""Deterministic, well-scaled weights for modules that are built to be timed, not trained.

Latency does not depend on weight values, but two things do depend on them: the export must be reproducible
(same architecture, same file), and the numbers flowing through the network must stay in a normal float
range. Freshly initialised BatchNorm layers (running mean 0, variance 1) leave activations unnormalised, so
a stack of skip connections can grow them by orders of magnitude, which makes the onnxruntime-vs-torch
comparison meaningless and can push CPUs into slow denormal arithmetic on the way down. So every module is
built under a seed derived from its name, and its BatchNorm running statistics are then set from one batch
of seeded random input, the way a trained network's would be: every BN output is roughly unit-scale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import nn

CALIBRATION_BATCH = 4


def seed_for(text: str) -> int:
    """A 31-bit seed that depends only on ``text``."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) & 0x7FFFFFFF


@torch.no_grad()
def calibrate_batchnorm(module: nn.Module, input_shape: tuple[int, ...], seed: int) -> None:
    """Set every BatchNorm's running mean/var from one seeded random batch (cumulative average)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    generator = torch.Generator().manual_seed(seed)
    batch = torch.randn((CALIBRATION_BATCH, *input_shape[1:]), generator=generator)
    module.train()
    threads = torch.get_num_threads()
    # Tiny 32x32 batches gain nothing from intra-op threads and lose a lot on a busy machine.
    torch.set_num_threads(1)
    try:
        module(batch)
    finally:
        torch.set_num_threads(threads)
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
        module.eval()


def build_seeded(factory: Callable[[], nn.Module], name: str, input_shape: tuple[int, ...]) -> nn.Module:
    """``factory()`` under a seed derived from ``name``, BatchNorm calibrated, in eval mode.

    The global torch RNG is left as it was.
    """
    seed = seed_for(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = factory()
    calibrate_batchnorm(module, input_shape, seed)
    return module.eval()
