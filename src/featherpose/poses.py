"""Poses: the result type every estimator returns.

Coordinates are pixels of the image the user gave, x before y, float32. ``Poses`` never
modifies the arrays it is given; score thresholds apply only when drawing or exporting.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np

from .skeletons import COCO17, Skeleton


def _boxes_from_keypoints(keypoints: np.ndarray, min_score: float) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 around each person's keypoints scoring above ``min_score`` (all if none do)."""
    boxes = np.zeros((len(keypoints), 4), np.float32)
    for i, kp in enumerate(keypoints):
        pts = kp[kp[:, 2] > min_score, :2]
        pts = pts if len(pts) else kp[:, :2]
        boxes[i] = [*pts.min(axis=0), *pts.max(axis=0)]
    return boxes


@dataclass(frozen=True, eq=False)
class Poses:
    """People found in one image.

    Attributes:
        keypoints: (N, K, 3) x, y, score in image pixels.
        scores: (N,) instance scores in [0, 1].
        boxes: (N, 4) x1, y1, x2, y2 in image pixels (from the model, or around the keypoints).
        image_size: (height, width) of the image.
        skeleton: keypoint names, limbs and sigmas.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    image_size: tuple[int, int]
    skeleton: Skeleton = COCO17

    @classmethod
    def create(cls, keypoints: np.ndarray, scores: np.ndarray | None = None, boxes: np.ndarray | None = None,
               image_size: tuple[int, int] = (0, 0), skeleton: Skeleton = COCO17) -> "Poses":
        kp = np.array(keypoints, np.float32).reshape(-1, skeleton.num_keypoints, 3)  # a copy: never the caller's
        sc = kp[..., 2].mean(axis=1) if scores is None else np.asarray(scores, np.float32).reshape(-1)
        bx = _boxes_from_keypoints(kp, 0.2) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
        return cls(kp, sc, bx, tuple(int(v) for v in image_size), skeleton)

    def __len__(self) -> int:
        return len(self.keypoints)

    def __getitem__(self, index) -> "Poses":
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return Poses(self.keypoints[idx], self.scores[idx], self.boxes[idx], self.image_size, self.skeleton)

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
        """Plain dicts, one per person: score, box, and named keypoints (x, y, score)."""
        names = self.skeleton.keypoints
        out = []
        for kp, score, box in zip(self.keypoints, self.scores, self.boxes):
            out.append({
                "score": round(float(score), 5),
                "box": [round(float(v), 2) for v in box],
                "keypoints": {n: [round(float(x), 2), round(float(y), 2), round(float(s), 5)]
                              for n, (x, y, s) in zip(names, kp) if s >= min_keypoint_score},
            })
        return out

    def to_json(self, **extra) -> str:
        """JSON text: image size, skeleton, and :meth:`summary` of every person."""
        return json.dumps({**extra, "image_size": {"height": self.image_size[0], "width": self.image_size[1]},
                           "skeleton": self.skeleton.name, "people": self.summary()})

    def to_coco(self, image_id: int, category_id: int = 1) -> list[dict]:
        """COCO keypoint *results* entries (``keypoints`` = x, y, score triplets; ``score`` per person)."""
        return [{"image_id": int(image_id), "category_id": category_id,
                 "keypoints": [round(float(v), 3) for v in kp.reshape(-1)], "score": round(float(s), 5)}
                for kp, s in zip(self.keypoints, self.scores)]

    def draw(self, image: np.ndarray, min_score: float = 0.3, min_keypoint_score: float = 0.3,
             boxes: bool = False, bgr: bool = False) -> np.ndarray:
        """A copy of ``image`` (HxWx3 uint8, RGB unless ``bgr``) with skeletons drawn.

        People scoring below ``min_score`` and keypoints below ``min_keypoint_score`` are left out.
        """
        canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
        h, w = canvas.shape[:2]
        thick = max(1, round(max(h, w) / 320))
        left = {i for pair in self.skeleton.flip_pairs for i in pair[:1]}
        right = {i for pair in self.skeleton.flip_pairs for i in pair[1:]}
        rgb = {"left": (255, 140, 0), "right": (0, 160, 255), "mid": (80, 220, 80), "box": (255, 255, 255)}
        colour = {k: v[::-1] if bgr else v for k, v in rgb.items()}
        for kp, score, box in zip(self.keypoints, self.scores, self.boxes):
            if score < min_score:
                continue
            if boxes:
                cv2.rectangle(canvas, tuple(int(v) for v in box[:2]), tuple(int(v) for v in box[2:]),
                              colour["box"], thick, cv2.LINE_AA)
            ok = kp[:, 2] >= min_keypoint_score
            for a, b in self.skeleton.limbs:
                if ok[a] and ok[b]:
                    side = "left" if a in left and b in left else "right" if a in right and b in right else "mid"
                    cv2.line(canvas, (int(kp[a, 0]), int(kp[a, 1])), (int(kp[b, 0]), int(kp[b, 1])),
                             colour[side], thick + 1, cv2.LINE_AA)
            for i in np.flatnonzero(ok):
                side = "left" if i in left else "right" if i in right else "mid"
                cv2.circle(canvas, (int(kp[i, 0]), int(kp[i, 1])), thick + 2, colour[side], -1, cv2.LINE_AA)
        return canvas
