"""Tracking people across a video's frames: persistent integer ids, then One-Euro smoothing per track.

Each frame, the people found are matched to the live tracks (those seen in the last ``max_lost`` frames) by a
similarity in [0, 1] that mixes keypoint similarity and box overlap:

    similarity = oks_weight * OKS(person, track's pose) + (1 - oks_weight) * IoU(person box, track's box)

where a track's pose and box are its last ones moved at its velocity (a running mean of its box centre's speed,
``velocity_smoothing`` the weight of the old value) for the time since it was last seen: a walker who was missed for
a few frames is looked for where they have walked to, not where they were.

OKS is COCO's object keypoint similarity (mean over the keypoints found in both of ``exp(-d^2 / (2 s^2 k^2))``,
``s^2`` the track's box area, ``k = 2 sigma`` with the skeleton's OKS sigmas, or COCO's for a keypoint set without
them). The assignment maximising the total similarity is solved by ``scipy.optimize.linear_sum_assignment`` (the
Hungarian method); a pair below ``min_similarity`` is not a match. A person left unmatched starts a new track (ids
0, 1, 2, ... in order of appearance, never reused); a track left unmatched is kept, lost, for ``max_lost`` frames
and can be matched again in that time (lost and found: an occlusion keeps the id), then it is dropped. Among
equally good candidates, a track seen in the last frame wins over a lost one (a lost track's similarity is scaled
by ``lost_discount``).

The whole frame is a handful of numpy operations on (people x tracks x keypoints) arrays: about 0.25 ms for 20
people with smoothing, 0.12-0.16 ms for the 1-2 people of the people clips (``benchmarks/video_quality.py``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..poses import Poses
from ..skeletons import COCO17
from .smooth import DEFAULT_BETA, DEFAULT_D_CUTOFF, DEFAULT_MIN_CUTOFF, OneEuroFilter


def _sigmas(poses: Poses) -> np.ndarray:
    """The skeleton's OKS sigmas, or COCO-17's mean sigma for each keypoint of a skeleton without them."""
    sigmas = getattr(poses.skeleton, "sigmas", None)
    if sigmas is not None and len(sigmas) == poses.keypoints.shape[1] and np.all(np.asarray(sigmas) > 0):
        return np.asarray(sigmas, np.float64)
    return np.full(poses.keypoints.shape[1], float(np.mean(COCO17.sigmas)))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of boxes ``a`` (N, 4) and ``b`` (M, 4), x1, y1, x2, y2."""
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
    w = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
    h = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
    inter = w * h
    area = lambda x: np.maximum(x[..., 2] - x[..., 0], 0) * np.maximum(x[..., 3] - x[..., 1], 0)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def oks(a: np.ndarray, found_a: np.ndarray, b: np.ndarray, found_b: np.ndarray, areas_b: np.ndarray,
        sigmas: np.ndarray) -> np.ndarray:
    """(N, M) object keypoint similarity of poses ``a`` (N, K, 2) to ``b`` (M, K, 2), over the keypoints found in
    both (``found_*``: (N, K), (M, K) bool); ``areas_b``: (M,) the scale s^2 in pixels^2. 0 where none is shared."""
    a, b = a.astype(np.float32), b.astype(np.float32)  # float32: exp over (M, N, K) at twice the speed
    dx = a[None, :, :, 0] - b[:, None, :, 0]  # (M, N, K): x and y apart, no reduction over a length-2 axis
    dy = a[None, :, :, 1] - b[:, None, :, 1]
    inv_var = (1.0 / ((2 * sigmas) ** 2 * 2 * np.maximum(areas_b, 1.0)[:, None])).astype(np.float32)  # (M, K)
    both = found_a[None] & found_b[:, None]
    e = np.exp(-(dx * dx + dy * dy) * inv_var[:, None]) * both
    count = both.sum(-1)
    return (e.sum(-1) / np.maximum(count, 1)).T


