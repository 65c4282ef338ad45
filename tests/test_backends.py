"""onnxruntime and torch give the same keypoints; ONNX export works for every zoo model."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

import featherpose
from featherpose.image import load_image
from featherpose.runtime import default_backend
from featherpose.runtime.export import export_onnx

from conftest import GOLDEN, MEDIA, golden_image_path

IMAGES = [golden_image_path("basketball1"), golden_image_path("vtest_f090"), MEDIA / "messi5.jpg"]


@pytest.mark.parametrize("name", featherpose.models())
def test_backends_agree(name):
    torch_est = featherpose.load(name, backend="torch")
    onnx_est = featherpose.load(name, backend="onnxruntime")
    assert onnx_est.backend.name == "onnxruntime" and torch_est.backend.name == "torch"
    for path in IMAGES:
        image = load_image(path)
        a, b = torch_est(image, min_score=0), onnx_est(image, min_score=0)
        assert len(a) == len(b)
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-2)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


@pytest.mark.parametrize("name", featherpose.models())
def test_onnx_export_runs_on_golden_input(name, tmp_path):
    """Every zoo model exports; the graph outputs the codec's heads (names and shapes) and equals torch on the
    image the model's own preprocessing makes of messi5 (MoveNet: golden input_S.npz; Lightweight OpenPose: its
    own width, 416, through the dynamic axes) and on zeros of ``est.input_hw``."""
    est = featherpose.load(name, backend="torch")
    path = export_onnx(est.network, est.input_hw, tmp_path / f"{name}.onnx", dynamic_size=est.dynamic_size)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, _ = est.preprocess(load_image(golden_image_path("messi5")))
    if not est.dynamic_size:
        np.testing.assert_array_equal(x, np.load(GOLDEN / "messi5" / f"input_{est.input_hw[0]}.npz")["input"])
    shapes = est.codec.head_shapes()
    for image in (x, np.zeros((1, *est.input_hw, 3), np.int32)):
        outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": image})))
        assert set(outs) == set(shapes)
        ref = est.infer(image)
        for k, v in outs.items():
            c, h, w = shapes[k]
            assert v.shape == (1, c, h, image.shape[2] * w // est.input_hw[1]), (k, v.shape)
            # Lite Pose's AE tags on the all-zero image reach 7.8 and differ by 2.9e-4 of that (float32 sums in
            # another order); tags only matter through differences under the 1.0 grouping threshold
            rel = 5e-4 if k == "heatmaps_tags" else 1e-4
            assert np.abs(v[0] - ref[k]).max() <= rel * max(1.0, np.abs(ref[k]).max()), k


def test_onnxruntime_runs_a_size_met_again_in_a_static_session():
    """A model whose input size follows the image (Lightweight OpenPose's width) runs a size met twice through a
    session with that size fixed (faster: runtime.StaticCompiles), with the dynamic session's outputs; a fixed-size
    model has one session."""
    assert featherpose.load("movenet-lightning", backend="onnxruntime", threads=1).backend.static is None
    est = featherpose.load("lightweight-openpose", backend="onnxruntime", threads=1)
    static = est.backend.static
    x, _ = est.preprocess(load_image(golden_image_path("messi5")))
    first = est.infer(x)  # the dynamic session
    assert not static.compiled
    second = est.infer(x)  # the size met again: a session for it
    assert list(static.compiled) == [x.shape]
    session = static.compiled[x.shape]
    assert session.get_inputs()[0].shape == list(x.shape) != est.backend.session.get_inputs()[0].shape
    for head in first:
        np.testing.assert_allclose(second[head], first[head], atol=1e-5)
    calls = []
    static.compiled[x.shape] = type("Spy", (), {"run": lambda self, *a: calls.append(1) or session.run(*a)})()
    est.infer(x)
    assert calls == [1]  # the static session is what runs that size from then on


def test_onnx_export_is_cached_per_code_weights_and_settings(tmp_path, monkeypatch):
    """A second export of the same network and settings is read back from the cache (no export runs); other weights,
    another setting or another plain attribute (a config) export anew; only the most recent are kept; an unwritable
    cache only costs the export."""
    from featherpose.models.litepose import LitePose, named_config
    from featherpose.runtime import export

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(export, "CACHED_EXPORTS", 2)  # the most recently used 2 are kept
    calls = []
    real = export._export
    monkeypatch.setattr(export, "_export", lambda *a: calls.append(1) or real(*a))
    net = LitePose(named_config("litepose-xs"))
    first = export_onnx(net, (64, 64), dynamic_size=True)
    assert export_onnx(net, (64, 64), dynamic_size=True) == first and len(calls) == 1
    assert len(list((tmp_path / "featherpose" / "onnx").glob("*.onnx"))) == 1
    export_onnx(net, (64, 64))  # fixed size: another graph
    assert len(calls) == 2
    with torch.no_grad():
        net.head_deep[0].pointwise.weight[0, 0] += 1  # another weight
    changed = export_onnx(net, (64, 64), dynamic_size=True)
    assert len(calls) == 3 and changed != first
    net.config = named_config("litepose-s")  # a plain attribute
    export_onnx(net, (64, 64), dynamic_size=True)
    assert len(calls) == 4 and len(list((tmp_path / "featherpose" / "onnx").glob("*.onnx"))) == 2
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "featherpose").write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # the cache cannot be written: it exports, no error
    assert export_onnx(net, (64, 64), dynamic_size=True) and len(calls) == 5


def break_torch_backend(monkeypatch) -> None:
    """Make building the torch backend fail (as a broken runtime would); the others build as usual."""
    real = featherpose.runtime.create_backend

    def broken_torch(model, hw, name, *args, **kwargs):
        if name == "torch":
            raise RuntimeError("cannot build")
        return real(model, hw, name, *args, **kwargs)

    monkeypatch.setattr("featherpose.estimator.create_backend", broken_torch)


def test_default_backend_is_onnxruntime():
    assert default_backend() == "onnxruntime"
    assert featherpose.load("movenet-lightning").backend.name == "onnxruntime"  # conftest pins "auto"


def test_auto_backend_is_measured_once_then_cached(tmp_path, monkeypatch):
    """Unpinned, ``auto`` times every installed backend on this machine, keeps the fastest and caches the choice;
    the next load builds only the cached winner."""
    from featherpose.runtime import autoselect

    monkeypatch.delenv(autoselect.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    est = featherpose.load("movenet-lightning", threads=1)
    cache = json.loads((tmp_path / "featherpose" / "backends.json").read_text())
    (entry,) = cache[autoselect.machine_key()].values()
    assert set(entry["ms"]) == set(autoselect.installed_backends()) >= {"onnxruntime", "torch"}
    assert entry["backend"] == min(entry["ms"], key=entry["ms"].get) == est.backend.name
    assert all(t > 0 for t in entry["ms"].values())

    def no_timing(*args):
        raise AssertionError("measured again instead of using the cache")

    built = []
    real = featherpose.runtime.create_backend
    monkeypatch.setattr(autoselect, "time_backends", no_timing)
    monkeypatch.setattr("featherpose.estimator.create_backend", lambda *a, **k: built.append(a[2]) or real(*a, **k))
    again = featherpose.load("movenet-lightning", threads=1)
    assert built == [entry["backend"]] and again.backend.name == entry["backend"]
    image = load_image(MEDIA / "messi5.jpg")
    np.testing.assert_allclose(again(image, min_score=0).keypoints[..., :2], est(image, min_score=0).keypoints[..., :2],
                               atol=0.5)


def test_a_cached_choice_loads_only_its_own_runtime(tmp_path, monkeypatch):
    """With the choice cached, a new process imports only the chosen runtime (asking the others for their versions
    or whether they are installed imported onnxruntime into every start: 0.2 s); a cached backend that can no longer
    be built is measured again with the others."""
    from featherpose.runtime import autoselect

    monkeypatch.delenv(autoselect.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    # torch "measured" fastest: a choice no machine makes, so the subprocess shows the cache was read
    monkeypatch.setattr(autoselect, "time_backends",
                        lambda built, frame: {n: 1.0 if n == "torch" else 2.0 for n in built})
    assert featherpose.load("movenet-lightning", threads=1).backend.name == "torch"
    path = tmp_path / "featherpose" / "backends.json"
    (key,) = json.loads(path.read_text())[autoselect.machine_key()]
    code = ("import sys, featherpose; est = featherpose.load('movenet-lightning', threads=1); "
            "print(est.backend.name, sorted(m for m in ('onnxruntime', 'openvino') if m in sys.modules))")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    env.pop(autoselect.ENV, None)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["torch", "[]"]  # the cache entry was found (else it would have measured)

    break_torch_backend(monkeypatch)
    est = featherpose.load("movenet-lightning", threads=1)
    assert est.backend.name != "torch"
    cache = json.loads(path.read_text())[autoselect.machine_key()][key]
    assert cache["backend"] == est.backend.name == "onnxruntime" and "torch" not in cache["ms"]


def test_auto_measures_again_for_other_code_and_keeps_the_newest_machines(tmp_path, monkeypatch):
    """A measurement holds for featherpose's code too (a change may export faster graphs for one runtime, as Lite
    Pose's for onnxruntime did): the machine key carries the code's digest, and the cache keeps the
    CACHED_MACHINES most recently measured keys."""
    from featherpose.runtime import autoselect, export

    monkeypatch.delenv(autoselect.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(autoselect, "CACHED_MACHINES", 2)
    monkeypatch.setattr(autoselect, "time_backends", lambda built, frame: {n: 1.0 if n == "torch" else 2.0 for n in built})
    path = tmp_path / "featherpose" / "backends.json"
    path.parent.mkdir(parents=True)
    old = {"backend": "onnxruntime", "ms": {"onnxruntime": 1.0}}
    path.write_text(json.dumps({"older": {"m": {**old, "measured": "2026-01-01T00:00:00"}},
                                "newer": {"m": {**old, "measured": "2026-02-01T00:00:00"}}}))
    assert featherpose.load("movenet-lightning", threads=1).backend.name == "torch"
    first = autoselect.machine_key()
    assert export.source_digest().hex()[:12] in first
    assert set(json.loads(path.read_text())) == {"newer", first}
    monkeypatch.setattr(export, "source_digest", lambda: b"other code")
    assert autoselect.machine_key() != first  # another key: measured anew


def test_auto_keys_a_dynamic_size_model_by_its_input_size(monkeypatch):
    """A model whose size follows the image is measured per input size (the runtimes' ranking can change with it)."""
    from featherpose.runtime import autoselect

    monkeypatch.delenv(autoselect.ENV)
    keys = []
    monkeypatch.setattr(autoselect, "fastest_backend", lambda key, build, frame: keys.append(key) or build("torch"))
    for size in (256, 320):
        featherpose.load("lightweight-openpose", input_size=size, threads=1, precision="fp32")
    assert len(set(keys)) == 2 and "input 256x256 (dynamic)" in keys[0] and "input 320x320 (dynamic)" in keys[1]


def test_auto_backend_times_each_backend_with_its_own_preprocessing(tmp_path, monkeypatch):
    """``auto`` compares what a frame costs with each backend: OpenVINO gets the frame (its graph letterboxes),
    the others the letterboxed array their NumPy preprocessing makes; timing OpenVINO on the array (its slower
    path) chose onnxruntime on a CPU where OpenVINO runs the whole frame faster."""
    pytest.importorskip("openvino")
    from featherpose.image import LetterboxedFrame
    from featherpose.runtime import autoselect

    monkeypatch.delenv(autoselect.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    seen = {}

    class Spy:  # the backend, recording what it is called with
        def __init__(self, name, backend):
            self.name, self.backend = name, backend

        def __getattr__(self, attr):
            return getattr(self.backend, attr)

        def __call__(self, x):
            seen[self.name] = x
            return self.backend(x)

    def record(backends, frame):
        for name, backend in backends.items():
            frame(Spy(name, backend))
        return {name: float(i + 1) for i, name in enumerate(backends)}

    monkeypatch.setattr(autoselect, "time_backends", record)
    featherpose.load("movenet-lightning", threads=1)
    assert isinstance(seen["openvino"], LetterboxedFrame)
    assert seen["onnxruntime"].shape == seen["torch"].shape == (1, 192, 192, 3)


def test_auto_backend_pinned_by_environment(monkeypatch):
    monkeypatch.setenv("FEATHERPOSE_BACKEND", "torch")
    assert featherpose.load("movenet-lightning").backend.name == "torch"


def test_multipose_larger_input():
    """MultiPose accepts other multiples of 32 and still finds the players."""
    est = featherpose.load("movenet-multipose", input_size=384, backend="onnxruntime")
    assert est.input_hw == (384, 384)
    poses = est(MEDIA / "basketball1.png")
    assert len(poses) >= 2


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'; choose one of"):
        featherpose.load("movenet-lightning", backend="tensorrt")


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_backend_cuda_graph_replays_eager_outputs():
    """On a GPU the torch backend replays a captured CUDA graph; each new input must give eager's outputs."""
    import torch

    est = featherpose.load("movenet-lightning", backend="torch")
    est.network.cuda()
    rng = np.random.default_rng(0)
    for _ in range(2):  # the second call replays the graph captured by the first, on a different input
        x = rng.integers(0, 256, (1, *est.input_hw, 3)).astype(np.int32)
        got = est.backend(x)
        with torch.inference_mode():
            want = est.network(torch.from_numpy(x).cuda().permute(0, 3, 1, 2).float())
        for k, v in want.items():
            np.testing.assert_allclose(got[k], v[0].cpu().numpy(), atol=1e-4)
    assert est.backend._graphs and not est.backend._graphs_failed


def test_litert_missing_is_one_line(monkeypatch, capsys):
    import sys

    from featherpose.cli import main

    monkeypatch.setitem(sys.modules, "litert_torch", None)  # as if featherpose[litert] were not installed
    with pytest.raises(ImportError, match=r"pip install featherpose\[litert\]"):
        featherpose.load("movenet-lightning", backend="litert")
    assert main(["predict", "--sample", "--backend", "litert", "--quiet"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_auto_backend_leaves_out_a_backend_that_cannot_build(tmp_path, monkeypatch, caplog):
    from featherpose.runtime import autoselect

    monkeypatch.delenv(autoselect.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    break_torch_backend(monkeypatch)
    est = featherpose.load("movenet-lightning", threads=1)
    assert est.backend.name != "torch" and "torch cannot run" in caplog.text


def test_runtime_versions_come_from_the_distribution_that_provides_them(monkeypatch):
    """The machine key names each runtime's version as its install gives it, also where another distribution
    provides the module (onnxruntime-gpu provides onnxruntime); a runtime not installed is left out."""
    from importlib import metadata
    from types import SimpleNamespace

    from featherpose.runtime import autoselect

    def version(dist):
        if dist == "onnxruntime":
            raise metadata.PackageNotFoundError(dist)
        return "9.9.9" if dist == "onnxruntime-gpu" else metadata.version(dist)

    monkeypatch.setattr(autoselect, "metadata", SimpleNamespace(
        version=version, PackageNotFoundError=metadata.PackageNotFoundError,
        packages_distributions=lambda: {"onnxruntime": ["onnxruntime-gpu"]}))
    assert "onnxruntime 9.9.9" in autoselect.machine_key()
    assert autoselect.installed_version("no-such-runtime") is None
