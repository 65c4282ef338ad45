"""benchmarks/lwop_speed.py's reference adapter is the golden oracle's pipeline, and featherpose agrees with it.

The benchmark runs the reference repository's own ``demo.infer_fast`` + ``extract_keypoints`` +
``group_keypoints`` around a network callable; here that callable records its input and returns a golden
sample's float maps, so no network runs: the adapter must feed exactly ``input.npy`` and give back exactly
``poses_float.npy``, and featherpose's decode of the same maps must give the same people. Skips when the git
mirror of the reference is absent.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from conftest import SHARED, load_benchmark

GOLDEN = SHARED / "golden" / "lwop"
SAMPLES = ("messi5", "vtest_f180")  # a JPEG of 6 people, a video frame of 6 (float)


@pytest.fixture(scope="module")
def bench():
    yield from load_benchmark("lwop_speed")


@pytest.fixture(scope="module")
def reference(bench, tmp_path_factory):
    """The reference's ``demo`` and ``modules.keypoints``; its folder and top-level modules (demo, val, models,
    modules, datasets) leave sys.path and sys.modules afterwards."""
    if bench.find_mirror(bench.MIRROR) is None:
        pytest.skip(f"no git mirror of the reference at {bench.MIRROR}")
    folder, _ = bench.reference_tree(tmp_path_factory.mktemp("lwop_ref"), bench.MIRROR)
    before = set(sys.modules)
    yield bench.import_reference(folder)
    sys.path.remove(str(folder))
    for name in set(sys.modules) - before:
        if getattr(sys.modules[name], "__file__", None) and str(folder) in sys.modules[name].__file__:
            del sys.modules[name]


@pytest.mark.parametrize("sample", SAMPLES)
def test_reference_adapter_reproduces_golden_and_featherpose_agrees(bench, reference, sample):
    import featherpose

    demo, keypoints_mod = reference
    folder = GOLDEN / sample
    fed = []

    def network(x):
        fed.append(x)
        return np.load(folder / "float_heatmaps.npy"), np.load(folder / "float_pafs.npy")

    image = next(folder.glob("image.*"))
    bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
    runner = bench.reference_runner(bench.REF_TORCH, demo, keypoints_mod, network)
    times, ref_poses = runner.run(bgr)
    np.testing.assert_array_equal(fed[0], np.load(folder / "input.npy"))
    golden = bench.coco17_from_reference(np.load(folder / "poses_float.npy"))
    assert len(golden) == 6
    np.testing.assert_allclose(ref_poses, golden, rtol=0, atol=1e-4)
    assert all(t >= 0 for t in times)

    est = featherpose.load(bench.MODEL, backend="onnxruntime", threads=1)
    x, letterbox = est.preprocess(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    heads = {k: np.load(folder / f"float_{k}.npy")[0] for k in ("heatmaps", "pafs")}
    ours = est.postprocess(heads, letterbox).keypoints
    result = bench.compare([ours], [ref_poses])
    assert (result["count"], result["structure"], result["people"]) == (0, 0, 6)
    assert result["xy"] <= 1e-3 and result["score"] <= 1e-5


def test_compare_reports_differences(bench):
    """The agreement check fails loudly: a moved keypoint, a lost person, a lost keypoint."""
    poses = bench.coco17_from_reference(np.load(GOLDEN / "vtest_f180" / "poses_float.npy"))
    moved = poses.copy()
    present = np.argwhere(moved[..., 2] > 0)[0]
    moved[tuple(present)] += np.float32([2.0, -1.5, 0.25])
    r = bench.compare([poses, moved], [poses, poses])
    assert (r["count"], r["structure"], r["people"]) == (0, 0, 12)
    assert r["xy"] == pytest.approx(2.0) and r["score"] == pytest.approx(0.25)
    fewer = bench.compare([poses[:-1]], [poses])
    assert fewer["count"] == 1 and fewer["people"] == 0
    lost = poses.copy()
    lost[tuple(present)] = 0
    assert bench.compare([lost], [poses])["structure"] == 1