class Tracker:
    """Persistent ids (and, unless ``smooth=False``, One-Euro smoothed keypoints) for the people of a video.

    Args:
        max_lost: frames a track that was not seen is kept (and can be found again) before it is dropped.
        min_similarity: the least similarity (see the module docstring) for a person to continue a track.
        oks_weight: the share of OKS in the similarity (the rest is box IoU).
        lost_discount: a lost track's similarity is multiplied by this (an active track wins a tie).
        velocity_smoothing: in [0, 1]: the weight of a track's previous velocity in each update (1: no motion
            prediction).
        duplicate_oks: a person whose box overlaps a higher-scoring one's (IoU > 0.5) with an OKS above this is the
            same person found twice and is left out (1: keep every person).
        min_keypoint_score: keypoints scoring below it count as not found (not matched, not smoothed).
        smooth: One-Euro smoothing of the keypoints per track (:mod:`featherpose.video.smooth`).
        min_cutoff, beta, d_cutoff: the One-Euro parameters (see :mod:`featherpose.video.smooth`).

    ``update(poses, timestamp)`` once per frame, in order; it returns the poses with ``track_ids`` and (smoothed)
    keypoints. Scores and boxes are the model's.
    """

    def __init__(self, max_lost: int = 30, min_similarity: float = 0.1, oks_weight: float = 0.5,
                 lost_discount: float = 0.9, min_keypoint_score: float = 0.2, smooth: bool = True,
                 min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF, velocity_smoothing: float = 0.5, duplicate_oks: float = 0.8):
        if max_lost < 0:
            raise ValueError(f"Tracker: max_lost must be >= 0 frames (got {max_lost})")
        if not all(0 <= v <= 1 for v in (min_similarity, oks_weight, velocity_smoothing)):
            raise ValueError(f"Tracker: min_similarity ({min_similarity}), oks_weight ({oks_weight}) and "
                             f"velocity_smoothing ({velocity_smoothing}) must be in [0, 1]")
        self.max_lost, self.min_similarity, self.oks_weight = int(max_lost), float(min_similarity), float(oks_weight)
        self.lost_discount, self.min_keypoint_score = float(lost_discount), float(min_keypoint_score)
        self.velocity_smoothing, self.duplicate_oks = float(velocity_smoothing), float(duplicate_oks)
        self.smoother = OneEuroFilter(min_cutoff, beta, d_cutoff) if smooth else None
        self.next_id = 0
        self.ids = np.zeros(0, np.int64)  # the live tracks: id, last raw pose, its box, frames since seen
        self.xy = np.zeros((0, 0, 2))
        self.found = np.zeros((0, 0), bool)
        self.boxes = np.zeros((0, 4))
        self.lost = np.zeros(0, np.int64)
        self.velocity = np.zeros((0, 2))  # px/s of each track's box centre (a running mean)
        self.seen_at = np.zeros(0)  # the timestamp each track was last matched
        self.last_timestamp = -np.inf

    def points(self, poses: Poses) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, 2) keypoint positions as float64, and (N, K) which of them count as found (score at least
        ``min_keypoint_score``, finite)."""
        xy = poses.keypoints[..., :2].astype(np.float64)
        return xy, (poses.keypoints[..., 2] >= self.min_keypoint_score) & np.isfinite(xy).all(-1)

    def similarity(self, poses: Poses, timestamp: float) -> np.ndarray:
        """(N people, M tracks) similarity (module docstring) to where each track is predicted to be at
        ``timestamp`` (its last pose moved at its box centre's velocity), lost tracks discounted."""
        xy, found = self.points(poses)
        if len(self.ids) == 0 or len(poses) == 0:
            return np.zeros((len(poses), len(self.ids)))
        shift = self.velocity * (timestamp - self.seen_at)[:, None]  # (M, 2) px
        areas = np.prod(np.maximum(self.boxes[:, 2:] - self.boxes[:, :2], 1), axis=1)
        sim = self.oks_weight * oks(xy, found, self.xy + shift[:, None], self.found, areas, _sigmas(poses))
        sim += (1 - self.oks_weight) * box_iou(poses.boxes, self.boxes + np.concatenate([shift, shift], 1))
        return sim * np.where(self.lost > 0, self.lost_discount, 1.0)[None]

    def without_duplicates(self, poses: Poses) -> Poses:
        """``poses`` less the people that repeat a higher-scoring one (box IoU > 0.5 and OKS > ``duplicate_oks``:
        the same person found twice, which MultiPose does now and then; kept, the copy would start a track of its
        own and take the person's id over when the original is missed)."""
        if len(poses) < 2 or self.duplicate_oks >= 1:
            return poses
        iou = np.triu(box_iou(poses.boxes, poses.boxes), 1)
        pairs = np.argwhere(iou > 0.5)
        if not len(pairs):
            return poses
        xy, found = self.points(poses)
        areas = np.prod(np.maximum(poses.boxes[:, 2:] - poses.boxes[:, :2], 1), axis=1)
        sigmas, drop = _sigmas(poses), set()
        for i, j in pairs[np.argsort(-iou[pairs[:, 0], pairs[:, 1]])]:
            if i in drop or j in drop:
                continue
            same = oks(xy[[i]], found[[i]], xy[[j]], found[[j]], areas[[j]], sigmas)[0, 0]
            if same > self.duplicate_oks:
                drop.add(int(j) if poses.scores[i] >= poses.scores[j] else int(i))
        return poses[np.setdiff1d(np.arange(len(poses)), list(drop))] if drop else poses

    def update(self, poses: Poses, timestamp: float) -> Poses:
        """Match ``poses`` (one frame's people) to the tracks; ``timestamp``: the frame's time in seconds
        (increasing). Returns the poses with ``track_ids`` (and smoothed keypoints), duplicates left out
        (:meth:`without_duplicates`)."""
        timestamp = float(timestamp)
        if not timestamp > self.last_timestamp:
            raise ValueError(f"Tracker.update: timestamps must increase (got {timestamp} after "
                             f"{self.last_timestamp}); give each frame its time in seconds")
        self.last_timestamp = timestamp
        poses = self.without_duplicates(poses)
        n, k = poses.keypoints.shape[:2]
        if self.xy.shape[1] != k:  # the first frame fixes the keypoint count
            if len(self.ids):
                raise ValueError(f"Tracker.update: {k} keypoints per person after {self.xy.shape[1]}; one Tracker "
                                 "per model")
            self.xy, self.found = np.zeros((0, k, 2)), np.zeros((0, k), bool)
        xy, found = self.points(poses)
        sim = self.similarity(poses, timestamp)
        from scipy.optimize import linear_sum_assignment  # here: scipy.optimize takes 0.4-0.7 s to import

        rows, cols = linear_sum_assignment(sim, maximize=True) if sim.size else (np.zeros(0, int),) * 2
        keep = sim[rows, cols] >= self.min_similarity
        rows, cols = rows[keep], cols[keep]
        track_of = np.full(n, -1)
        track_of[rows] = cols
        refound = self.ids[cols][self.lost[cols] > 0]
        new = np.flatnonzero(track_of < 0)
        ids = np.empty(n, np.int64)
        ids[rows] = self.ids[cols]
        ids[new] = self.next_id + np.arange(len(new))
        self.next_id += len(new)
        # tracks: matched ones take this frame's pose, unmatched ones age, new ones join, the old lost ones go
        self.lost += 1
        self.lost[cols] = 0
        boxes = np.asarray(poses.boxes, np.float64).reshape(-1, 4)
        moved = ((boxes[rows, :2] + boxes[rows, 2:]) - (self.boxes[cols, :2] + self.boxes[cols, 2:])) / 2
        speed = moved / np.maximum(timestamp - self.seen_at[cols], 1e-6)[:, None]
        self.velocity[cols] = self.velocity_smoothing * self.velocity[cols] + (1 - self.velocity_smoothing) * speed
        self.seen_at[cols] = timestamp
        self.xy[cols], self.found[cols], self.boxes[cols] = xy[rows], found[rows], boxes[rows]
        self.ids = np.concatenate([self.ids, ids[new]])
        self.xy = np.concatenate([self.xy, xy[new]])
        self.found = np.concatenate([self.found, found[new]])
        self.boxes = np.concatenate([self.boxes, boxes[new]])
        self.lost = np.concatenate([self.lost, np.zeros(len(new), np.int64)])
        self.velocity = np.concatenate([self.velocity, np.zeros((len(new), 2))])
        self.seen_at = np.concatenate([self.seen_at, np.full(len(new), timestamp)])
        alive = self.lost <= self.max_lost
        if self.smoother is not None:
            gone = np.concatenate([self.ids[~alive], refound])  # a dropped track's state goes; a re-found one restarts
            if len(gone):
                self.smoother.forget(gone)
        self.ids, self.xy, self.found = self.ids[alive], self.xy[alive], self.found[alive]
        self.boxes, self.lost = self.boxes[alive], self.lost[alive]
        self.velocity, self.seen_at = self.velocity[alive], self.seen_at[alive]
        keypoints = poses.keypoints
        if self.smoother is not None and n:
            keypoints = keypoints.copy()
            keypoints[..., :2] = self.smoother(ids, xy, found, timestamp)
        return dataclasses.replace(poses, keypoints=keypoints, track_ids=ids)

    @property
    def active(self) -> int:
        """Tracks seen in the last frame."""
        return int((self.lost == 0).sum())
