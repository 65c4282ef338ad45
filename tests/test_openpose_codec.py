"""Lightweight OpenPose codec: decode reproduces the reference grouping on every golden sample; the vectorised
steps equal the reference's sequential loops; encode / decode round trips on real labels."""
from __future__ import annotations

import json

import numpy as np
import pytest

from featherpose.codecs.openpose import (GroupingConfig, PafCodec, find_peaks, match_greedy, to_coco17,
                                         upsample)
from featherpose.skeletons import OPENPOSE18_TO_COCO17

from conftest import SHARED

LWOP = SHARED / "golden" / "lwop"
LWOP_SAMPLES = ([s["name"] for s in json.loads((LWOP / "manifest.json").read_text())["samples"]]
                if (LWOP / "manifest.json").is_file() else [])
needs_golden = pytest.mark.skipif(not LWOP_SAMPLES, reason=f"no Lightweight OpenPose golden data at {LWOP}")


def sample_info(sample: str) -> dict:
    return next(s for s in json.loads((LWOP / "manifest.json").read_text())["samples"] if s["name"] == sample)


def golden_heads(sample: str, build: str) -> dict[str, np.ndarray]:
    return {"heatmaps": np.load(LWOP / sample / f"{build}_heatmaps.npy")[0],
            "pafs": np.load(LWOP / sample / f"{build}_pafs.npy")[0]}


def to_image(kp: np.ndarray, info: dict) -> np.ndarray:
    """Input pixels -> original-image pixels with the golden letterbox (centred pad, then scale), as the
    reference's demo maps them; missing keypoints stay (-1, -1, -1)."""
    out = kp.astype(np.float64)
    top, left = info["pad_tlbr"][:2]
    present = kp[..., 2] != -1
    out[..., 0] = np.where(present, (out[..., 0] - left) / info["scale"], -1)
    out[..., 1] = np.where(present, (out[..., 1] - top) / info["scale"], -1)
    return out


@needs_golden
@pytest.mark.parametrize("build", ["float", "int8"])
@pytest.mark.parametrize("sample", LWOP_SAMPLES)
def test_decode_matches_reference(sample, build):
    info = sample_info(sample)
    codec = PafCodec(tuple(info["input_hw"]))
    kp, scores = codec.decode_openpose(golden_heads(sample, build))
    ref = np.load(LWOP / sample / f"poses_{build}.npy")
    ref_scores = np.load(LWOP / sample / f"pose_scores_{build}.npy")
    assert kp.shape == ref.shape  # the same people, in the reference's order
    assert ((kp[..., 2] == -1) == (ref[..., 2] == -1)).all()  # the same keypoints present
    got = to_image(kp, info)
    assert np.abs(got[..., :2] - ref[..., :2]).max(initial=0) <= 1e-3  # measured: 0 (the same pixels)
    assert np.abs(got[..., 2] - ref[..., 2]).max(initial=0) <= 1e-6  # measured: 0
    assert np.abs(scores - ref_scores).max(initial=0) <= 1e-5  # measured: <= 9.1e-7 (golden stored as float32)


@needs_golden
@pytest.mark.parametrize("sample", LWOP_SAMPLES)
def test_peaks_and_entries_match_reference(sample):
    """The peaks are the reference's ``all_keypoints`` row for row, and each person's keypoint ids its
    ``pose_entries``."""
    heads = golden_heads(sample, "float")
    ref = np.load(LWOP / sample / "grouping_float.npz")
    xy, scores, types = find_peaks(upsample(heads["heatmaps"], 4, 18))
    np.testing.assert_array_equal(xy, ref["all_keypoints"][:, :2])
    np.testing.assert_array_equal(scores, ref["all_keypoints"][:, 2].astype(np.float32))
    assert (np.diff(types) >= 0).all()


@needs_golden
def test_decode_coco17_view_and_scores():
    info = sample_info("messi5")
    heads = golden_heads("messi5", "float")
    ref = np.load(LWOP / "messi5" / "poses_float.npy")
    ref_scores = np.load(LWOP / "messi5" / "pose_scores_float.npy")
    d18 = PafCodec(tuple(info["input_hw"])).decode(heads)
    d17 = PafCodec(tuple(info["input_hw"]), num_keypoints=17).decode(heads)
    assert d18.keypoints.shape == (6, 18, 3) and d17.keypoints.shape == (6, 17, 3) and d17.boxes is None
    assert d17.keypoints.dtype == np.float32 and d17.scores.dtype == np.float32
    for i, j in enumerate(OPENPOSE18_TO_COCO17):
        if j >= 0:
            np.testing.assert_array_equal(d17.keypoints[:, j], d18.keypoints[:, i])
    missing = ref[..., 2] == -1
    assert (d18.keypoints[missing] == 0).all() and (d18.keypoints[~missing][:, 2] > 0).all()
    np.testing.assert_allclose(d18.scores, np.clip(ref_scores / 35, 0, 1), atol=1e-6)
    assert (np.argsort(-d18.scores, kind="stable") == np.argsort(-ref_scores, kind="stable")).all()
    assert to_coco17(np.arange(18)[None, :, None]).ravel().tolist() == [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4,
                                                                       11, 8, 12, 9, 13, 10]


