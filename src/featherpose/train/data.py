"""Training batches: COCO samples -> augmentation (one affine) -> codec.encode -> tensors.

Images leave the loader as uint8 (a quarter of float32's bytes through the worker queues and the copy to
the GPU); the trainer makes them float on the device. The sampler hands each item its epoch
(:class:`EpochIndices`), so loader workers can live for the whole run and a resumed run still draws the
same augmentation. Loader processes compute with one thread each: PyTorch sets one torch thread in a
worker, and OpenCV runs serially in a forked process (measured: CPU time equals wall time in a worker).

Bottom-up families (MoveNet) take whole images; top-down families (hourglass; their row in
:data:`~featherpose.families.FAMILIES` says which) take one person per item, cut out around its box
(:class:`~featherpose.data.topdown.TopDownKeypoints`). When a teacher's keypoints were cached
(distillation), they ride along with the labels through the same affine and flip and are encoded by
the same codec into ``teacher_*`` targets.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..data import CocoKeypoints, build_transforms
from ..data.coco import Sample, image_folder_as_coco
from ..data.topdown import TopDownKeypoints
from ..families import FAMILIES, family
from ..skeletons import Skeleton
from .config import TrainConfig


def build_codec(cfg: TrainConfig, num_keypoints: int):
    """The codec of the recipe's family (it encodes the targets and decodes for evaluation)."""
    return family(cfg.model.architecture).training_codec(cfg.model, cfg.loss, num_keypoints)


class EpochIndices(Sampler):
    """``(epoch, index)`` for each index of ``sampler``: every item knows its epoch in any worker process.

    ``set_epoch`` reaches the wrapped sampler too (a :class:`~torch.utils.data.DistributedSampler` reshuffles).
    """

    def __init__(self, sampler):
        self.sampler, self.epoch = sampler, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        epoch = self.epoch
        return ((epoch, int(i)) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class TrainDataset(Dataset):
    """Items are (image (3, H, W) uint8, {target name: tensor}) for one recipe.

    Item ``index`` (of the current epoch, :meth:`set_epoch`) or ``(epoch, index)`` is augmented with
    ``np.random.default_rng([seed, epoch, index])`` (see :class:`~featherpose.data.CocoKeypoints`), so a
    resumed run sees the same augmentation.

    Args:
        cfg: the recipe.
        skeleton: the keypoints to learn when ``data.train`` is a folder of unlabelled images (the teacher's).
    """

    def __init__(self, cfg: TrainConfig, skeleton: Skeleton | None = None):
        hw = (cfg.model.input_size, cfg.model.input_size)
        ann_file = Path(cfg.data.train)
        self.labelled = not ann_file.is_dir()
        if not self.labelled:
            if skeleton is None:
                raise ValueError(f"{ann_file} is a folder of unlabelled images; a teacher must say which keypoints")
            if family(cfg.model.architecture).top_down:
                whole = " or ".join(n for n, row in FAMILIES.items() if not row.top_down)
                raise ValueError(f"{ann_file} is a folder of unlabelled images, which has no person boxes for a "
                                 f"top-down ({cfg.model.architecture}) student to crop; distil a {whole} student "
                                 "from such a folder, or give a COCO json with the people's boxes")
            ann_file = image_folder_as_coco(ann_file, skeleton, Path(cfg.out) / "unlabelled_images.json")
        self.coco = CocoKeypoints(ann_file, cfg.data.image_root if self.labelled else cfg.data.train,
                                  min_keypoints=cfg.data.min_keypoints, seed=cfg.seed)
        self.skeleton: Skeleton = self.coco.skeleton
        self.pipeline = build_transforms(cfg.augment, hw, self.skeleton)
        self.family = family(cfg.model.architecture)
        self.top_down = self.family.top_down  # a top-down family's model section has crop_expand
        self.people = TopDownKeypoints(self.coco, self.pipeline, cfg.model.crop_expand) if self.top_down else None
        if len(self) == 0:
            raise ValueError(f"{cfg.data.train}: no usable {'people' if self.top_down else 'images'} "
                             "(see the warnings above)")
        self.codec = build_codec(cfg, self.skeleton.num_keypoints)
        self.box_heads = self.codec.multi  # multi-person models get Google's MultiPose box heads
        self.with_labels = self.labelled and (not cfg.teacher.model or cfg.teacher.alpha < 1)
        self.teacher_keypoints: list[np.ndarray] | None = None  # per item (N, K, 3) in source pixels, once cached
        self.teacher_joints = np.ones(self.num_keypoints, np.float32)  # (K,) 1 where the teacher predicts the joint

    @property
    def num_keypoints(self) -> int:
        return self.skeleton.num_keypoints

    def set_epoch(self, epoch: int) -> None:
        self.coco.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.people) if self.top_down else len(self.coco)

    def source(self, index: int) -> tuple[Sample, np.ndarray | None]:
        """Item ``index`` before augmentation: (sample, start matrix or None for the whole-image letterbox)."""
        if self.top_down:
            return self.people.person(index)
        return self.coco[index], None  # the dataset has no transform of its own: untransformed

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        epoch, index = key if isinstance(key, tuple) else (None, key)
        sample, start = self.source(index)
        n = len(sample.keypoints)
        cached = self.teacher_keypoints is not None
        if cached:
            sample = replace(sample, keypoints=np.concatenate([sample.keypoints, self.teacher_keypoints[index]]))
        sample = self.pipeline(sample, self.coco.rng(index, epoch), start=start)
        targets = {}
        if self.with_labels:
            targets.update(self.encode(sample.keypoints[:n], sample))
        if cached:
            targets.update(self.encode_teacher(sample.keypoints[n:], sample))
        image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1)))  # uint8
        return image, {k: torch.from_numpy(v) for k, v in targets.items()}

    def encode(self, keypoints: np.ndarray, sample: Sample | None = None, boxes: bool = True) -> dict[str, np.ndarray]:
        """Targets for keypoints (N, K, 3) on the augmented canvas of ``sample`` (ignore mask and boxes)."""
        if self.top_down:
            return self.codec.encode(keypoints[:1] if len(keypoints) else np.zeros((1, self.num_keypoints, 3)))
        return self.codec.encode(keypoints, ignore=None if sample is None else sample.ignore,
                                 boxes=sample.boxes if sample is not None and boxes and self.box_heads else None)

    def encode_teacher(self, keypoints: np.ndarray, sample: Sample | None = None) -> dict[str, np.ndarray]:
        """``teacher_*`` targets from a teacher's keypoints (N, K, 3) already in this skeleton (v = 0: not used).

        A teacher's doubt is not evidence of absence, so no keypoint it lacks or doubts is taught as
        "nothing here": the family's ``teacher_targets`` hook (families/<family>.py) weighs such keypoints 0.
        No box targets (the teacher's boxes are not kept).
        """
        targets = self.encode(keypoints, sample, boxes=False)
        if self.family.teacher_targets is not None:
            targets = self.family.teacher_targets(targets, keypoints, self.teacher_joints)
        return {f"teacher_{k}": v for k, v in targets.items()}

    @staticmethod
    def collate(items: list) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = torch.stack([i for i, _ in items])
        return images, {k: torch.stack([t[k] for _, t in items]) for k in items[0][1]}
