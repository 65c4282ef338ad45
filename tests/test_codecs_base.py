"""The codec protocol (issue 10, item 2): every codec implements :class:`featherpose.codecs.base.Codec`,
stores its settings through ``to_dict`` / ``arrays`` and is rebuilt by ``from_dict`` to decode the same;
the bundled (older-format) weight files still build the same codecs."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from featherpose import zoo
from featherpose.codecs.base import KINDS, Codec, Decoded
from featherpose.codecs.heatmap import HeatmapCodec
from featherpose.codecs.associative_embedding import AECodec
from featherpose.codecs.openpose import PafCodec
from featherpose.codecs.movenet import MoveNetCodec
from featherpose.codecs.movenet_multipose import GOOGLE_MULTIPOSE, MultiposeConstants
from featherpose.codecs.movenet_targets import TargetConfig
from featherpose.codecs.ops import soft_sigmoid, soft_sigmoid_torch
from featherpose.weights_io import load_weights, save_weights

#: Codec class -> instances covering its settings. A new codec class joins every test by a line here.
CODECS = {
    "movenet-single": lambda: MoveNetCodec((192, 192)),
    "movenet-single-trained": lambda: MoveNetCodec((256, 256), 14, fp16_constants=False, activation="soft_sigmoid",
                                                   targets=TargetConfig(kernel="gaussian", center="mean")),
    "movenet-single-graph-prior": lambda: MoveNetCodec((64, 64), center_prior=np.random.default_rng(1).random(
        (16, 16)).astype(np.float32)),
    "movenet-multi": lambda: MoveNetCodec((256, 320), multi=True),
    "movenet-multi-custom": lambda: MoveNetCodec((128, 128), 5, multi=True, fp16_constants=False, multipose=
                                                 MultiposeConstants.from_dict({**GOOGLE_MULTIPOSE.to_dict(),
                                                                              "nms_kernel": 3, "num_instances": 4})),
    "heatmap": lambda: HeatmapCodec((256, 192), 14),
    "heatmap-plain": lambda: HeatmapCodec((64, 64), 16, stride=2, sigma=2.0, normalize=False),
    "paf-coco17": lambda: PafCodec((256, 456), 17),
    "paf-openpose18": lambda: PafCodec((64, 96), 18, upsample=2),
    "ae-crowdpose14": lambda: AECodec((128, 192), 14),
}


def _codec_classes() -> set[type]:
    return {type(make()) for make in CODECS.values()}


def _random_heads(codec: Codec, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(s) * 3).astype(np.float32) for k, s in codec.head_shapes().items()}


def _assert_same_decoding(a: Codec, b: Codec) -> None:
    for seed in range(3):
        heads = _random_heads(a, seed)
        da, db = a.decode({k: v.copy() for k, v in heads.items()}), b.decode(heads)
        np.testing.assert_array_equal(da.keypoints, db.keypoints)
        np.testing.assert_array_equal(da.scores, db.scores)
        assert (da.boxes is None) == (db.boxes is None)
        if da.boxes is not None:
            np.testing.assert_array_equal(da.boxes, db.boxes)
        ga, gb = a.graph_decoder(), b.graph_decoder()
        assert (ga is None) == (gb is None)
        if ga is not None:
            with torch.inference_mode():
                t = {k: torch.from_numpy(v[None]) for k, v in heads.items()}
                np.testing.assert_array_equal(ga(t).numpy(), gb(t).numpy())


def _round_trip(codec: Codec) -> Codec:
    """Through JSON, as a weight file stores it."""
    return type(codec).from_dict(json.loads(json.dumps(codec.to_dict())), codec.input_hw, codec.num_keypoints,
                                 {k: v.copy() for k, v in codec.arrays().items()})


@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_codec_implements_the_protocol(name):
    codec = CODECS[name]()
    assert isinstance(codec, Codec)
    assert codec.kind in KINDS
    assert codec.multi == (codec.kind == "multi") and codec.top_down == (codec.kind == "top-down")
    assert len(codec.input_hw) == 2 and codec.num_keypoints >= 1
    json.dumps(codec.to_dict())  # JSON-able
    assert all(isinstance(v, np.ndarray) for v in codec.arrays().values())
    dec = codec.decode(_random_heads(codec))
    assert isinstance(dec, Decoded) and dec.keypoints.shape[1:] == (codec.num_keypoints, 3)
    assert dec.scores.shape == dec.keypoints.shape[:1]
    graph = codec.graph_decoder()
    assert graph is None or isinstance(graph, torch.nn.Module)
    assert codec.decodes_in_graph == (graph is not None)  # what a LazyNetwork's estimator goes by
    k = codec.num_keypoints
    kp = np.array([[[0.3 * codec.input_hw[1], 0.4 * codec.input_hw[0], 2]] * k], np.float32)
    targets = codec.encode(kp, None, np.array([[0, 0, *codec.input_hw[::-1]]], np.float32))
    assert targets and all(isinstance(v, np.ndarray) for v in targets.values())


def test_every_codec_class_is_listed():
    """Each codec class in featherpose.codecs (one deriving from Codec) has instances in CODECS."""
    import importlib
    import pkgutil

    import featherpose.codecs

    found = set()
    for mod in pkgutil.iter_modules(featherpose.codecs.__path__):
        module = importlib.import_module(f"featherpose.codecs.{mod.name}")
        found |= {v for v in vars(module).values()
                  if isinstance(v, type) and Codec in v.__mro__[1:] and v.__module__ == module.__name__}
    assert found == _codec_classes()


@pytest.mark.parametrize("name", sorted(CODECS))
def test_to_dict_from_dict_round_trips_and_decodes_identically(name):
    codec = CODECS[name]()
    again = _round_trip(codec)
    assert type(again) is type(codec) and again.kind == codec.kind and again.input_hw == codec.input_hw
    assert again.to_dict() == codec.to_dict()
    assert again.arrays().keys() == codec.arrays().keys()
    for key, arr in codec.arrays().items():
        np.testing.assert_array_equal(again.arrays()[key], arr)
    _assert_same_decoding(codec, again)


@pytest.mark.parametrize("name", sorted(CODECS))
def test_weight_files_store_the_codec_through_it(name, tmp_path):
    codec = CODECS[name]()
    path = save_weights(tmp_path / "w.safetensors", {"x": torch.zeros(1)}, name="t", architecture="any",
                        config={}, codec=codec)
    w = load_weights(path)
    assert w.codec == json.loads(json.dumps(codec.to_dict()))
    _assert_same_decoding(codec, type(codec).from_dict(w.codec, codec.input_hw, codec.num_keypoints, w.codec_arrays))


def _old_movenet_codec(weights, hw, num_keypoints) -> MoveNetCodec:
    """How the zoo assembled a MoveNet codec from a weight file before the codec read its own settings."""
    args = dict(weights.codec)
    multipose = args.pop("multipose", None)
    return MoveNetCodec(hw, num_keypoints, center_prior=weights.codec_arrays.get("center_prior"),
                        multipose=MultiposeConstants.from_dict(multipose) if multipose else None, **args)


@pytest.mark.parametrize("model", ["movenet-lightning", "movenet-thunder", "movenet-multipose"])
def test_bundled_weight_files_build_the_same_codec(model):
    """Google's imported models (older metadata: no targets, no stride) build the codec they always did."""
    weights = load_weights(zoo.weights_path(zoo.model_info(model)))
    size = weights.config["input_size"]
    old = _old_movenet_codec(weights, (size, size), weights.config["num_keypoints"])
    new = MoveNetCodec.from_dict(weights.codec, (size, size), weights.config["num_keypoints"], weights.codec_arrays)
    assert new.to_dict() == old.to_dict() and new.kind == ("multi" if weights.codec.get("multi") else "single")
    np.testing.assert_array_equal(new.prior, old.prior)
    assert new.arrays().keys() == weights.codec_arrays.keys()  # re-saving keeps the graph's centre prior
    _assert_same_decoding(old, new)
    _assert_same_decoding(zoo.build(model)[2], new)


