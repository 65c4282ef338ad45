"""Associative-embedding (AE) codec of Lite Pose (HigherHRNet-style heads), in vectorised NumPy.

Dimensions: K keypoints, input [H, W] pixels (multiples of 4), C tag dimensions (1; 2 with flip test), N people.
Heads are channel-first float32 with the batch axis dropped:
    heatmaps_tags (2K, H/4, W/4): K heatmaps then K tag maps (the network's first output),
    heatmaps (K, H/2, W/2): K heatmaps (its second output),
    heatmaps_tags_flip, heatmaps_flip (optional, same shapes): the network's outputs on the input mirrored
        left-right, as it returns them (not flipped back); given, they turn on upstream's flip test.

``decode`` does what upstream does (mit-han-lab/litepose @ 00b702d, ``get_multi_stage_outputs``,
``aggregate_results``, ``HeatmapParser.parse``; single scale, PROJECT2IMAGE), with the same arithmetic:
    1. final maps at input resolution: heatmaps ``(up2(heatmaps_tags[:K]) + heatmaps) / 2`` upsampled x2 again,
       tags ``up2(up2(heatmaps_tags[K:]))`` (torch's bilinear, align_corners=False, in float32 with its first
       product fused, which reproduces ``F.interpolate`` bit for bit);
    2. NMS (a value is kept where it equals its 5 x 5 maximum) and the 30 largest kept values per keypoint;
    3. ``match_by_tag``: keypoints visited in ``joint_order``; candidates above 0.1 join people by the Hungarian
       assignment (scipy's ``linear_sum_assignment`` where upstream uses ``munkres``) of the cost
       ``round(|tag - person tag|) * 100 - value``, accepted when the tag distance is under 1, else start people;
    4. ``adjust``: a quarter pixel towards the higher neighbour on each axis, then + 0.5;
    5. person score: the mean of the K keypoint scores (missing ones count 0);
    6. ``refine``: each missing keypoint of a person is the argmax of ``heatmap - round(|tag - person tag|)``
       over the whole map, taken when its heatmap value is > 0 (+ 0.5 and the quarter rule).
The final maps are never built whole. Bounds per 16 x 16 tile (a bilinear value lies within its sources' range)
pick the tiles where it matters: for step 2 those whose heatmap can pass 0.1, where the approximate map (OpenCV's
bilinear, within float32 rounding) names the pixels that can be a window maximum above 0.1, and only their NMS
windows are evaluated exactly; for step 6 the tiles that can hold the argmax (heatmap bound - rounded tag-distance
bound >= the best value found so far). The sequential parts are loops in upstream's order: over the K keypoints
in step 3 (each a vectorised assignment) and over the people in step 5's scores; none runs over pixels.

Two implementations of the steps over pixels (the tile bounds, 2, 4 and 6) give the same arrays: this module's
vectorised NumPy (the reference, ``parse(reference=True)``) and :mod:`.ae_compiled` (numba loops over tiles, the
default: 2.6-2.8x as fast on a vtest frame, benchmarks/ae_decode_stages.py). Step 3 (scipy's assignment, a loop
over keypoints) is shared.

Coordinates returned are input pixels in upstream's convention (pixel index + 0.5 + the quarter offset), which
upstream maps to the image with the inverse of its letterbox affine (``get_final_preds``).

``encode`` draws upstream's training targets (``HeatmapGenerator``, ``JointsGenerator``): per resolution
(1/4, 1/2) a Gaussian of sigma 2 cells at each labelled keypoint's cell (``int(x * scale)``), max over people,
the flat indices of the labelled keypoints for the tag loss (at 1/4), and masks that are 0 on ignored pixels.
"""
from __future__ import annotations

import functools
import sys
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from .base import Codec, Decoded

f32 = np.float32
#: Upstream's visiting order (COCO's, ``Params.joint_order``); a K-keypoint model visits its first K entries.
COCO_JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)
TILE = 16  # input pixels per tile side (8 half-resolution cells, 4 quarter cells)
#: refine: tiles per (person, keypoint) whose approximate scores set the floor that prunes the others (vtest
#: 448x640, refine's ms a frame over 40 frames, best of 4 passes: 1 tile 19.9, 2 9.3, 3 5.3, 4 4.4, 6 4.2, 8 5.6)
REFINE_FLOOR_TILES = 4
#: refine: a tile with at least this many pixels left to evaluate exactly is evaluated whole (a pixel alone reads a
#: 3 x 3 half-resolution patch; a tile 11 x 11 for its 256 pixels). int8 maps, flat and quantised, leave thousands.
REFINE_DENSE_TILE = 16


@dataclass(frozen=True)
class AEGroupingConfig:
    """Upstream's test settings (``experiments/crowd_pose/mobilenet/mobile.yaml`` and its defaults).

    Attributes:
        detection_threshold: candidates need a heatmap value above it.
        tag_threshold: a candidate joins a person when their tag distance is below it.
        max_num_people: candidates per keypoint (top-k) and people a candidate can join.
        nms_kernel: side of the NMS window, pixels.
        use_detection_val: the assignment cost subtracts the candidate's value.
        adjust: the quarter-pixel shift of grouped keypoints.
        refine: fill missing keypoints from the whole map.
    """

    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    max_num_people: int = 30
    nms_kernel: int = 5
    use_detection_val: bool = True
    adjust: bool = True
    refine: bool = True


@dataclass(frozen=True)
class AETargetConfig:
    """How ``encode`` draws targets (upstream's ``DATASET.SIGMA`` and ``MAX_NUM_PEOPLE``).

    Attributes:
        sigma: Gaussian sigma in heatmap cells, at both resolutions.
        max_num_people: rows of the ``joints`` target; people beyond it are not tagged.
    """

    sigma: float = 2.0
    max_num_people: int = 30


# ------------------------------------------------------------------------------ torch's bilinear x2

