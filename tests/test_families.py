"""Every row of the family table and every zoo model, tested the same way, so a new family is tested for free:
built from a tiny recipe, forward shapes equal to its codec's heads, ONNX export (with the codec's in-graph
decoder), decode of random heads, an encode / decode round trip on real labels, and a 2-step training run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from featherpose import zoo
from featherpose.families import FAMILIES, family, family_of, loss_parts
from featherpose.runtime.export import export_onnx
from featherpose.train.config import load_config
from featherpose.train.data import TrainDataset
from featherpose.train.trainer import CSV_FIELDS, build_loss, build_model, train

from conftest import DATA

LABELED = DATA / "labeled_dev" / "person_keypoints_coco17.json"
#: Smaller networks than the families' defaults (speed); a family not named here is tested at its defaults.
TINY = {"movenet": {"width": 0.35}, "hourglass": {"stacks": 1, "channels": 16}, "lwop": {"num_refinement_stages": 1},
        "litepose": {"variant": "litepose-xs"}}
NAMES = list(FAMILIES)
#: Input pixels per cell for codecs with heads at two strides (no single ``stride``): litepose's coarsest head is
#: at 1/4 (measured round-trip error on labeled_dev at 64x64: 1.03 px).
CELL = {"litepose": 4}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread


def tiny_recipe(folder: Path, name: str) -> Path:
    """A 2-step recipe of family ``name`` on the labelled dev images, at the family's smallest sensible input."""
    size = max(64, FAMILIES[name].input_multiple)
    recipe = {"model": {"architecture": name, "input_size": size, **TINY.get(name, {})},
              "data": {"train": str(LABELED), "workers": 0}, "augment": [],
              "optim": {"lr": 1e-3, "warmup_steps": 0}, "epochs": 1, "batch_size": 2, "max_steps_per_epoch": 2,
              "seed": 0, "out": str(folder / "run")}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def built(tmp_path, name: str):
    """(recipe, dataset, network, codec) of a family's tiny recipe."""
    cfg = load_config(tiny_recipe(tmp_path, name))
    dataset = TrainDataset(cfg)
    return cfg, dataset, build_model(cfg, dataset.num_keypoints).eval(), dataset.codec


