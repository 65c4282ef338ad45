"""``featherpose.load`` keeps a plan per weight file and load arguments (``zoo.Plan``): a later process loads the model
without building its network and, its exports cached too, without importing torch."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import featherpose
from featherpose import zoo
from featherpose.runtime.export import LazyNetwork
from featherpose.weights_io import load_weights, save_weights

from conftest import SHARED

SAMPLE = str(zoo.Path(featherpose.__file__).parent / "assets" / "messi5.jpg")
IR_XML = SHARED / "weights" / "lwop" / "human-pose-estimation-0001.xml"

PROCESS = """
import json, sys
import featherpose
est = featherpose.load({model!r}, backend={backend!r})
poses = est({image!r}, min_score=0)
print(json.dumps({{"torch": "torch" in sys.modules, "keypoints": poses.keypoints.tolist()}}))
"""


def _new_process(model: str, backend: str, cache) -> dict:
    code = PROCESS.format(model=model, backend=backend, image=SAMPLE)
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "XDG_CACHE_HOME": str(cache)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("model, backend", [
    ("movenet-lightning", "onnxruntime"),  # the in-graph decoder
    ("litepose-m-crowdpose", "onnxruntime"),  # dynamic size, its own preprocessing
    pytest.param("movenet-lightning", "openvino", marks=pytest.mark.skipif(
        importlib.util.find_spec("openvino") is None, reason="OpenVINO not installed")),  # the in-graph letterbox
    pytest.param(str(IR_XML), "openvino", marks=pytest.mark.skipif(  # Intel's IR: its plan keyed by .xml and .bin
        importlib.util.find_spec("openvino") is None or not IR_XML.is_file(), reason="OpenVINO or the IR missing"),
        id="intel-ir-openvino"),
])
def test_a_later_process_loads_the_model_without_torch(model, backend, tmp_path):
    first = _new_process(model, backend, tmp_path)
    second = _new_process(model, backend, tmp_path)
    assert first["torch"] and not second["torch"]  # the first exported, the second read plan and export back
    assert second["keypoints"] == first["keypoints"]
    assert len(list((tmp_path / "featherpose" / "loads").glob("*.pickle"))) == 1


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "featherpose" / "loads"


def test_a_planned_load_builds_its_network_only_when_asked(cache):
    first = featherpose.load("movenet-lightning", backend="onnxruntime")
    assert first._network._module is not None  # built to make the plan
    second = featherpose.load("movenet-lightning", backend="onnxruntime")
    assert isinstance(second._network, LazyNetwork) and second._network._module is None  # plan and export cached
    assert second.skeleton is featherpose.SKELETONS["coco17"]  # a registered skeleton: the same object
    np.testing.assert_array_equal(second(SAMPLE).keypoints, first(SAMPLE).keypoints)
    built = second.network  # built now, from the same file
    assert second._network._module is built
    reference = first.network.state_dict()
    assert all(np.array_equal(v.numpy(), reference[k].numpy()) for k, v in built.state_dict().items())


def test_a_rewritten_weight_file_gets_a_new_plan(tmp_path, cache):
    path = tmp_path / "model.safetensors"
    shutil.copy(zoo.weights_path(zoo.model_info("movenet-lightning")), path)
    assert featherpose.load(path, backend="onnxruntime").name == "movenet-lightning"
    w = load_weights(path)
    save_weights(path, w.state_dict, name="renamed", architecture=w.meta["architecture"], config=w.config,
                 codec=w.codec, codec_arrays=w.codec_arrays)  # atomically: a new file at the same path
    assert featherpose.load(path, backend="onnxruntime").name == "renamed"
    assert len(list(cache.glob("*.pickle"))) == 2
    # rewritten in place with the same size, inode and mtime (as `cp -p` over it or `rsync --inplace -t` can leave it)
    other = tmp_path / "other.safetensors"
    save_weights(other, w.state_dict, name="renamex", architecture=w.meta["architecture"], config=w.config,
                 codec=w.codec, codec_arrays=w.codec_arrays)
    before = path.stat()
    assert other.stat().st_size == before.st_size
    with open(path, "r+b") as f:
        f.write(other.read_bytes())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert featherpose.load(path, backend="onnxruntime").name == "renamex"


def test_a_damaged_plan_is_made_again(cache):
    expected = featherpose.load("movenet-thunder", backend="onnxruntime")(SAMPLE).keypoints
    (plan,) = cache.glob("*.pickle")
    plan.write_bytes(b"not a plan")
    est = featherpose.load("movenet-thunder", backend="onnxruntime")
    np.testing.assert_array_equal(est(SAMPLE).keypoints, expected)
    assert plan.read_bytes() != b"not a plan"  # written anew


def test_a_damaged_cached_export_is_made_again(cache):
    """One byte changed inside a cached ONNX export (a disk's fault, say): the next load exports anew, it does not
    hand onnxruntime a broken graph; the file written again passes its checksum."""
    from featherpose.fileio import read_cached

    expected = featherpose.load("movenet-lightning", backend="onnxruntime")(SAMPLE).keypoints
    (export,) = (cache.parent / "onnx").glob("*.onnx")
    raw = bytearray(export.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    export.write_bytes(bytes(raw))
    assert read_cached(export) is None and not export.exists()  # found damaged and removed
    export.write_bytes(bytes(raw))
    est = featherpose.load("movenet-lightning", backend="onnxruntime")
    np.testing.assert_array_equal(est(SAMPLE).keypoints, expected)
    assert read_cached(export) is not None  # written anew, whole


def test_a_lazy_network_is_built_only_when_its_export_is_missing(tmp_path, monkeypatch):
    """Exports of a LazyNetwork are cached under its key: the same key reads the export back without building the
    network, another key exports anew."""
    from featherpose.models.litepose import LitePose, named_config
    from featherpose.runtime.export import export_onnx

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    builds = []

    def make():
        builds.append(1)
        return LitePose(named_config("litepose-xs"))

    first = export_onnx(LazyNetwork("one", make), (64, 64), dynamic_size=True)
    assert export_onnx(LazyNetwork("one", make), (64, 64), dynamic_size=True) == first and len(builds) == 1
    export_onnx(LazyNetwork("one", make), (64, 64))  # another setting: exported
    assert len(builds) == 2
    export_onnx(LazyNetwork("two", make), (64, 64), dynamic_size=True)  # another network
    assert len(builds) == 3


def test_a_plan_that_cannot_be_kept_is_not_kept(cache, monkeypatch):
    """A family whose preprocessing cannot be pickled (a lambda) loads as before, without a plan."""
    from dataclasses import replace

    from featherpose.families import FAMILIES

    row = FAMILIES["lwop"]
    monkeypatch.setitem(FAMILIES, "lwop", replace(row, preprocess=lambda image, hw: row.preprocess(image, hw)))
    est = featherpose.load("lightweight-openpose", backend="onnxruntime")
    assert len(est(SAMPLE).keypoints) and not list(cache.glob("*.pickle"))


def test_a_planned_network_is_not_built_from_a_changed_file(tmp_path, cache):
    """A planned load builds its network later (est.network) from the same file, or says in one line that the file
    changed since the load, instead of building another model."""
    path = tmp_path / "model.safetensors"
    shutil.copy(zoo.weights_path(zoo.model_info("movenet-lightning")), path)
    featherpose.load(path, backend="onnxruntime")
    est = featherpose.load(path, backend="onnxruntime")  # planned: the network not built
    shutil.copy(zoo.weights_path(zoo.model_info("movenet-thunder")), path)
    with pytest.raises(ValueError, match="the weight file changed .* since the model was loaded; load it again$"):
        est.network
