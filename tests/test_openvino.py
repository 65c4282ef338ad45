"""The OpenVINO backend (optional extra ``featherpose[openvino]``): every zoo model exported to ONNX and compiled by
OpenVINO gives torch's keypoints on the golden samples; Intel's int8 IR ``human-pose-estimation-0001.xml`` runs as
published (``featherpose.load(xml, backend="openvino")``, ``featherpose predict / eval --model X.xml``) and
reproduces the golden int8 outputs as closely as a different CPU's int8 kernels allow."""
from __future__ import annotations

import json
import os
import re
import sys

import numpy as np
import pytest

import featherpose
from featherpose.cli import main
from featherpose.image import LetterboxedFrame, load_image
from featherpose.runtime.export import LETTERBOXED

from conftest import DATA, SAMPLES, SHARED, golden_image_path

LWOP_GOLDEN = SHARED / "golden" / "lwop"
IR = SHARED / "weights" / "lwop" / "human-pose-estimation-0001.xml"
MANIFEST_PATH = LWOP_GOLDEN / "manifest.json"
LWOP_SAMPLES = ({s["name"]: s for s in json.loads(MANIFEST_PATH.read_text())["samples"]}
                if MANIFEST_PATH.is_file() else {})
needs_lwop = pytest.mark.skipif(not (IR.is_file() and LWOP_SAMPLES),
                                reason=f"Intel's IR or golden/lwop missing under {SHARED}")
#: torch fp32 vs OpenVINO fp32, keypoints in image pixels (the issue's bound; measured at most 1.8e-4 px).
PX = 0.5


@pytest.fixture(scope="module")
def ov():
    return pytest.importorskip("openvino")


def lwop_golden(sample: str, name: str) -> np.ndarray:
    return np.load(LWOP_GOLDEN / sample / name)


def assert_same_poses(a, b, px: float = PX) -> None:
    """Same people in the same order, keypoints within ``px`` image pixels, scores within 1e-3."""
    assert len(a) == len(b)
    np.testing.assert_allclose(a.keypoints[..., :2], b.keypoints[..., :2], atol=px)
    np.testing.assert_allclose(a.keypoints[..., 2], b.keypoints[..., 2], atol=1e-3)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)


# ------------------------------------------------------------------------------ featherpose networks via ONNX

@pytest.mark.parametrize("name", ["movenet-lightning", "movenet-thunder", "movenet-multipose"])
def test_movenet_keypoints_equal_torch_on_golden_samples(ov, name):
    """``featherpose.load(name, backend="openvino")`` (the ONNX export, in-graph decoder included for single-pose)
    finds torch fp32's people and keypoints on every MoveNet golden image."""
    ref = featherpose.load(name, backend="torch", threads=1)
    est = featherpose.load(name, backend="openvino", threads=1)
    assert est.backend.name == "openvino"
    for sample in SAMPLES:
        image = load_image(golden_image_path(sample))
        assert_same_poses(est(image, min_score=0), ref(image, min_score=0))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_movenet_letterboxes_frames_in_openvino(ov, precision):
    """A MoveNet on OpenVINO letterboxes the frame itself, in its graph (float32 in every precision): the Estimator
    hands the backend the frame, and the graph's letterbox makes resize_with_pad's network input on frames of every
    shape, but for OpenVINO's fused multiply-adds: random pixels (fractional lerps everywhere) put a value 1 off, 2 of
    196608 on the second frame here (fp32 and bf16 alike), none on the others."""
    if precision == "bf16" and "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("needs a CPU with bf16 arithmetic")
    est = featherpose.load("movenet-multipose", backend="openvino", precision=precision, threads=1)
    assert est.backend.letterboxes
    rng = np.random.default_rng(0)
    for hw in [(576, 768), (1000, 301), (256, 256), (1, 1), (97, 61)]:
        image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        frame, box = est.preprocess(image)
        x, numpy_box = est.network_input(image)
        assert isinstance(frame, LetterboxedFrame) and box == numpy_box
        diff = np.abs(est.backend.compiled([frame.frame, *frame.tables])[LETTERBOXED] - x)
        assert diff.max() <= 1 and np.count_nonzero(diff) <= 1e-4 * diff.size, (hw, np.count_nonzero(diff))
    image = load_image(SHARED / "media" / "messi5.jpg")
    frame, box = est.preprocess(image)
    assert_same_poses(est.postprocess(est.infer(frame), box),
                      est.postprocess(est.infer(est.network_input(image)[0]), box), px=0.5)


