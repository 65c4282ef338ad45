"""The ``lwop`` family: Lightweight OpenPose (bottom-up, multi-person, part affinity fields), its recipe
sections, hooks and row.

The network is :mod:`featherpose.models.lwop`, the codec :class:`featherpose.codecs.openpose.PafCodec` and the
importer :mod:`featherpose.convert.lwop` (Intel's ``human-pose-estimation-0001`` OpenVINO IR), which loads only
when its hook runs. Weight files may hold convolution weights as Intel's IR does (int8 + f16 scale and zero
point, see :func:`featherpose.models.lwop.dequantise`); :func:`_lwop_from_weights` makes them float32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from ..codecs.openpose import PafCodec
from ..image import lwop_preprocess
from ..models.lwop import QUANTISED, STRIDE, VARIANTS, LightweightOpenPose, LwopConfig, dequantise
from ..skeletons import OPENPOSE18_TO_COCO17
from ..weights_io import WeightsFile
from .base import Family, LossSection, ModelSection, codec_from_weights, input_hw, rebuild_network

#: Width / height of the default input when none is asked for: Intel's IR is shaped 256 x 456 (16:9).
DEFAULT_ASPECT = 16 / 9


# ---------------------------------------------------------------------------------- recipe sections

@dataclass
class LwopModelSection(ModelSection):
    """``lwop`` (bottom-up, whole images): refinement stages, variant, BatchNorm and the decoder's upsampling."""

    RULES: ClassVar[tuple] = (
        ("num_refinement_stages", lambda v: 0 <= v <= 5, "a whole number in [0, 5] (the paper's fast model: 1)"),
        ("upsample", lambda v: 1 <= v <= 8, "a whole number in [1, 8] (the reference's: 4)"),
    )
    CHOICES: ClassVar[dict[str, tuple]] = {"variant": VARIANTS}

    architecture: str = "lwop"
    input_size: int = 256
    num_refinement_stages: int = 1
    variant: str = "ir"  # Intel's layout (the bundled weights); "reference": the reference PyTorch class
    batch_norm: bool = True
    upsample: int = 4


@dataclass
class LwopLossSection(LossSection):
    """Lightweight OpenPose's loss (L2 on every stage's heatmaps and PAFs) has no settings yet."""


# ------------------------------------------------------------------------------------- lwop's hooks

def default_input_hw(height: int) -> tuple[int, int]:
    """(H, W) used when no input size is asked for: ``height`` by the multiple of 8 nearest above 16:9 of it
    (256 -> 256 x 456, Intel's IR shape)."""
    return height, math.ceil(height * DEFAULT_ASPECT / STRIDE) * STRIDE


def float_weights(weights: WeightsFile) -> WeightsFile:
    """``weights`` with any int8-stored convolution weights made float32 (:func:`~featherpose.models.lwop.dequantise`)."""
    if not any(k.endswith(QUANTISED) for k in weights.state_dict):
        return weights
    return replace(weights, state_dict=dequantise(weights.state_dict))


def _lwop_from_weights(weights: WeightsFile, input_size: tuple[int, int] | None = None
                       ) -> tuple[LightweightOpenPose, PafCodec]:
    """Rebuild a Lightweight OpenPose network (eval mode) and its PAF codec from a weight file.

    The network runs at any (H, W) multiple of 8; ``input_size`` None takes :func:`default_input_hw` of the
    config's ``input_size`` (its height). Inference feeds each image at this height and its own width
    (:func:`~featherpose.image.lwop_preprocess`). The codec decodes the COCO-17 view (neck dropped, 17 keypoints)
    whatever the network's 18; ``featherpose.load(..., skeleton="openpose18")`` rebuilds it at 18.
    """
    model = rebuild_network(LightweightOpenPose, LwopConfig, float_weights(weights), "Lightweight OpenPose")
    height = model.config.input_size
    hw = input_hw(weights, input_size if input_size is not None else default_input_hw(height), height, STRIDE,
                  resizable=True)
    codec = codec_from_weights(PafCodec, weights, hw, 17, "PAF")
    return model.eval(), codec


