"""Issue 9, evaluation / data / weight files / importer: bad input is one clear line, never a traceback.

Weight files are made by re-saving the bundled ones with corrupted metadata; annotation files by
corrupting coco_mini's. Every error must be a ValueError / FileNotFoundError naming the file.
"""
from __future__ import annotations

import json
import random
import tarfile
import zipfile

import numpy as np
import pytest
import torch

import featherpose
from featherpose import zoo
from featherpose.cli import main
from featherpose.weights_io import load_weights, save_weights

from conftest import DATA

COCO_MINI = DATA / "coco_mini" / "person_keypoints_val2017.json"


def resave(src_name: str, out, *, config=None, codec=None, state=None, meta=None, codec_arrays=None):
    """Re-save a bundled weight file with some metadata replaced (dicts are written as JSON, strings raw)."""
    w = load_weights(zoo.weights_path(zoo.model_info(src_name)))
    save_weights(out, w.state_dict if state is None else state, name=w.meta["name"], architecture="movenet",
                 config=w.config, codec=w.codec,
                 codec_arrays=w.codec_arrays if codec_arrays is None else codec_arrays)
    if config is None and codec is None and meta is None:
        return out
    # rewrite the metadata strings as given (save_weights always writes valid JSON)
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(out), "pt") as f:
        m, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    for key, value in (("config", config), ("codec", codec)):
        if value is not None:
            m[key] = value if isinstance(value, str) else json.dumps(value)
    m.update(meta or {})
    save_file(tensors, str(out), metadata=m)
    return out


def one_line_error(capsys, argv) -> str:
    """Run the CLI, expect exit 2 and exactly one error line (no traceback); return it."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if not line.startswith("WARNING")]
    assert len(err) == 1 and err[0].startswith("featherpose: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


# ---------------------------------------------------------------------------------- item 5: input size cap


def test_input_size_is_capped_with_the_reason():
    with pytest.raises(ValueError, match=r"4096x4096 is too large: at most 1024.*memory"):
        zoo.build("movenet-multipose", 4096)
    name, net, codec, _ = zoo.build("movenet-multipose", zoo.MAX_INPUT_SIZE)  # the cap itself is allowed
    assert codec.input_hw == (1024, 1024)


def test_weight_file_config_asking_for_a_huge_input_is_refused(tmp_path):
    path = tmp_path / "huge.safetensors"
    w = load_weights(zoo.weights_path(zoo.model_info("movenet-lightning")))
    resave("movenet-lightning", path, config=dict(w.config, input_size=100000))
    with pytest.raises(ValueError, match=r"huge.safetensors: config input_size 100000x100000 is too large"):
        featherpose.load(path)


def test_weight_file_config_asking_for_an_enormous_network_fails_before_allocating(tmp_path):
    path = tmp_path / "wide.safetensors"
    w = load_weights(zoo.weights_path(zoo.model_info("movenet-lightning")))
    resave("movenet-lightning", path, config=dict(w.config, width=200.0))  # ~70 GB of float32 if built
    with pytest.raises(ValueError, match=r"wide.safetensors: weights do not fit the MoveNet its 'config'"):
        zoo.build(path)


# ---------------------------------------------------------------------------------- item 6: weight files


@pytest.mark.parametrize("field, value, match", [
    ("codec", {"multi": False, "no_such_option": 1}, r"metadata field 'codec' does not describe"),
    ("codec", {"multi": True, "multipose": {"nms_kernel": "x"}}, r"metadata field 'codec' does not describe"),
    ("codec", "[1, 2]", r"metadata field 'codec' must be a JSON object"),
    ("codec", "{not json", r"metadata field 'codec' is not valid JSON"),
    ("config", "{\"width\": 1.0,", r"metadata field 'config' is not valid JSON"),
    ("config", {"width": "wide"}, r"metadata field 'config' does not describe a MoveNet"),
    ("config", {"input_size": "192"}, r"input_size '192', not an integer"),
    ("config", {"num_keypoints": -3}, r"'config'"),
])
def test_bad_weight_metadata_is_one_line_naming_file_and_field(tmp_path, capsys, field, value, match):
    path = tmp_path / "bad.safetensors"
    resave("movenet-lightning", path, **{field: value})
    with pytest.raises(ValueError, match=match) as info:
        zoo.build(path)
    assert str(path) in str(info.value) and "save_weights" in str(info.value)
    line = one_line_error(capsys, ["predict", str(featherpose.cli.sample_image()), "--model", str(path)])
    assert str(path) in line


def test_bad_skeleton_metadata_names_the_field(tmp_path):
    path = resave("movenet-lightning", tmp_path / "sk.safetensors", meta={"skeleton": "{\"name\": 3}"})
    with pytest.raises(ValueError, match=r"sk.safetensors: metadata field 'skeleton'"):
        zoo.build(path)


def test_fuzz_corrupt_weight_files_never_traceback(tmp_path):
    """Garbage metadata, wrong types, missing / reshaped tensors: always ValueError naming the file."""
    rng = random.Random(9)
    w = load_weights(zoo.weights_path(zoo.model_info("movenet-lightning")))
    junk = [None, True, -1, 0, 3.5, 1e308, float("nan"), "x", [], [1], {}, {"a": 1}, 10 ** 30]
    keys = list(w.state_dict)
    for trial in range(40):
        config, codec, state, meta = dict(w.config), dict(w.codec), dict(w.state_dict), {}
        kind = trial % 5
        if kind == 0:
            config[rng.choice(list(config) + ["extra"])] = rng.choice(junk)
        elif kind == 1:
            codec[rng.choice(list(codec) + ["multipose", "stride", "activation"])] = rng.choice(junk)
        elif kind == 2:
            del state[rng.choice(keys)]
        elif kind == 3:
            k = rng.choice(keys)
            state[k] = torch.zeros(tuple(s + 1 for s in state[k].shape))
        else:
            meta[rng.choice(["config", "codec", "skeleton"])] = rng.choice(["", "{", "null", "[]", "\"s\"", "{}x"])
        path = tmp_path / f"fuzz{trial}.safetensors"
        resave("movenet-lightning", path, config=config, codec=codec, meta=meta) if kind != 2 and kind != 3 else \
            save_weights(path, state, name="fuzz", architecture="movenet", config=config, codec=codec,
                         codec_arrays=w.codec_arrays)
        try:
            zoo.build(path)
        except ValueError as exc:
            assert str(path) in str(exc), (trial, str(exc))
            assert "\n" not in str(exc)
