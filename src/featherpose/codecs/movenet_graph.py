"""MoveNet's single-pose decoder in torch ops, exported into the ONNX graph as Google's graphs have it.

The NumPy decoder (:func:`.movenet.decode_single_pose`) stays the reference: this one mirrors it op
for op (same float32 order), and the tests check the two agree on the golden samples. onnxruntime
then returns the decoded keypoints (output ``decoded``) instead of the raw heads, which
:meth:`.movenet.MoveNetCodec.decode` passes through. Reached through ``MoveNetCodec.graph_decoder()``.
"""
from __future__ import annotations

import numpy as np
import torch

from .ops import soft_sigmoid_torch

f32 = np.float32
#: the heads :func:`decode_single_pose_torch` reads at K + 1 cells, not whole (:func:`at_cells`)
SPARSE_HEADS = ("regress", "offset")


def first_argmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.argmax(x, dim)`` (the first index of the maximum) as a max, a compare and a min: exported as
    ReduceMax / Equal / ReduceMin instead of ArgMax, which OpenVINO runs as a TopK that took 0.58 ms of Lightning's
    1.95 ms network (benchmarks/RESULTS.md, "Speed"). Where ``x`` holds NaN no element equals its maximum: the
    last index then, in range (the decoder's output is NaN in that case anyway)."""
    n = x.shape[dim]
    index = torch.arange(n).reshape([n if d == dim % x.dim() else 1 for d in range(x.dim())])
    return torch.where(x == x.amax(dim, keepdim=True), index, n - 1).amin(dim)


def at_cells(head, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """A head's values at grid cells (ys[i], xs[i]), (N, C): from its map (1, C, h, w), or from the network's head
    itself where it came as a function of cells (``MoveNet.forward(..., sparse=...)``, not computed elsewhere)."""
    if isinstance(head, torch.Tensor):
        c, w = head.shape[1], head.shape[3]
        return head[0].reshape(c, -1).index_select(1, ys.reshape(-1) * w + xs.reshape(-1)).transpose(0, 1)
    return head(ys, xs)


def decode_single_pose_torch(heads: dict, prior: torch.Tensor, distance_bias: float,
                             grid_scale: torch.Tensor, activation: str = "sigmoid") -> torch.Tensor:
    """:func:`.movenet.decode_single_pose` in torch ops, batch 1, for export into the ONNX graph (as Google's has it).

    Same steps and float32 operation order as the NumPy version; returns (1, 1, K, 3) y, x, score
    normalised. The tests check it against the NumPy decoder on the golden samples. ``regress`` and ``offset``
    are read at K + 1 cells only, so they may come as functions of cells (:func:`at_cells`, :data:`SPARSE_HEADS`).
    When any head value it reads holds NaN/inf the whole output is NaN, so the caller (the Estimator's one
    ``isfinite`` check) sees that the network failed even where the decoding steps would have hidden it.
    """
    heatmap, center = heads["heatmap"][0], heads["center"][0, 0]
    k, h, w = heatmap.shape
    act = torch.sigmoid if activation == "sigmoid" else soft_sigmoid_torch
    c = first_argmax((act(center) * prior).reshape(-1), 0)
    cy, cx = c // w, c % w
    reg = at_cells(heads["regress"], cy, cx).reshape(k, 2)
    ky0 = cy.to(torch.float32) + reg[:, 0]
    kx0 = cx.to(torch.float32) + reg[:, 1]
    rows = torch.arange(h, dtype=torch.float32).reshape(1, h, 1)
    cols = torch.arange(w, dtype=torch.float32).reshape(1, 1, w)
    dist = torch.sqrt((rows - ky0.reshape(k, 1, 1)) ** 2 + (cols - kx0.reshape(k, 1, 1)) ** 2) + distance_bias
    heat = act(heatmap).reshape(k, h * w)
    best = first_argmax(heat / dist.reshape(k, h * w), 1)
    ky, kx = best // w, best % w
    own = torch.arange(k)
    off = at_cells(heads["offset"], ky, kx).reshape(k, k, 2)[own, own]  # keypoint i's (y, x) at its own cell
    y = (ky.to(torch.float32) + off[:, 0]) * grid_scale[0]
    x = (kx.to(torch.float32) + off[:, 1]) * grid_scale[1]
    score = torch.gather(heat, 1, best.reshape(k, 1)).reshape(k)
    out = torch.stack([y, x, score], dim=1).reshape(1, 1, k, 3)
    # 0 when every head value is finite (x * 0 = 0), NaN when any is NaN/inf: two cheap nodes a tensor, exactly. A
    # head given as a function of cells is checked where it was read; the full heatmap covers the features it reads.
    maps = [heads[name] for name in SPARSE_HEADS if isinstance(heads[name], torch.Tensor)]
    poison = sum((v * 0).sum() for v in (heatmap, center, reg, off, *maps))
    return out + poison


class SinglePoseDecoder(torch.nn.Module):
    """A MoveNet codec's single-pose decoder as a module (heads dict -> (1, 1, K, 3)), for ONNX export.

    Args:
        prior: (h, w) centre prior. distance_bias, grid_scale: (2,) y, x factors. activation: ``sigmoid``
            or ``soft_sigmoid``; all as the codec holds them.
    """

    def __init__(self, prior: np.ndarray, distance_bias: float, grid_scale: np.ndarray, activation: str = "sigmoid"):
        super().__init__()
        self.register_buffer("prior", torch.from_numpy(np.asarray(prior, f32).copy()))
        self.register_buffer("grid_scale", torch.from_numpy(np.asarray(grid_scale, f32).copy()))
        self.distance_bias = float(distance_bias)
        self.activation = activation

    #: heads read at a few cells only: a network may give them as functions of cells (``MoveNet.forward``'s ``sparse``)
    sparse_heads = SPARSE_HEADS

    def forward(self, heads: dict) -> torch.Tensor:
        return decode_single_pose_torch(heads, self.prior, self.distance_bias, self.grid_scale, self.activation)
