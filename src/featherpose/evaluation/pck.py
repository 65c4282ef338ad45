"""PCK, PCKh and the area under the PCK curve: pure, vectorised numpy.

Dimensions: N people (each ground-truth person paired with its prediction), K keypoints.

A keypoint is correct at threshold ``alpha`` when ``||pred - gt|| <= alpha * normaliser`` of its
person. The normalisers:

- box: ``max(w, h)`` of the ground-truth person box (:func:`box_size`), usable on any COCO data;
- torso: the LSP protocol's torso diameter, ``||left_shoulder - right_hip||`` (the ``torso_size``
  field of ``shared/data/lsp``; :func:`torso_size` computes it), with ``alpha`` = 0.2 (PCK@0.2);
- head: MPII's PCKh, ``0.6 * `` the diagonal of the annotated head box (:func:`head_size`),
  with ``alpha`` = 0.5 (PCKh@0.5).

Only keypoints marked ``visible`` (labelled) count, and only people whose normaliser is > 0.
The mean is pooled over every counted (person, keypoint) pair, so keypoints labelled more often
weigh more (as the LSP and MPII evaluation scripts compute it); per-keypoint values are NaN for a
keypoint never labelled. A missing prediction is passed as NaN (or inf) coordinates: it counts as
wrong at every threshold.

AUC is the area under the PCK-versus-threshold curve on ``0, step, ..., alpha_max`` (trapezoids,
step 0.01 by default), divided by ``alpha_max`` so a perfect result scores 1. The range is the
convention of the published evaluation code, not something the FPD paper states: 0..0.2 for LSP
PCK (torso) and 0..0.5 for MPII PCKh.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: PCKh's head size: this factor times the head-box diagonal (MPII's evaluation code).
HEAD_BOX_FACTOR = 0.6


class PCKScore(NamedTuple):
    """A PCK or AUC value, overall and per keypoint (fractions in [0, 1])."""

    mean: float
    per_joint: np.ndarray  # (K,), NaN for keypoints never labelled


def box_size(boxes_xywh: np.ndarray) -> np.ndarray:
    """(N,) ``max(w, h)`` of (N, 4) COCO boxes x, y, w, h."""
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    return np.maximum(boxes[:, 2], boxes[:, 3])


def torso_size(gt_xy: np.ndarray, left_shoulder: int, right_hip: int) -> np.ndarray:
    """(N,) torso diameter ``||left_shoulder - right_hip||`` of (N, K, 2+) ground-truth keypoints."""
    gt_xy = np.asarray(gt_xy, np.float64)
    return np.linalg.norm(gt_xy[:, left_shoulder, :2] - gt_xy[:, right_hip, :2], axis=-1)


def head_size(head_boxes_xywh: np.ndarray) -> np.ndarray:
    """(N,) PCKh normaliser: ``0.6 *`` the diagonal of (N, 4) head boxes x, y, w, h."""
    boxes = np.asarray(head_boxes_xywh, np.float64).reshape(-1, 4)
    return HEAD_BOX_FACTOR * np.hypot(boxes[:, 2], boxes[:, 3])


def normalized_distances(pred_xy: np.ndarray, gt_xy: np.ndarray, visible: np.ndarray,
                         normaliser: np.ndarray) -> np.ndarray:
    """Distance of each prediction to its ground truth, in units of the person's normaliser.

    Args:
        pred_xy: (N, K, 2) predicted x, y (extra channels ignored); NaN for a missing prediction.
        gt_xy: (N, K, 2) ground-truth x, y (extra channels ignored).
        visible: (N, K) bool (or COCO v: > 0 counts), which keypoints are labelled.
        normaliser: (N,) per-person size in pixels.

    Returns:
        (N, K) float64: distance / normaliser; NaN where the keypoint does not count (unlabelled,
        or the normaliser is not > 0); inf for a missing prediction of a counted keypoint.
    """
    pred = np.asarray(pred_xy, np.float64)[..., :2]
    gt = np.asarray(gt_xy, np.float64)[..., :2]
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"predicted and ground-truth keypoints must both be (N, K, 2), "
                         f"got {pred.shape} and {gt.shape}")
    vis = np.asarray(visible) > 0
    norm = np.asarray(normaliser, np.float64).reshape(-1)
    if vis.shape != pred.shape[:2] or norm.shape != pred.shape[:1]:
        raise ValueError(f"visible must be (N, K) = {pred.shape[:2]} and normaliser (N,) = ({pred.shape[0]},), "
                         f"got {vis.shape} and {norm.shape}")
    dist = np.linalg.norm(pred - gt, axis=-1)
    dist = np.where(np.isnan(dist), np.inf, dist)
    counted = vis & (norm > 0)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counted, dist / np.where(norm > 0, norm, 1.0)[:, None], np.nan)


def pck_curve(dist: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PCK at each threshold from :func:`normalized_distances`.

    Args:
        dist: (N, K) normalised distances, NaN where a keypoint does not count.
        thresholds: (T,) values of alpha.

    Returns:
        ((T,) pooled mean, (T, K) per keypoint); NaN where nothing counts.
    """
    dist = np.asarray(dist, np.float64)
    t = np.asarray(thresholds, np.float64).reshape(-1, 1, 1)
    counted = ~np.isnan(dist)
    hits = (dist[None] <= t) & counted[None]                                  # (T, N, K)
    per_n = counted.sum(0)                                                    # (K,)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_joint = hits.sum(1) / np.where(per_n > 0, per_n, np.nan)
        mean = hits.sum((1, 2)) / (counted.sum() if counted.any() else np.nan)
    return mean, per_joint


