"""Poses: the result type every estimator returns.

Coordinates are pixels of the image the user gave, x before y, float32. ``Poses`` never
modifies the arrays it is given; score thresholds apply only when drawing or exporting. Exports
are always valid JSON: a NaN or infinite value (possible only in Poses built by hand) is written
as ``null`` by :meth:`Poses.summary` and as a missing keypoint (0, 0, 0) or score 0 by
:meth:`Poses.to_coco`; drawing skips such points.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np

from .image import load_image
from .skeletons import COCO17, Skeleton


def _boxes_from_keypoints(keypoints: np.ndarray, min_score: float) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 around each person's keypoints scoring above ``min_score``; if none do, around
    those scoring above 0 (a missing keypoint, score 0, is never in a box unless all are missing)."""
    boxes = np.zeros((len(keypoints), 4), np.float32)
    for i, kp in enumerate(keypoints):
        pts = kp[kp[:, 2] > min_score, :2]
        pts = pts if len(pts) else kp[kp[:, 2] > 0, :2]
        pts = pts if len(pts) else kp[:, :2]
        boxes[i] = [*pts.min(axis=0), *pts.max(axis=0)]
    return boxes


#: RGB colours of tracked people, indexed by ``track_id % len``: well apart from each other and from dark and light
#: backgrounds (the qualitative "tab10" set).
TRACK_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                 (227, 119, 194), (188, 189, 34), (23, 190, 207), (127, 127, 127))


def _num(value, digits: int) -> float | None:
    """``round(value, digits)``, or None (JSON null) for NaN / infinity."""
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


