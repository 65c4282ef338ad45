"""Shared layers (models/layers.py): both families build from them, and the bundled weights still load strictly."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import featherpose
from featherpose.families import family
from featherpose.models import hourglass, layers, movenet
from featherpose.models.hourglass import HourglassConfig, StackedHourglass
from featherpose.models.movenet import MoveNet, MoveNetConfig
from featherpose.weights_io import load_weights

BUNDLED = sorted((Path(featherpose.__file__).parent / "weights").glob("*.safetensors"))


def test_bundled_weights_exist():
    assert {p.stem for p in BUNDLED} >= {"movenet-lightning", "movenet-thunder", "movenet-multipose"}


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_weights_load_strictly(path):
    """Each bundled file into its own family's network, strictly (the row's from_weights loads strict)."""
    weights = load_weights(path)
    if weights.meta.get("architecture") != "movenet":
        family(weights.meta["architecture"]).from_weights(weights, None)  # raises on a missing or extra tensor
        return
    model = MoveNet(MoveNetConfig(**weights.config))
    result = model.load_state_dict(weights.state_dict, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_families_use_the_shared_layers():
    for name in ("ConvAct", "InvertedResidual", "SeparableConv", "make_divisible"):
        assert getattr(movenet, name) is getattr(layers, name)  # still importable from movenet, defined once
    assert hourglass.ConvAct is layers.ConvAct
    for family in (MoveNet(MoveNetConfig()), MoveNet(MoveNetConfig(backbone="shufflenetv2", batch_norm=True)),
                   StackedHourglass(HourglassConfig(stacks=1, channels=16, depth=1, input_size=64))):
        assert any(type(m) is layers.ConvAct for m in family.modules())
    lightning = MoveNet(MoveNetConfig())
    assert any(type(m) is layers.InvertedResidual for m in lightning.modules())
    assert any(type(m) is layers.SeparableConv for m in lightning.modules())


def test_conv_act_padding_and_bias():
    tf = layers.ConvAct(3, 8, 3, 2)  # TF SAME: the extra zero row/column at the bottom/right
    assert isinstance(tf[0], nn.ZeroPad2d) and tf[0].padding == (0, 1, 0, 1) and tf.conv.bias is not None
    assert isinstance(tf[-1], nn.ReLU6)
    sym = layers.ConvAct(3, 8, 7, 2, act=nn.ReLU, batch_norm=True, bias=True, tf_same=False)  # the hourglass stem
    assert [type(m) for m in sym] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert sym.conv.padding == (3, 3) and sym.conv.bias is not None
    assert layers.ConvAct(3, 8, batch_norm=True).conv.bias is None  # default: no bias before BatchNorm
    assert layers.ConvAct(3, 8, 3, bias=False).conv.bias is None
    x = torch.rand(1, 3, 64, 64)
    assert tf(x).shape == sym(x).shape == (1, 8, 32, 32)


def test_hourglass_state_dict_keys_unchanged():
    keys = StackedHourglass(HourglassConfig(stacks=2, channels=16, depth=1, input_size=64)).state_dict().keys()
    assert {"stem.0.0.weight", "stem.0.0.bias", "stem.0.1.running_mean", "features.0.1.0.weight",
            "features.0.1.0.bias", "features.1.1.1.weight"} <= set(keys)


@pytest.mark.parametrize("value, expected", [(32 * 1.75, 56), (16 * 0.5, 8), (3, 8), (116 * 0.75, 88), (90, 88)])
def test_make_divisible(value, expected):
    assert layers.make_divisible(value) == expected


def test_keypoint_metadata_lives_in_skeletons():
    from featherpose import skeletons
    from featherpose.data import coco

    assert coco.WHOLEBODY_PARTS is skeletons.WHOLEBODY_PARTS
    assert sum(len(names) for _, names, _ in skeletons.WHOLEBODY_PARTS) == 133 - 17
    assert skeletons.sigmas_by_name(skeletons.LSP14.keypoints) == list(skeletons.LSP14.sigmas)
    assert skeletons.sigmas_by_name(["nose", "neck"]) == [0.026, 0.079]
    assert skeletons.sigmas_by_name(["nose", "tail"]) is None
    assert skeletons.keypoints_without_sigma(["nose", "tail"]) == ["tail"]