def test_older_trained_metadata_and_bad_fields():
    """A trainer's older codec metadata still reads; an unknown key or bad value raises (the zoo's one line)."""
    old = {"multi": True, "fp16_constants": False, "activation": "soft_sigmoid"}
    codec = MoveNetCodec.from_dict(old, (128, 128), 17)
    assert codec.multi and codec.activation == "soft_sigmoid" and codec.multipose == GOOGLE_MULTIPOSE
    for bad in ({"no_such_option": 1}, {"activation": "tanh"}, {"targets": {"kernel": "box"}},
                {"multi": True, "multipose": {"nms_kernel": "x"}}):
        with pytest.raises((TypeError, ValueError, KeyError)):
            MoveNetCodec.from_dict(bad, (128, 128), 17)
    with pytest.raises((TypeError, ValueError)):
        HeatmapCodec.from_dict({"sigma": 0}, (64, 64), 14)
    with pytest.raises(TypeError):
        HeatmapCodec.from_dict({"no_such_option": 1}, (64, 64), 14)


def test_soft_sigmoid_torch_matches_numpy():
    x = np.linspace(-50, 50, 101, dtype=np.float32)
    np.testing.assert_allclose(soft_sigmoid_torch(torch.from_numpy(x)).numpy(), soft_sigmoid(x), rtol=1e-6)


def test_inference_layers_do_not_load_the_training_package():
    """Codecs, runtime and the estimator (and so the in-graph decoders) import nothing from featherpose.train."""
    code = ("import sys, featherpose.codecs.movenet, featherpose.codecs.heatmap, featherpose.runtime, "
            "featherpose.estimator, featherpose.weights_io; "
            "print(sorted(m for m in sys.modules if m.startswith('featherpose.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