@needs_lwop
def test_lwop_equals_torch_and_golden_float_maps(ov):
    """Lightweight OpenPose in OpenVINO fp32 at each golden image's own width (dynamic axis): heads equal the golden
    float build within 1e-4 and poses equal torch's within 0.5 px."""
    ref = featherpose.load("lightweight-openpose", backend="torch", threads=1)
    est = featherpose.load("lightweight-openpose", backend="openvino", threads=1)
    for sample, entry in LWOP_SAMPLES.items():
        image = load_image(LWOP_GOLDEN / entry["image"])
        x, _ = est.preprocess(image)
        heads = est.infer(x)
        for head in ("heatmaps", "pafs"):
            assert np.abs(heads[head] - lwop_golden(sample, f"float_{head}.npy")[0]).max() <= 1e-4, (sample, head)
        assert_same_poses(est(image, min_score=0), ref(image, min_score=0))


def test_any_array_layout_and_type_gives_the_same_heads(ov):
    """The backend's infer request reads a C-contiguous array of its input type in place and converts anything else
    (another dtype, Fortran order, a read-only array, a strided view) into a copy: the same heads every way."""
    est = featherpose.load("lightweight-openpose", backend="openvino", threads=1)
    x, _ = est.network_input(load_image(golden_image_path(SAMPLES[0])))
    want = est.infer(x)
    frozen = x.copy()
    frozen.setflags(write=False)
    wide = np.repeat(x, 2, axis=2)[:, :, ::2]  # a strided view with x's values
    assert np.array_equal(wide, x)
    for other in (x.astype(np.float64), np.asfortranarray(x), frozen, wide, x):
        got = est.infer(other)
        for head in want:
            np.testing.assert_array_equal(got[head], want[head])


def test_cpu_plugin_settings(ov):
    """threads -> INFERENCE_NUM_THREADS; latency hint; f32 arithmetic (not the plugin's bf16 default on bf16 CPUs)."""
    compiled = featherpose.load("movenet-lightning", backend="openvino", threads=1).backend.compiled
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert str(compiled.get_property("PERFORMANCE_HINT")) in ("LATENCY", "PerformanceMode.LATENCY")
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32


def test_a_size_met_again_gets_a_static_compile(ov, monkeypatch):
    """A model whose input size follows the image (Lightweight OpenPose) runs a size met twice through a static
    compile (faster: benchmarks/RESULTS.md), with the dynamic compile's outputs; a fixed-size model keeps one
    compile; past MAX_STATIC_SIZES sizes, the dynamic compile runs."""
    from featherpose import runtime

    assert featherpose.load("movenet-lightning", backend="openvino", threads=1).backend.static is None
    est = featherpose.load("lightweight-openpose", backend="openvino", threads=1)
    static = est.backend.static
    image = load_image(golden_image_path(SAMPLES[0]))
    x, _ = est.preprocess(image)
    first = est.infer(x)  # the dynamic compile
    assert not static.compiled
    second = est.infer(x)  # the size met again: compiled static for it
    assert list(static.compiled) == [x.shape]
    compiled = static.compiled[x.shape]
    assert compiled.compiled.inputs[0].get_partial_shape().is_static
    for head in first:
        np.testing.assert_allclose(second[head], first[head], atol=1e-5)
    calls = []
    static.compiled[x.shape] = lambda *inputs, **kw: calls.append(1) or compiled(*inputs, **kw)
    est.infer(x)
    assert calls == [1]  # the static compile is what runs that size from then on

    def fail(shape):
        raise RuntimeError("no static compile today")

    monkeypatch.setattr(static, "build", fail)
    tall = np.concatenate([x, x], axis=1)  # a size whose static compile fails: it keeps running dynamic
    for _ in range(3):
        assert set(est.infer(tall)) == set(first)
    assert static.compiled[tall.shape] is None
    monkeypatch.setattr(runtime, "MAX_STATIC_SIZES", 2)
    wide = np.concatenate([x, x], axis=2)  # a third size past the cap: dynamic, however often it comes
    for _ in range(3):
        est.infer(wide)
    assert list(static.compiled) == [x.shape, tall.shape]


# ------------------------------------------------------------------------------ Intel's int8 IR as published

@pytest.fixture(scope="module")
def ir_estimator(ov):
    if not (IR.is_file() and LWOP_SAMPLES):
        pytest.skip(f"Intel's IR or golden/lwop missing under {SHARED}")
    return featherpose.load(IR, backend="openvino", threads=1, skeleton="openpose18")


