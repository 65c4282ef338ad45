"""Small numeric helpers shared by the codecs."""
from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 logistic function, written as TF evaluates it: 1 / (1 + exp(-x))."""
    with np.errstate(over="ignore"):  # exp(-x) -> inf for very negative logits gives the right 0
        return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)
