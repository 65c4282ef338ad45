"""Top-down estimation: person boxes -> one square crop per person -> a single-person model -> Poses.

Top-down models (the FPD hourglasses) see one person per input, so on a whole image they need person
boxes: from a multi-person featherpose model (movenet-multipose by default), given by the user
(``--boxes FILE``), or the ground-truth boxes evaluation gives (:meth:`TopDown.on_boxes`). Each box is cut
out by :func:`featherpose.image.crop_square` (a square 1.25x the box's longer side), the model runs on the
crop, and its keypoints are moved back into the image. This is the one top-down inference: ``predict`` and
``evaluate`` both run it.

A boxes file is JSON: a COCO keypoints or detections file (``images`` + ``annotations`` with ``bbox``),
or a list of ``{"file_name": ..., "bbox": [x, y, w, h], "score": ...}``; boxes are matched to images by
file name (the name without folders).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .estimator import DEFAULT_MIN_SCORE, Estimator, check_min_score
from .fileio import read_json
from .image import CROP_EXPAND, MAX_IMAGE_PIXELS, crop_square, load_frame, square_around
from .poses import Poses

f32 = np.float32


def _number(value) -> float | None:
    """A finite float, or None for anything else (strings, None, NaN, lists...)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if np.isfinite(value) else None


def load_boxes(path: str | Path) -> dict[str, np.ndarray]:
    """{image file name: (N, 5) x, y, w, h, score} from a boxes file (see the module docstring).

    Raises:
        ValueError: one line naming the file, the entry and what it needs.
    """
    path = Path(path)
    data = read_json(path, "boxes file")
    coco = isinstance(data, dict) and {"images", "annotations"} <= data.keys()
    if coco and isinstance(data["images"], list) and isinstance(data["annotations"], list):
        bad = next((i for i, im in enumerate(data["images"]) if not isinstance(im, dict)
                    or "id" not in im or not isinstance(im.get("file_name"), str)), None)
        if bad is not None:
            raise ValueError(f"{path}: images[{bad}] needs an id and a file_name, got {str(data['images'][bad])[:80]}")
        names = {im["id"]: im["file_name"] for im in data["images"]}
        entries = [{"file_name": names.get(a.get("image_id")), **a} if isinstance(a, dict) else a
                   for a in data["annotations"] if not (isinstance(a, dict) and a.get("iscrowd", 0))]
    elif isinstance(data, list):
        entries = data
    else:
        raise ValueError(f"{path}: expected a COCO json (images + annotations lists) or a list of "
                         "{file_name, bbox} entries")
    boxes: dict[str, list] = {}
    for i, e in enumerate(entries):
        ok = isinstance(e, dict) and isinstance(e.get("file_name"), str) and e["file_name"]
        bbox = [_number(v) for v in e.get("bbox", [])] if ok and isinstance(e.get("bbox"), list) else []
        score = _number(e.get("score", 1.0)) if ok else None
        if not ok or len(bbox) != 4 or None in bbox or score is None:
            raise ValueError(f"{path}: entry {i} needs a file_name and a bbox [x, y, w, h] of 4 finite numbers "
                             f"(score: optional, a number), got {str(e)[:80]}")
        boxes.setdefault(Path(e["file_name"]).name, []).append([*bbox, score])
    return {name: np.asarray(b, f32).reshape(-1, 5) for name, b in boxes.items()}


