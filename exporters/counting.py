"""FLOPs and parameters of a built module, counted by forward hooks.

FLOPs follow NAS-Bench-201's convention (AutoDL-Projects ``get_model_infos``), which HW-NAS-Bench and HELP
report: multiply-accumulates of every Conv2d and Linear, plus one addition per output element for a bias;
BatchNorm, activations, pooling, additions and the zero op count nothing. The search spaces' per-layer
tables use the same rule and are checked against this count.
"""

from __future__ import annotations

import torch
from torch import nn


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_flops(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Conv2d/Linear multiply-accumulates (+ bias adds) of one forward pass on ``input_shape``."""
    total = 0

    def conv_hook(m: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        positions = output.shape[0] * output.shape[2] * output.shape[3]
        total += kh * kw * (m.in_channels // m.groups) * m.out_channels * positions
        if m.bias is not None:
            total += m.out_channels * positions

    def linear_hook(m: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        rows = output.numel() // m.out_features
        total += rows * m.in_features * m.out_features
        if m.bias is not None:
            total += rows * m.out_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = module.training
    module.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one small forward pass: threads only add contention
    try:
        module(torch.zeros(input_shape))
    finally:
        torch.set_num_threads(threads)
        for h in handles:
            h.remove()
        module.train(was_training)
    return total
