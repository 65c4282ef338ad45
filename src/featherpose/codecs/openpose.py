"""Lightweight OpenPose codec: part affinity field (PAF) grouping, in vectorised NumPy.

Dimensions: K = 18 OpenPose-18 keypoints (heatmap channel 18 is the background), L = 19 limbs
(:data:`~featherpose.skeletons.OPENPOSE18_PAF_LIMBS`), network grid [h, w] = input / 8, upsampled grid
[H, W] = [h, w] * ``upsample``, P peaks, N people. Heads are channel-first float32 with the batch axis dropped:
    heatmaps (K + 1, h, w), pafs (2L, h, w) with each limb's (x, y) channels as the skeleton lists them.

``decode`` does what the reference (Daniil-Osokin/lightweight-human-pose-estimation.pytorch @ d23c284,
``demo.infer_fast`` + ``modules/keypoints.py``) does, with no Python loop over pixels, peaks or candidate pairs:
    1. upsample both heads x4 with OpenCV's cubic resize;
    2. per keypoint: zero values under 0.1, peaks strictly above their 4 neighbours (zero outside the map),
       ordered by x (then y); a peak closer than 6 upsampled pixels to an earlier kept one of its type is dropped;
    3. per limb, every (a, b) pair of its two types: the PAF at 10 points along a -> b (rounded to the grid),
       dotted with the unit vector; the score is the mean of the values above 0.05, and the pair is a candidate
       when that mean is > 0 and more than 80 % of the points pass;
    4. per limb, candidates taken greedily by descending score, each peak used once;
    5. limbs 0-16 in order join or start people (a person's score: its keypoint values plus its limb scores);
       limbs 17-18 (shoulder-ear) only fill in a missing ear or shoulder;
    6. people with fewer than 3 keypoints, or a score per keypoint under 0.2, are dropped.
The sequential steps (2's suppression, 4's greedy scan, 5's assembly) are resolved in vectorised rounds that give
the loop's result; 4 ranks as the reference's own ``argsort()[::-1]`` per limb, so equal scores resolve as there. For
speed, step 1 upsamples only the heatmap window where a value can reach 0.1 (OpenCV's cubic weights bound it)
and the PAFs over the peaks' box, and step 3 first samples the 2 middle points (a pair failing both cannot
pass); none of this changes a value, so on finite heads the people, pixels and scores are the reference's
(tests/test_openpose_codec.py, every golden sample). One exception, for speed on crowds: a PAF box wider than
:data:`PLANES_MIN_COLUMNS` source columns is resized as single-channel planes, whose values differ from the
reference's by float32 rounding, so pose scores can too (<= 4.5e-7 measured on 20 tiled people and on 200 vtest
frames with the planes forced; keypoints unchanged).

``encode`` draws the reference's training targets (``datasets/coco.py``), with people combined as the issue
asks: Gaussians by max, PAFs averaged where limbs meet (the reference sums and overwrites).
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from ..skeletons import OPENPOSE18_PAF_CHANNELS, OPENPOSE18_PAF_LIMBS, OPENPOSE18_TO_COCO17
from .base import Codec, Decoded

f32 = np.float32
LIMBS = np.array(OPENPOSE18_PAF_LIMBS, np.int64)  # (L, 2) keypoint types a, b
PAF_CHANNELS = np.array(OPENPOSE18_PAF_CHANNELS, np.int64)  # (L, 2) x, y channels
NUM_TREE_LIMBS = 17  # limbs 0-16 build people; 17-18 only fill in


@dataclass(frozen=True)
class GroupingConfig:
    """The reference's decoding constants (``extract_keypoints``, ``group_keypoints``).

    Attributes:
        peak_threshold: heatmap values below it are zeroed before peak finding.
        nms_radius: a peak closer than this (upsampled pixels, Euclidean) to a kept one of its type is dropped.
        points_per_limb: PAF samples along a candidate limb.
        min_paf_score: a sample passes when PAF . unit vector exceeds it.
        success_ratio: a candidate needs more than this fraction of passing samples.
        min_keypoints: people with fewer keypoints (counted over limbs 0-16) are dropped.
        min_mean_score: people whose score per keypoint is under it are dropped.
    """

    peak_threshold: float = 0.1
    nms_radius: float = 6.0
    points_per_limb: int = 10
    min_paf_score: float = 0.05
    success_ratio: float = 0.8
    min_keypoints: int = 3
    min_mean_score: float = 0.2


@dataclass(frozen=True)
class TargetConfig:
    """How ``encode`` draws training targets (the reference's ``datasets/coco.py`` settings).

    Attributes:
        sigma: keypoint Gaussian sigma in input pixels; values under 0.01 (exponent > ln 100) are cut to 0.
        paf_width: half-width of a limb's PAF band, in cells.
    """

    sigma: float = 7.0
    paf_width: float = 1.0


def with_neck(keypoints: np.ndarray) -> np.ndarray:
    """(N, 17, 3) COCO-17 -> (N, 18, 3) OpenPose-18 with the neck at the shoulders' midpoint where both are
    labelled (visibility: the smaller of theirs), else unlabelled (0, 0, 0); (N, 18, 3) passes through."""
    keypoints = np.asarray(keypoints, f32)
    if keypoints.shape[1] == 18:
        return keypoints
    out = np.zeros((len(keypoints), 18, 3), f32)
    for i, j in enumerate(OPENPOSE18_TO_COCO17):
        if j >= 0:
            out[:, i] = keypoints[:, j]
    sho = keypoints[:, [5, 6]]  # COCO left, right shoulder
    both = (sho[:, :, 2] > 0).all(1)
    out[both, 1, :2] = sho[both, :, :2].mean(1)
    out[both, 1, 2] = sho[both, :, 2].min(1)
    return out


def encode_openpose(keypoints: np.ndarray, input_hw: tuple[int, int], stride: int = 8,
                    config: TargetConfig | None = None, ignore: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Training targets for one input.

    Cell (i, j) is centred on input pixel (i * stride + stride / 2 - 0.5, j * stride + stride / 2 - 0.5), the
    reference's convention.

    Args:
        keypoints: (N, 18, 3) OpenPose-18 or (N, 17, 3) COCO-17 x, y, v in input pixels; v > 0 is labelled.
        input_hw: input (H, W) pixels, multiples of ``stride``.
        ignore: optional (H, W) bool, True on crowds and unlabelled people (or (h, w) fractions ignored).

    Returns:
        heatmaps (19, h, w): per keypoint the Gaussians of every labelled person (max where people overlap),
            channel 18 the background, 1 - the maximum over the 18;
        pafs (38, h, w): per limb, in the cells within ``paf_width`` cells of the segment a -> b (and of its
            bounding box grown by it) the unit vector a -> b, averaged where limbs of several people meet;
        weight (1, h, w): the fraction of each cell's pixels not ignored (1 without ``ignore``).
    """
    cfg = config or TargetConfig()
    kp = with_neck(keypoints)
    big_h, big_w = input_hw
    h, w = big_h // stride, big_w // stride
    shift = stride / 2 - 0.5
    cx = np.arange(w) * stride + shift  # (w,) input pixels
    cy = np.arange(h) * stride + shift
    labelled = kp[:, :, 2] > 0  # (N, 18)
    ex = ((cx[None, None, :] - kp[:, :, :1]) ** 2 / (2 * cfg.sigma ** 2)).astype(f32)  # (N, 18, w)
    ey = ((cy[None, None, :] - kp[:, :, 1:2]) ** 2 / (2 * cfg.sigma ** 2)).astype(f32)  # (N, 18, h)
    ex[~labelled] = np.inf  # an unlabelled keypoint draws nothing
    e = ey[..., :, None] + ex[..., None, :]  # (N, 18, h, w)
    g = np.exp(-ey)[..., :, None] * np.exp(-ex)[..., None, :]  # separable Gaussian
    g[e > f32(np.log(100.0))] = 0  # the reference's cut at 0.01
    heat = np.zeros((19, h, w), f32)
    if len(kp):
        heat[:18] = g.max(0)
    heat[18] = 1 - heat[:18].max(0)

    pafs = np.zeros((2 * len(LIMBS), h, w), f32)
    a, b = kp[:, LIMBS[:, 0]], kp[:, LIMBS[:, 1]]  # (N, L, 3)
    ax, ay = a[..., 0] / stride, a[..., 1] / stride  # cells; cell (i, j)'s centre is (j, i) + shift / stride
    vx, vy = b[..., 0] / stride - ax, b[..., 1] / stride - ay
    norm = np.hypot(vx, vy)
    drawn = (a[..., 2] > 0) & (b[..., 2] > 0) & (norm > 1e-7)  # (N, L)
    ux, uy = vx / np.maximum(norm, 1e-7), vy / np.maximum(norm, 1e-7)
    gx = (np.arange(w) + shift / stride).astype(f32)[None, None, None, :]
    gy = (np.arange(h) + shift / stride).astype(f32)[None, None, :, None]
    t = cfg.paf_width
    xs = lambda v: v.astype(f32)[..., None, None]  # noqa: E731  (N, L) -> (N, L, 1, 1)
    near = np.abs((gx - xs(ax)) * xs(uy) - (gy - xs(ay)) * xs(ux)) <= t  # within t cells of the line
    near &= (gx >= xs(np.minimum(ax, ax + vx) - t)) & (gx <= xs(np.maximum(ax, ax + vx) + t))
    near &= (gy >= xs(np.minimum(ay, ay + vy) - t)) & (gy <= xs(np.maximum(ay, ay + vy) + t))
    near &= drawn[..., None, None]  # (N, L, h, w)
    near = near.astype(f32)
    count = near.sum(0)  # (L, h, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        pafs[PAF_CHANNELS[:, 0]] = np.where(count > 0, np.einsum("nlhw,nl->lhw", near, ux.astype(f32)) / count, 0)
        pafs[PAF_CHANNELS[:, 1]] = np.where(count > 0, np.einsum("nlhw,nl->lhw", near, uy.astype(f32)) / count, 0)

    weight = np.ones((1, h, w), f32)
    if ignore is not None:
        ignore = np.asarray(ignore)
        small = (ignore.reshape(h, stride, w, stride).mean(axis=(1, 3)) if ignore.shape == (big_h, big_w)
                 else ignore.astype(np.float64))
        weight[0] = 1 - small
    return {"heatmaps": heat, "pafs": pafs, "weight": weight}


def upsample(maps: np.ndarray, factor: int, channels: int | None = None) -> np.ndarray:
    """(C, h, w) -> (h * factor, w * factor, C') float32 with OpenCV's cubic resize (the reference's); C' is
    the first ``channels`` channels (all by default)."""
    hwc = np.ascontiguousarray(maps[:channels].transpose(1, 2, 0), dtype=f32)
    if factor == 1:
        return hwc
    out = cv2.resize(hwc, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    return out.reshape(out.shape[0], out.shape[1], -1)  # cv2 drops a lone channel axis


@functools.lru_cache(maxsize=None)
def _cubic_gain(factor: int) -> float:
    """The most sum(|w|) of OpenCV's cubic weights (a = -0.75) over the output phases of a x``factor`` resize:
    an upsampled value is at most this squared times the largest |value| among its 4 x 4 source cells."""
    t = np.modf((np.arange(factor) + 0.5) / factor - 0.5 + 1)[0]  # fractional source positions
    d = np.abs(t[:, None] - np.array([-1, 0, 1, 2])[None, :])  # distance to the 4 taps
    a = -0.75
    w = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a)
    return float(np.abs(w).sum(1).max())


def _source_span(lo: int, hi: int, n: int, factor: int) -> tuple[int, int]:
    """The source cells [first, last] that OpenCV's cubic resize reads for output pixels lo..hi (of n cells)."""
    first = int(np.floor((lo + 0.5) / factor - 0.5)) - 1
    last = int(np.floor((hi + 0.5) / factor - 0.5)) + 2
    return max(first, 0), min(last, n - 1)


def upsample_crop(maps: np.ndarray, factor: int, rows: tuple[int, int], cols: tuple[int, int],
                  channels: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """The cubic upsample of just the source cells that output pixels ``rows`` x ``cols`` (first, last) read.

    Returns:
        (H', W', C') contiguous float32 whose pixel (0, 0) is the full upsample's pixel ``origin`` (x, y); on
        ``rows`` x ``cols`` it equals the full upsample (bit-identical for power-of-two factors; for others OpenCV
        rounds the cropped phases differently, by ~1e-8), elsewhere it need not.
    """
    r0, r1 = _source_span(*rows, maps.shape[1], factor)
    c0, c1 = _source_span(*cols, maps.shape[2], factor)
    return upsample(maps[:channels, r0:r1 + 1, c0:c1 + 1], factor), (factor * c0, factor * r0)


def upsample_window(maps: np.ndarray, factor: int, rows: tuple[int, int], cols: tuple[int, int],
                    channels: int | None = None) -> np.ndarray:
    """``upsample(maps, factor, channels)[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1]`` from :func:`upsample_crop`."""
    up, (x0, y0) = upsample_crop(maps, factor, rows, cols, channels)
    return up[rows[0] - y0:rows[1] - y0 + 1, cols[0] - x0:cols[1] - x0 + 1]


def upsample_planes(maps: np.ndarray, factor: int, rows: tuple[int, int], cols: tuple[int, int]
                    ) -> tuple[np.ndarray, tuple[int, int]]:
    """The cubic upsample of ``maps`` (C, h, w) around output pixels ``rows`` x ``cols`` (first, last), channel
    first, computed as one single-channel image: the channels' source crops stacked vertically.

    Why: OpenCV resizes a single-channel image about twice as fast as the same data as one 38-channel image (its
    horizontal pass is vectorised for one channel). Each crop gets the source rows its outputs read, with the
    map's edge rows repeated as OpenCV's border clamping repeats them, so no output in ``rows`` reads a
    neighbouring channel's rows. That path sums in another order than the multi-channel resize the reference
    runs: about 20 % of values differ by float32 rounding (at most 4 ulps of the channel's largest value, 2.4e-7 on
    the golden PAFs; the tests bound it). Read at PAF samples, that moves pose scores by float32 rounding only
    (<= 4.5e-7 measured); the decoded keypoints stay the reference's.

    Returns:
        (C, H', W') contiguous float32 whose pixel (0, 0) is the full upsample's pixel ``origin`` (x, y), equal to
        it (to float32 rounding) on ``rows`` x ``cols``; elsewhere it need not be.
    """
    c, h, w = maps.shape
    if factor == 1:
        return np.ascontiguousarray(maps[:, rows[0]:rows[1] + 1, cols[0]:cols[1] + 1], dtype=f32), (cols[0], rows[0])
    first = int(np.floor((rows[0] + 0.5) / factor - 0.5)) - 1  # rows[0]'s first tap, unclamped
    last = int(np.floor((rows[1] + 0.5) / factor - 0.5)) + 2
    c0, c1 = _source_span(*cols, w, factor)
    source = np.clip(np.arange(first, last + 1), 0, h - 1)  # edge rows repeated, as OpenCV clamps
    tall = maps[:, source, c0:c1 + 1].astype(f32).reshape(c * len(source), c1 - c0 + 1)
    out = cv2.resize(tall, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    return out.reshape(c, factor * len(source), -1), (factor * c0, factor * first)


#: Source columns from which :func:`upsample_pafs` resizes channel planes rather than one multi-channel crop:
#: measured crossover 32-40 columns on 38 PAF channels (planes cost more fixed time, less per column; x4, 1 thread).
PLANES_MIN_COLUMNS = 40


def upsample_pafs(pafs: np.ndarray, factor: int, rows: tuple[int, int], cols: tuple[int, int]
                  ) -> tuple[np.ndarray, tuple[int, int]]:
    """(C, H', W') view of the upsampled ``pafs`` (C, h, w) around output pixels ``rows`` x ``cols`` and its
    origin (x, y), by the cheaper of :func:`upsample_crop` (bit-identical) and :func:`upsample_planes` (to float32
    rounding, about twice as fast on wide windows: 20 people side by side)."""
    c0, c1 = _source_span(*cols, pafs.shape[2], factor)
    if factor > 1 and c1 - c0 + 1 >= PLANES_MIN_COLUMNS:
        return upsample_planes(pafs, factor, rows, cols)
    window, origin = upsample_crop(pafs, factor, rows, cols)
    return window.transpose(2, 0, 1), origin


def hot_window(heatmaps: np.ndarray, threshold: float, factor: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The upsampled rows and columns (first, last) outside which no upsampled value of ``heatmaps`` (K, h, w)
    reaches ``threshold`` (so none is a peak), from the cubic weights' bound; None when none can."""
    h, w = heatmaps.shape[1:]
    hot = (np.abs(heatmaps) >= threshold / (_cubic_gain(factor) ** 2 * 1.001)).any(0)
    rows, cols = np.flatnonzero(hot.any(1)), np.flatnonzero(hot.any(0))
    if not len(rows):
        return None

    def span(first: int, last: int, n: int) -> tuple[int, int]:  # outputs whose 4 taps meet [first, last]
        lo = int(np.ceil(factor * (first - 1.5) - 0.5)) if factor > 1 else first
        hi = int(np.ceil(factor * (last + 2.5) - 0.5)) - 1 if factor > 1 else last
        return max(lo, 0), min(hi, n * factor - 1)

    return span(rows[0], rows[-1], h), span(cols[0], cols[-1], w)


def find_peaks(heatmaps: np.ndarray, threshold: float = 0.1, radius: float = 6.0,
               origin: tuple[int, int] = (0, 0)):
    """Keypoint candidates of every type, the reference's ``extract_keypoints`` for all K at once.

    Args:
        heatmaps: (H, W, K) upsampled heatmaps, or a window of them whose first pixel is ``origin`` (x, y) and
            outside which every value is under ``threshold``.
        threshold: values below it count as 0.
        radius: suppression distance in pixels of the upsampled grid.

    Returns:
        xy (P, 2) int64 upsampled-grid pixels, scores (P,) float32, types (P,) int64; ordered by type, then
        x, then y (the reference's global keypoint ids are the row numbers).
    """
    # A peak is >= threshold and above its 4 neighbours, with zeros outside the map as the reference pads; done
    # with shifted slices over the whole map (cheaper than gathering the neighbours of every value over the
    # threshold: a person's blob holds hundreds). A NaN is never a candidate, and a NaN neighbour stops one
    # (comparisons with NaN are false), as in the reference.
    hm = heatmaps
    peak = hm >= f32(threshold)
    peak[:, 1:] &= hm[:, 1:] > hm[:, :-1]
    peak[:, :-1] &= hm[:, :-1] > hm[:, 1:]
    peak[1:] &= hm[1:] > hm[:-1]
    peak[:-1] &= hm[:-1] > hm[1:]
    for edge in (np.s_[:, 0], np.s_[:, -1], np.s_[0], np.s_[-1]):  # the zero padding (matters for threshold <= 0)
        peak[edge] &= hm[edge] > 0
    idx = np.flatnonzero(peak)  # (np.nonzero of a 3-d mask costs 10x more)
    values = hm.reshape(-1)[idx]
    y, rest = np.divmod(idx, hm.shape[1] * hm.shape[2])
    x, t = np.divmod(rest, hm.shape[2])
    x, y = x + origin[0], y + origin[1]
    order = np.lexsort((y, x, t))
    x, y, t, values = x[order], y[order], t[order], values[order]
    keep = _suppress_close(x, y, t, radius)
    return np.stack([x[keep], y[keep]], 1).astype(np.int64), values[keep], t[keep].astype(np.int64)


def _suppress_close(x: np.ndarray, y: np.ndarray, t: np.ndarray, radius: float) -> np.ndarray:
    """(P,) bool: peaks kept by the reference's sequential suppression (in the given order, a peak is dropped
    when an earlier *kept* peak of its type is closer than ``radius``), resolved without a loop over peaks."""
    n = len(x)
    src, dst = [], []
    d = 1
    while d < n:  # pairs (i, i + d) of one type with |dx| < radius; sorted by x, so larger d only grows dx
        same = (t[d:] == t[:-d]) & (x[d:] - x[:-d] < radius)
        if not same.any():
            break
        close = same & ((x[d:] - x[:-d]) ** 2 + (y[d:] - y[:-d]) ** 2 < radius * radius)
        i = np.nonzero(close)[0]
        src.append(i)
        dst.append(i + d)
        d += 1
    if not src or not sum(len(s) for s in src):
        return np.ones(n, bool)
    src, dst = np.concatenate(src), np.concatenate(dst)
    state = np.zeros(n, np.int8)  # 0 undecided, 1 kept, -1 dropped
    state[np.bincount(dst, minlength=n) == 0] = 1
    while (state == 0).any():  # each pass decides at least the earliest undecided peak
        s = state[src]
        dropped = np.bincount(dst, s == 1, minlength=n) > 0
        open_ = np.bincount(dst, s != -1, minlength=n) > 0  # an earlier peak that is kept or undecided
        state[(state == 0) & dropped] = -1
        state[(state == 0) & ~open_] = 1
    return state == 1


def score_limbs(xy: np.ndarray, types: np.ndarray, pafs: np.ndarray, cfg: GroupingConfig,
                origin: tuple[int, int] = (0, 0)):
    """PAF line integrals of every candidate pair of every limb (the reference's arithmetic, float32).

    Args:
        xy: (P, 2) peak pixels of the upsampled grid, types (P,): from :func:`find_peaks`.
        pafs: (2L, H, W) upsampled PAFs (any strides), or a window of them holding every peak, first pixel
            ``origin`` (x, y).

    Returns:
        limb (C,), a (C,), b (C,) peak indices and score (C,) float64 of the pairs that pass, ordered by limb
        and, within a limb, as the reference ranks them (descending score).
    """
    counts = np.bincount(types, minlength=LIMBS.max() + 1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    na, nb = counts[LIMBS[:, 0]], counts[LIMBS[:, 1]]
    sizes = na * nb
    total = int(sizes.sum())
    if total == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, np.zeros(0)
    limb = np.repeat(np.arange(len(LIMBS)), sizes)
    within = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    n_rep = np.repeat(na, sizes)
    bi, ai = np.divmod(within, np.maximum(n_rep, 1))  # the reference's order: b-major, then a
    a = starts[LIMBS[limb, 0]] + ai
    b = starts[LIMBS[limb, 1]] + bi
    p = cfg.points_per_limb
    need = next((m for m in range(p + 1) if m / p > cfg.success_ratio), p + 1)  # passing samples a pair needs
    if need > p:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, np.zeros(0)
    xf, yf = xy[:, 0].astype(f32), xy[:, 1].astype(f32)
    ax, ay = xf[a], yf[a]
    dx, dy = xf[b] - ax, yf[b] - ay
    norm = np.sqrt(dx * dx + dy * dy) + 1e-6
    geometry = np.stack([ax, ay, dx, dy, dx / norm, dy / norm])  # (6, C) float32: a, b - a, unit vector
    index = np.stack([limb, a, b])  # (3, C)
    # A pair failing p - need + 1 samples cannot pass: probe that many (middle) samples first, then sample the
    # survivors fully. Each sample's arithmetic does not depend on which others are taken, so this is exact.
    probe = np.sort(np.argsort(np.abs(np.arange(p) - (p - 1) / 2), kind="stable")[:p - need + 1])  # the middle
    if len(probe) == p - need + 1 and len(probe) < p:
        passes = np.flatnonzero((_affinity(geometry, index[0], pafs, p, probe, origin) > cfg.min_paf_score).any(1))
        geometry, index = geometry[:, passes], index[:, passes]
    affinity = _affinity(geometry, index[0], pafs, p, np.arange(p), origin)
    valid = affinity > cfg.min_paf_score
    valid_num = valid.sum(1)
    score = (affinity * valid).sum(1) / (valid_num + 1e-6)
    ok = np.flatnonzero((score > 0) & (valid_num / p > cfg.success_ratio))
    (limb, a, b), score = index[:, ok], score[ok]
    order = _rank(limb, score)
    return limb[order], a[order], b[order], score[order]


def _rank(limb: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The order of pairs (sorted by limb) by limb, then descending score, as the reference's
    ``score.argsort()[::-1]`` per limb ranks them: one sort, and that argsort itself for a limb with tied scores
    (its tie order is the reference's)."""
    order = np.lexsort((-score, limb))
    ranked, limbs = score[order], limb[order]
    for part in np.unique(limbs[1:][(ranked[1:] == ranked[:-1]) & (limbs[1:] == limbs[:-1])]):
        lo, hi = np.searchsorted(limb, [part, part + 1])
        order[lo:hi] = lo + np.argsort(score[lo:hi])[::-1]
    return order


def _affinity(geometry: np.ndarray, limb: np.ndarray, pafs: np.ndarray, p: int, steps: np.ndarray,
              origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """(C, len(steps)) PAF . unit(b - a) at samples ``steps`` of the ``p`` along each pair, rounded to the grid.

    ``geometry`` (6, C) float32: a's x, y, b - a's x, y and the unit vector's x, y; ``limb`` (C,) each pair's limb.
    Element for element this is the reference's float32 arithmetic, so the values are the same.
    """
    ax, ay, dx, dy, ux, uy = geometry[:, :, None]
    grid = steps.astype(f32)[None, :]
    step = f32(1 / (p - 1))
    px = ((step * dx) * grid + ax).round().astype(np.int64)  # (C, S)
    py = ((step * dy) * grid + ay).round().astype(np.int64)
    py, px = py - origin[1], px - origin[0]
    channel = PAF_CHANNELS[limb]  # (C, 2)
    return pafs[channel[:, 0, None], py, px] * ux + pafs[channel[:, 1, None], py, px] * uy


def match_greedy(limb: np.ndarray, a: np.ndarray, b: np.ndarray, num_peaks: int) -> np.ndarray:
    """(C,) bool: the pairs the reference's ``connections_nms`` keeps, given pairs in rank order per limb:
    within each limb, a pair is kept unless an earlier kept pair uses its a or its b.

    Resolved in rounds without a loop over pairs: a pair ranked first among the live pairs of both its a and
    its b is what the greedy scan keeps; pairs sharing a peak with it die. Each round keeps at least one pair.
    """
    n = len(limb)
    kept = np.zeros(n, bool)
    if n == 0:
        return kept
    rank = np.arange(n)
    ka, kb = limb * num_peaks + a, limb * num_peaks + b
    size = (int(limb.max()) + 1) * num_peaks
    used_a, used_b = np.zeros(size, bool), np.zeros(size, bool)
    live = rank
    while len(live):
        first_a, first_b = np.full(size, n), np.full(size, n)
        np.minimum.at(first_a, ka[live], live)
        np.minimum.at(first_b, kb[live], live)
        win = live[(first_a[ka[live]] == live) & (first_b[kb[live]] == live)]
        kept[win] = True
        used_a[ka[win]] = True
        used_b[kb[win]] = True
        live = live[~(used_a[ka[live]] | used_b[kb[live]])]
    return kept


def assemble(limb: np.ndarray, a: np.ndarray, b: np.ndarray, score: np.ndarray, peak_scores: np.ndarray,
             cfg: GroupingConfig):
    """People from the kept pairs (in rank order), the reference's ``group_keypoints`` assembly.

    Returns:
        ids (N, 18) int64 peak index per keypoint (-1 missing), score (N,) float64 (keypoint values + limb
        scores), count (N,) keypoints counted over limbs 0-16; in the reference's order, filtered as it filters.

    The reference walks limbs 0-16 in order: a pair whose a is in a person joins its b to that person, else it
    starts a person. Those limbs form a tree in which each keypoint type is a b once, in a limb before the limbs
    where it is an a, so a pair starts a person exactly when its a appears in no earlier pair, and every other
    pair belongs to the person of the earliest pair that holds its a. That is resolved for all pairs at once
    (pointer jumping, a few rounds: the tree is 3 limbs deep); scores are summed in the reference's order.
    """
    tree = int(np.searchsorted(limb, NUM_TREE_LIMBS))  # pairs are ordered by limb: the tree limbs' come first
    ca, cb, s = a[:tree], b[:tree], score[:tree]
    order = np.arange(tree)
    first = np.full(len(peak_scores), tree)  # the earliest pair holding each peak
    np.minimum.at(first, ca, order)
    np.minimum.at(first, cb, order)
    root = first[ca]  # the pair that brought each pair's a in; itself for a pair that starts a person
    while True:
        deeper = root[root]
        if np.array_equal(deeper, root):
            break
        root = deeper
    starts = root == order
    person = (np.cumsum(starts) - 1)[root]  # people numbered as they start
    people = int(starts.sum())
    kscore = peak_scores.astype(np.float64)
    gain = np.where(starts, kscore[ca] + kscore[cb], kscore[cb]) + s  # what each pair adds to its person's score
    total = np.bincount(person, gain, minlength=people)  # summed pair by pair, in order, as the reference adds
    count = np.bincount(person, minlength=people) + 1  # a starting pair brings 2 keypoints, a joining one 1
    ids = np.full((people, 18), -1, np.int64)
    ids[person, LIMBS[limb[:tree], 0]] = ca
    ids[person, LIMBS[limb[:tree], 1]] = cb
    bounds = np.searchsorted(limb, np.arange(NUM_TREE_LIMBS, len(LIMBS) + 1))
    for part, lo, hi in zip(range(NUM_TREE_LIMBS, len(LIMBS)), bounds[:-1], bounds[1:]):
        # limbs 17-18: fill in a missing ear (or shoulder) only; no score, no count
        ta, tb = LIMBS[part]
        ca, cb = a[lo:hi], b[lo:hi]
        fill_b = (ids[:, ta][None, :] == ca[:, None]) & (ids[:, tb][None, :] == -1)  # (pairs, people)
        fill_a = (ids[:, tb][None, :] == cb[:, None]) & (ids[:, ta][None, :] == -1)
        pi, pe = np.nonzero(fill_b)
        ids[pe, tb] = cb[pi]
        pi, pe = np.nonzero(fill_a & ~fill_b.any(0)[None, :])
        ids[pe, ta] = ca[pi]
    with np.errstate(invalid="ignore", divide="ignore"):
        keep = ~((count < cfg.min_keypoints) | (total / count < cfg.min_mean_score))
    return ids[keep], total[keep], count[keep]


def group(heatmaps: np.ndarray, pafs: np.ndarray, factor: int, cfg: GroupingConfig):
    """Raw heads -> people: keypoints (N, 18, 3) x, y, value in upsampled-grid pixels ((-1, -1, -1) where
    missing, as the reference), score (N,) float64 (the reference's ``pose_entries[:, 18]``), count (N,).

    Only the windows that matter are upsampled: heatmaps where a value can reach the peak threshold, PAFs over
    the peaks' bounding box (every PAF sample lies inside it); the values are those of the full upsample.

    Args:
        heatmaps: (K + 1, h, w), pafs: (2L, h, w) network heads; factor: the upsampling factor.
    """
    empty = np.zeros((0, 18, 3), f32), np.zeros(0), np.zeros(0, np.int64)
    window = hot_window(heatmaps[:18], cfg.peak_threshold, factor)
    if window is None:
        return empty
    rows, cols = window
    hm = upsample_window(heatmaps, factor, rows, cols, 18)
    xy, peak_scores, types = find_peaks(hm, cfg.peak_threshold, cfg.nms_radius, (cols[0], rows[0]))
    if not len(xy):
        return empty
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    paf_window, paf_origin = upsample_pafs(pafs, factor, (int(y0), int(y1)), (int(x0), int(x1)))
    limb, a, b, s = score_limbs(xy, types, paf_window, cfg, paf_origin)
    kept = match_greedy(limb, a, b, len(xy))
    ids, total, count = assemble(limb[kept], a[kept], b[kept], s[kept], peak_scores, cfg)
    table = np.concatenate([np.column_stack([xy.astype(f32), peak_scores]), np.full((1, 3), -1, f32)])
    return table[ids], total, count  # ids == -1 picks the (-1, -1, -1) row


class PafCodec(Codec):
    """Encoder / decoder for Lightweight OpenPose heads (heatmaps + PAFs at stride 8); a :class:`~.base.Codec`.

    Args:
        input_hw: network input (H, W) in pixels, multiples of ``stride``.
        num_keypoints: 18 decodes OpenPose-18 keypoints (neck included); 17 the COCO-17 view (neck dropped).
        upsample: the factor heads are upsampled by before peak finding (the reference's 4).
        stride: input pixels per network cell.
        grouping: decoding constants (the reference's by default).
        targets: how ``encode`` draws training targets.
    """

    kind = "multi"

    def __init__(self, input_hw: tuple[int, int], num_keypoints: int = 18, upsample: int = 4, stride: int = 8,
                 grouping: GroupingConfig | None = None, targets: TargetConfig | None = None):
        if num_keypoints not in (17, 18):
            raise ValueError(f"PafCodec decodes OpenPose-18 (num_keypoints=18) or its COCO-17 view (17), "
                             f"got num_keypoints={num_keypoints}")
        if int(upsample) < 1:
            raise ValueError(f"upsample must be a positive integer, got {upsample!r}")
        if input_hw[0] % stride or input_hw[1] % stride:
            raise ValueError(f"input size {tuple(input_hw)} must be multiples of the stride {stride}")
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.num_keypoints = num_keypoints
        self.upsample = int(upsample)
        self.stride = int(stride)
        self.grouping = grouping or GroupingConfig()
        self.targets = targets or TargetConfig()

    @property
    def keypoint_threshold(self) -> float:
        """Every keypoint a person has passed the peak threshold (its score is the raw heatmap value, 0.2-0.5 on
        small people), so drawings show them all."""
        return self.grouping.peak_threshold

    def to_dict(self) -> dict[str, Any]:
        """The settings that rebuild this codec (weight-file metadata 'codec'); input size and K come from the
        model config."""
        return {"upsample": self.upsample, "stride": self.stride, "grouping": asdict(self.grouping),
                "targets": asdict(self.targets)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], input_hw: tuple[int, int], num_keypoints: int,
                  arrays: dict[str, np.ndarray] | None = None) -> PafCodec:
        """The codec :meth:`to_dict` describes.

        Raises:
            TypeError, ValueError: ``d`` has an unknown key or a bad value.
        """
        args = dict(d)
        grouping, targets = args.pop("grouping", None), args.pop("targets", None)
        return cls(input_hw, num_keypoints, grouping=GroupingConfig(**grouping) if grouping else None,
                   targets=TargetConfig(**targets) if targets else None, **args)

    def encode(self, keypoints: np.ndarray, ignore: np.ndarray | None = None,
               boxes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Training targets for one input: keypoints (N, 18 or 17, 3) x, y, v in input pixels and an optional
        (H, W) ignore mask -> heatmaps (19, h, w), pafs (38, h, w), weight (1, h, w) (see
        :func:`encode_openpose`); ``boxes`` are not used."""
        keypoints = np.asarray(keypoints, f32)
        if keypoints.ndim != 3 or keypoints.shape[1:] not in ((18, 3), (17, 3)):
            raise ValueError(f"PafCodec.encode takes keypoints (N, 18, 3) OpenPose-18 or (N, 17, 3) COCO-17, "
                             f"got shape {keypoints.shape}")
        return encode_openpose(keypoints, self.input_hw, self.stride, self.targets, ignore)

    def head_shapes(self) -> dict[str, tuple[int, ...]]:
        """The raw heads :meth:`decode` takes, name -> (C, h, w)."""
        h, w = self.input_hw[0] // self.stride, self.input_hw[1] // self.stride
        return {"heatmaps": (19, h, w), "pafs": (2 * len(LIMBS), h, w)}

    def decode_openpose(self, heads: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Heads (batch axis dropped) -> the reference's people in input pixels.

        Returns:
            keypoints (N, 18, 3) float32 x, y, heatmap value, (-1, -1, -1) where missing; scores (N,) float64,
            the reference's pose score (keypoint values + limb scores). Order as the reference's.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            kp, total, _ = group(np.asarray(heads["heatmaps"], f32), np.asarray(heads["pafs"], f32), self.upsample,
                                 self.grouping)
        present = kp[..., 2] != -1
        kp[..., :2] = np.where(present[..., None], kp[..., :2] * f32(self.stride / self.upsample), f32(-1))
        return kp, total

    def decode(self, heads: dict[str, np.ndarray]) -> Decoded:
        """Heads (batch axis dropped) -> people in input pixels: keypoints (N, K, 3) x, y, score with missing
        keypoints (0, 0, 0); no boxes. A keypoint's score is its heatmap value, as the reference's (it can pass 1
        slightly: 1.0033 on the golden basketball1).

        A person's score maps the reference's pose score s (keypoint values + limb scores) into [0, 1) as
        s / (s + 4 s_min), with s_min = min_keypoints * min_mean_score (0.6) the smallest s the reference keeps:
        people rank as the reference ranks them, and every person it keeps scores >= 0.2 (the default
        ``min_score``). Never raises on NaN/inf or huge heads (NaN is never a peak).
        """
        kp, total = self.decode_openpose(heads)
        kp = np.where(kp[..., 2:] == -1, f32(0), kp)
        if self.num_keypoints == 17:
            kp = to_coco17(kp)
        return Decoded(keypoints=kp.astype(f32), boxes=None, scores=self.person_scores(total))

    def person_scores(self, pose_scores: np.ndarray) -> np.ndarray:
        """(N,) float32 in [0, 1]: the reference's pose scores s -> s / (s + 4 s_min) (see :meth:`decode`)."""
        s_min = self.grouping.min_keypoints * self.grouping.min_mean_score
        with np.errstate(invalid="ignore", divide="ignore"):
            scores = np.where(np.isposinf(pose_scores), 1.0, pose_scores / (pose_scores + 4 * s_min))
        return np.clip(np.nan_to_num(scores, nan=0.0), 0, 1).astype(f32)


def to_coco17(keypoints: np.ndarray) -> np.ndarray:
    """(N, 18, C) OpenPose-18 -> (N, 17, C) COCO-17, the neck dropped."""
    order = np.argsort(OPENPOSE18_TO_COCO17)[1:]  # COCO index j <- OpenPose index order[j]
    return keypoints[:, order]