def _lerp_index(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """torch's bilinear sources for ``n_out`` outputs from ``n_in`` (align_corners=False): lower index i0,
    upper i1, their weights w0, w1 (float32)."""
    o = np.arange(n_out, dtype=f32)
    src = np.maximum(f32(n_in / n_out) * (o + f32(0.5)) - f32(0.5), f32(0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    w1 = np.clip(src - i0.astype(f32), 0, 1).astype(f32)
    return i0, np.minimum(i0 + 1, n_in - 1), (f32(1) - w1).astype(f32), w1


def _lerp(a: np.ndarray, b: np.ndarray, wa: np.ndarray, wb: np.ndarray) -> np.ndarray:
    """``a * wa + b * wb`` as torch's CPU kernel rounds it: ``b * wb`` in float32, the first product fused."""
    return (a.astype(np.float64) * wa + (b * wb)).astype(f32)


class _Axis:
    """Index tables of one axis: input pixel -> half cells (full_*) and half cell -> quarter cells (half_*),
    and the same for a map computed on the mirrored input (``half_*_m``: half cell x reads the mirrored quarter
    map at column n_half - 1 - x)."""

    def __init__(self, n_quarter: int):
        self.nq, self.nh, self.nf = n_quarter, 2 * n_quarter, 4 * n_quarter
        self.full = _lerp_index(self.nh, self.nf)
        self.half = _lerp_index(self.nq, self.nh)
        mirror = self.nh - 1 - np.arange(self.nh)
        self.half_m = tuple(t[mirror] for t in self.half)


class _Maps:
    """Upstream's final heatmaps (K, H, W) and tags (K, H, W, C), evaluated exactly on demand.

    Args:
        heads: the decode heads (see the module docstring).
        num_keypoints: K.
        flip_index: K, the left-right permutation (used with flip heads).
    """

    def __init__(self, heads: dict[str, np.ndarray], num_keypoints: int, flip_index: np.ndarray | None):
        k = num_keypoints
        q = np.asarray(heads["heatmaps_tags"], f32)
        o1 = np.asarray(heads["heatmaps"], f32)
        if q.ndim != 3 or q.shape[0] != 2 * k or o1.shape != (k, 2 * q.shape[1], 2 * q.shape[2]):
            raise ValueError(f"AE heads must be heatmaps_tags (2K, h, w) and heatmaps (K, 2h, 2w) with K={k}, got "
                             f"{q.shape} and {o1.shape}")
        self.k = k
        self.hw = (4 * q.shape[1], 4 * q.shape[2])  # the input's pixels
        # sources: (quarter maps, half maps or None, mirrored?) per heatmap set and per tag dimension
        self.heat = [(q[:k], o1, False)]
        self.tags = [(q[k:], None, False)]
        self.flip = "heatmaps_tags_flip" in heads
        if self.flip:
            if flip_index is None:
                raise ValueError("flip heads given but the codec has no flip_index: build it with "
                                 "flip_index=<skeleton>.flip_index()")
            qf = np.asarray(heads["heatmaps_tags_flip"], f32)
            of = np.asarray(heads["heatmaps_flip"], f32)
            if qf.shape != q.shape or of.shape != o1.shape:
                raise ValueError(f"flip heads must have the shapes of the plain ones, got {qf.shape}, {of.shape}")
            fi = np.asarray(flip_index)
            self.heat.append((qf[fi], of[fi][:, :, ::-1], True))
            self.tags.append((qf[k + fi], None, True))

    @functools.cached_property
    def rows(self) -> _Axis:
        """Index tables of the row axis (the NumPy steps' exact values; the compiled ones compute them)."""
        return _Axis(self.hw[0] // 4)

    @functools.cached_property
    def cols(self) -> _Axis:
        """Index tables of the column axis."""
        return _Axis(self.hw[1] // 4)

    @functools.cached_property
    def heat_margin(self) -> np.ndarray:
        """(K,) how far the approximate heatmap (heat_bounds) can be from the exact one, per keypoint, with room to
        spare: rounding is at the scale of the sources, which can be large and cancel, not of the result."""
        size = np.max([quarter + half for quarter, half in self._magnitudes[0]], axis=0)
        return (f32(1e-5) * (1 + size)).astype(f32)

    @functools.cached_property
    def finite(self) -> bool:
        """Whether the heads hold no NaN or inf (every head is a source: its largest magnitude is finite exactly
        then)."""
        heat, tags = self._magnitudes
        return bool(np.isfinite(np.concatenate([m for pair in heat for m in pair] + tags)).all())

    @functools.cached_property
    def _magnitudes(self) -> tuple[list, list]:
        """(K,) largest |value| of each source: (quarter, half) per heatmap source, quarter per tag source."""
        return ([(_magnitude(quarter), _magnitude(half)) for quarter, half, _ in self.heat],
                [_magnitude(q) for q, _, _ in self.tags])

    # ---- exact values
    def _half(self, src, js, hr, hc):
        """(n, a, b) half-resolution values of ``src`` at rows hr (n, a), cols hc (n, b) (unmirrored frame)."""
        quarter, half, mirrored = src
        r0, r1, rw0, rw1 = (t[hr][:, :, None] for t in self.rows.half)
        c0, c1, cw0, cw1 = (t[hc][:, None, :] for t in (self.cols.half_m if mirrored else self.cols.half))
        j = js[:, None, None]
        top = _lerp(quarter[j, r0, c0], quarter[j, r0, c1], cw0, cw1)
        bottom = _lerp(quarter[j, r1, c0], quarter[j, r1, c1], cw0, cw1)
        v = _lerp(top, bottom, rw0, rw1)
        if half is not None:
            v = (v + half[j, hr[:, :, None], hc[:, None, :]]) / f32(2)
        return v

    def _full(self, src, js, y0, x0, size):
        """(n, size, size) final-map values of one source on the windows at (y0, x0) (clamped inside)."""
        n = len(js)
        span = size // 2 + 3
        ys = np.clip(y0[:, None] + np.arange(size), 0, self.hw[0] - 1)
        xs = np.clip(x0[:, None] + np.arange(size), 0, self.hw[1] - 1)
        r0, r1, rw0, rw1 = (t[ys] for t in self.rows.full)
        c0, c1, cw0, cw1 = (t[xs] for t in self.cols.full)
        hr0, hc0 = r0[:, :1], c0[:, :1]
        hr = np.minimum(hr0 + np.arange(span), self.rows.nh - 1)
        hc = np.minimum(hc0 + np.arange(span), self.cols.nh - 1)
        half = self._half(src, js, hr, hc)
        i = np.arange(n)[:, None, None]
        lr0, lr1 = (r0 - hr0)[:, :, None], (r1 - hr0)[:, :, None]
        lc0, lc1 = (c0 - hc0)[:, None, :], (c1 - hc0)[:, None, :]
        top = _lerp(half[i, lr0, lc0], half[i, lr0, lc1], cw0[:, None, :], cw1[:, None, :])
        bottom = _lerp(half[i, lr1, lc0], half[i, lr1, lc1], cw0[:, None, :], cw1[:, None, :])
        return _lerp(top, bottom, rw0[:, :, None], rw1[:, :, None])

    def heatmap(self, js, y0, x0, size):
        """(n, size, size) final heatmap of keypoints ``js`` on windows at (y0, x0); -inf outside the input."""
        js, y0, x0 = (np.asarray(v, np.int64).reshape(-1) for v in (js, y0, x0))
        v = self._full(self.heat[0], js, y0, x0, size)
        if self.flip:
            v = (v + self._full(self.heat[1], js, y0, x0, size)) / f32(2)
        return np.where(self.inside(y0, x0, size), v, f32(-np.inf))

    def inside(self, y0, x0, size) -> np.ndarray:
        """(n, size, size) bool: which pixels of the windows at (y0, x0) lie inside the input."""
        ys, xs = y0[:, None] + np.arange(size), x0[:, None] + np.arange(size)
        return ((ys >= 0) & (ys < self.hw[0]))[:, :, None] & ((xs >= 0) & (xs < self.hw[1]))[:, None, :]

    def tag(self, js, y0, x0, size):
        """(n, size, size, C) final tags of keypoints ``js`` on windows at (y0, x0) (edge values outside)."""
        js, y0, x0 = (np.asarray(v, np.int64).reshape(-1) for v in (js, y0, x0))
        return np.stack([self._full(s, js, y0, x0, size) for s in self.tags], -1)

    def at(self, js, ys, xs):
        """Final heatmap (n,) and tags (n, C) at pixels (ys, xs)."""
        return self.heatmap(js, ys, xs, 1)[:, 0, 0], self.tag(js, ys, xs, 1)[:, 0, 0]

    # ---- bounds per tile
    def approx_tiles(self, half: np.ndarray, js, ty, tx, halo: int = 0) -> np.ndarray:
        """(n, 16 + 2 halo, 16 + 2 halo) the x2 bilinear of the approximate half-resolution map ``half``
        (K, H/2, W/2) on tiles (ty, tx) of keypoints ``js`` and ``halo`` pixels around them: the final map within
        float32 rounding (torch's weights, another order) inside the input, edge values past it."""
        h2, w2 = half.shape[1:]
        even = halo + halo % 2  # the x2 makes pixel pairs: compute an even halo, cut to the asked one
        cells = np.arange(TILE // 2 + 2 + even) - 1 - even // 2
        rows = np.clip(ty[:, None] * (TILE // 2) + cells, 0, h2 - 1)
        cols = np.clip(tx[:, None] * (TILE // 2) + cells, 0, w2 - 1)
        p = half[js[:, None, None], rows[:, :, None], cols[:, None, :]]  # (n, 10 + even, 10 + even)
        p = _up2_local(_up2_local(p, 1), 2)
        cut = slice(even - halo, even - halo + TILE + 2 * halo)
        return p[:, cut, cut]

    def heat_bounds(self) -> np.ndarray:
        """Per keypoint and 16 x 16 tile an upper bound of the final heatmap (K, th, tw). A bilinear value lies
        within its sources' range, and a tile's pixels read the half cells of the tile and one beyond each side
        (quarter cells likewise); the half-resolution heatmap is OpenCV's bilinear (within float32 rounding of
        torch's: hence the margin, which scales with the sources' magnitude, not the result's: large heads that
        cancel round at their own scale). Builds :attr:`heat_half`."""
        th, tw = -(-self.hw[0] // TILE), -(-self.hw[1] // TILE)
        heat = None
        for quarter, half, mirrored in self.heat:
            h = _up2(quarter, mirrored)
            h += half
            h *= f32(0.5)
            if heat is not None:
                h += heat
                h *= f32(0.5)
            heat = h
        self.heat_half = heat  # (K, H/2, W/2) OpenCV-approximate half-resolution heatmap (flip: both averaged)
        return _block(heat, 8, th, tw, np.maximum) + self.heat_margin[:, None, None]

    def tag_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per keypoint and 16 x 16 tile lower and upper bounds of each tag dimension (K, th, tw, C), as
        :meth:`heat_bounds` bounds the heatmap. Builds :attr:`tags_half`. Array work on whole maps, which releases
        the GIL: :meth:`AECodec.parse` runs it in a thread beside the heatmap's steps."""
        th, tw = -(-self.hw[0] // TILE), -(-self.hw[1] // TILE)
        with np.errstate(over="ignore", invalid="ignore"):
            self.tags_half = [_up2(q, m) for q, _, m in self.tags]  # C x (K, H/2, W/2) like heat_half
            lo = np.stack([_block(t, 8, th, tw, np.minimum) for t in self.tags_half], -1)
            hi = np.stack([_block(t, 8, th, tw, np.maximum) for t in self.tags_half], -1)
            return lo - 1e-5 * (1 + np.abs(lo)), hi + 1e-5 * (1 + np.abs(hi))


def _magnitude(maps: np.ndarray) -> np.ndarray:
    """(K,) the largest |value| of each of the (K, h, w) maps."""
    return np.maximum(maps.max((1, 2)), -maps.min((1, 2)))


def _up2_local(p: np.ndarray, axis: int) -> np.ndarray:
    """x2 bilinear along ``axis`` (1 or 2) of patches whose first and last cells are the neighbours of the patch
    proper (n + 2 cells -> 2n): outputs 2m, 2m + 1 mix cells m, m + 1 and m + 1, m + 2 by 0.25 / 0.75."""
    cut = (lambda lo, hi: p[:, lo:hi]) if axis == 1 else (lambda lo, hi: p[:, :, lo:hi])
    n = p.shape[axis] - 2
    a, b, c = cut(0, n), f32(0.75) * cut(1, n + 1), cut(2, n + 2)
    shape = list(p.shape)
    shape[axis] = 2 * n
    out = np.empty(shape, f32)
    if axis == 1:
        out[:, 0::2], out[:, 1::2] = f32(0.25) * a + b, b + f32(0.25) * c
    else:
        out[:, :, 0::2], out[:, :, 1::2] = f32(0.25) * a + b, b + f32(0.25) * c
    return out


def _window_max(v: np.ndarray, pad: int) -> np.ndarray:
    """(n, a - 2 pad, b - 2 pad) the (2 pad + 1)^2 maximum around each inner value of ``v`` (n, a, b)."""
    a, b = v.shape[1] - 2 * pad, v.shape[2] - 2 * pad
    across = v[:, :, :b].copy()
    for s in range(1, 2 * pad + 1):  # along x, then along y
        np.maximum(across, v[:, :, s:s + b], out=across)
    pooled = across[:, :a].copy()
    for s in range(1, 2 * pad + 1):
        np.maximum(pooled, across[:, s:s + a], out=pooled)
    return pooled


def _up2(maps: np.ndarray, mirrored: bool) -> np.ndarray:
    """(K, 2h, 2w) OpenCV's bilinear x2 of ``maps`` (K, h, w), mirrored left-right first when asked."""
    out = np.empty((maps.shape[0], 2 * maps.shape[1], 2 * maps.shape[2]), f32)
    for j, m in enumerate(maps):  # one channel at a time keeps the channel-first layout
        cv2.resize(m[:, ::-1] if mirrored else m, (out.shape[2], out.shape[1]), dst=out[j],
                   interpolation=cv2.INTER_LINEAR)
    return out


def _block(maps: np.ndarray, cells: int, th: int, tw: int, op) -> np.ndarray:
    """(K, th, tw) ``op`` (np.maximum or np.minimum) over each tile's ``cells`` x ``cells`` block of ``maps``
    (K, h, w) and the one row / column beyond each side (edge values repeat past the map)."""
    k, h, w = maps.shape
    if h != th * cells or w != tw * cells:
        maps = np.pad(maps, ((0, 0), (0, th * cells - h), (0, tw * cells - w)), mode="edge")
    for axis in (1, 2):
        def part(i, maps=maps, axis=axis):
            return maps[:, i::cells] if axis == 1 else maps[:, :, i::cells]
        m = part(0).copy()
        for i in range(1, cells):
            op(m, part(i), out=m)
        first, last = part(0), part(cells - 1)
        lead = (slice(None),) * axis
        op(m[lead + (slice(1, None),)], last[lead + (slice(None, -1),)], out=m[lead + (slice(1, None),)])
        op(m[lead + (slice(None, -1),)], first[lead + (slice(1, None),)], out=m[lead + (slice(None, -1),)])
        maps = m
    return maps


# ----------------------------------------------------------------------------------- parser steps

def top_k(maps: _Maps, bounds_heat: np.ndarray, cfg: AEGroupingConfig):
    """Step 2: NMS and the ``max_num_people`` largest kept values above the detection threshold per keypoint.

    ``bounds_heat`` is ``maps.heat_bounds()`` (which also builds the approximate map read here).

    Returns:
        val (K, M) float32 descending (0 where fewer), loc (K, M, 2) int64 x, y, tag (K, M, C) float32.
        Only values above the threshold are produced (upstream's lower entries are never used); equal values
        rank by raster order (torch.topk leaves ties unordered).
    """
    k, m = maps.k, cfg.max_num_people
    pad = cfg.nms_kernel // 2
    threshold = f32(cfg.detection_threshold)
    js, ty, tx = np.nonzero(bounds_heat > threshold)
    val = np.zeros((k, m), f32)
    loc = np.zeros((k, m, 2), np.int64)
    tag = np.zeros((k, m, len(maps.tags)), f32)
    if not len(js):
        return val, loc, tag
    # candidates from the approximate map: a pixel can pass only if it is within the rounding margin of the
    # threshold and of its window's maximum
    v = maps.approx_tiles(maps.heat_half, js, ty, tx, pad)  # (n, 16 + 2 pad, 16 + 2 pad)
    v = np.where(maps.inside(ty * TILE - pad, tx * TILE - pad, TILE + 2 * pad), v, f32(-np.inf))
    inner = v[:, pad:pad + TILE, pad:pad + TILE]
    pooled = _window_max(v, pad)
    with np.errstate(invalid="ignore"):  # -inf + inf outside the input: NaN, never a candidate
        margin = 2 * maps.heat_margin[js][:, None, None]  # the pixel's error and its window maximum's
        n_i, yy, xx = np.nonzero((inner + margin > threshold) & (inner + margin >= pooled))
    jj, ys, xs = js[n_i], ty[n_i] * TILE + yy, tx[n_i] * TILE + xx
    # exact: kept where the value is its window's maximum and above the threshold
    exact = maps.heatmap(jj, ys - pad, xs - pad, 2 * pad + 1)  # (c, k, k), -inf outside the input
    values = exact[:, pad, pad]
    keep = (values >= exact.max((1, 2))) & (values > threshold)
    return ranked(maps, cfg, jj[keep], ys[keep], xs[keep], values[keep], lambda j, y, x: maps.at(j, y, x)[1])


def ranked(maps: _Maps, cfg: AEGroupingConfig, jj, ys, xs, values, tags_at) -> tuple[np.ndarray, ...]:
    """top_k's output from the NMS peaks (keypoint jj, pixel ys, xs, value): per keypoint the ``max_num_people``
    largest, equal values in raster order; ``tags_at(jj, ys, xs)`` (n, C) reads their tags."""
    k, m = maps.k, cfg.max_num_people
    val = np.zeros((k, m), f32)
    loc = np.zeros((k, m, 2), np.int64)
    tag = np.zeros((k, m, len(maps.tags)), f32)
    order = np.lexsort((ys * maps.hw[1] + xs, -values, jj))
    jj, ys, xs, values = jj[order], ys[order], xs[order], values[order]
    rank = np.arange(len(jj)) - np.searchsorted(jj, jj, side="left")
    sel = rank < m
    jj, ys, xs, values, rank = jj[sel], ys[sel], xs[sel], values[sel], rank[sel]
    val[jj, rank] = values
    loc[jj, rank] = np.stack([xs, ys], 1)
    if len(jj):
        tag[jj, rank] = tags_at(jj, ys, xs)
    return val, loc, tag


def match_by_tag(val: np.ndarray, loc: np.ndarray, tag: np.ndarray, joint_order, cfg: AEGroupingConfig) -> np.ndarray:
    """Step 3, upstream's ``match_by_tag``: (N, K, 3 + C) float32 x, y, value, tags per person, in the order
    people are created (missing keypoints all 0).

    Keypoints are visited in ``joint_order`` (a loop: each one's assignment depends on the people so far); a
    person's key is its first tag value, as upstream's dict (a new person whose key equals an existing one's
    overwrites that person's keypoint, as there)."""
    k, c = val.shape[0], tag.shape[2]
    people: dict[float, np.ndarray] = {}
    person_tags: dict[float, list] = {}
    means: dict[float, np.ndarray] = {}
    from scipy.optimize import linear_sum_assignment

    for i, idx in enumerate(joint_order):
        keep = val[idx] > cfg.detection_threshold
        if not keep.any():
            continue
        tags = tag[idx][keep]
        joints = np.concatenate((loc[idx][keep], val[idx][keep, None], tags), 1)  # float64, as upstream
        if i == 0 or not people:
            for t, joint in zip(tags, joints):
                people.setdefault(float(t[0]), np.zeros((k, 3 + c)))[idx] = joint
                person_tags[float(t[0])] = [t]
                means.pop(float(t[0]), None)
            continue
        keys = list(people)[:cfg.max_num_people]
        grouped = np.array([_mean(means, person_tags, key) for key in keys])
        diff = np.linalg.norm(joints[:, None, 3:] - grouped[None, :, :], ord=2, axis=2)
        cost = np.round(diff) * 100 - joints[:, 2:3] if cfg.use_detection_val else diff.copy()
        added, existing = cost.shape
        if added > existing:
            cost = np.concatenate((cost, np.zeros((added, added - existing)) + 1e10), axis=1)
        if not np.isfinite(cost).all():  # (the check is 10x cheaper than nan_to_num on these small arrays)
            cost = np.nan_to_num(cost, nan=1e12, posinf=1e12, neginf=-1e12)
        rows, cols = linear_sum_assignment(cost)
        for row, col in zip(rows, cols):
            if row < added and col < existing and diff[row, col] < cfg.tag_threshold:
                key = keys[col]
                people[key][idx] = joints[row]
                person_tags[key].append(tags[row])
            else:
                key = float(tags[row][0])
                people.setdefault(key, np.zeros((k, 3 + c)))[idx] = joints[row]
                person_tags[key] = [tags[row]]
            means.pop(key, None)
    if not people:
        return np.zeros((0, k, 3 + c), f32)
    return np.array(list(people.values())).astype(f32)


def _mean(cache: dict, person_tags: dict, key: float) -> np.ndarray:
    """A person's tag: ``np.mean`` of its keypoints' tags (float32), as upstream, cached until it changes."""
    if key not in cache:
        cache[key] = np.mean(person_tags[key], axis=0)
    return cache[key]


def _quarter_shift(maps: _Maps, js, xs, ys) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """+0.25 towards the higher neighbour (else -0.25) on each axis at integer pixels, as upstream's adjust /
    refine (neighbours clamped inside the map): dx, dy, and the heatmap at the pixels themselves (one evaluation
    of the five points)."""
    h, w = maps.hw
    n = len(js)
    jj = np.tile(js, 5)
    yy = np.concatenate([ys, ys, np.minimum(ys + 1, h - 1), np.maximum(ys - 1, 0), ys])
    xx = np.concatenate([np.minimum(xs + 1, w - 1), np.maximum(xs - 1, 0), xs, xs, xs])
    v = maps.heatmap(jj, yy, xx, 1)[:, 0, 0]
    dx = np.where(v[:n] > v[n:2 * n], 0.25, -0.25)
    dy = np.where(v[2 * n:3 * n] > v[3 * n:4 * n], 0.25, -0.25)
    return dx, dy, v[4 * n:]


def adjust(maps: _Maps, grouped: np.ndarray) -> np.ndarray:
    """Step 4 (upstream's ``adjust``): every keypoint with score > 0 moves a quarter pixel towards its higher
    neighbour on each axis, then by + 0.5."""
    return adjusted(grouped, lambda j, x, y: _quarter_shift(maps, j, x, y))


def adjusted(grouped: np.ndarray, shift) -> np.ndarray:
    """adjust's work with ``shift(js, xs, ys)`` -> (dx, dy, heatmap value) at int64 pixels."""
    out = grouped.copy()
    p, j = np.nonzero(out[:, :, 2] > 0)
    if len(p):
        x, y = out[p, j, 0], out[p, j, 1]
        dx, dy, _ = shift(j, x.astype(np.int64), y.astype(np.int64))
        out[p, j, 0] = (x + dx + 0.5).astype(f32)
        out[p, j, 1] = (y + dy + 0.5).astype(f32)
    return out


def person_tags(people: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """refine's pairs: person pp, missing keypoint jj of each person with at least one keypoint, and every
    person's tag (N, C) float32, the mean of its keypoints' tags as upstream's torch.mean (a float32 sum, / n)."""
    detected = people[:, :, 2] > 0
    counts = detected.sum(1)
    tags = np.where(detected[..., None], people[:, :, 3:3 + c], f32(0))  # the final tags at the grouped pixels
    total = np.zeros((len(people), c), f32)
    for j in range(people.shape[1]):
        total = (total + tags[:, j]).astype(f32)
    prev = (total / np.maximum(counts, 1)[:, None].astype(f32)).astype(f32)
    pp, jj = np.nonzero(~detected & (counts > 0)[:, None])
    return pp, jj, prev


def refine(maps: _Maps, people: np.ndarray, bounds) -> np.ndarray:
    """Step 6 (upstream's ``refine``) for every person at once: each missing keypoint j of a person with tag t
    takes the first argmax of ``heatmap_j - round(|tag_j - t|)`` over the map when the heatmap is > 0 there.

    The argmax is searched exactly on the tiles that can hold it: a tile whose bound (heatmap bound - the
    rounded lower bound of the tag distance) is below the best exact value found is skipped."""
    out = people.copy()
    pp, jj, prev = person_tags(out, len(maps.tags))
    if not len(pp):
        return out
    heat_b, lo, hi = bounds
    th, tw = heat_b.shape[1:]
    t = prev[pp].astype(np.float64)[:, None, None, :]  # (n, 1, 1, C)
    gap = np.maximum(0, np.maximum(lo[jj] - t, t - hi[jj]))  # (n, th, tw, C)
    upper = (heat_b[jj] - np.round(np.sqrt((gap ** 2).sum(-1)))).reshape(len(pp), -1)  # (n, tiles)
    # a floor from each pair's most promising tiles: its maximum is at least this
    n = len(pp)
    n_top = min(REFINE_FLOOR_TILES, upper.shape[1])
    top = np.argpartition(-upper, n_top - 1, axis=1)[:, :n_top].ravel()  # n_top tiles per pair
    top_pair = np.repeat(np.arange(n), n_top)
    top_scored = _approx_scores(maps, jj[top_pair], *np.divmod(top, tw), prev[pp][top_pair])
    top_low, _, top_inside, _ = top_scored
    tile_low = _tile_max(top_low, top_inside).reshape(n, n_top)
    floor = tile_low.max(1)
    candidate = upper >= floor[:, None]
    candidate[np.arange(n), top.reshape(n, n_top)[np.arange(n), tile_low.argmax(1)]] = True  # the floor's own tile
    # the tiles that can hold each pair's argmax: the top ones, scored already, and the others, scored now
    top_kept = candidate[top_pair, top]
    candidate[top_pair, top] = False
    more_n, more_t = np.nonzero(candidate)
    more_scored = _approx_scores(maps, jj[more_n], *np.divmod(more_t, tw), prev[pp][more_n])
    cand_n, cand_t = np.concatenate([top_pair[top_kept], more_n]), np.concatenate([top[top_kept], more_t])
    by_pair = np.argsort(cand_n, kind="stable")  # _group_max wants each pair's tiles together
    cand_n, cand_t = cand_n[by_pair], cand_t[by_pair]
    low, high, inside, reach = (np.concatenate([a[top_kept], b])[by_pair] for a, b in zip(top_scored, more_scored))
    ty, tx = np.divmod(cand_t, tw)
    valid = inside & (reach >= floor[cand_n][:, None, None])  # pixels whose heatmap can reach the floor
    best_low = np.maximum(floor, _group_max(_tile_max(low, valid), cand_n, n))
    # pixels whose exact score can be the maximum, evaluated exactly: one by one, or as whole tiles where many are
    hits = valid & (high >= best_low[cand_n][:, None, None])
    dense = hits.sum((1, 2)) >= REFINE_DENSE_TILE
    i, py, px = np.nonzero(hits & ~dense[:, None, None])
    pair, ys, xs = cand_n[i], ty[i] * TILE + py, tx[i] * TILE + px
    heat, tag = maps.at(jj[pair], ys, xs)
    if dense.any():
        t = np.flatnonzero(dense)
        js_t, y0, x0 = jj[cand_n[t]], ty[t] * TILE, tx[t] * TILE
        i, py, px = np.nonzero(hits[t])
        heat = np.concatenate([heat, maps.heatmap(js_t, y0, x0, TILE)[i, py, px]])
        tag = np.concatenate([tag, maps.tag(js_t, y0, x0, TILE)[i, py, px]])
        pair = np.concatenate([pair, cand_n[t][i]])
        ys, xs = np.concatenate([ys, y0[i] + py]), np.concatenate([xs, x0[i] + px])
    d = tag - prev[pp][pair]
    score = heat - np.round(np.sqrt((d * d).sum(-1, dtype=f32)).astype(f32))
    flat = ys * maps.hw[1] + xs
    order = np.lexsort((flat, -score, pair))  # per pair: the best exact score, then the first pixel
    first = order[np.searchsorted(pair[order], np.arange(len(pp)))]
    flat = flat[first]
    ys, xs = np.divmod(flat, maps.hw[1])
    return fill_refined(out, pp, jj, xs, ys, _quarter_shift(maps, jj, xs, ys))


def fill_refined(out: np.ndarray, pp, jj, xs, ys, shift) -> np.ndarray:
    """refine's last step: person pp's keypoint jj takes its argmax pixel (xs, ys) + 0.5 and the quarter ``shift``
    (dx, dy, heatmap value there) where that heatmap value is > 0; ``out`` (N, K, 3 + C), written in place."""
    dx, dy, value = shift
    fill = value > 0
    p_f, j_f = pp[fill], jj[fill]
    out[p_f, j_f, 0] = (xs + 0.5 + dx)[fill]
    out[p_f, j_f, 1] = (ys + 0.5 + dy)[fill]
    out[p_f, j_f, 2] = value[fill]
    return out


def _group_max(values: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """(n,) the maximum of ``values`` per group (``groups`` sorted ascending); -inf for an empty group."""
    out = np.full(n, -np.inf)
    if len(values):
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        out[groups[starts]] = np.maximum.reduceat(values, starts)
    return out


def _tile_max(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(n,) the maximum of ``values`` (n, 16, 16) where ``valid`` per tile; -inf where none is."""
    return np.where(valid, values, f32(-np.inf)).reshape(len(values), -1).max(1, initial=-np.inf)


def _reference_bounds(maps: _Maps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tile bounds the NumPy steps use: heatmap upper (K, th, tw), tags lower and upper (K, th, tw, C) (all
    NaN when the heads are not finite)."""
    if not maps.finite:
        nan = np.full(1, np.nan, f32)
        return nan, nan, nan
    return (maps.heat_bounds(), *maps.tag_bounds())


def _approx_scores(maps: _Maps, js, ty, tx, person_tag):
    """Lower and upper bounds (n, 16, 16) of the exact ``heatmap - round(|tag - person_tag|)`` on the
    (keypoint, tile) pairs from the approximate maps (their rounding error with a wide margin, and both roundings
    of a distance within it of a half), which pixels are inside the input (n, 16, 16), and an upper bound of the
    exact heatmap there (n, 16, 16). Whole tiles at once: the approximate tags come from the same local x2 as the
    heatmap."""
    heat = maps.approx_tiles(maps.heat_half, js, ty, tx)
    e_heat = maps.heat_margin[js][:, None, None]
    inside = ((ty[:, None, None] * TILE + np.arange(TILE)[None, :, None] < maps.hw[0])
              & (tx[:, None, None] * TILE + np.arange(TILE)[None, None, :] < maps.hw[1]))
    d2 = np.zeros_like(heat)
    err = np.zeros_like(heat)
    for c, half in enumerate(maps.tags_half):
        tag = maps.approx_tiles(half, js, ty, tx)
        d = tag - person_tag[:, c].astype(f32)[:, None, None]
        d2 += d * d
        err += f32(1e-5) * (1 + np.abs(tag))
    dist = np.sqrt(d2)
    low = heat - e_heat - np.round(dist + err)
    high = heat + e_heat - np.round(np.maximum(dist - err, 0))
    return low, high, inside, heat + e_heat


# ------------------------------------------------------------------------------------------- codec

class AECodec(Codec):
    """Encoder / decoder for Lite Pose's associative-embedding heads; a :class:`~.base.Codec`.

    Args:
        input_hw: network input (H, W) in pixels, multiples of 4 (decode reads the size from the heads).
        num_keypoints: K (14 for CrowdPose-14, 17 for COCO-17); at least 13, so that ``joint_order`` is a
            permutation.
        flip_index: K, the skeleton's left-right permutation, needed for the flip test.
        joint_order: the order keypoints are grouped in (default: upstream's, the first K of COCO's order).
        grouping: decoding constants (upstream's test settings by default).
        targets: how ``encode`` draws targets.
    """

    kind = "multi"

    def __init__(self, input_hw: tuple[int, int], num_keypoints: int = 14, flip_index=None, joint_order=None,
                 grouping: AEGroupingConfig | None = None, targets: AETargetConfig | None = None):
        if input_hw[0] % 4 or input_hw[1] % 4:
            raise ValueError(f"input size {tuple(input_hw)} must be multiples of 4 (the heads' stride)")
        order = tuple(int(v) for v in (joint_order if joint_order is not None
                                       else [j for j in COCO_JOINT_ORDER if j < num_keypoints]))
        if sorted(order) != list(range(num_keypoints)):
            raise ValueError(f"joint_order must be a permutation of 0..{num_keypoints - 1}, got {order} (give one "
                             f"for K={num_keypoints})")
        if flip_index is not None and sorted(int(v) for v in flip_index) != list(range(num_keypoints)):
            raise ValueError(f"flip_index must be a permutation of 0..{num_keypoints - 1}, got {list(flip_index)}")
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.num_keypoints = int(num_keypoints)
        self.flip_index = None if flip_index is None else tuple(int(v) for v in flip_index)
        self.joint_order = order
        self.grouping = grouping or AEGroupingConfig()
        self.targets = targets or AETargetConfig()

    def to_dict(self) -> dict[str, Any]:
        """The settings that rebuild this codec (weight-file metadata 'codec'); input size and K come from the
        model config."""
        return {"flip_index": None if self.flip_index is None else list(self.flip_index),
                "joint_order": list(self.joint_order), "grouping": asdict(self.grouping),
                "targets": asdict(self.targets)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], input_hw: tuple[int, int], num_keypoints: int,
                  arrays: dict[str, np.ndarray] | None = None) -> AECodec:
        """The codec :meth:`to_dict` describes.

        Raises:
            TypeError, ValueError: ``d`` has an unknown key or a bad value.
        """
        args = dict(d)
        grouping, targets = args.pop("grouping", None), args.pop("targets", None)
        return cls(input_hw, num_keypoints, grouping=AEGroupingConfig(**grouping) if grouping else None,
                   targets=AETargetConfig(**targets) if targets else None, **args)

    def head_shapes(self) -> dict[str, tuple[int, ...]]:
        """The raw heads :meth:`decode` takes, name -> (C, h, w) (the flip heads, optional, have the same)."""
        h, w = self.input_hw
        return {"heatmaps_tags": (2 * self.num_keypoints, h // 4, w // 4), "heatmaps": (self.num_keypoints, h // 2, w // 2)}

    # ---- decode
    def parse(self, heads: dict[str, np.ndarray], reference: bool = False) -> dict[str, np.ndarray]:
        """Every stage of upstream's parser (for tests and inspection): ``val`` (K, M), ``loc`` (K, M, 2),
        ``tag`` (K, M, C) top-k; ``grouped``, ``adjusted``, ``refined`` (N, K, 3 + C) input pixels; ``scores``
        (N,) person scores (mean keypoint score after adjust). ``reference``: the NumPy steps of this module in
        place of the compiled ones (:mod:`.ae_compiled`), which give the same arrays."""
        cfg = self.grouping
        flip = None if self.flip_index is None else np.array(self.flip_index)
        if reference:
            steps, bounds_of = sys.modules[__name__], _reference_bounds
        else:
            from . import ae_compiled as steps
            bounds_of = steps.bounds
        with np.errstate(over="ignore", invalid="ignore"):
            maps = _Maps(heads, self.num_keypoints, flip)
            bounds = bounds_of(maps)
            if not all(np.isfinite(b).all() for b in bounds):  # NaN / inf heads: the tile search needs finite maps
                heads = {k: np.nan_to_num(np.asarray(v, f32), nan=0, posinf=1e6, neginf=-1e6) for k, v in heads.items()}
                maps = _Maps(heads, self.num_keypoints, flip)
                bounds = bounds_of(maps)
            val, loc, tag = steps.top_k(maps, bounds[0], cfg)
            grouped = match_by_tag(val, loc, tag, self.joint_order, cfg)
            adjusted = steps.adjust(maps, grouped) if cfg.adjust else grouped
            scores = adjusted[:, :, 2].mean(1).astype(f32) if len(adjusted) else np.zeros(0, f32)
            refined = steps.refine(maps, adjusted, bounds) if cfg.refine else adjusted
        return {"val": val, "loc": loc, "tag": tag, "grouped": grouped, "adjusted": adjusted, "refined": refined,
                "scores": scores}

    def decode(self, heads: dict[str, np.ndarray]) -> Decoded:
        """Heads (batch axis dropped; with the flip heads, upstream's flip test) -> people in input pixels:
        keypoints (N, K, 3) x, y, score (missing keypoints (0, 0, 0)), scores (N,) upstream's person score (the
        mean keypoint score before refine), no boxes. Scores are clipped to [0, 1]; NaN heads give no NaN."""
        out = self.parse(heads)
        kp = out["refined"][:, :, :3].astype(f32)
        kp[..., 2] = np.clip(np.nan_to_num(kp[..., 2]), 0, 1)
        kp[kp[..., 2] <= 0] = 0
        scores = np.clip(np.nan_to_num(out["scores"]), 0, 1).astype(f32)
        return Decoded(keypoints=kp, boxes=None, scores=scores)

    # ---- encode
    def encode(self, keypoints: np.ndarray, ignore: np.ndarray | None = None,
               boxes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Training targets for one input (upstream's ``HeatmapGenerator`` and ``JointsGenerator``).

        Args:
            keypoints: (N, K, 3) x, y, v in input pixels; v > 0 is labelled.
            ignore: optional (H, W) bool, True on crowds and unlabelled people.
            boxes: not used.

        Returns:
            heatmaps_4 (K, H/4, W/4), heatmaps_2 (K, H/2, W/2): per keypoint a Gaussian of sigma ``sigma`` cells,
                peak 1 at the cell ``int(x * scale)``, cut to the (6 sigma + 3)^2 square, max over people;
            joints (M, K, 2) int64: per person (first M) and labelled keypoint on the 1/4 map, (k * h * w + y * w
                + x, 1) packed to the front of the row, (0, 0) after (the tag loss's indices);
            mask_4 (H/4, W/4), mask_2 (H/2, W/2) float32: 0 where ``ignore`` covers the cell (nearest sample of
                the mask at the cell's position), else 1.
        """
        kp = np.asarray(keypoints, np.float64)
        if kp.ndim != 3 or kp.shape[1:] != (self.num_keypoints, 3):
            raise ValueError(f"AECodec.encode takes keypoints (N, {self.num_keypoints}, 3), got shape {kp.shape}")
        out = {}
        for stride in (4, 2):
            h, w = self.input_hw[0] // stride, self.input_hw[1] // stride
            out[f"heatmaps_{stride}"] = gaussian_targets(kp, stride, (h, w), self.targets.sigma)
            mask = np.ones((h, w), f32)
            if ignore is not None:
                ig = np.asarray(ignore).astype(bool)
                ys = np.minimum((np.arange(h) * stride * ig.shape[0] / self.input_hw[0]).astype(int), ig.shape[0] - 1)
                xs = np.minimum((np.arange(w) * stride * ig.shape[1] / self.input_hw[1]).astype(int), ig.shape[1] - 1)
                mask[ig[ys][:, xs]] = 0
            out[f"mask_{stride}"] = mask
        out["joints"] = joint_indices(kp, 4, (self.input_hw[0] // 4, self.input_hw[1] // 4),
                                      self.targets.max_num_people)
        return out


def _cells(kp: np.ndarray, stride: int, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upstream's cell of each keypoint (``int(x * scale)``, truncated toward 0) and whether it is labelled
    and on the map: x (N, K), y (N, K) int64, ok (N, K)."""
    with np.errstate(invalid="ignore"):
        x = np.trunc(np.nan_to_num(kp[..., 0] / stride, nan=-1, posinf=-1, neginf=-1))
        y = np.trunc(np.nan_to_num(kp[..., 1] / stride, nan=-1, posinf=-1, neginf=-1))
    ok = (kp[..., 2] > 0) & (x >= 0) & (y >= 0) & (x < hw[1]) & (y < hw[0])
    return np.where(ok, x, 0).astype(np.int64), np.where(ok, y, 0).astype(np.int64), ok


def gaussian_targets(kp: np.ndarray, stride: int, hw: tuple[int, int], sigma: float) -> np.ndarray:
    """(K, h, w) float32 upstream heatmaps: exp(-d^2 / (2 sigma^2)) around each labelled keypoint's cell, within
    the square of cells |dx|, |dy| <= round(3 sigma + 1) (upstream's patch), max over people."""
    x, y, ok = _cells(kp, stride, hw)
    h, w = hw
    k = kp.shape[1]
    out = np.zeros((k, h, w), f32)
    if not ok.any():
        return out
    n_i, k_i = np.nonzero(ok)
    cx, cy = x[n_i, k_i], y[n_i, k_i]
    lo = int(np.round(-3 * sigma - 1))  # upstream's patch: cells x + lo .. x + hi - 1 around the cell x
    hi = int(np.round(3 * sigma + 2))
    centre = 3 * sigma + 1  # the Gaussian's centre in patch coordinates (patch index = offset - lo)

    def along(c: np.ndarray, n: int) -> np.ndarray:  # (P, n) one axis of each Gaussian
        d = np.arange(n)[None, :] - c[:, None]
        return np.where((d >= lo) & (d < hi), np.exp(-((d - lo) - centre) ** 2 / (2 * sigma ** 2)), 0)

    g = (along(cy, h)[:, :, None] * along(cx, w)[:, None, :]).astype(f32)  # (P, h, w), separable
    np.maximum.at(out, k_i, g)
    return out


def joint_indices(kp: np.ndarray, stride: int, hw: tuple[int, int], max_people: int) -> np.ndarray:
    """(M, K, 2) int64 upstream ``JointsGenerator`` rows: per person, its labelled on-map keypoints' flat indices
    ``k * h * w + y * w + x`` with a 1, packed to the front in keypoint order."""
    x, y, ok = _cells(kp, stride, hw)
    n, k = ok.shape
    out = np.zeros((max_people, k, 2), np.int64)
    n = min(n, max_people)
    ok = ok[:n]
    flat = np.arange(k)[None] * hw[0] * hw[1] + y[:n] * hw[1] + x[:n]
    slot = np.cumsum(ok, 1) - 1
    p, j = np.nonzero(ok)
    out[p, slot[p, j], 0] = flat[p, j]
    out[p, slot[p, j], 1] = 1
    return out
