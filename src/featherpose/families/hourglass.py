"""The ``hourglass`` family: the top-down stacked hourglass of Fast Pose Distillation, its recipe sections,
hooks and row.

The network is :mod:`featherpose.models.hourglass`, the codec :mod:`featherpose.codecs.heatmap` and the
loss ``HeatmapLoss`` (train/losses.py, loaded only when the loss hook runs); it has no importer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..codecs.heatmap import HeatmapCodec
from ..models.hourglass import HourglassConfig, StackedHourglass
from ..weights_io import WeightsFile
from .base import Family, LossSection, ModelSection, codec_from_weights, input_hw, rebuild_network

# ---------------------------------------------------------------------------------- recipe sections

@dataclass
class HourglassModelSection(ModelSection):
    """``hourglass`` (top-down, one person per box: Fast Pose Distillation): stacks, channels, sigma, normalize,
    crop_expand."""

    RULES: ClassVar[tuple] = (
        ("stacks", lambda v: v >= 1, "a whole number >= 1"),
        ("channels", lambda v: v >= 1, "a whole number >= 1"),
        ("sigma", lambda v: v > 0, "a number > 0 (heatmap cells)"),
        ("crop_expand", lambda v: v > 0, "a number > 0, e.g. 1.25"),
    )

    architecture: str = "hourglass"
    stacks: int = 4  # FPD student 4, teacher 8
    channels: int = 128  # FPD student 128, teacher 256
    sigma: float = 1.0  # Gaussian sigma in heatmap cells
    normalize: bool = True  # the seed's 1 / (2 pi sigma^2) heatmap peak (true) or a peak of 1 (false)
    crop_expand: float = 1.25  # crop side / longer side of the person box (as evaluation)


@dataclass
class HourglassLossSection(LossSection):
    """The hourglass loss (MSE over every stack's heatmaps) has no settings."""


# --------------------------------------------------------------------------------- hourglass's hooks

def _hourglass_from_weights(weights: WeightsFile, input_size: tuple[int, int] | None = None
                            ) -> tuple[StackedHourglass, HeatmapCodec]:
    """Rebuild a stacked hourglass (top-down, one person per input) and its heatmap codec from a weight file."""
    model = rebuild_network(StackedHourglass, HourglassConfig, weights, "stacked hourglass")
    config = model.config
    hw = input_hw(weights, None, config.input_size, 4 * 2 ** config.depth, resizable=False)
    if input_size is not None and (not isinstance(input_size, (tuple, list)) or tuple(input_size) != hw):
        raise ValueError(f"{weights.meta.get('name')} is a top-down model fixed at {hw[1]}x{hw[0]}")
    codec = codec_from_weights(HeatmapCodec, weights, hw, config.num_keypoints, "heatmap")
    return model.eval(), codec


def _hourglass_config(model: HourglassModelSection, num_keypoints: int) -> HourglassConfig:
    return HourglassConfig(stacks=model.stacks, channels=model.channels, num_keypoints=num_keypoints,
                           input_size=model.input_size)


def _hourglass_codec(model: HourglassModelSection, loss: HourglassLossSection, num_keypoints: int) -> HeatmapCodec:
    return HeatmapCodec((model.input_size, model.input_size), num_keypoints, sigma=model.sigma,
                        normalize=model.normalize)


def _hourglass_loss(model: HourglassModelSection, loss: HourglassLossSection, skeleton):
    from ..train.losses import HeatmapLoss  # training only

    return HeatmapLoss()


def _hourglass_ideal_heads(codec: HeatmapCodec, targets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The heatmap target is what a perfect network outputs."""
    return {"heatmap": np.asarray(targets["heatmap"], np.float32)}


def _hourglass_soft_teacher(teacher: HeatmapCodec, student: HeatmapCodec) -> bool:
    """FPD proper: a heatmap teacher at the student's input size and peak teaches its heatmaps themselves."""
    return teacher.input_hw == student.input_hw and teacher.peak == student.peak


def _hourglass_soft_targets(heads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """FPD's own target: the teacher's heatmaps (of its last stack), every keypoint weighted 1."""
    heatmap = heads["heatmap"]
    return {"heatmap": heatmap, "weight": torch.ones(heatmap.shape[:2], device=heatmap.device)}


def _hourglass_teacher_targets(targets: dict[str, np.ndarray], keypoints: np.ndarray, joints: np.ndarray
                               ) -> dict[str, np.ndarray]:
    """One person per heatmap: the codec already weighs the keypoints the teacher lacks or doubts (v = 0) 0."""
    return targets


# ------------------------------------------------------------------------------------------- the row

HOURGLASS = Family(
    name="hourglass", kinds=("top-down",), network=StackedHourglass, config=HourglassConfig,
    codec=HeatmapCodec, model_section=HourglassModelSection, loss_section=HourglassLossSection,
    input_multiple=64, network_config=_hourglass_config, training_codec=_hourglass_codec,
    from_weights=_hourglass_from_weights, loss=_hourglass_loss,
    loss_parts=("heatmap",), ideal_heads=_hourglass_ideal_heads, soft_teacher=_hourglass_soft_teacher,
    soft_targets=_hourglass_soft_targets, teacher_targets=_hourglass_teacher_targets)