def test_the_table_is_explicit_and_consistent():
    assert set(TINY) == set(FAMILIES), "give every family a tiny model section in TINY (the tests below use it)"
    for name, row in FAMILIES.items():
        assert row.name == name and family(name) is row
        assert row.kinds and set(row.kinds) <= {"single", "multi", "top-down"}
        assert row.model_section().architecture == name
        assert set(row.loss_parts) <= set(CSV_FIELDS)
    assert loss_parts() == CSV_FIELDS[CSV_FIELDS.index("loss") + 1:CSV_FIELDS.index("distill")]
    with pytest.raises(ValueError, match="unknown architecture 'resnet'; known: movenet, hourglass"):
        family("resnet")
    with pytest.raises(ValueError, match="unknown architecture"):
        zoo.build_network("resnet", FAMILIES["movenet"].config())  # no silent MoveNet for an unknown name


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_export_and_random_decode(tmp_path, name):
    row = FAMILIES[name]
    cfg, dataset, net, codec = built(tmp_path, name)
    assert type(net) is row.network and type(codec) is row.codec and family_of(codec) is row
    assert codec.kind in row.kinds and codec.top_down == row.top_down
    hw = codec.input_hw
    with torch.no_grad():
        heads = net(torch.zeros(2, 3, *hw))
    shapes = codec.head_shapes()
    assert set(shapes) <= set(heads)
    for head, shape in shapes.items():
        assert tuple(heads[head].shape) == (2, *shape), head

    rng = np.random.default_rng(0)
    random = {head: rng.normal(size=shape).astype(np.float32) for head, shape in shapes.items()}
    dec = codec.decode(random)
    n = dec.keypoints.shape[0]
    assert dec.keypoints.shape == (n, codec.num_keypoints, 3) and dec.scores.shape == (n,)
    assert n >= 1 and (n == 1 or codec.kind == "multi")
    assert dec.boxes is None or dec.boxes.shape == (n, 4)
    assert np.isfinite(dec.keypoints).all() and np.isfinite(dec.scores).all()

    x = np.zeros((1, *hw, 3), np.int32)
    onnx = export_onnx(net, hw, tmp_path / f"{name}.onnx")
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": x})))
    for head, shape in shapes.items():
        assert outputs[head].shape == (1, *shape), head
    decoder = codec.graph_decoder()
    if decoder is not None:  # the codec's decoder inside the graph gives the codec's own answer
        onnx = export_onnx(net, hw, tmp_path / f"{name}-decoded.onnx", decoder=decoder)
        session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        (decoded,) = session.run(None, {"image": x})
        reference = codec.decode({k: v[0] for k, v in outputs.items()}).keypoints
        np.testing.assert_allclose(codec.decode({"decoded": decoded[0]}).keypoints, reference, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_encode_decode_round_trip_on_real_labels(tmp_path, name):
    """decode(ideal heads of encode(labels)) gives each labelled keypoint in the input back within half a cell."""
    row = FAMILIES[name]
    cfg, dataset, _, codec = built(tmp_path, name)
    rng = np.random.default_rng(0)
    checked = 0
    for i in range(len(dataset)):
        sample, start = dataset.source(i)
        sample = dataset.pipeline(sample, rng, start=start)
        kp = sample.keypoints
        if len(kp) != 1:  # one person: the single-pose decoder has no other to choose
            continue
        heads = row.ideal_heads(codec, dataset.encode(kp, sample))
        got = codec.decode(heads).keypoints
        size = np.array(codec.input_hw[::-1], np.float32)
        keep = (kp[0, :, 2] > 0) & (kp[0, :, :2] >= 0).all(axis=1) & (kp[0, :, :2] < size).all(axis=1)
        err = min(np.abs(person[keep, :2] - kp[0, keep, :2]).max(initial=0) for person in got)
        assert err <= CELL.get(name, getattr(codec, "stride", None)) / 2, (name, i, err)
        checked += int(keep.sum())
    assert checked >= 10


@pytest.mark.parametrize("name", NAMES)
def test_two_training_steps_from_a_tiny_recipe(tmp_path, name):
    row = FAMILIES[name]
    recipe = tiny_recipe(tmp_path, name)
    cfg = load_config(recipe)
    assert type(cfg.model) is row.model_section and type(cfg.loss) is row.loss_section
    assert build_loss(cfg, TrainDataset(cfg).skeleton) is not None
    result = train(recipe, progress=False)
    assert result.step == 2 and np.isfinite(result.last_loss)
    _, net, codec, _ = zoo.build(result.out / "checkpoints" / "last.safetensors")
    assert type(net) is row.network and type(codec) is row.codec and codec.input_hw[0] == cfg.model.input_size
    assert row.dynamic_size or codec.input_hw[1] == cfg.model.input_size  # lwop: the width follows each image


@pytest.mark.parametrize("model", list(zoo.ZOO))
def test_every_zoo_model_matches_its_codec(model):
    info = zoo.model_info(model)
    _, net, codec, skeleton = zoo.build(model)
    row = family_of(codec)
    assert type(net) is row.network and codec.kind in row.kinds
    assert info.multi_person == (codec.kind == "multi") and codec.input_hw == info.input_size
    with torch.no_grad():
        heads = net(torch.zeros(1, 3, *codec.input_hw))
    for head, shape in codec.head_shapes().items():
        assert tuple(heads[head].shape) == (1, *shape), head


@pytest.mark.parametrize("entry", list(zoo.TRAINABLE.values()), ids=list(zoo.TRAINABLE))
def test_every_trainable_architecture_builds(entry):
    row = family(entry.architecture)
    with torch.device("meta"):  # shapes only: no memory, no time
        net = zoo.build_network(entry.architecture, entry.config)
        assert type(net) is row.network
        size = entry.config.input_size
        heads = net(torch.zeros(1, 3, size, size))
    section = row.model_section(input_size=size)
    codec = row.training_codec(section, row.loss_section(), entry.config.num_keypoints)
    for head, shape in codec.head_shapes().items():
        assert tuple(heads[head].shape) == (1, *shape), head