class TopDown:
    """A single-person (top-down) estimator applied to every person box of an image.

    Args:
        pose: the single-person estimator (runs on each crop).
        detector: a multi-person estimator that finds the boxes when none are given.
        boxes: {file name: (N, 5) x, y, w, h, score} given by the user (see :func:`load_boxes`).
        min_box_score: detections scoring below this are not cropped.
    """

    multi_person = True

    def __init__(self, pose: Estimator, detector: Estimator | None = None,
                 boxes: dict[str, np.ndarray] | None = None, min_box_score: float = 0.2):
        if detector is None and boxes is None:
            raise ValueError("a top-down model needs person boxes: a detector or a boxes file")
        self.pose, self.detector, self.boxes, self.min_box_score = pose, detector, boxes, min_box_score
        self.name = pose.name if detector is None else f"{pose.name} on {detector.name} boxes"
        self.skeleton = pose.skeleton
        self.keypoint_threshold = pose.keypoint_threshold
        self.input_hw = pose.input_hw
        self.backend = pose.backend  # the pose model's (the detector has its own)

    def __repr__(self) -> str:
        return f"TopDown({self.pose!r}, boxes from {'a file' if self.detector is None else self.detector.name})"

    def person_boxes(self, image: np.ndarray, name: str | None = None) -> np.ndarray:
        """(N, 5) x, y, w, h, score of the people to crop."""
        if self.boxes is not None and (self.detector is None or (name and Path(name).name in self.boxes)):
            return self.boxes.get(Path(name).name if name else "", np.zeros((0, 5), f32))
        found = self.detector(image, min_score=0)  # every detection: min_box_score decides
        xyxy = found.boxes
        boxes = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2], found.scores[:, None]], axis=1)
        return boxes[boxes[:, 4] >= self.min_box_score].astype(f32)

    def __call__(self, image: str | Path | np.ndarray, min_score: float = DEFAULT_MIN_SCORE, *,
                 name: str | None = None, bgr: bool = False) -> Poses:
        """Poses of every boxed person scoring at least ``min_score`` (box score x mean keypoint score; 0: all),
        in image pixels; ``name`` (the image's file name) selects given boxes; ``bgr``: the array is in OpenCV's
        channel order. The call shape of :meth:`Estimator.__call__ <featherpose.estimator.Estimator.__call__>`, so
        callers need not tell them apart."""
        min_score = check_min_score(min_score)
        if isinstance(image, (str, Path)):
            name = name or Path(image).name
        image = load_frame(image, bgr)
        if bgr:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        poses = self.on_boxes(image, self.person_boxes(image, name), name)
        return poses.filter(min_score) if min_score > 0 else poses

    def on_boxes(self, image: np.ndarray, boxes: np.ndarray, name: str | None = None) -> Poses:
        """The pose in each of ``boxes`` of one image, in box order, none left out.

        Args:
            image: (H, W, 3) uint8 RGB (see :func:`~featherpose.image.load_image`).
            boxes: (N, 5) x, y, w, h, score, or (N, 4) x, y, w, h (score 1: ground-truth boxes), in image pixels.
            name: the image's name, for error messages.

        Returns:
            N :class:`Poses` in image pixels; each scores its box score x its mean keypoint score.

        Raises:
            ValueError: a box whose crop would be over :data:`~featherpose.image.MAX_IMAGE_PIXELS`.
        """
        boxes = np.asarray(boxes)  # not cast: each crop is where the caller's box numbers put it
        if not boxes.size:
            boxes = np.zeros((0, 5), f32)
        kpts = np.zeros((len(boxes), self.skeleton.num_keypoints, 3), f32)
        for i, box in enumerate(boxes):
            side = square_around(box[:4], CROP_EXPAND)[2]
            if side * side > MAX_IMAGE_PIXELS:  # a crop is a fresh array: a wild box would exhaust memory
                raise ValueError(f"{name or 'image'}: person box x, y, w, h = {[round(float(v), 1) for v in box[:4]]} "
                                 f"needs a {side}x{side} crop, over the {MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel limit; "
                                 "give boxes in this image's pixels")
            crop, corner = crop_square(image, box[:4])
            kp = self.pose(crop, min_score=0).keypoints[0]
            kpts[i] = kp
            kpts[i, :, :2] += corner
        box_scores = boxes[:, 4] if boxes.shape[1] > 4 else np.ones(len(boxes), f32)
        scores = box_scores * kpts[..., 2].mean(axis=1) if len(boxes) else np.zeros(0, f32)
        xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:4]], axis=1) if len(boxes) else None
        return Poses.create(kpts, scores, xyxy, image.shape[:2], self.skeleton)