def pck_from_distances(dist: np.ndarray, alpha: float) -> PCKScore:
    """PCK@alpha of (N, K) normalised distances (see :func:`pck_curve`)."""
    mean, per_joint = pck_curve(dist, np.array([alpha]))
    return PCKScore(float(mean[0]), per_joint[0])


def auc_from_distances(dist: np.ndarray, alpha_max: float, step: float = 0.01) -> PCKScore:
    """Area under the PCK curve on thresholds ``0, step, ..., alpha_max``, divided by ``alpha_max``."""
    if not alpha_max > 0 or not 0 < step <= alpha_max:
        raise ValueError(f"need alpha_max > 0 and 0 < step <= alpha_max, got alpha_max={alpha_max}, step={step}")
    n = int(round(alpha_max / step))
    t = np.linspace(0.0, alpha_max, n + 1)
    mean, per_joint = pck_curve(dist, t)
    return PCKScore(float(_trapezoid(mean, t) / alpha_max), _trapezoid(per_joint, t) / alpha_max)


def _trapezoid(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Trapezoid-rule integral of (T, ...) ``y`` over the (T,) grid ``t``, along the first axis."""
    width = np.diff(t).reshape((-1,) + (1,) * (y.ndim - 1))
    return ((y[1:] + y[:-1]) / 2 * width).sum(0)


def pck(pred_xy: np.ndarray, gt_xy: np.ndarray, visible: np.ndarray, normaliser: np.ndarray,
        alpha: float = 0.2) -> PCKScore:
    """PCK@alpha: the fraction of labelled keypoints within ``alpha * normaliser`` of the ground truth.

    Args:
        pred_xy: (N, K, 2) predictions; gt_xy: (N, K, 2) ground truth; visible: (N, K);
        normaliser: (N,) e.g. :func:`box_size`, :func:`torso_size` or :func:`head_size`.
        alpha: threshold as a fraction of the normaliser.

    Returns:
        :class:`PCKScore` (pooled mean, (K,) per keypoint).
    """
    return pck_from_distances(normalized_distances(pred_xy, gt_xy, visible, normaliser), alpha)


def pckh(pred_xy: np.ndarray, gt_xy: np.ndarray, visible: np.ndarray, head_boxes_xywh: np.ndarray,
         alpha: float = 0.5) -> PCKScore:
    """PCKh@alpha (MPII): PCK normalised by ``0.6 *`` the head-box diagonal; (N, 4) head boxes x, y, w, h."""
    return pck(pred_xy, gt_xy, visible, head_size(head_boxes_xywh), alpha)


def pck_auc(pred_xy: np.ndarray, gt_xy: np.ndarray, visible: np.ndarray, normaliser: np.ndarray,
            alpha_max: float = 0.2, step: float = 0.01) -> PCKScore:
    """AUC of the PCK curve over alpha in [0, alpha_max] (see module docstring), overall and per keypoint."""
    return auc_from_distances(normalized_distances(pred_xy, gt_xy, visible, normaliser), alpha_max, step)
