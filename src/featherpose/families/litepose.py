"""The ``litepose`` family: Lite Pose (bottom-up, multi-person, heatmaps + associative-embedding tags), its
hooks and row.

The network is :mod:`featherpose.models.litepose`, the codec
:class:`featherpose.codecs.associative_embedding.AECodec` and the importer :mod:`featherpose.convert.litepose` (upstream's
PyTorch checkpoint), which loads only when its hook runs. Inference feeds each image as upstream's test script
does (:func:`featherpose.image.litepose_preprocess`, in the torch-free image module so that a cached model loads
without torch): the short side scaled to the input size, the long side following the image (rounded up to a multiple
of 64), one ``cv2.warpAffine`` with upstream's matrix; points map back through upstream's inverse matrix
(:class:`~featherpose.image.AffineLetterbox`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..codecs.associative_embedding import AECodec
from ..image import litepose_preprocess
from ..models.litepose import ARCHITECTURES, LitePose, LitePoseConfig, named_config
from ..skeletons import SKELETONS
from ..weights_io import WeightsFile
from .base import Family, LossSection, ModelSection, codec_from_weights, input_hw, rebuild_network

#: A recipe's or user's input size (the short side) must be a multiple of this.
INPUT_MULTIPLE = 32


# ---------------------------------------------------------------------------------- recipe sections

@dataclass
class LitePoseModelSection(ModelSection):
    """``litepose`` (bottom-up, whole images): which of the paper's named models (``variant``), at
    ``input_size`` (the short side, a multiple of 32)."""

    CHOICES: ClassVar[dict[str, tuple]] = {"variant": tuple(ARCHITECTURES)}

    architecture: str = "litepose"
    input_size: int = 448
    variant: str = "litepose-m"  # Auto-M (the bundled model); litepose-xs, -s, -l: the paper's others


@dataclass
class LitePoseLossSection(LossSection):
    """Lite Pose's loss (:class:`~featherpose.train.losses.AELoss`): masked heatmap MSE at 1/4 and 1/2 (factor 1
    each) + associative-embedding ``push`` / ``pull`` on the 1/4 tags, each times its factor (upstream's 0.001);
    ``tag_loss``: the push term, ``exp`` (upstream's ``AE_LOSS_TYPE``) or ``max``."""

    RULES: ClassVar[tuple] = (
        ("push_factor", lambda v: v >= 0, "a number >= 0 (upstream's: 0.001)"),
        ("pull_factor", lambda v: v >= 0, "a number >= 0 (upstream's: 0.001)"),
    )
    CHOICES: ClassVar[dict[str, tuple]] = {"tag_loss": ("exp", "max")}

    push_factor: float = 0.001
    pull_factor: float = 0.001
    tag_loss: str = "exp"


# --------------------------------------------------------------------------------- litepose's hooks

def _flip_index(num_keypoints: int, skeleton_name: str | None = None) -> list[int] | None:
    """The left-right permutation of the skeleton with K keypoints (CrowdPose-14, COCO-17), or None."""
    names = [skeleton_name] if skeleton_name else ["crowdpose14", "coco17"]
    for name in names:
        skel = SKELETONS.get(name)
        if skel is not None and skel.num_keypoints == num_keypoints:
            return [int(v) for v in skel.flip_index()]
    return None


def default_codec(config: LitePoseConfig, skeleton_name: str | None = None) -> AECodec:
    """The codec a converted or trained Lite Pose file stores: upstream's grouping settings at the config's square
    input size, with the skeleton's flip permutation (used only when flipped heads are decoded too)."""
    size = config.input_size
    return AECodec((size, size), config.num_keypoints, flip_index=_flip_index(config.num_keypoints, skeleton_name))


def _litepose_from_weights(weights: WeightsFile, input_size: tuple[int, int] | None = None
                           ) -> tuple[LitePose, AECodec]:
    """Rebuild a Lite Pose network (eval mode) and its codec from a weight file.

    The network runs at any (H, W) multiple of 16; ``input_size`` (H, W) None takes the config's ``input_size``
    square. Inference feeds each image with its short side at ``min(input_size)`` and its long side following the
    image (:func:`litepose_preprocess`); the codec reads each input's size from the heads.
    """
    model = rebuild_network(LitePose, LitePoseConfig, weights, "Lite Pose")
    side = model.config.input_size
    hw = input_hw(weights, input_size, side, INPUT_MULTIPLE, resizable=True)
    return model.eval(), codec_from_weights(AECodec, weights, hw, model.config.num_keypoints, "associative-embedding")


def _litepose_config(model: LitePoseModelSection, num_keypoints: int) -> LitePoseConfig:
    """The named network a recipe trains, with the data's keypoints and the recipe's input size."""
    config = named_config(model.variant, num_keypoints)
    config.input_size = model.input_size
    return config


def _litepose_codec(model: LitePoseModelSection, loss: LitePoseLossSection, num_keypoints: int) -> AECodec:
    """The training codec at the recipe's square input size."""
    size = model.input_size
    return AECodec((size, size), num_keypoints, flip_index=_flip_index(num_keypoints))


def _litepose_loss(model: LitePoseModelSection, loss: LitePoseLossSection, skeleton):
    """Upstream's loss: heatmap MSE at both resolutions + AE push / pull (:class:`~featherpose.train.losses.AELoss`)."""
    from ..train.losses import AELoss  # training only: not loaded by `import featherpose`

    return AELoss(push_factor=loss.push_factor, pull_factor=loss.pull_factor, loss_type=loss.tag_loss)


def ideal_tags(joints: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """(K, h, w) tag maps a perfect network outputs for the encoded ``joints`` (M, K, 2) (flat 1/4-map indices
    ``k * h * w + y * w + x``, flag): on channel k every cell takes ``2 * p`` of the person p whose keypoint k is
    nearest (people 2 apart, so their tags never fall within the grouping's threshold of 1); 0 without any."""
    k, h, w = shape
    tags = np.zeros(shape, np.float32)
    labelled = joints[..., 1] > 0  # (M, K')
    person, slot = np.nonzero(labelled)
    flat = joints[person, slot, 0]
    channel, y, x = flat // (h * w), flat % (h * w) // w, flat % w
    yy, xx = np.mgrid[:h, :w]
    for c in np.unique(channel):  # one vectorised nearest-person pass per labelled keypoint channel
        sel = channel == c
        d = (yy[None] - y[sel, None, None]) ** 2 + (xx[None] - x[sel, None, None]) ** 2
        tags[c] = 2.0 * person[sel][np.argmin(d, axis=0)]
    return tags


def _litepose_ideal_heads(codec: AECodec, targets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The heatmap targets at both resolutions, with :func:`ideal_tags` beside the 1/4 ones (no activation on
    any head)."""
    h4 = np.asarray(targets["heatmaps_4"], np.float32)
    tags = ideal_tags(np.asarray(targets["joints"]), h4.shape)
    return {"heatmaps_tags": np.concatenate([h4, tags]), "heatmaps": np.asarray(targets["heatmaps_2"], np.float32)}


def _litepose_import(source, out_dir) -> list:
    from ..convert.litepose import convert_litepose  # the importer loads only when asked for

    return convert_litepose(source, out_dir)


#: precision "bf16" keeps the stem and the first backbone block in float32 (LitePose.split); the whole network in
#: bf16 lost 0.0201 OKS AP. Chosen by measurement (benchmarks/precision_probe.py --split, RESULTS.md "Precision
#: probe"; AP loss, the larger of coco_mini val and labeled_dev / network ms at 448x640): the stem alone in float32
#: 0.0166 / 39.31, stem + 1 block 0.0003 / 40.52, + 2 blocks 0.0036 / 40.90, + 6 blocks (stage 1) 0.0064 / 44.48,
#: against float32's 60.21 ms in the same run. With the hand-over channels-last (runtime/openvino.py ``_nhwc``) the
#: 1-block split loses 0.0023 (coco_mini val 0.4108 -> 0.4086; labeled_dev 0.8082 -> 0.8079), 32.67 ms against 49.47.
BF16_FP32_BLOCKS = 1


# ------------------------------------------------------------------------------------------- the row

LITEPOSE = Family(
    name="litepose", kinds=("multi",), network=LitePose, config=LitePoseConfig, codec=AECodec,
    model_section=LitePoseModelSection, loss_section=LitePoseLossSection, input_multiple=INPUT_MULTIPLE,
    network_config=_litepose_config, training_codec=_litepose_codec, from_weights=_litepose_from_weights,
    loss=_litepose_loss, loss_parts=("heatmaps", "push", "pull"), ideal_heads=_litepose_ideal_heads, init_any_size=True,
    importer=_litepose_import, preprocess=litepose_preprocess, dynamic_size=True,
    bf16_split=lambda network: network.split(BF16_FP32_BLOCKS),
    importer_source="litepose-auto-m-crowdpose.pth (upstream's LitePose-Auto-M CrowdPose state_dict) or its folder")