def test_ir_preprocessing_is_the_reference_input(ir_estimator, ov):
    """OpenVINO's steps in front of the IR (int32 RGB NHWC -> float BGR NCHW) make golden input.npy exactly: the
    heads equal the bare IR's on input.npy bit for bit."""
    core = ov.Core()
    bare = core.read_model(str(IR))
    for sample in ("messi5", "astronaut"):
        expected = lwop_golden(sample, "input.npy")
        bare.reshape({bare.inputs[0]: ov.PartialShape(list(expected.shape))})
        compiled = core.compile_model(bare, "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
        want = {out.get_any_name(): v[0] for out, v in compiled(expected).items()}
        x, _ = ir_estimator.preprocess(load_image(LWOP_GOLDEN / LWOP_SAMPLES[sample]["image"]))
        got = ir_estimator.infer(x)
        np.testing.assert_array_equal(got["heatmaps"], want["Mconv7_stage2_L2"])
        np.testing.assert_array_equal(got["pafs"], want["Mconv7_stage2_L1"])


def test_ir_runs_int8_as_intel_ships_it(ir_estimator):
    """Heads from the IR are the golden int8 run's, not the float build's: on every sample each head is within half
    of that sample's int8-vs-float gap (README: 0.09-0.25 max abs) of ``int8_*.npy``, and within 0.08 absolute.
    (This CPU's int8 kernels are not the golden Xeon's, so not bit for bit: measured here 0.014-0.052, at most
    0.24 of the gap; the float build is 0.09-0.25 away.)"""
    for sample, entry in LWOP_SAMPLES.items():
        x, _ = ir_estimator.preprocess(load_image(LWOP_GOLDEN / entry["image"]))
        heads = ir_estimator.infer(x)
        for head in ("heatmaps", "pafs"):
            int8, fp = lwop_golden(sample, f"int8_{head}.npy")[0], lwop_golden(sample, f"float_{head}.npy")[0]
            assert heads[head].shape == int8.shape
            err, gap = np.abs(heads[head] - int8).max(), np.abs(int8 - fp).max()
            assert err <= 0.5 * gap and err <= 0.08, (sample, head, err, gap)


def _keypoints_agreeing(ours: np.ndarray, gold: np.ndarray, tol: float) -> int:
    """Golden keypoints (N, 18, 3; missing: -1) that ``ours`` (M, 18, 3; missing: score 0) reproduces within ``tol``
    pixels, people matched one to one, greedily, the most complete golden person first."""
    present, found = gold[..., 2] >= 0, ours[..., 2] > 0
    close = (np.linalg.norm(ours[:, None, :, :2] - gold[None, :, :, :2], axis=-1) <= tol) & found[:, None] & present
    counts, free, total = close.sum(-1), set(range(len(ours))), 0
    for g in np.argsort(-present.sum(-1), kind="stable"):
        if free:
            o = max(free, key=lambda i: counts[i, g])
            free.discard(o)
            total += int(counts[o, g])
    return total


def test_ir_poses_are_the_golden_int8_poses(ir_estimator):
    """Decoded IR poses (OpenPose-18) against the reference grouping of the golden int8 maps: the number of people
    within one on every sample, and at least 90 % of all golden int8 keypoints within two upsampled-map cells (4
    input pixels; measured 94 %, 426 of 452; int8 heads differ from the golden run's by up to 0.05, enough to move a
    peak)."""
    agreeing = total = 0
    for sample, entry in LWOP_SAMPLES.items():
        gold = lwop_golden(sample, "poses_int8.npy")
        poses = ir_estimator(LWOP_GOLDEN / entry["image"], min_score=0)
        assert abs(len(poses) - len(gold)) <= 1, (sample, len(poses), len(gold))
        agreeing += _keypoints_agreeing(poses.keypoints, gold, 4 / entry["scale"])
        total += int((gold[..., 2] >= 0).sum())
    assert agreeing >= 0.9 * total, (agreeing, total)


def test_ir_loads_with_coco17_by_default(ir_estimator):
    est = featherpose.load(str(IR), backend="auto", threads=1)
    assert est.backend.name == "openvino" and est.name == "human-pose-estimation-0001"
    assert est.skeleton.name == "coco17" and est.dynamic_size
    poses = est(LWOP_GOLDEN / "basketball1" / "image.png")
    assert len(poses) == 3 and poses.keypoints.shape[1:] == (17, 3)


@needs_lwop
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_ir_on_another_backend_is_one_line_naming_the_fix(backend):
    with pytest.raises(ValueError, match=r"runs on the openvino backend only; pass backend='openvino'.*"
                                         r"featherpose convert lwop") as info:
        featherpose.load(IR, backend=backend)
    assert "\n" not in str(info.value)


def test_a_missing_ir_names_the_file(ov, tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none.xml"))):
        featherpose.load(tmp_path / "none.xml", backend="openvino")


def test_missing_openvino_says_what_to_install(monkeypatch, capsys):
    """Without OpenVINO: an ImportError naming the extra, from the API; one line and exit code 2 from the CLI."""
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    with pytest.raises(ImportError, match=r"install featherpose\[openvino\]"):
        featherpose.load("movenet-lightning", backend="openvino")
    if IR.is_file():
        with pytest.raises(ImportError, match=r"install featherpose\[openvino\]"):
            featherpose.load(IR)
    assert main(["predict", str(golden_image_path("messi5")), "--backend", "openvino"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "install featherpose[openvino]" in err[0]


# -------------------------------------------------------------------------------------------------- CLI

def test_cli_predict_with_the_ir(ir_estimator, tmp_path, capsys):
    """``featherpose predict IMAGE --model X.xml --backend openvino --json``: basketball1's three players."""
    out = tmp_path / "p.json"
    assert main(["predict", str(LWOP_GOLDEN / "basketball1" / "image.png"), "--model", str(IR), "--backend",
                 "openvino", "--threads", "1", "--json", str(out)]) == 0
    people = json.loads(out.read_text())["people"]
    assert len(people) == 3 and len(people[0]["keypoints"]) == 17


def test_cli_eval_with_the_ir_gives_the_int8_ap(ir_estimator, capsys):
    """COCO OKS AP of the int8 IR on coco_mini: the golden reference pipeline's int8 run scores 30.5 (metrics.json,
    demo score) on the golden Xeon; this CPU's int8 kernels differ slightly (measured here: 30.3)."""
    assert main(["eval", "--model", str(IR), "--backend", "openvino", "--threads", "1", "--data",
                 str(DATA / "coco_mini" / "person_keypoints_val2017.json"), "--quiet"]) == 0
    out = capsys.readouterr().out
    ap = float(re.search(r"^AP\s+([\d.]+)$", out, re.M).group(1))
    assert abs(ap - 30.5) <= 1.0, out


def test_cli_rejects_the_ir_on_torch(capsys):
    if not IR.is_file():
        pytest.skip(f"Intel's IR missing under {SHARED}")
    assert main(["predict", str(LWOP_GOLDEN / "basketball1" / "image.png"), "--model", str(IR),
                 "--backend", "torch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--backend openvino" in err[0]


def test_compiles_go_through_openvinos_model_cache(ov, tmp_path, monkeypatch):
    """A model compiled once is read back from ``~/.cache/featherpose/openvino`` by the next load (what a new
    process gets: 0.17-0.18 against 0.33-0.42 s for Lightning here), with the same keypoints; the most recent
    CACHED_COMPILES blobs are kept; a cache folder that cannot be made leaves the compile as it was."""
    from featherpose.runtime import openvino as fov

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    image = load_image(golden_image_path("messi5"))
    first = featherpose.load("movenet-lightning", backend="openvino", threads=1)
    again = featherpose.load("movenet-lightning", backend="openvino", threads=1)
    assert not first.backend.compiled.get_property("LOADED_FROM_CACHE")
    assert again.backend.compiled.get_property("LOADED_FROM_CACHE")
    np.testing.assert_array_equal(again(image, min_score=0).keypoints, first(image, min_score=0).keypoints)
    assert len(list((tmp_path / "featherpose" / "openvino").glob("*.blob"))) == 1

    monkeypatch.setattr(fov, "CACHED_COMPILES", 1)
    folder = tmp_path / "featherpose" / "openvino"
    lightning = set(folder.glob("*.blob"))
    featherpose.load("movenet-thunder", backend="openvino", threads=1)  # another blob: only the newest is kept
    (kept,) = folder.glob("*.blob")
    assert kept not in lightning  # Thunder's

    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "featherpose").write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    est = featherpose.load("movenet-lightning", backend="openvino", threads=1)  # compiles, no error
    np.testing.assert_array_equal(est(image, min_score=0).keypoints, first(image, min_score=0).keypoints)


def test_openvinos_cache_keeps_the_blobs_used_last(ov, tmp_path, monkeypatch):
    """A blob read back (a cache hit) counts as used: with room for two, the blob compiled first but loaded again
    stays, the one compiled after it and not used since goes (its file's access time; skipped where the file
    system does not keep it)."""
    from featherpose.runtime import openvino as fov

    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    os.utime(probe, (1e9, 1e9))
    probe.read_bytes()
    if probe.stat().st_atime <= 1e9:
        pytest.skip("this file system does not renew access times (noatime)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(fov, "CACHED_COMPILES", 2)
    folder = tmp_path / "featherpose" / "openvino"
    featherpose.load("movenet-lightning", backend="openvino", threads=1)
    (lightning,) = folder.glob("*.blob")
    featherpose.load("movenet-thunder", backend="openvino", threads=1)
    (thunder,) = set(folder.glob("*.blob")) - {lightning}
    os.utime(lightning, (1e9, 1e9))  # compiled long ago, before Thunder
    os.utime(thunder, (1.5e9, 1.5e9))
    again = featherpose.load("movenet-lightning", backend="openvino", threads=1)
    assert again.backend.compiled.get_property("LOADED_FROM_CACHE")
    featherpose.load("movenet-multipose", backend="openvino", threads=1)  # a third blob: two are kept
    kept = set(folder.glob("*.blob"))
    assert lightning in kept and thunder not in kept and len(kept) == 2
