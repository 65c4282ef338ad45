"""`featherpose convert movenet` turns Google's TFJS graphs into the weights the package ships."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from featherpose.convert.movenet import convert_movenet, detect_variant, import_movenet
from featherpose.convert.tfjs import read_graph_model
from featherpose.weights_io import load_weights
from featherpose.zoo import ZOO, weights_path


def test_conversion_reproduces_bundled_weights(google_graphs, tmp_path):
    written = convert_movenet(google_graphs, tmp_path)
    assert sorted(p.name for p in written) == sorted(info.weights for info in ZOO.values()
                                                     if info.weights.startswith("movenet-"))  # Google's graphs
    for path in written:
        mine, bundled = load_weights(path), load_weights(weights_path(ZOO[path.stem]))
        assert mine.state_dict.keys() == bundled.state_dict.keys()
        for key, tensor in mine.state_dict.items():
            assert torch.equal(tensor, bundled.state_dict[key]), key
        assert mine.meta["config"] == bundled.meta["config"] and mine.meta["codec"] == bundled.meta["codec"]
        for key, arr in mine.codec_arrays.items():
            np.testing.assert_array_equal(arr, bundled.codec_arrays[key])


def test_fp16_storage_is_exact(google_graphs):
    """Every graph weight survives the fp16 safetensors storage bit for bit."""
    model, variant, graph = import_movenet(google_graphs / "movenet-thunder.json")
    bundled = load_weights(weights_path(ZOO[f"movenet-{variant}"]))
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, bundled.state_dict[key]), key


def test_variants_detected(google_graphs):
    for variant in ("lightning", "thunder", "multipose"):
        assert detect_variant(read_graph_model(google_graphs / f"movenet-{variant}.json")) == variant


def test_npm_tarball_is_a_valid_source(google_graphs, tmp_path):
    import tarfile

    tgz = tmp_path / "models.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for f in google_graphs.glob("movenet-lightning.*"):
            tar.add(f, arcname=f"package/models/{f.name}")
    (out,) = convert_movenet(tgz, tmp_path / "out")
    assert out.name == "movenet-lightning.safetensors"


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        convert_movenet(tmp_path / "nope.json", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no MoveNet TFJS graph"):
        convert_movenet(tmp_path / "empty", tmp_path)
    bad = tmp_path / "model.json"
    bad.write_text(json.dumps({"format": "layers-model"}))
    with pytest.raises(ValueError, match="not a TFJS graph model"):
        read_graph_model(bad)


def test_truncated_shard(google_graphs, tmp_path):
    for f in google_graphs.glob("movenet-lightning.*"):
        data = f.read_bytes()
        (tmp_path / f.name).write_bytes(data[: len(data) // 2] if f.suffix == ".bin" else data)
    with pytest.raises(ValueError, match="truncated"):
        read_graph_model(tmp_path / "movenet-lightning.json")