@dataclass(frozen=True, eq=False)
class Poses:
    """People found in one image.

    Attributes:
        keypoints: (N, K, 3) x, y, score in image pixels.
        scores: (N,) instance scores in [0, 1].
        boxes: (N, 4) x1, y1, x2, y2 in image pixels (from the model, or around the keypoints).
        image_size: (height, width) of the image.
        skeleton: keypoint names, limbs and sigmas.
        track_ids: (N,) int ids of the people across a video's frames (``featherpose.video.track.Tracker``), or
            None when the people were not tracked.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    image_size: tuple[int, int]
    skeleton: Skeleton = COCO17
    track_ids: np.ndarray | None = None

    @classmethod
    def create(cls, keypoints: np.ndarray, scores: np.ndarray | None = None, boxes: np.ndarray | None = None,
               image_size: tuple[int, int] = (0, 0), skeleton: Skeleton = COCO17) -> "Poses":
        """Poses from arrays (copied): keypoints (N, K, 3), (K, 3) for one person, or flat N * K * 3 triplets;
        scores (N,) (default: the mean keypoint score); boxes (N, 4) x1, y1, x2, y2 (default: around the
        keypoints scoring above 0.2).

        Raises:
            ValueError: the shapes do not fit each other or the skeleton (one line naming them).
        """
        k = skeleton.num_keypoints
        try:
            kp = np.array(keypoints, np.float32)  # a copy: never the caller's
            sc = None if scores is None else np.array(scores, np.float32).reshape(-1)
            bx = None if boxes is None else np.array(boxes, np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Poses.create: keypoints, scores and boxes must be numeric arrays ({exc})") from None
        flat_ok = kp.ndim == 1 and kp.size % (3 * k) == 0  # COCO-style flat x, y, score triplets
        if not flat_ok and (kp.ndim not in (2, 3) or kp.shape[-2:] != (k, 3)):
            raise ValueError(f"Poses.create: keypoints must be (N, {k}, 3) x, y, score for skeleton {skeleton.name}, "
                             f"got shape {kp.shape}")
        kp = kp.reshape(-1, k, 3)
        n = len(kp)
        if sc is not None and sc.shape != (n,):
            raise ValueError(f"Poses.create: {n} people but {sc.size} scores")
        if bx is not None and bx.size != 4 * n:
            raise ValueError(f"Poses.create: {n} people need boxes of shape ({n}, 4), got shape {bx.shape}")
        sc = kp[..., 2].mean(axis=1) if sc is None else sc
        bx = _boxes_from_keypoints(kp, 0.2) if bx is None else bx.reshape(-1, 4)
        return cls(kp, sc, bx, tuple(int(v) for v in image_size), skeleton)

    def __len__(self) -> int:
        return len(self.keypoints)

    def __getitem__(self, index) -> "Poses":
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        ids = None if self.track_ids is None else self.track_ids[idx]
        return Poses(self.keypoints[idx], self.scores[idx], self.boxes[idx], self.image_size, self.skeleton, ids)

    def __repr__(self) -> str:
        return f"Poses({len(self)} people, {self.skeleton.name}, image {self.image_size[1]}x{self.image_size[0]})"

    @property
    def xy(self) -> np.ndarray:
        """(N, K, 2) keypoint positions in pixels."""
        return self.keypoints[..., :2]

    @property
    def xyn(self) -> np.ndarray:
        """(N, K, 2) keypoint positions normalised by image width and height."""
        h, w = self.image_size
        return self.xy / np.array([max(w, 1), max(h, 1)], np.float32)

    @property
    def conf(self) -> np.ndarray:
        """(N, K) keypoint scores."""
        return self.keypoints[..., 2]

    def filter(self, min_score: float) -> "Poses":
        """The people whose instance score is at least ``min_score``."""
        return self[self.scores >= min_score]

    def summary(self, min_keypoint_score: float = 0.0) -> list[dict]:
        """Plain dicts, one per person: score, box, and named keypoints (x, y, score) scoring at least
        ``min_keypoint_score``; NaN / infinite values are None (JSON null), so the result is always valid JSON.
        Tracked people (``track_ids``) also get ``track_id``."""
        names = self.skeleton.keypoints
        out = []
        for i, (kp, score, box) in enumerate(zip(self.keypoints, self.scores, self.boxes)):
            out.append({
                **({} if self.track_ids is None else {"track_id": int(self.track_ids[i])}),
                "score": _num(score, 5),
                "box": [_num(v, 2) for v in box],
                "keypoints": {n: [_num(x, 2), _num(y, 2), _num(s, 5)]
                              for n, (x, y, s) in zip(names, kp) if s >= min_keypoint_score},
            })
        return out

    def to_json(self, **extra) -> str:
        """JSON text: image size, skeleton, and :meth:`summary` of every person (strict JSON: never NaN)."""
        return json.dumps({**extra, "image_size": {"height": self.image_size[0], "width": self.image_size[1]},
                           "skeleton": self.skeleton.name, "people": self.summary()}, allow_nan=False)

    def to_coco(self, image_id: int, category_id: int = 1) -> list[dict]:
        """COCO keypoint *results* entries (``keypoints`` = x, y, score triplets; ``score`` per person).

        A keypoint with a NaN / infinite value is written as not found (0, 0, 0), a non-finite person score as 0.
        """
        kpts = np.where(np.isfinite(self.keypoints).all(axis=-1, keepdims=True), self.keypoints, 0)
        scores = np.where(np.isfinite(self.scores), self.scores, 0)
        return [{"image_id": int(image_id), "category_id": category_id,
                 "keypoints": [round(float(v), 3) for v in kp.reshape(-1)], "score": round(float(s), 5)}
                for kp, s in zip(kpts, scores)]

    def draw(self, image: np.ndarray, min_score: float = 0.3, min_keypoint_score: float = 0.3,
             boxes: bool = False, bgr: bool = False) -> np.ndarray:
        """A copy of ``image`` (an HxWx3 uint8 array, RGB unless ``bgr``; or a path or PIL image, read by
        :func:`~featherpose.image.load_image`) with skeletons drawn.

        People scoring below ``min_score`` and keypoints below ``min_keypoint_score`` are left out, and so
        are keypoints and boxes with NaN / infinite coordinates; points far outside the image are clamped.
        Tracked people (``track_ids``) are drawn each in one colour of :data:`TRACK_COLOURS` (by id), with the id
        beside the head; untracked ones in left / right / middle colours.
        """
        if not isinstance(image, np.ndarray):
            image = load_image(image)  # a path or PIL image; anything else is one ImageTypeError line
        canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
        h, w = canvas.shape[:2]
        far = 4 * max(h, w)  # OpenCV takes C ints: clamp far-away points (it clips the lines to the image anyway)

        def pt(xy) -> tuple[int, int]:
            return int(np.clip(xy[0], -far, far)), int(np.clip(xy[1], -far, far))

        thick = max(1, round(max(h, w) / 320))
        left = {i for pair in self.skeleton.flip_pairs for i in pair[:1]}
        right = {i for pair in self.skeleton.flip_pairs for i in pair[1:]}
        rgb = {"left": (255, 140, 0), "right": (0, 160, 255), "mid": (80, 220, 80), "box": (255, 255, 255)}
        colour = {k: v[::-1] if bgr else v for k, v in rgb.items()}
        for person, (kp, score, box) in enumerate(zip(self.keypoints, self.scores, self.boxes)):
            if score < min_score:
                continue
            if self.track_ids is not None:  # one colour per person, the same in every frame
                own = TRACK_COLOURS[int(self.track_ids[person]) % len(TRACK_COLOURS)]
                own = own[::-1] if bgr else own
                colour = {"left": own, "right": own, "mid": own, "box": own}
            if boxes and np.isfinite(box).all():
                cv2.rectangle(canvas, pt(box[:2]), pt(box[2:]), colour["box"], thick, cv2.LINE_AA)
            ok = (kp[:, 2] >= min_keypoint_score) & np.isfinite(kp[:, :2]).all(axis=1)
            if not ok.any():
                continue
            # a small person gets thin lines (a skeleton, not a blob): about 1 px per 80 px of its extent
            clamped = np.clip(np.where(ok[:, None], kp[:, :2], 0), -far, far)
            extent = float(np.ptp(clamped[ok], axis=0).max())
            size = max(1, min(thick, round(extent / 80)))
            xy = [tuple(p) for p in clamped.astype(np.int64).tolist()]  # pt() of every keypoint, at once
            for a, b in self.skeleton.limbs:
                if ok[a] and ok[b]:
                    side = "left" if a in left and b in left else "right" if a in right and b in right else "mid"
                    cv2.line(canvas, xy[a], xy[b], colour[side], size + 1, cv2.LINE_AA)
            for i in np.flatnonzero(ok).tolist():
                side = "left" if i in left else "right" if i in right else "mid"
                cv2.circle(canvas, xy[i], size + 1, colour[side], -1, cv2.LINE_AA)
            if self.track_ids is not None:
                top = kp[ok][np.argmin(kp[ok, 1])]
                cv2.putText(canvas, str(int(self.track_ids[person])), pt((top[0] + 3 * size, top[1] - 3 * size)),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.4 * (size + 1), colour["mid"], size, cv2.LINE_AA)
        return canvas