def _lwop_config(model: LwopModelSection, num_keypoints: int) -> LwopConfig:
    """The network a recipe trains: it always predicts the 18 OpenPose-18 keypoints (+ background) and 19 PAFs,
    whatever the data's skeleton (COCO-17 data: the codec adds the neck when it encodes and drops it when it
    decodes, :class:`~featherpose.codecs.openpose.PafCodec`); it takes featherpose's RGB batches (``rgb_input``)."""
    if num_keypoints not in (17, 18):
        raise ValueError(f"Lightweight OpenPose trains on COCO-17 or OpenPose-18 keypoints, the data has "
                         f"{num_keypoints}; give a COCO person-keypoints json")
    return LwopConfig(num_keypoints=18, num_refinement_stages=model.num_refinement_stages,
                      input_size=model.input_size, variant=model.variant, batch_norm=model.batch_norm,
                      rgb_input=True)


def _lwop_codec(model: LwopModelSection, loss: LwopLossSection, num_keypoints: int) -> PafCodec:
    """The training codec: encodes the data's keypoints (COCO-17 gets its neck, the shoulders' midpoint) and
    decodes to them (17: the COCO-17 view, neck dropped), so evaluation compares like with like."""
    return PafCodec((model.input_size, model.input_size), num_keypoints, upsample=model.upsample)


def _lwop_loss(model: LwopModelSection, loss: LwopLossSection, skeleton):
    """The reference's masked L2 on every stage's heatmaps and PAFs (:class:`~featherpose.train.losses.PafLoss`)."""
    from ..train.losses import PafLoss  # training only: not loaded by `import featherpose`

    return PafLoss()


def _lwop_ideal_heads(codec: PafCodec, targets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The heatmap and PAF targets are what a perfect network outputs (no activation on either head)."""
    return {name: np.asarray(targets[name], np.float32) for name in ("heatmaps", "pafs")}


def _lwop_teacher_targets(targets: dict[str, np.ndarray], keypoints: np.ndarray, joints: np.ndarray
                          ) -> dict[str, np.ndarray]:
    """A teacher's doubt is not evidence of absence: the heatmap channels are shared by everyone in the image, so
    ``keypoint_weight`` (19,) is 0 for a keypoint channel unless the teacher predicts that keypoint (``joints``,
    (K,) in the student's skeleton, 17 or 18) and is confident of it for every person it found; the neck of a
    COCO-17 student counts as both shoulders, the background channel always counts. PAFs keep their weight; when
    the teacher is confident of nothing, the image weighs 0."""
    keypoints = np.asarray(keypoints, np.float32)
    confident = keypoints[..., 2] > 0  # (N, K)
    trusted = (np.asarray(joints) > 0) & confident.all(axis=0)  # (K,)
    if len(keypoints) and not confident.any():
        targets["weight"] = np.zeros_like(targets["weight"])
    if len(trusted) == 17:  # COCO-17 -> OpenPose-18 channels; neck: both shoulders
        trusted = np.array([trusted[j] if j >= 0 else trusted[5] and trusted[6] for j in OPENPOSE18_TO_COCO17])
    targets["keypoint_weight"] = np.append(trusted, True).astype(np.float32)
    return targets


def _lwop_import(source, out_dir) -> list:
    from ..convert.lwop import convert_lwop  # the importer loads only when asked for

    return convert_lwop(source, out_dir)


# ------------------------------------------------------------------------------------------- the row

LWOP = Family(
    name="lwop", kinds=("multi",), network=LightweightOpenPose, config=LwopConfig, codec=PafCodec,
    model_section=LwopModelSection, loss_section=LwopLossSection, input_multiple=STRIDE,
    network_config=_lwop_config, training_codec=_lwop_codec, from_weights=_lwop_from_weights,
    loss=_lwop_loss, loss_parts=("heatmaps", "pafs"), ideal_heads=_lwop_ideal_heads,
    teacher_targets=_lwop_teacher_targets, init_any_size=True,
    importer=_lwop_import, preprocess=lwop_preprocess, dynamic_size=True,
    importer_source="human-pose-estimation-0001.xml (Intel Open Model Zoo OpenVINO IR, its .bin beside it) "
                    "or its folder")
