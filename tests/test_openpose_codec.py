"""Lightweight OpenPose codec: decode reproduces the reference grouping on every golden sample; the vectorised
steps equal the reference's sequential loops; encode / decode round trips on real labels."""
from __future__ import annotations

import json

import numpy as np
import pytest

from featherpose.codecs import openpose
from featherpose.codecs.openpose import (LIMBS, NUM_TREE_LIMBS, GroupingConfig, PafCodec, _rank, assemble,
                                         find_peaks, hot_window, match_greedy, to_coco17, upsample, upsample_planes,
                                         upsample_window, with_neck)
from featherpose.skeletons import OPENPOSE18_TO_COCO17

from conftest import DATA, SHARED

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
def test_peaks_match_reference(sample):
    """The peaks are the reference's ``all_keypoints`` row for row (pixels, values, order)."""
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
    np.testing.assert_allclose(d18.scores, ref_scores / (ref_scores + 2.4), atol=1e-6)
    assert (np.argsort(-d18.scores, kind="stable") == np.argsort(-ref_scores, kind="stable")).all()


@needs_golden
def test_every_reference_person_passes_the_default_min_score():
    """Person scores keep the reference's order, and every person the reference keeps scores >= 0.2."""
    from featherpose.estimator import DEFAULT_MIN_SCORE

    for sample in LWOP_SAMPLES:
        info = sample_info(sample)
        ref_scores = np.load(LWOP / sample / "pose_scores_float.npy")
        scores = PafCodec(tuple(info["input_hw"])).decode(golden_heads(sample, "float")).scores
        assert len(scores) == len(ref_scores) and (scores >= DEFAULT_MIN_SCORE).all()
        assert (np.diff(scores[np.argsort(ref_scores)]) >= 0).all()
    assert PafCodec((8, 8)).person_scores(np.array([0.6, np.inf, np.nan, 1e300])).tolist() == [
        np.float32(0.2), 1.0, 0.0, 1.0]
    assert to_coco17(np.arange(18)[None, :, None]).ravel().tolist() == [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4,
                                                                       11, 8, 12, 9, 13, 10]


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_windows_upsample_exactly_and_hold_every_candidate(factor):
    """decode upsamples only windows: their values equal the full upsample's, and no value outside the heatmap
    window reaches the peak threshold."""
    rng = np.random.default_rng(factor)
    maps = [golden_heads(s, "float")["heatmaps"] for s in LWOP_SAMPLES[:4]]
    for _ in range(4):  # sparse random blobs, and a blank map
        m = np.zeros((19, 12, 17), np.float32)
        m[:, rng.integers(0, 12, 3), rng.integers(0, 17, 3)] = rng.uniform(-0.3, 1.2, (19, 3))
        maps.append(m)
    maps.append(np.zeros((19, 12, 17), np.float32))
    for m in maps:
        full = upsample(m, factor, 18)
        h, w = full.shape[:2]
        for rows, cols in [((0, h - 1), (0, w - 1)), ((1, h - 3), (5, w - 1)), ((h // 2, h // 2 + 3), (2, 2))]:
            # bit-identical for power-of-two factors; x3's phases round differently by ~5e-9
            np.testing.assert_allclose(upsample_window(m, factor, rows, cols, 18),
                                       full[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1], rtol=0,
                                       atol=0 if factor in (1, 2, 4) else 1e-7)
        window = hot_window(m[:18], 0.1, factor)
        hot = np.argwhere((full >= 0.1).any(2))
        if window is None:
            assert not len(hot)
            continue
        (r0, r1), (c0, c1) = window
        assert len(hot) and (hot[:, 0] >= r0).all() and (hot[:, 0] <= r1).all()
        assert (hot[:, 1] >= c0).all() and (hot[:, 1] <= c1).all()


@needs_golden
@pytest.mark.parametrize("factor", [1, 2, 4])
def test_plane_upsampling_equals_the_full_upsample_to_one_ulp(factor):
    """upsample_planes (channel planes as one single-channel image, the fast path for wide PAF windows) gives the
    full multi-channel upsample's values to float32 rounding, on windows that touch every border and interior."""
    pafs = np.concatenate([golden_heads(s, "float")["pafs"] for s in LWOP_SAMPLES[:4]], axis=-1)
    full = upsample(pafs, factor).transpose(2, 0, 1)
    h, w = full.shape[1:]
    differ = False
    for rows, cols in [((0, h - 1), (0, w - 1)), ((0, 5), (w - 9, w - 1)), ((h - 3, h - 1), (3, 60)),
                       ((7, h // 2), (w // 3, w // 2))]:
        window, (x0, y0) = upsample_planes(pafs, factor, rows, cols)
        got = window[:, rows[0] - y0:rows[1] - y0 + 1, cols[0] - x0:cols[1] - x0 + 1]
        want = full[:, rows[0]:rows[1] + 1, cols[0]:cols[1] + 1]
        assert got.shape == want.shape
        # float32 rounding of the 16-term sums, in another order: measured <= 4 ulps of the channel's largest
        # |value| (2.4e-7), ~20 % of values off at x2 and x4, none at x1
        scale = np.spacing(np.abs(pafs).max(axis=(1, 2)))[:, None, None]
        assert (np.abs(got - want) <= 4 * scale).all()
        differ = differ or bool((got != want).any())
    assert differ == (factor > 1)  # the single-channel path rounds differently (x1 copies the crop)


@needs_golden
def test_wide_decode_keeps_the_exact_paths_poses(monkeypatch):
    """20 people side by side (vtest_f030 x 4, the decode speed case) read the PAFs from the plane path; the poses
    are those of the bit-identical crop path, pose scores to float32 rounding of the PAF values."""
    heads = golden_heads("vtest_f030", "float")
    heads = {k: np.concatenate([v] * 4, axis=-1) for k, v in heads.items()}
    codec = PafCodec((heads["heatmaps"].shape[1] * 8, heads["heatmaps"].shape[2] * 8))
    used = []
    monkeypatch.setattr(openpose, "upsample_planes", lambda *a: used.append(1) or upsample_planes(*a))
    kp, scores = codec.decode_openpose(heads)
    assert used and len(kp) == 20
    monkeypatch.setattr(openpose, "PLANES_MIN_COLUMNS", 10 ** 9)  # the multi-channel crop, bit-identical
    exact_kp, exact_scores = codec.decode_openpose(heads)
    assert len(used) == 1
    np.testing.assert_array_equal(kp, exact_kp)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-6, atol=0)  # measured: <= 2.4e-7 absolute


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


def test_rank_is_the_references_argsort_per_limb():
    """One sort for all limbs, ties resolved as the reference's ``argsort()[::-1]`` of each limb's scores."""
    rng = np.random.default_rng(3)
    for trial in range(100):
        limb = np.sort(rng.integers(0, 19, int(rng.integers(1, 300))))
        score = rng.uniform(0, 1, len(limb))
        if trial % 2:  # many ties
            score = np.round(score, 1)
        expected = np.concatenate([np.flatnonzero(limb == part)[np.argsort(score[limb == part])[::-1]]
                                   for part in np.unique(limb)])
        np.testing.assert_array_equal(_rank(limb, score), expected)


def sequential_assembly(limb, a, b, score, peak_scores, cfg):
    """The reference's group_keypoints assembly, pair by pair: (ids, score, count) of the people it keeps."""
    people = []  # [ids (18,), score, count]
    for part, pa, pb, s in zip(limb, a, b, score):
        ta, tb = LIMBS[part]
        if part >= NUM_TREE_LIMBS:
            for ids, _, _ in people:
                if ids[ta] == pa and ids[tb] == -1:
                    ids[tb] = pb
                elif ids[tb] == pb and ids[ta] == -1:
                    ids[ta] = pa
            continue
        joined = False
        for person in people:
            if person[0][ta] == pa:
                person[0][tb] = pb
                person[1] += float(peak_scores[pb]) + s
                person[2] += 1
                joined = True
        if not joined:
            ids = np.full(18, -1, np.int64)
            ids[ta], ids[tb] = pa, pb
            people.append([ids, (float(peak_scores[pa]) + float(peak_scores[pb])) + s, 2])
    kept = [p for p in people if p[2] >= cfg.min_keypoints and p[1] / p[2] >= cfg.min_mean_score]
    return (np.array([p[0] for p in kept], np.int64).reshape(-1, 18), np.array([p[1] for p in kept]),
            np.array([p[2] for p in kept], np.int64))


def test_assembly_equals_sequential_loop():
    """People from random one-to-one pairs of every limb: the vectorised assembly is the pair-by-pair loop,
    order, keypoints and float64 scores exactly."""
    assert all(LIMBS[part, 0] == 1 or LIMBS[part, 0] in LIMBS[:part, 1] for part in range(NUM_TREE_LIMBS)), \
        "each tree limb's a must be the neck or an earlier limb's b (assemble relies on it)"
    rng = np.random.default_rng(2)
    cfg = GroupingConfig()
    for trial in range(200):
        per_type = rng.integers(0, 5, 18)  # peaks of each type, numbered type by type as find_peaks does
        first = np.concatenate([[0], np.cumsum(per_type)])
        peak_scores = rng.uniform(0.1, 1, first[-1]).astype(np.float32)
        limb, a, b = [], [], []
        for part, (ta, tb) in enumerate(LIMBS):
            k = min(per_type[ta], per_type[tb])
            k = int(rng.integers(0, k + 1)) if trial % 3 else k  # a third with every peak paired
            limb += [part] * k
            a += list(first[ta] + rng.permutation(per_type[ta])[:k])
            b += list(first[tb] + rng.permutation(per_type[tb])[:k])
        limb, a, b = np.array(limb, np.int64), np.array(a, np.int64), np.array(b, np.int64)
        score = rng.uniform(0.05, 1, len(limb))
        got = assemble(limb, a, b, score, peak_scores, cfg)
        expected = sequential_assembly(limb, a, b, score, peak_scores, cfg)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)


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


# ----- encode -----

def test_encode_shapes_peaks_and_background():
    codec = PafCodec((64, 96))
    kp = np.zeros((2, 17, 3), np.float32)
    kp[0, 0] = (8 * 3 + 3.5, 8 * 2 + 3.5, 2)  # a nose on cell (2, 3)'s centre
    kp[1, 0] = (8 * 3 + 3.5 + 5, 8 * 2 + 3.5, 1)  # another person's nose 5 px to the right
    t = codec.encode(kp)
    assert {k: v.shape for k, v in t.items()} == {"heatmaps": (19, 8, 12), "pafs": (38, 8, 12), "weight": (1, 8, 12)}
    assert all(v.dtype == np.float32 for v in t.values())
    nose = t["heatmaps"][0]
    assert nose[2, 3] == 1.0  # max, not sum, where the two Gaussians overlap
    assert nose[2, 4] == pytest.approx(np.exp(-3.0 ** 2 / (2 * 49)))  # the second nose is 3 px from cell (2, 4)
    assert nose[5, 3] == 0  # 24 px away: exp(-24^2 / 98) < 0.01 is cut to 0
    np.testing.assert_allclose(t["heatmaps"][18], 1 - t["heatmaps"][:18].max(0))
    assert (t["heatmaps"][1:18] == 0).all() and (t["pafs"] == 0).all() and (t["weight"] == 1).all()


def test_encode_neck_pafs_and_averaging():
    """Cell (i, j) is centred on pixel (8j + 3.5, 8i + 3.5). Two people share a neck on cell (3, 4)'s centre: one
    with a horizontal neck -> right shoulder limb, one with a vertical one."""
    codec = PafCodec((64, 128))
    kp = np.zeros((2, 17, 3), np.float32)
    kp[0, 5], kp[0, 6] = (19.5, 27.5, 2), (51.5, 27.5, 2)  # COCO left, right shoulder: neck (35.5, 27.5)
    kp[1, 5], kp[1, 6] = (35.5, 3.5, 2), (35.5, 51.5, 1)  # the same neck
    t = codec.encode(kp)
    assert t["heatmaps"][1][3, 4] == 1.0 and t["heatmaps"][1].max() == 1.0
    px, py = t["pafs"][12], t["pafs"][13]  # limb 0, neck -> right shoulder
    assert (px[3, 6], py[3, 6]) == (1.0, 0.0)  # person 0's band only (rows 2-4, columns 3-7)
    assert (px[6, 4], py[6, 4]) == (0.0, 1.0)  # person 1's band only (rows 2-7, columns 3-5)
    assert (px[3, 4], py[3, 4]) == (0.5, 0.5)  # averaged where the bands meet
    assert px[3, 7] == 1.0 and px[3, 8] == 0 and px[1, 6] == 0 and px[5, 6] == 0  # 1 cell past the ends, no more
    assert (t["pafs"][20][3, 2], t["pafs"][21][3, 2]) == (-1.0, 0.0)  # limb 1, neck -> left shoulder
    unlabelled = kp * np.array([1, 1, 0], np.float32)
    nobody = codec.encode(unlabelled)
    assert (nobody["heatmaps"][:18] == 0).all() and (nobody["pafs"] == 0).all()
    np.testing.assert_array_equal(codec.encode(with_neck(kp))["pafs"], t["pafs"])  # 17 -> 18 as encode does
    assert with_neck(kp)[:, 1].tolist() == [[35.5, 27.5, 2.0], [35.5, 27.5, 1.0]]


def test_encode_ignore_mask_and_errors():
    codec = PafCodec((32, 48))
    ignore = np.zeros((32, 48), bool)
    ignore[:8, :8] = True
    ignore[8:12, 8:16] = True  # half of cell (1, 1)
    w = codec.encode(np.zeros((0, 18, 3), np.float32), ignore=ignore)["weight"][0]
    assert w[0, 0] == 0 and w[1, 1] == 0.5 and w.sum() == 4 * 6 - 1.5
    with pytest.raises(ValueError, match=r"\(N, 18, 3\) OpenPose-18 or \(N, 17, 3\) COCO-17"):
        codec.encode(np.zeros((1, 14, 3), np.float32))


ROUND_TRIP = {"labeled_dev/person_keypoints_coco17.json": (11, 11),  # (people, people the grouping can return)
              "coco_mini/person_keypoints_train2017.json": (46, 45),
              "coco_mini/person_keypoints_val2017.json": (29, 26)}


def components(k18: np.ndarray) -> list[np.ndarray]:
    """The labelled keypoints of one person (18, 3) split into the groups limbs 0-16 connect (the grouping
    builds people from those limbs only)."""
    label = np.where(k18[:, 2] > 0, np.arange(18), -1)
    for _ in range(18):
        for a, b in LIMBS[:17]:
            if label[a] >= 0 and label[b] >= 0:
                label[label == max(label[a], label[b])] = min(label[a], label[b])
    return [np.flatnonzero(label == c) for c in np.unique(label[label >= 0])]


def returnable(k18: np.ndarray) -> np.ndarray:
    """(18,) bool: the keypoints the grouping can return for this person: its largest connected group if that
    has 3 keypoints or more (fewer are dropped), plus an ear or shoulder that limbs 17-18 fill in."""
    groups = [g for g in components(k18) if len(g) >= 3]
    out = np.zeros(18, bool)
    if groups:
        out[max(groups, key=len)] = True
        for a, b in LIMBS[17:]:
            if k18[a, 2] > 0 and k18[b, 2] > 0 and out[a] != out[b]:
                out[a] = out[b] = True
    return out


@pytest.mark.parametrize("json_name", list(ROUND_TRIP))
def test_round_trip_every_person(json_name):
    """decode(encode(ground truth)) on every multi-person image, at twice the image size (stride-8 cells of 4
    image pixels; at the bundled 256-pixel height small people blur into the grid): exactly one person per
    group of >= 3 connected keypoints, and each person's returnable keypoints at OKS >= 0.9."""
    from featherpose.evaluation.coco import oks
    from featherpose.skeletons import COCO17

    data = json.loads((DATA / json_name).read_text())
    people = recovered = 0
    for img in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == img["id"] and not a.get("iscrowd")
                and a.get("num_keypoints", 0) > 0]
        if len(anns) < 2:
            continue
        gt = np.array([a["keypoints"] for a in anns], np.float32).reshape(-1, 17, 3)
        k18 = with_neck(gt)
        codec = PafCodec((-(-img["height"] * 2 // 8) * 8, -(-img["width"] * 2 // 8) * 8), num_keypoints=17)
        targets = codec.encode(gt * np.array([2, 2, 1], np.float32))
        decoded = codec.decode({"heatmaps": targets["heatmaps"], "pafs": targets["pafs"]})
        assert len(decoded.scores) == sum(len(g) >= 3 for k in k18 for g in components(k)), img["id"]
        kp = decoded.keypoints / np.array([2, 2, 1], np.float32)
        expected = gt.copy()
        expected[..., 2] *= to_coco17(np.stack([returnable(k) for k in k18])[..., None])[..., 0]
        keep = expected[..., 2].any(1)
        sim = oks(kp, expected[keep], np.array([a["area"] for a in anns])[keep], np.array(COCO17.sigmas))
        for _ in range(int(keep.sum())):  # one-to-one: the best pair first
            i, j = np.unravel_index(np.argmax(sim), sim.shape)
            assert sim[i, j] >= 0.9, (img["id"], sim[i, j])
            sim[i, :], sim[:, j] = -1, -1
        people += len(anns)
        recovered += int(keep.sum())
    assert (people, recovered) == ROUND_TRIP[json_name]
