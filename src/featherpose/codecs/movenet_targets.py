"""MoveNet training targets: the ``encode`` half of the MoveNet codec (seed 003's reproduction).

Dimensions: N people, K keypoints, input [H, W] pixels, grid [h, w] = [H/s, W/s] for stride s.
Grid coordinates are ``pixel / s`` with cell (i, j) centred on pixel (i*s, j*s), which is the
convention of Google's decoder (``y = (cell + offset) / h`` normalised).

Targets (all float32, channel-first, (y, x) interleaved like the heads):
    heatmap (K, h, w)    every visible keypoint of every person: a kernel peaking at 1 on the
                         keypoint's nearest cell, radius from the person's size; people combine by max
    center  (1, h, w)    the same kernel at each person's centre (centre of the visible keypoints'
                         bounding box, or their arithmetic mean)
    regress (2K, h, w)   keypoint - cell, in cells, written at the centre cell and its 3x3
                         neighbourhood (each cell gets its own displacement; centre cells win overlaps)
    offset  (2K, h, w)   keypoint - nearest cell (in [-0.5, 0.5]) at that cell
    regress_mask, offset_mask (2K, h, w)  1 where the two above are defined
    box_scale, box_offset, box_mask (2, h, w)  only when person boxes are given (the box heads of
                         Google's MultiPose): box height, width in cells and box centre - cell,
                         written where the regression is; the box is grown to hold every
                         labelled keypoint with a cell to spare
    weight  (1, h, w)    0 on ignored regions (crowds, unlabelled people), else 1
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

f32 = np.float32
_LN100 = float(np.log(100.0))  # kernels fall to 0.01 at the radius and are cut to 0 beyond it


@dataclass
class TargetConfig:
    """How targets are drawn.

    Attributes:
        kernel: ``exponential`` (exp(-d ln100 / r), the sharp-peaked curve the seed chose over a
            Gaussian so that the decoder's distance weighting separates nearby peaks) or ``gaussian``
            (exp(-d^2 ln100 / r^2)).
        radius_scale: kernel radius in cells = radius_scale * sqrt(person box area in cells),
            clipped to [min_radius, max_radius].
        min_radius, max_radius: radius bounds in cells.
        center: ``box`` (centre of the visible keypoints' bounding box, the seed's choice) or
            ``mean`` (their arithmetic mean, as Google describes).
        neighbourhood: regression is written on the (2n+1)^2 cells around each centre.
    """

    kernel: str = "exponential"
    radius_scale: float = 0.15
    min_radius: float = 1.5
    max_radius: float = 6.0
    center: str = "box"
    neighbourhood: int = 1

    def __post_init__(self):
        if self.kernel not in ("exponential", "gaussian"):
            raise ValueError(f"unknown heatmap kernel {self.kernel!r}; choose exponential or gaussian")
        if self.center not in ("box", "mean"):
            raise ValueError(f"unknown centre definition {self.center!r}; choose box or mean")


def render_kernels(grid_hw: tuple[int, int], cells: np.ndarray, radius: float, kind: str) -> np.ndarray:
    """(P, h, w) kernels peaking at 1 on each of the P integer ``cells`` (P, 2) y, x; 0 beyond ``radius``."""
    h, w = grid_hw
    dy = np.arange(h, dtype=f32)[None, :, None] - cells[:, 0, None, None]
    dx = np.arange(w, dtype=f32)[None, None, :] - cells[:, 1, None, None]
    d2 = dy * dy + dx * dx
    if kind == "gaussian":
        k = np.exp(-d2 * f32(_LN100 / radius ** 2))
    else:
        k = np.exp(-np.sqrt(d2) * f32(_LN100 / radius))
    k[d2 > radius * radius] = 0
    return k.astype(f32)


def person_centres(yx: np.ndarray, visible: np.ndarray, how: str) -> np.ndarray:
    """(N, 2) centre of each person's visible keypoints (grid units): bounding-box centre or mean."""
    centres = np.full((len(yx), 2), np.nan, f32)
    seen = visible.any(axis=1)  # people without a visible keypoint have no centre
    big = np.where(visible[seen, :, None], yx[seen], np.nan)
    if how == "mean":
        centres[seen] = np.nanmean(big, axis=1)
    else:
        centres[seen] = (np.nanmin(big, axis=1) + np.nanmax(big, axis=1)) / 2
    return centres


def encode_movenet(keypoints: np.ndarray, input_hw: tuple[int, int], stride: int = 4,
                   config: TargetConfig | None = None, ignore: np.ndarray | None = None,
                   boxes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Build MoveNet targets for one image.

    Args:
        keypoints: (N, K, 3) x, y, v in input pixels; v > 0 means labelled and inside the image.
        input_hw: network input (H, W).
        stride: input pixels per grid cell.
        config: kernel and centre choices.
        ignore: optional (H, W) bool mask of regions whose heatmap / centre loss is ignored.
        boxes: optional (N, 4) x1, y1, x2, y2 person boxes in input pixels, for box-head targets.

    Returns:
        The target dict described in the module docstring.
    """
    cfg = config or TargetConfig()
    H, W = input_hw
    h, w = H // stride, W // stride
    kp = np.asarray(keypoints, f32)
    if kp.ndim != 3 or kp.shape[2] != 3:
        raise ValueError(f"keypoints must be (N, K, 3) x, y, v; got shape {kp.shape}")
    if H % stride or W % stride:
        raise ValueError(f"input size {H}x{W} is not a multiple of the stride {stride}")
    n, k = kp.shape[:2]
    yx = kp[..., 1::-1] / f32(stride)  # (N, K, 2) grid y, x
    cells = np.rint(yx)
    visible = (kp[..., 2] > 0) & (cells[..., 0] >= 0) & (cells[..., 0] < h) & (cells[..., 1] >= 0) & (cells[..., 1] < w)
    out = {
        "heatmap": np.zeros((k, h, w), f32), "center": np.zeros((1, h, w), f32),
        "regress": np.zeros((2 * k, h, w), f32), "offset": np.zeros((2 * k, h, w), f32),
        "regress_mask": np.zeros((2 * k, h, w), f32), "offset_mask": np.zeros((2 * k, h, w), f32),
        "weight": np.ones((1, h, w), f32),
    }
    if boxes is not None:
        # The box must hold every labelled keypoint's cell (the decoder looks only inside it): the
        # person box, grown to the visible keypoints' extent plus one cell.
        box_yx = np.asarray(boxes, f32).reshape(-1, 4)[:, [1, 0, 3, 2]].reshape(-1, 2, 2) / f32(stride)
        lo = np.where(visible[..., None], yx, np.inf).min(axis=1) - 1
        hi = np.where(visible[..., None], yx, -np.inf).max(axis=1) + 1
        box_yx = np.stack([np.minimum(box_yx[:, 0], lo), np.maximum(box_yx[:, 1], hi)], axis=1)
        box_size, box_mid = box_yx[:, 1] - box_yx[:, 0], box_yx.mean(axis=1)  # (N, 2) y, x in cells
        for name in ("box_scale", "box_offset", "box_mask"):
            out[name] = np.zeros((2, h, w), f32)
    people = [i for i in range(n) if visible[i].any()]
    centres = person_centres(yx, visible, cfg.center)
    steps = np.arange(-cfg.neighbourhood, cfg.neighbourhood + 1)
    around = np.stack(np.meshgrid(steps, steps, indexing="ij"), -1).reshape(-1, 2)
    around = around[(around != 0).any(axis=1)]  # (M, 2) the neighbourhood's offsets, the centre left out
    # Neighbourhood cells first, centre cells last, so a centre is never overwritten by a neighbour; people
    # in order (a later person's cells win), each person's cells at once (they are distinct).
    for pass_centres in (False, True):
        for i in people:
            c = np.clip(np.rint(centres[i]), 0, [h - 1, w - 1]).astype(int)
            cells_yx = c[None] if pass_centres else c + around
            cells_yx = cells_yx[(cells_yx >= 0).all(axis=1) & (cells_yx < [h, w]).all(axis=1)]
            cy, cx = cells_yx[:, 0], cells_yx[:, 1]
            out["regress"][:, cy, cx] = (yx[i][None] - cells_yx[:, None].astype(f32)).reshape(len(cy), -1).T
            out["regress_mask"][:, cy, cx] = np.repeat(visible[i], 2)[:, None]
            if boxes is not None:
                out["box_scale"][:, cy, cx] = box_size[i][:, None]
                out["box_offset"][:, cy, cx] = (box_mid[i][None] - cells_yx.astype(f32)).T
                out["box_mask"][:, cy, cx] = 1
    for i in people:
        ys, xs = yx[i, visible[i], 0], yx[i, visible[i], 1]
        area = max(float(ys.max() - ys.min()), 1.0) * max(float(xs.max() - xs.min()), 1.0)
        radius = float(np.clip(cfg.radius_scale * np.sqrt(area), cfg.min_radius, cfg.max_radius))
        c = np.clip(np.rint(centres[i]), 0, [h - 1, w - 1]).astype(f32)[None]
        np.maximum(out["center"][0], render_kernels((h, w), c, radius, cfg.kernel)[0], out=out["center"][0])
        idx = np.flatnonzero(visible[i])
        kern = render_kernels((h, w), cells[i, idx].astype(f32), radius, cfg.kernel)
        out["heatmap"][idx] = np.maximum(out["heatmap"][idx], kern)
        cy, cx = cells[i, idx, 0].astype(int), cells[i, idx, 1].astype(int)
        out["offset"][2 * idx, cy, cx] = yx[i, idx, 0] - cells[i, idx, 0]
        out["offset"][2 * idx + 1, cy, cx] = yx[i, idx, 1] - cells[i, idx, 1]
        out["offset_mask"][2 * idx, cy, cx] = 1
        out["offset_mask"][2 * idx + 1, cy, cx] = 1
    if ignore is not None and ignore.any():
        small = ignore.reshape(h, stride, w, stride).mean(axis=(1, 3)) if ignore.shape == (H, W) else ignore
        out["weight"][0] = (small < 0.5).astype(f32)
    return out
