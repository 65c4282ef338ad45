"""Top-down samples: one annotated person per item, cut out of its image the way top-down inference cuts it.

Each item of :class:`TopDownKeypoints` is a :class:`~featherpose.data.coco.Sample` holding one
person (N = 1) on an [Ho, Wo] canvas: the square of ``expand`` x the longer side of the person's
box (:func:`featherpose.image.square_around`, as in evaluation), letterboxed, then the pipeline's
random affine, flip and colour changes on top. The person's box is its annotated box.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..image import ImageError
from .coco import CocoKeypoints, Sample
from .transforms import Compose, person_crop_matrix

f32 = np.float32


class TopDownKeypoints:
    """A COCO keypoint dataset indexed by person instead of by image.

    Args:
        coco: the images and their people (its own ``transform`` is not used).
        pipeline: augmentation; its ``output_hw`` is the network input.
        expand: crop side as a multiple of the person box's longer side (evaluation uses 1.25).

    Attributes:
        people: (P, 2) int: record index and person index within that record, of every item.
    """

    def __init__(self, coco: CocoKeypoints, pipeline: Compose, expand: float = 1.25):
        self.coco = coco
        self.pipeline = pipeline
        self.expand = float(expand)
        self.skeleton = coco.skeleton
        self.people = np.array([(r, p) for r, rec in enumerate(coco.records) for p in range(len(rec.keypoints))],
                               np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.people)

    def set_epoch(self, epoch: int) -> None:
        self.coco.set_epoch(epoch)

    def box_xywh(self, index: int) -> np.ndarray:
        r, p = self.people[index]
        x1, y1, x2, y2 = self.coco.records[r].boxes[p]
        return np.array([x1, y1, x2 - x1, y2 - y1], f32)

    def person(self, index: int) -> tuple[Sample, np.ndarray]:
        """Person ``index`` before augmentation: (its image with only this person, (3, 3) crop matrix onto the
        canvas). An unreadable image gives a black image with nothing labelled."""
        r, p = self.people[index]
        rec = self.coco.records[r]
        try:
            sample = self.coco.load(r)
        except (OSError, ImageError) as exc:
            self.coco.report(f"unreadable image: {exc}", rec.image_id)
            h, w = rec.height or 1, rec.width or 1
            sample = Sample(np.zeros((h, w, 3), np.uint8), rec.keypoints * np.array([1, 1, 0], f32), rec.boxes.copy(),
                            np.zeros((h, w), bool), rec.image_id, str(rec.file))
        person = replace(sample, keypoints=sample.keypoints[p:p + 1], boxes=sample.boxes[p:p + 1])
        return person, person_crop_matrix(self.box_xywh(index), self.pipeline.output_hw, self.expand)

    def __getitem__(self, index: int) -> Sample:
        """Person ``index`` on the canvas, augmented with ``np.random.default_rng([seed, epoch, index])``."""
        person, start = self.person(index)
        return self.pipeline(person, self.coco.rng(index), start=start)
