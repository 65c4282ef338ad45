"""Training batches: COCO samples -> augmentation (one affine) -> codec.encode -> tensors."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..codecs.movenet import MoveNetCodec
from ..codecs.movenet_targets import TargetConfig
from ..data import CocoKeypoints, build_transforms
from ..skeletons import Skeleton
from .config import TrainConfig


class TrainDataset(Dataset):
    """Items are (image (3, H, W) float 0..255, {target name: tensor}) for one recipe.

    Each item is augmented with ``np.random.default_rng([seed, epoch, index])`` (see
    :class:`~featherpose.data.CocoKeypoints`), so a resumed run sees the same augmentation.
    """

    def __init__(self, cfg: TrainConfig):
        hw = (cfg.model.input_size, cfg.model.input_size)
        self.coco = CocoKeypoints(cfg.data.train, cfg.data.image_root, min_keypoints=cfg.data.min_keypoints,
                                  seed=cfg.seed)
        self.skeleton: Skeleton = self.coco.skeleton
        self.coco.transform = build_transforms(cfg.augment, hw, self.skeleton)
        if len(self.coco) == 0:
            raise ValueError(f"{cfg.data.train}: no usable images (see the warnings above)")
        self.box_heads = cfg.model.multi  # multi-person models get Google's MultiPose box heads
        self.codec = MoveNetCodec(hw, self.skeleton.num_keypoints, multi=cfg.model.multi, fp16_constants=False,
                                  targets=TargetConfig(kernel=cfg.loss.kernel, center=cfg.loss.center),
                                  activation=cfg.loss.activation)

    @property
    def num_keypoints(self) -> int:
        return self.skeleton.num_keypoints

    def set_epoch(self, epoch: int) -> None:
        self.coco.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.coco)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sample = self.coco[index]
        targets = self.codec.encode(sample.keypoints, ignore=sample.ignore,
                                    boxes=sample.boxes if self.box_heads else None)
        image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1))).float()
        return image, {k: torch.from_numpy(v) for k, v in targets.items()}

    @staticmethod
    def collate(items: list) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = torch.stack([i for i, _ in items])
        return images, {k: torch.stack([t[k] for _, t in items]) for k in items[0][1]}
