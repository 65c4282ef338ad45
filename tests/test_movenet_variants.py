"""Seed 003's MoveNet variants: ShuffleNetV2 backbone with a 3-level FPN, and the soft sigmoid."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import featherpose
from featherpose.codecs.movenet import MoveNetCodec
from featherpose.codecs.ops import sigmoid, soft_sigmoid
from featherpose.models.movenet import MoveNet, MoveNetConfig
from featherpose.runtime.export import export_onnx
from featherpose.train.trainer import train

from conftest import MEDIA, golden_input

from test_train import write_recipe


@pytest.mark.parametrize("backbone, width", [("mobilenetv2", 1.0), ("shufflenetv2", 0.75)])
def test_backbones_forward_and_export(backbone, width):
    model = MoveNet(MoveNetConfig(width=width, backbone=backbone, batch_norm=True)).eval()
    x = golden_input("messi5", 192)
    with torch.no_grad():
        ref = model(torch.from_numpy(x).permute(0, 3, 1, 2).float())
    assert {k: tuple(v.shape) for k, v in ref.items()} == {
        "heatmap": (1, 17, 48, 48), "center": (1, 1, 48, 48), "regress": (1, 34, 48, 48), "offset": (1, 34, 48, 48)}
    sess = ort.InferenceSession(export_onnx(model, (192, 192)), providers=["CPUExecutionProvider"])
    for got, want in zip(sess.run(None, {"image": x}), ref.values()):
        assert np.abs(got - want.numpy()).max() <= 1e-4 * max(1.0, float(want.abs().max()))


def test_shufflenet_is_smaller():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    mobile = MoveNet(MoveNetConfig(width=1.0, batch_norm=True))
    shuffle = MoveNet(MoveNetConfig(width=0.75, backbone="shufflenetv2", batch_norm=True))
    assert count(shuffle) < count(mobile) / 3
    assert shuffle.backbone.tap_channels == (88, 176, 352) and shuffle.fpn.lateral4 is None
    with pytest.raises(ValueError, match="unknown MoveNet backbone 'resnet'"):
        MoveNetConfig(backbone="resnet")


def test_soft_sigmoid_values_and_in_graph_decoder():
    x = np.array([-4.0, 0.0, 1.0, 9.0], np.float32)
    np.testing.assert_allclose(soft_sigmoid(x), [0.1, 0.5, 0.75, 0.95], rtol=1e-6)
    assert (soft_sigmoid(x) > 0).all() and (soft_sigmoid(x) < 1).all() and sigmoid(x)[1] == 0.5
    model = MoveNet(MoveNetConfig(width=0.5, batch_norm=True)).eval()
    codec = MoveNetCodec((192, 192), fp16_constants=False, activation="soft_sigmoid")
    x = torch.from_numpy(golden_input("basketball1", 192)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        heads = model(x)
        in_graph = codec.graph_decoder()(heads).numpy()
    numpy_ref = codec.decode_graph_layout({k: v[0].numpy() for k, v in heads.items()})
    assert np.abs(in_graph - numpy_ref).max() <= 1e-5


def test_train_shufflenet_soft_sigmoid_checkpoint(tmp_path):
    recipe = write_recipe(tmp_path, model={"backbone": "shufflenetv2", "width": 0.75, "multi": False},
                          loss={"activation": "soft_sigmoid"}, epochs=1)
    train(recipe, progress=False)
    path = tmp_path / "run" / "checkpoints" / "last.safetensors"
    a = featherpose.load(path, backend="torch")
    b = featherpose.load(path, backend="onnxruntime")
    assert a.network.config.backbone == "shufflenetv2" and a.codec.activation == "soft_sigmoid"
    pa, pb = a(MEDIA / "messi5.jpg"), b(MEDIA / "messi5.jpg")
    np.testing.assert_allclose(pa.keypoints, pb.keypoints, atol=1e-2)
