"""Networks: plain ``nn.Module`` s whose forward returns raw head tensors (no decoding, no file I/O)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a network is built: `featherpose.models` itself is loaded without it
    from torch import nn


def complexity(model: nn.Module, input_hw: tuple[int, int]) -> tuple[int, float]:
    """(parameters, FLOPs of one forward pass on one (1, 3, H, W) input), FLOPs counted by torch's
    ``FlopCounterMode`` (a multiply-add counts 2; convolutions and matrix products only)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, *input_hw))
    model.train(was_training)
    return params, float(counter.get_total_flops())
