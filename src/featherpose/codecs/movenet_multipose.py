"""NumPy transcription of the MoveNet MultiPose Lightning decoder (post-processing of the heads).

``decode_multipose`` reproduces, in float32 and in the graph's order of operations, the subgraph
of Google's ``movenet/multipose/lightning`` TFJS model that turns the six head tensors into the
``[6, 56]`` output.  Dimension letters: ``h, w`` = output grid (input size / 4, not necessarily
square), ``K`` = 17 keypoints, ``M`` = 6 instances.  Grid coordinates are cell indices
(``0 .. h-1``), with a cell's centre at the integer coordinate.

Steps (each names the graph nodes it mirrors):

1. Centre NMS (``Sigmoid``, ``MaxPool``, ``sub_2``, ``Abs``, ``Less``, ``mul_2``):
   ``c = sigmoid(center)`` [h, w]; ``pool`` = 5x5 max pool, stride 1, SAME (border windows are
   clipped); a cell is a peak iff ``|c - pool| < peak_tolerance`` (1.0133e-06, fp16), so
   near-equal neighbours are *both* peaks.  Non-peaks are set to 0.
2. Instance selection (``Reshape_2``, ``TopKV2``, ``FloorDiv``): the M=6 largest values of the
   row-major flattened map, sorted descending, ties -> lower flat index first (so with fewer
   than 6 peaks, zero cells 0, 1, 2, ... fill the list).  ``(cy, cx) = divmod(index, w)`` [M];
   the selected values are the centre scores ``cs`` [M].  All M instances are always output.
3. Boxes (``GatherNd``, ``Maximum``, ``clip_by_value*``, ``truediv_6``, ``clip_by_value_4``):
   ``(oy, ox) = box_offset[cy, cx]``, ``(sy, sx) = max(box_scale[cy, cx], 0)`` [M];
   ``ymin = (cy + oy) - sy*0.5``, ``ymax = (cy + oy) + sy*0.5`` (same for x), each clipped to
   ``[0, h]`` (``[0, w]`` for x) in grid units -> ``box_grid`` [M, 4].  Output box =
   ``clip(box_grid * 4 / (4h, 4w, 4h, 4w), 0, 1)``.
4. Regressed keypoints (``GatherNd_2``, ``add_6``, ``add_7``):
   ``ry = cy + regress[cy, cx, 2k]``, ``rx = cx + regress[cy, cx, 2k+1]`` [M, K].
5. Candidate scores (``SquaredDifference``, ``mul_7``, ``truediv_7``, ``Exp``, ``mul_8``,
   ``mul_9``): for every cell ``(i, j)``,
   ``s[i, j, m, k] = sigmoid(heatmap)[i, j, k]
                     * exp(-((i - ry)^2 + (j - rx)^2) / (min(h, w) * 0.30004883))
                     * [ymin_m <= i < ymax_m  and  xmin_m <= j < xmax_m]``   [h, w, M, K]
   (the box test uses the clipped grid-unit box of step 3).
6. Keypoint location (``Reshape_16``, ``ArgMax``, ``floordiv_4``): per (m, k) the argmax of
   ``s`` over row-major cells (first maximum wins; an all-zero column, e.g. an empty box,
   gives cell 0 = (0, 0)) -> ``(ky, kx)`` [M, K].
7. Keypoint output (``GatherNd_3``, ``add_9``, ``add_10``, ``mul_11``):
   ``y = (ky + offset[ky, kx, 2k]) * (4 / 4h)``, ``x = (kx + offset[ky, kx, 2k+1]) * (4 / 4w)``.
8. Keypoint score (``Max``, ``GatherNd_4``): ``score = max_m' s[ky, kx, m', k]`` -- the maximum
   over *all* instances of the weighted score at the chosen cell, not the instance's own
   value.  Output scores are not thresholded.
9. Instance score (``Greater_1``, ``Select``, ``Sum_2``, ``Sum_3``, ``truediv_10``, ``mul_15``):
   ``keep = score > 0.12695312``;
   ``instance = (1 / max(sum_k keep, 1)) * sum_k (cs * where(keep, score, 0))``, i.e.
   ``cs`` times the mean of the kept keypoint scores (0 when none is kept).
10. Layout (``concat``, ``Reshape_22``, ``concat_1``): per instance
    ``[y0, x0, s0, ..., y16, x16, s16, ymin, xmin, ymax, xmax, instance]`` -> [M, 56].
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .ops import sigmoid

f32 = np.float32


@dataclass(frozen=True)
class MultiposeConstants:
    """Decoder constants as stored (fp16-rounded) in the multipose graph.

    Attributes:
        nms_kernel: centre max-pool window (5).
        peak_tolerance: ``|c - maxpool(c)| < peak_tolerance`` marks a peak (``Less/y``).
        num_instances: M, the TopK k (6).
        stride_int: input pixels per grid cell, int (``mul/y`` = 4) -> input size ``4h x 4w``.
        stride: the same as float (``truediv_8/x`` = 4.0; equal to ``mul_5/y``).
        box_half: factor turning box size into half-extent (0.5, ``truediv_2_recip``).
        sigma_scale: distance-weight scale, multiplied by ``min(h, w)`` (0.30004883, ``mul_6/y``).
        keypoint_threshold: keypoint score threshold for the instance score (0.12695312,
            ``Greater_1/y``).
    """

    nms_kernel: int
    peak_tolerance: np.float32
    num_instances: int
    stride_int: int
    stride: np.float32
    box_half: np.float32
    sigma_scale: np.float32
    keypoint_threshold: np.float32

    def to_dict(self) -> dict:
        return {k: (int(v) if isinstance(v, (int, np.integer)) else float(v)) for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "MultiposeConstants":
        types = {"nms_kernel": int, "num_instances": int, "stride_int": int}
        consts = cls(**{k: types.get(k, f32)(values[k]) for k in cls.__dataclass_fields__})
        if consts.nms_kernel % 2 == 0 or consts.num_instances < 1:
            raise ValueError(f"MultiPose constants need an odd nms_kernel and num_instances >= 1, got {values}")
        return consts


# The values stored in Google's movenet/multipose/lightning/1 graph (fp16-rounded where float).
GOOGLE_MULTIPOSE = MultiposeConstants(nms_kernel=5, peak_tolerance=f32(1.0132789611816406e-06), num_instances=6,
                                      stride_int=4, stride=f32(4.0), box_half=f32(0.5),
                                      sigma_scale=f32(0.300048828125), keypoint_threshold=f32(0.126953125))


def _max_pool_same(x: np.ndarray, k: int) -> np.ndarray:
    """k x k max pool, stride 1, TF 'SAME' padding (pads never win), on an (h, w) map; k odd."""
    return cv2.dilate(x, np.ones((k, k), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf)


def _top_m(flat: np.ndarray, m: int) -> np.ndarray:
    """Indices of the ``m`` largest of ``flat`` (>= 0: the peak map), descending, ties -> lower index first (the
    graph's TopKV2): ``np.argsort(-flat, kind="stable")[:m]``, sorting only the few positive peaks."""
    if np.isnan(flat).any():  # non-finite heads (the Estimator reports them first): NaN sorts last, as there
        return np.argsort(-flat, kind="stable")[:m]
    peaks = np.flatnonzero(flat > 0)
    peaks = peaks[np.argsort(-flat[peaks], kind="stable")[:m]]
    if len(peaks) == m:
        return peaks
    zeros = np.flatnonzero(flat[:m + len(peaks)] == 0)[:m - len(peaks)]  # the first cells scoring 0 fill the list
    return np.concatenate([peaks, zeros])


def decode_multipose(
    heatmap: np.ndarray,
    center: np.ndarray,
    regress: np.ndarray,
    offset: np.ndarray,
    box_scale: np.ndarray,
    box_offset: np.ndarray,
    consts: MultiposeConstants,
    activation=sigmoid,
) -> np.ndarray:
    """Decode MoveNet MultiPose heads into the graph's ``[M, 56]`` output (see module docstring).

    Step 5 is evaluated only inside each instance's box: outside it the graph's score is 0, so
    the box holds the first maximum unless the whole box scores 0, when the graph's argmax is
    cell (0, 0). Step 8 re-evaluates the same expression at the chosen cells for every instance.
    Both give the full-grid result bit for bit at a fraction of the cost (tests/graph_oracle.py).

    Args:
        heatmap: (K, h, w) keypoint heatmap logits.
        center: (1, h, w) centre logits.
        regress: (2K, h, w) centre-to-keypoint displacements, interleaved (y, x).
        offset: (2K, h, w) keypoint sub-cell offsets, interleaved (y, x).
        box_scale: (2, h, w) box size (y, x) in cells.
        box_offset: (2, h, w) box-centre offset (y, x) in cells.
        consts: the graph's decoder constants (saved by ``featherpose convert``).
        activation: logits -> probabilities for the centre and heatmap heads (Google's: sigmoid).

    Returns:
        float32 (M, 56): per instance 17 x (y, x, score), box (ymin, xmin, ymax, xmax), score;
        coordinates normalised to the (4h x 4w) model input.
    """
    K, h, w = heatmap.shape
    M = consts.num_instances
    half = consts.box_half

    # 1. centre NMS --------------------------------------------------------------- (h, w)
    c = activation(center[0])
    is_peak = np.abs(c - _max_pool_same(c, consts.nms_kernel)) < consts.peak_tolerance
    c = c * is_peak.astype(f32)

    # 2. top-M centres, descending, ties -> lower flat index ----------------------- (M,)
    flat = c.reshape(-1)
    order = _top_m(flat, M)
    centre_score = flat[order]
    cy, cx = np.divmod(order, w)
    cyf, cxf = cy.astype(f32), cx.astype(f32)

    # 3. boxes in grid units, clipped to [0, h] x [0, w] ----------------------------- (M,)
    centre = np.stack([cyf, cxf]) + box_offset[:, cy, cx]  # (2, M) y, x
    extent = np.maximum(box_scale[:, cy, cx], f32(0)) * half
    limit = np.array([[h], [w]], f32)
    # fmin / fmax: a NaN edge (inf - inf from non-finite heads) clips to the border, an empty box, not a crash
    (ymin, xmin), (ymax, xmax) = (np.fmax(np.fmin(edge, limit), f32(0)) for edge in (centre - extent, centre + extent))
    box_grid = np.stack([ymin, xmin, ymax, xmax], axis=1)
    input_hw = np.array([h, w, h, w], dtype=np.int32) * consts.stride_int
    box = np.clip((box_grid * consts.stride) / input_hw.astype(f32), f32(0), f32(1))

    # 4. regressed keypoints ------------------------------------------------------ (M, K)
    reg = regress[:, cy, cx].reshape(K, 2, M)
    ry = cyf[:, None] + reg[:, 0].T
    rx = cxf[:, None] + reg[:, 1].T

    # 5.-6. best cell per (m, k) inside the instance's box ---------------------------- (M, K)
    # (the heatmap's activation only where it is read, in the boxes and at the chosen cells: elementwise, the same
    # values as over the whole map)
    sigma = f32(min(h, w)) * consts.sigma_scale
    rows0, rows1 = np.ceil(ymin).astype(int).tolist(), np.ceil(ymax).astype(int).tolist()  # ymin <= i < ymax
    cols0, cols1 = np.ceil(xmin).astype(int).tolist(), np.ceil(xmax).astype(int).tolist()
    grid_y, grid_x = np.arange(h, dtype=f32), np.arange(w, dtype=f32)
    kidx = np.arange(K)
    ky = np.zeros((M, K), np.intp)
    kx = np.zeros((M, K), np.intp)
    for m in range(M):  # few array operations each: this loop is the largest part of the decoder's time
        (i0, i1), (j0, j1) = (rows0[m], rows1[m]), (cols0[m], cols1[m])
        if i1 <= i0 or j1 <= j0:
            continue  # empty box: every score is 0 and the graph's argmax is cell (0, 0)
        # heat * exp(-d2 / sigma): the graph's float32 operations, in place (x / -sigma is exactly -x / sigma)
        s = np.square(grid_y[i0:i1] - ry[m, :, None])[:, :, None] + np.square(grid_x[j0:j1] - rx[m, :, None])[:, None]
        np.divide(s, -sigma, out=s)
        np.exp(s, out=s)
        s *= activation(heatmap[:, i0:i1, j0:j1])
        s = s.reshape(K, -1)
        best = s.argmax(axis=1)
        found = s[kidx, best] > 0
        cell_y, cell_x = np.divmod(best, j1 - j0)
        ky[m] = (i0 + cell_y) * found
        kx[m] = (j0 + cell_x) * found

    # 7. refined, normalised coordinates ------------------------------------------- (M, K)
    off = offset.reshape(K, 2, h, w)
    scale_y = consts.stride / f32(h * consts.stride_int)
    scale_x = consts.stride / f32(w * consts.stride_int)
    y = (ky.astype(f32) + off[kidx, 0, ky, kx]) * scale_y
    x = (kx.astype(f32) + off[kidx, 1, ky, kx]) * scale_x

    # 8. keypoint score = max over all instances m' of step 5's score at the chosen cell - (M, K)
    gy, gx = ky.astype(f32)[..., None], kx.astype(f32)[..., None]  # (M, K, 1) against m' on the last axis
    d2 = np.square(gy - ry.T[None]) + np.square(gx - rx.T[None])
    inside = (gy >= ymin) & (gy < ymax) & (gx >= xmin) & (gx < xmax)
    score = (activation(heatmap[kidx, ky, kx])[..., None] * np.exp(-d2 / sigma) * inside.astype(f32)).max(axis=2)

    # 9. instance score -------------------------------------------------------------- (M,)
    keep = score > consts.keypoint_threshold
    count = np.maximum(keep.astype(f32).sum(axis=-1), f32(1))
    total = (centre_score[:, None] * np.where(keep, score, f32(0))).sum(axis=-1)
    instance = (f32(1) / count) * total

    # 10. layout --------------------------------------------------------------------- (M, 56)
    kpts = np.stack([y, x, score], axis=-1).reshape(M, 3 * K)
    return np.concatenate([kpts, box, instance[:, None]], axis=1).astype(f32)