def reference_suppression(xy: np.ndarray, radius: float) -> np.ndarray:
    """The reference's sequential loop (test-only oracle): xy already in order, one type."""
    suppressed = np.zeros(len(xy), bool)
    keep = []
    for i in range(len(xy)):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in range(i + 1, len(xy)):
            if np.hypot(*(xy[i] - xy[j])) < radius:
                suppressed[j] = True
    return np.array(keep, np.int64)


def test_peak_suppression_equals_sequential_loop():
    rng = np.random.default_rng(0)
    for trial in range(20):
        hm = np.zeros((40, 60, 3), np.float32)
        n = 60 if trial % 2 else 200  # dense: long chains of close peaks
        ys, xs, ks = rng.integers(0, 40, n), rng.integers(0, 60, n), rng.integers(0, 3, n)
        hm[ys, xs, ks] = rng.uniform(0.1, 1, n).astype(np.float32)
        xy, _, types = find_peaks(hm, 0.1, 6.0)
        for k in range(3):
            pad = np.pad(hm[..., k], 1)
            c = pad[1:-1, 1:-1]
            is_peak = (c > pad[:-2, 1:-1]) & (c > pad[2:, 1:-1]) & (c > pad[1:-1, :-2]) & (c > pad[1:-1, 2:])
            ys_, xs_ = np.nonzero(is_peak)  # row-major, as the reference's np.nonzero
            peaks = np.array(sorted(zip(xs_, ys_), key=lambda p: p[0]), np.int64).reshape(-1, 2)  # stable
            expected = peaks[reference_suppression(peaks, 6.0)]
            np.testing.assert_array_equal(xy[types == k], expected)


def test_greedy_matching_equals_sequential_scan():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(1, 80))
        limb = np.sort(rng.integers(0, 4, n))
        a, b = rng.integers(0, 6, n), rng.integers(0, 6, n)
        kept = match_greedy(limb, a, b, 6)
        expected = np.zeros(n, bool)
        for part in np.unique(limb):
            used_a, used_b = set(), set()
            for i in np.nonzero(limb == part)[0]:  # already in rank order
                if a[i] not in used_a and b[i] not in used_b:
                    expected[i] = True
                    used_a.add(a[i])
                    used_b.add(b[i])
        np.testing.assert_array_equal(kept, expected)


def test_decode_shapes_and_hostile_heads():
    codec = PafCodec((64, 96))
    shapes = codec.head_shapes()
    assert shapes == {"heatmaps": (19, 8, 12), "pafs": (38, 8, 12)}
    rng = np.random.default_rng(2)
    for fill in (None, np.nan, np.inf, -np.inf, 1e30):
        heads = {k: rng.uniform(-0.2, 1.1, s).astype(np.float32) for k, s in shapes.items()}
        if fill is not None:
            heads["heatmaps"][:, 2:5, 3:7] = fill
            heads["pafs"][:, 1:6, 2:9] = fill
        d = codec.decode(heads)
        n = len(d.scores)
        assert d.keypoints.shape == (n, 18, 3) and d.scores.shape == (n,)
        assert ((d.scores >= 0) & (d.scores <= 1)).all()
    empty = codec.decode({k: np.zeros(s, np.float32) for k, s in shapes.items()})
    assert empty.keypoints.shape == (0, 18, 3) and empty.scores.shape == (0,)


def test_settings_round_trip_and_errors():
    codec = PafCodec((256, 344), upsample=2, grouping=GroupingConfig(min_paf_score=0.1))
    again = PafCodec.from_dict(json.loads(json.dumps(codec.to_dict())), (256, 344), 17)
    assert again.to_dict() == codec.to_dict() and again.num_keypoints == 17 and again.upsample == 2
    with pytest.raises(ValueError, match="num_keypoints=18"):
        PafCodec((256, 256), num_keypoints=14)
    with pytest.raises(ValueError, match="multiples of the stride 8"):
        PafCodec((256, 250))
    with pytest.raises(ValueError, match="upsample must be a positive integer"):
        PafCodec((256, 256), upsample=0)
    with pytest.raises(TypeError):
        PafCodec.from_dict({"sigma": 7, **codec.to_dict()}, (256, 344), 18)
