"""MoveNet's decoders in torch ops, exported into the ONNX graph as Google's graphs have them.

The NumPy decoders (:func:`.movenet.decode_single_pose`, :func:`.movenet_multipose.decode_multipose`) stay the
reference: these mirror them op for op (same float32 order; MultiPose's steps 5-6 on the whole grid, as Google's
graph computes them), and the tests check that they agree. onnxruntime and OpenVINO then return the decoded
keypoints (output ``decoded``) instead of the raw heads (MultiPose: 1.5 MB of them at 256), which
:meth:`.movenet.MoveNetCodec.decode` passes through. Reached through ``MoveNetCodec.graph_decoder()``.
"""
from __future__ import annotations

import numpy as np
import torch

from .movenet_multipose import MultiposeConstants
from .ops import soft_sigmoid_torch

f32 = np.float32


def _nan_unless_finite(out: torch.Tensor, heads: list[torch.Tensor]) -> torch.Tensor:
    """``out``, or NaN everywhere when any head holds NaN/inf (the Estimator's one ``isfinite`` check then reports
    that the network failed, where the decoding steps would have hidden it)."""
    finite = torch.stack([torch.isfinite(v).all() for v in heads]).all()
    return torch.where(finite, out, torch.full_like(out, float("nan")))


def decode_single_pose_torch(heads: dict[str, torch.Tensor], prior: torch.Tensor, distance_bias: float,
                             grid_scale: torch.Tensor, activation: str = "sigmoid") -> torch.Tensor:
    """:func:`.movenet.decode_single_pose` in torch ops, batch 1, for export into the ONNX graph (as Google's has it).

    Same steps and float32 operation order as the NumPy version; returns (1, 1, K, 3) y, x, score
    normalised. The tests check it against the NumPy decoder on the golden samples. When any head
    holds NaN/inf the whole output is NaN, so the caller (the Estimator's one ``isfinite`` check)
    sees that the network failed even where the decoding steps would have hidden it.
    """
    heatmap, center, regress, offset = heads["heatmap"][0], heads["center"][0, 0], heads["regress"][0], heads["offset"][0]
    k, h, w = heatmap.shape
    act = torch.sigmoid if activation == "sigmoid" else soft_sigmoid_torch
    c = torch.argmax((act(center) * prior).reshape(-1))
    cy, cx = c // w, c % w
    reg = regress[:, cy, cx].reshape(k, 2)
    ky0 = cy.to(torch.float32) + reg[:, 0]
    kx0 = cx.to(torch.float32) + reg[:, 1]
    rows = torch.arange(h, dtype=torch.float32).reshape(1, h, 1)
    cols = torch.arange(w, dtype=torch.float32).reshape(1, 1, w)
    dist = torch.sqrt((rows - ky0.reshape(k, 1, 1)) ** 2 + (cols - kx0.reshape(k, 1, 1)) ** 2) + distance_bias
    heat = act(heatmap).reshape(k, h * w)
    best = torch.argmax(heat / dist.reshape(k, h * w), dim=1)
    ky, kx = best // w, best % w
    off = torch.gather(offset.reshape(k, 2, h * w), 2, best.reshape(k, 1, 1).expand(k, 2, 1)).reshape(k, 2)
    y = (ky.to(torch.float32) + off[:, 0]) * grid_scale[0]
    x = (kx.to(torch.float32) + off[:, 1]) * grid_scale[1]
    score = torch.gather(heat, 1, best.reshape(k, 1)).reshape(k)
    out = torch.stack([y, x, score], dim=1).reshape(1, 1, k, 3)
    return _nan_unless_finite(out, [heatmap, center, regress, offset])


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

    def forward(self, heads: dict[str, torch.Tensor]) -> torch.Tensor:
        return decode_single_pose_torch(heads, self.prior, self.distance_bias, self.grid_scale, self.activation)


