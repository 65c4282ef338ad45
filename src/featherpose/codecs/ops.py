"""Small numeric helpers shared by the codecs (NumPy; ``soft_sigmoid_torch`` also serves the losses)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def soft_sigmoid(x: np.ndarray) -> np.ndarray:
    """Seed 003's cheaper stand-in for the sigmoid, ``0.5 * x / (1 + |x|) + 0.5`` (float32)."""
    x = np.asarray(x, np.float32)
    return (np.float32(0.5) * x / (np.float32(1) + np.abs(x)) + np.float32(0.5)).astype(np.float32)


def soft_sigmoid_torch(x: torch.Tensor) -> torch.Tensor:
    """:func:`soft_sigmoid` on torch tensors, differentiable (the losses and the in-graph decoder)."""
    return 0.5 * x / (1 + x.abs()) + 0.5


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 logistic function, written as TF evaluates it: 1 / (1 + exp(-x))."""
    with np.errstate(over="ignore"):  # exp(-x) -> inf for very negative logits gives the right 0
        return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)


ACTIVATIONS = {"sigmoid": sigmoid, "soft_sigmoid": soft_sigmoid}