def decode_multipose_torch(heads: dict[str, torch.Tensor], consts: MultiposeConstants,
                           activation: str = "sigmoid") -> torch.Tensor:
    """:func:`.movenet_multipose.decode_multipose` in torch ops, batch 1, for export into the ONNX graph: (1, M, 56).

    The steps and float32 order are the NumPy decoder's (its docstring numbers them); steps 5-6 score every cell
    for every instance, as Google's graph does (the NumPy decoder's box windows give the same argmax). The top-k
    of step 2 relies on ONNX ``TopK``'s tie rule (the lower index first), which the NumPy decoder's stable sort
    also follows; torch's own ``topk`` (eager) does not promise it.
    """
    heatmap, center, regress, offset = heads["heatmap"][0], heads["center"][0, 0], heads["regress"][0], heads["offset"][0]
    k, h, w = heatmap.shape
    m, half = consts.num_instances, float(consts.box_half)
    if "box_scale" in heads:
        box_scale, box_offset = heads["box_scale"][0], heads["box_offset"][0]
    else:  # models without box heads: every box is the whole grid
        box_scale = torch.full((2, h, w), 2.0 * max(h, w), dtype=heatmap.dtype)
        box_offset = torch.zeros((2, h, w), dtype=heatmap.dtype)
    act = torch.sigmoid if activation == "sigmoid" else soft_sigmoid_torch

    # 1.-2. centre NMS, top-M centres
    c = act(center)
    pool = torch.nn.functional.max_pool2d(c[None, None], consts.nms_kernel, 1, consts.nms_kernel // 2)[0, 0]
    c = c * ((c - pool).abs() < float(consts.peak_tolerance)).to(c.dtype)
    centre_score, order = torch.topk(c.reshape(-1), m)
    cy, cx = order // w, order % w
    cyf, cxf = cy.to(torch.float32), cx.to(torch.float32)

    # 3. boxes in grid units, clipped to [0, h] x [0, w]
    oy, ox = box_offset.reshape(2, h * w)[:, order]
    sy, sx = torch.clamp(box_scale.reshape(2, h * w)[:, order], min=0)
    by, bx = cyf + oy, cxf + ox
    ymin, ymax = torch.clamp(by - sy * half, 0, h), torch.clamp(by + sy * half, 0, h)
    xmin, xmax = torch.clamp(bx - sx * half, 0, w), torch.clamp(bx + sx * half, 0, w)
    box_grid = torch.stack([ymin, xmin, ymax, xmax], dim=1)
    input_hw = torch.tensor([h, w, h, w], dtype=torch.float32) * consts.stride_int
    box = torch.clamp(box_grid * float(consts.stride) / input_hw, 0, 1)

    # 4. regressed keypoints (M, K)
    reg = regress.reshape(k, 2, h * w)[:, :, order]  # (K, 2, M)
    ry, rx = cyf[:, None] + reg[:, 0].T, cxf[:, None] + reg[:, 1].T

    # 5.-6. every cell's score for every (m, k); the first maximum per (m, k)
    heat = act(heatmap)
    sigma = float(np.float32(min(h, w)) * consts.sigma_scale)
    gy = torch.arange(h, dtype=torch.float32).reshape(1, 1, h, 1)
    gx = torch.arange(w, dtype=torch.float32).reshape(1, 1, 1, w)
    dy, dx = gy - ry[:, :, None, None], gx - rx[:, :, None, None]
    inside = ((gy >= ymin.reshape(m, 1, 1, 1)) & (gy < ymax.reshape(m, 1, 1, 1))
              & (gx >= xmin.reshape(m, 1, 1, 1)) & (gx < xmax.reshape(m, 1, 1, 1)))
    s = heat[None] * torch.exp(-(dy * dy + dx * dx) / sigma) * inside.to(torch.float32)  # (M, K, h, w)
    best = torch.argmax(s.reshape(m, k, h * w), dim=2)  # (M, K)
    ky, kx = best // w, best % w

    # 7. refined, normalised coordinates
    at = best.T  # (K, M): per keypoint, the cells chosen for each instance
    off = offset.reshape(k, 2, h * w)
    off_y, off_x = torch.gather(off[:, 0], 1, at).T, torch.gather(off[:, 1], 1, at).T
    y = (ky.to(torch.float32) + off_y) * float(consts.stride / np.float32(h * consts.stride_int))
    x = (kx.to(torch.float32) + off_x) * float(consts.stride / np.float32(w * consts.stride_int))

    # 8. keypoint score: the maximum over all instances m' of step 5's score at the chosen cell (M, K, M')
    gy, gx = ky.to(torch.float32)[..., None], kx.to(torch.float32)[..., None]
    ey, ex = gy - ry.T[None], gx - rx.T[None]
    inside = (gy >= ymin) & (gy < ymax) & (gx >= xmin) & (gx < xmax)
    chosen = torch.gather(heat.reshape(k, h * w), 1, at).T  # (M, K)
    score = (chosen[..., None] * torch.exp(-(ey * ey + ex * ex) / sigma) * inside.to(torch.float32)).amax(dim=2)

    # 9. instance score
    keep = score > float(consts.keypoint_threshold)
    count = torch.clamp(keep.to(torch.float32).sum(dim=-1), min=1)
    total = (centre_score[:, None] * torch.where(keep, score, torch.zeros_like(score))).sum(dim=-1)
    instance = (1 / count) * total

    # 10. layout (M, 56)
    out = torch.cat([torch.stack([y, x, score], dim=-1).reshape(m, 3 * k), box, instance[:, None]], dim=1)[None]
    return _nan_unless_finite(out, [heatmap, center, regress, offset, box_scale, box_offset])


class MultiPoseDecoder(torch.nn.Module):
    """A MoveNet MultiPose codec's decoder as a module (heads dict -> (1, M, 56)), for ONNX export.

    Args:
        consts: the graph's decoder constants. activation: ``sigmoid`` or ``soft_sigmoid``; as the codec holds them.
    """

    def __init__(self, consts: MultiposeConstants, activation: str = "sigmoid"):
        super().__init__()
        self.consts, self.activation = consts, activation

    def forward(self, heads: dict[str, torch.Tensor]) -> torch.Tensor:
        return decode_multipose_torch(heads, self.consts, self.activation)
