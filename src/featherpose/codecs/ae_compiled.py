"""Lite Pose's AE decode steps compiled with numba: the tile bounds, top-k, adjust and refine, each returning what
its NumPy reference in :mod:`.associative_embedding` returns (bit for bit: the same float32 arithmetic as torch's
bilinear, the same tie order).

Where the reference picks pixels with an approximate map and checks them exactly in array calls, these loops
evaluate whole 16 x 16 tiles exactly (from the quarter- and half-resolution heads; nothing is built whole) and
prune with tile bounds: no approximation step, no per-call NumPy overhead. Refine is a branch and bound per
(person, missing keypoint): tiles by descending bound, stopping below the best exact score found; a (keypoint,
tile) evaluated for one person is kept for the others.

Sources (see ``_Maps``): heatmap ``quarter`` (S, K, h, w) and ``half`` (S, K, 2h, 2w), S = 1, or 2 with the flip
test (source 1 is the mirrored input's, read mirrored); tags (C, K, h, w), one source per tag dimension (tag 1 is
the mirrored one), with a (1, 1, 1, 1) placeholder for the half maps they do not have.
"""
from __future__ import annotations

import logging

import numba as nb
import numpy as np

from ..skeletons import CROWDPOSE14
from .associative_embedding import AECodec, adjusted, fill_refined, person_tags, ranked

f32 = np.float32
TILE = 16
_jit = nb.njit(cache=True, nogil=True)  # compiled on first use, cached next to this file (or in NUMBA_CACHE_DIR)
log = logging.getLogger(__name__)


@_jit
def _lerp(a, b, wa, wb):
    """``a * wa + b * wb`` as torch's CPU kernel rounds it (see ``associative_embedding._lerp``)."""
    return np.float32(np.float64(a) * np.float64(wa) + np.float64(np.float32(b * wb)))


@_jit
def _source(o, n):
    """torch's bilinear x2 (align_corners=False) sources of output o from n inputs: i0, i1 and their weights
    (``associative_embedding._lerp_index`` in closed form: the weights are 1 / 0 at o = 0, then 0.25 / 0.75)."""
    if o == 0:
        return 0, min(1, n - 1), np.float32(1), np.float32(0)
    i0 = (o - 1) // 2
    w1 = np.float32(0.75) if o % 2 == 0 else np.float32(0.25)
    return i0, min(i0 + 1, n - 1), np.float32(1) - w1, w1


@_jit
def _block(quarter, half, s, j, y0, x0, sy, sx, out):
    """out[:sy, :sx] = exact final values of source s (its half-resolution maps ``half[s]`` are averaged in when
    ``half`` has them; source 1 is mirrored left-right), keypoint j, on pixels y0.., x0.. (clamped inside).

    Each x2 lerps along rows first, then between the two rows (the reference's order, which rounds as torch
    does); a source row's lerps are made once for the output rows that read it."""
    nq, mq = quarter.shape[2], quarter.shape[3]
    nh, mh = 2 * nq, 2 * mq
    mirrored = s == 1
    has_half = half.shape[2] == nh
    ya, yb = min(max(y0, 0), 2 * nh - 1), min(max(y0 + sy - 1, 0), 2 * nh - 1)
    xa, xb = min(max(x0, 0), 2 * mh - 1), min(max(x0 + sx - 1, 0), 2 * mh - 1)
    h0, h1 = _source(ya, nh)[0], _source(yb, nh)[1]  # the half cells read
    w0, w1 = _source(xa, mh)[0], _source(xb, mh)[1]
    q0, q1 = _source(h0, nq)[0], _source(h1, nq)[1]  # the quarter rows they read
    nw = w1 - w0 + 1
    # half cells from quarter cells: columns, then rows
    c0, c1 = np.empty(nw, np.int64), np.empty(nw, np.int64)
    ca, cb = np.empty(nw, np.float32), np.empty(nw, np.float32)
    for x in range(nw):
        hc = w0 + x
        c0[x], c1[x], ca[x], cb[x] = _source(mh - 1 - hc if mirrored else hc, mq)
    across = np.empty((q1 - q0 + 1, nw), np.float32)
    for r in range(q0, q1 + 1):
        row = quarter[s, j, r]
        for x in range(nw):
            across[r - q0, x] = _lerp(row[c0[x]], row[c1[x]], ca[x], cb[x])
    buf = np.empty((h1 - h0 + 1, nw), np.float32)
    for hr in range(h0, h1 + 1):
        r0, r1, a, b = _source(hr, nq)
        top, bottom, dst = across[r0 - q0], across[r1 - q0], buf[hr - h0]
        for x in range(nw):
            dst[x] = _lerp(top[x], bottom[x], a, b)
        if has_half:
            h = half[s, j, hr]
            for x in range(nw):
                dst[x] = np.float32(dst[x] + h[mh - 1 - (w0 + x) if mirrored else w0 + x]) / np.float32(2)
    # pixels from half cells: columns, then rows
    k0, k1 = np.empty(sx, np.int64), np.empty(sx, np.int64)
    ka, kb = np.empty(sx, np.float32), np.empty(sx, np.float32)
    for k in range(sx):
        k0[k], k1[k], ka[k], kb[k] = _source(min(max(x0 + k, 0), 2 * mh - 1), mh)
        k0[k] -= w0
        k1[k] -= w0
    across = np.empty((h1 - h0 + 1, sx), np.float32)
    for r in range(h1 - h0 + 1):
        row = buf[r]
        for k in range(sx):
            across[r, k] = _lerp(row[k0[k]], row[k1[k]], ka[k], kb[k])
    for i in range(sy):
        r0, r1, a, b = _source(min(max(y0 + i, 0), 2 * nh - 1), nh)
        top, bottom, dst = across[r0 - h0], across[r1 - h0], out[i]
        for k in range(sx):
            dst[k] = _lerp(top[k], bottom[k], a, b)


@_jit
def _heat_block(quarter, half, j, y0, x0, sy, sx, out, scratch):
    """out[:sy, :sx] = the final heatmap (the sources' mean) of keypoint j; -inf outside the input."""
    for s in range(quarter.shape[0]):  # one call site: numba and LLVM compile _block once here
        _block(quarter, half, s, j, y0, x0, sy, sx, scratch if s else out)
    if quarter.shape[0] == 2:
        for i in range(sy):
            for k in range(sx):
                out[i, k] = np.float32(out[i, k] + scratch[i, k]) / np.float32(2)
    ny, nx = 4 * quarter.shape[2], 4 * quarter.shape[3]
    for i in range(sy):
        for k in range(sx):
            if y0 + i < 0 or y0 + i >= ny or x0 + k < 0 or x0 + k >= nx:
                out[i, k] = -np.inf


@_jit
def _tag_block(tags, j, y0, x0, sy, sx, out, no_half):
    """out[c, :sy, :sx] = the final tags of keypoint j (edge values outside the input); tags (C, K, h, w)."""
    for c in range(tags.shape[0]):
        _block(tags, no_half, c, j, y0, x0, sy, sx, out[c])


@_jit
def _half_cell(quarter, half, s, j, hr, hc):
    """The exact half-resolution value of source s, keypoint j, at cell (hr, hc) (as :func:`_block`)."""
    nq, mq = quarter.shape[2], quarter.shape[3]
    mh = 2 * mq
    hm = mh - 1 - hc if s == 1 else hc
    r0, r1, a, b = _source(hr, nq)
    c0, c1, ca, cb = _source(hm, mq)
    v = _lerp(_lerp(quarter[s, j, r0, c0], quarter[s, j, r0, c1], ca, cb),
              _lerp(quarter[s, j, r1, c0], quarter[s, j, r1, c1], ca, cb), a, b)
    if half.shape[2] == 2 * nq:
        v = np.float32(v + half[s, j, hr, hm]) / np.float32(2)
    return v


@_jit
def _point(quarter, half, s, j, y, x):
    """The exact final value of source s, keypoint j, at pixel (y, x) inside the input (as :func:`_block`)."""
    r0, r1, a, b = _source(y, 2 * quarter.shape[2])
    c0, c1, ca, cb = _source(x, 2 * quarter.shape[3])
    return _lerp(_lerp(_half_cell(quarter, half, s, j, r0, c0), _half_cell(quarter, half, s, j, r0, c1), ca, cb),
                 _lerp(_half_cell(quarter, half, s, j, r1, c0), _half_cell(quarter, half, s, j, r1, c1), ca, cb),
                 a, b)


@_jit
def _heat_point(quarter, half, j, y, x):
    """The final heatmap (the sources' mean) of keypoint j at pixel (y, x) inside the input."""
    v = _point(quarter, half, 0, j, y, x)
    if quarter.shape[0] == 2:
        v = np.float32(v + _point(quarter, half, 1, j, y, x)) / np.float32(2)
    return v


@_jit
def tags_at(tq, js, ys, xs):
    """Final tags (n, C) of keypoints js at pixels (ys, xs) inside the input."""
    n, c = len(js), tq.shape[0]
    tag = np.empty((n, c), np.float32)
    no_half = np.empty((1, 1, 1, 1), np.float32)
    for i in range(n):
        for d in range(c):
            tag[i, d] = _point(tq, no_half, d, js[i], ys[i], xs[i])
    return tag


@_jit
def quarter_shift(hq, hh, js, xs, ys):
    """+-0.25 towards the higher neighbour on each axis (neighbours clamped inside the map) and the heatmap at
    the pixel, as ``associative_embedding._quarter_shift``."""
    ny, nx = 4 * hq.shape[2], 4 * hq.shape[3]
    n = len(js)
    dx, dy, value = np.empty(n), np.empty(n), np.empty(n, np.float32)
    for i in range(n):
        j, x, y = js[i], xs[i], ys[i]
        right, left = _heat_point(hq, hh, j, y, min(x + 1, nx - 1)), _heat_point(hq, hh, j, y, max(x - 1, 0))
        below, above = _heat_point(hq, hh, j, min(y + 1, ny - 1), x), _heat_point(hq, hh, j, max(y - 1, 0), x)
        dx[i] = 0.25 if right > left else -0.25
        dy[i] = 0.25 if below > above else -0.25
        value[i] = _heat_point(hq, hh, j, y, x)
    return dx, dy, value


@_jit
def nms_candidates(hq, hh, js, ty, tx, threshold, pad):
    """Every pixel of the tiles (js, ty, tx) above ``threshold`` that is its (2 pad + 1)^2 window's maximum (-inf
    outside the input): keypoint, y, x, value."""
    size = np.int64(TILE) + 2 * pad
    v, scratch = np.empty((size, size), np.float32), np.empty((size, size), np.float32)
    found = np.empty((64, 3), np.int64)
    values = np.empty(64, np.float32)
    n = 0
    for t in range(len(js)):
        y0, x0 = ty[t] * TILE - pad, tx[t] * TILE - pad
        _heat_block(hq, hh, js[t], y0, x0, size, size, v, scratch)
        for i in range(pad, pad + TILE):
            for k in range(pad, pad + TILE):
                c = v[i, k]
                if not c > threshold:
                    continue
                peak = True
                for a in range(i - pad, i + pad + 1):
                    for b in range(k - pad, k + pad + 1):
                        peak = peak and not v[a, b] > c
                if not peak:
                    continue
                if n == len(values):
                    found, values = _grow(found, 2 * n), _grow(values, 2 * n)
                found[n, 0], found[n, 1], found[n, 2] = js[t], y0 + i, x0 + k
                values[n] = c
                n += 1
    return found[:n, 0].copy(), found[:n, 1].copy(), found[:n, 2].copy(), values[:n].copy()


@_jit
def _grow(a, rows):
    """``a`` with ``rows`` rows, the first len(a) copied."""
    out = np.empty((rows,) + a.shape[1:], a.dtype)
    flat, old = out.reshape(-1), a.reshape(-1)
    for i in range(len(old)):
        flat[i] = old[i]
    return out


@_jit
def refine_argmax(hq, hh, tq, heat_b, lo, hi, pair_tag, jj):
    """Per pair n (keypoint jj[n], person tag pair_tag[n]): the first pixel (raster order) of the maximum of
    ``heatmap - round(|tag - person tag|)`` inside the input, as the flat index y * W + x.

    Branch and bound over 16 x 16 tiles: a tile's bound is its heatmap bound minus the rounded lower bound of its
    tag distance (float64, as the reference); tiles are searched by descending bound while the bound can reach the
    best exact score found. A (keypoint, tile)'s exact heatmap and tags are evaluated once for all pairs."""
    ny, nx = 4 * hq.shape[2], 4 * hq.shape[3]
    k, th, tw = heat_b.shape
    c = lo.shape[3]
    slot = np.full((k, th, tw), -1, np.int64)
    cache_h = np.empty((32, TILE, TILE), np.float32)
    cache_t = np.empty((32, c, TILE, TILE), np.float32)
    used = 0
    scratch, no_half = np.empty((TILE, TILE), np.float32), np.empty((1, 1, 1, 1), np.float32)
    n = len(jj)
    tile = np.int64(TILE)
    best_flat = np.full(n, -1, np.int64)
    upper = np.empty(th * tw)
    for p in range(n):
        j = jj[p]
        heat_j, lo_j, hi_j = heat_b[j].reshape(-1), lo[j].reshape(-1, c), hi[j].reshape(-1, c)
        for t in range(th * tw):  # vectorised (np.rint: half to even, as np.round)
            g2 = 0.0
            for d in range(c):
                tv = np.float64(pair_tag[p, d])
                gap = max(0.0, np.float64(lo_j[t, d]) - tv, tv - np.float64(hi_j[t, d]))
                g2 += gap * gap
            upper[t] = np.float64(heat_j[t]) - np.rint(np.sqrt(g2))
        best = -np.inf
        flat_best = -1
        while True:
            t = np.argmax(upper)
            if upper[t] == -np.inf or upper[t] < best:
                break
            upper[t] = -np.inf
            a, b = t // tw, t % tw
            s = slot[j, a, b]
            if s < 0:
                if used == len(cache_h):
                    cache_h, cache_t = _grow(cache_h, 2 * used), _grow(cache_t, 2 * used)
                s = used
                used += 1
                slot[j, a, b] = s
                _heat_block(hq, hh, j, a * TILE, b * TILE, tile, tile, cache_h[s], scratch)
                _tag_block(tq, j, a * TILE, b * TILE, tile, tile, cache_t[s], no_half)
            for i in range(min(TILE, ny - a * TILE)):
                for q in range(min(TILE, nx - b * TILE)):
                    d2 = np.float32(0)
                    for d in range(c):
                        diff = np.float32(cache_t[s, d, i, q] - pair_tag[p, d])
                        d2 = np.float32(d2 + np.float32(diff * diff))
                    score = np.float32(cache_h[s, i, q] - np.float32(np.rint(np.sqrt(d2))))
                    flat = (a * TILE + i) * nx + b * TILE + q
                    if score > best or (score == best and flat < flat_best):
                        best, flat_best = score, flat
        best_flat[p] = flat_best
    return best_flat


@_jit
def tile_range(maps, cells, th, tw):
    """(K, th, tw) maximum and minimum of (K, h, w) ``maps`` over each tile's ``cells`` x ``cells`` block and the
    row / column beyond each side (clamped): the cells that a 16 x 16 tile's final values read (4 quarter or 8
    half cells). NaN propagates."""
    k, h, w = maps.shape
    hi, lo = np.empty((k, th, tw), np.float32), np.empty((k, th, tw), np.float32)
    row_hi, row_lo = np.empty(w, np.float32), np.empty(w, np.float32)
    for j in range(k):
        for ty in range(th):
            r0, r1 = min(max(cells * ty - 1, 0), h - 1), min(cells * ty + cells, h - 1)
            first = maps[j, r0]
            for x in range(w):
                row_hi[x] = row_lo[x] = first[x]
            for r in range(r0 + 1, r1 + 1):
                row = maps[j, r]
                for x in range(w):  # elementwise loops (vectorised); a NaN stays
                    a, v = row_hi[x], row[x]
                    row_hi[x] = a if a >= v or a != a else v
                for x in range(w):
                    b, v = row_lo[x], row[x]
                    row_lo[x] = b if b <= v or b != b else v
            _tile_reduce(row_hi, cells, hi[j, ty], False)
            _tile_reduce(row_lo, cells, lo[j, ty], True)
    return hi, lo


@_jit
def heat_tile_max(quarter, half, mirrored, th, tw):
    """Per keypoint and tile the maximum over the tile's 8 x 8 half-resolution cells and one beyond each side of
    the approximate half-resolution heatmap ``(up2(quarter) + half) / 2`` (float32, another rounding than
    torch's), (K, th, tw), and per keypoint max |quarter| + max |half| (K,), the scale of that rounding. The half
    map of a ``mirrored`` source is read in the unmirrored frame. NaN propagates; inf shows in the scale."""
    k, hq, wq = quarter.shape
    hh, wh = 2 * hq, 2 * wq
    out = np.empty((k, th, tw), np.float32)
    scale = np.empty(k, np.float32)
    cells = np.int64(TILE // 2)
    col, values, acc = np.empty(wq + 2, np.float32), np.empty(wh, np.float32), np.empty(wh, np.float32)
    for j in range(k):
        scale[j] = _abs_max(quarter[j]) + _abs_max(half[j])
        for ty in range(th):
            r0, r1 = min(max(8 * ty - 1, 0), hh - 1), min(8 * ty + 8, hh - 1)
            acc[:] = -np.inf
            for hr in range(r0, r1 + 1):
                i0, i1, w0, w1 = _source(hr, hq)
                a, b, h = quarter[j, i0], quarter[j, i1], half[j, hr]
                for m in range(wq):  # the half row: rows first, then columns (edge cells repeat)
                    col[m + 1] = w0 * a[m] + w1 * b[m]
                col[0], col[wq + 1] = col[1], col[wq]
                for m in range(wq):
                    c = np.float32(0.75) * col[m + 1]
                    values[2 * m] = np.float32(0.5) * (np.float32(0.25) * col[m] + c + h[2 * m])
                    values[2 * m + 1] = np.float32(0.5) * (c + np.float32(0.25) * col[m + 2] + h[2 * m + 1])
                if mirrored:
                    for x in range(wh):
                        v, a_ = values[wh - 1 - x], acc[x]
                        acc[x] = a_ if a_ >= v or a_ != a_ else v
                else:
                    for x in range(wh):  # elementwise (vectorised); a NaN stays
                        v, a_ = values[x], acc[x]
                        acc[x] = a_ if a_ >= v or a_ != a_ else v
            _tile_reduce(acc, cells, out[j, ty], False)
    return out, scale


@_jit
def _abs_max(m):
    """max |m| of a 2-D array (NaN when one is NaN)."""
    acc = np.zeros(m.shape[1], np.float32)
    for r in range(m.shape[0]):
        row = m[r]
        for x in range(m.shape[1]):  # elementwise (vectorised)
            v, a = abs(row[x]), acc[x]
            acc[x] = a if a >= v or a != a else v
    out = np.float32(0)
    for x in range(m.shape[1]):
        out = out if out >= acc[x] or out != out else acc[x]
    return out


@_jit
def _tile_reduce(row, cells, out, smallest):
    """out[tx] = max (min when ``smallest``) of ``row`` over cells * tx - 1 .. cells * tx + cells (clamped); a NaN
    stays."""
    w = len(row)
    for tx in range(len(out)):
        out[tx] = row[min(cells * tx, w - 1)]
    for i in range(-1, cells + 1):  # the tiles side by side: independent chains
        for tx in range(len(out)):
            v, a = row[min(max(cells * tx + i, 0), w - 1)], out[tx]
            out[tx] = a if (a <= v if smallest else a >= v) or a != a else v


# ------------------------------------------------------------------ the steps, as the reference's signatures

def sources(maps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernels' heatmap sources (quarter (S, K, h, w), half (S, K, 2h, 2w)) and tag sources (C, K, h, w) of a
    ``_Maps``, built once (copies only with the flip test)."""
    if getattr(maps, "_compiled", None) is None:
        _announce_compiling()

        def stack(arrays):
            return np.ascontiguousarray(arrays[0][None] if len(arrays) == 1 else np.stack(arrays), f32)
        hq = stack([q for q, _, _ in maps.heat])
        hh = stack([h[:, :, ::-1] if m else h for _, h, m in maps.heat])  # unmirrored: the kernel mirrors
        tq = stack([q for q, _, _ in maps.tags])
        maps._compiled = hq, hh, tq
    return maps._compiled


def bounds(maps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per keypoint and 16 x 16 tile an upper bound of the final heatmap (K, th, tw) and lower and upper bounds of
    each tag dimension (K, th, tw, C). A bilinear value lies within its sources' range, up to float32 rounding at
    the sources' magnitude (the margins): the heatmap's bound is the maximum of the approximate half-resolution
    heatmap over the cells the tile reads (as ``_Maps.heat_bounds``, in one pass), the tags' the range of the
    quarter-resolution cells they read (4 x 4 and one beyond each side). NaN or inf in the heads shows as a
    non-finite bound."""
    hq, hh, tq = sources(maps)
    th, tw = -(-maps.hw[0] // TILE), -(-maps.hw[1] // TILE)

    def ranges(arrays, mirrored, cells):  # a mirrored source reads the mirror of the unmirrored block's cells
        return [tile_range(np.ascontiguousarray(a[:, :, ::-1]) if m else a, cells, th, tw)
                for a, m in zip(arrays, mirrored)]

    mirrored = [s == 1 for s in range(len(hq))]
    heat = f32(0)
    scale = f32(0)
    for quarter, half, m in zip(hq, hh, mirrored):
        tile_max, source_scale = heat_tile_max(quarter, half, m, th, tw)
        heat = heat + tile_max / f32(len(hq))
        scale = scale + source_scale
    heat = heat + (f32(1e-5) * (1 + scale))[:, None, None]
    t_hi, t_lo = (np.stack(v, -1) for v in zip(*ranges(tq, mirrored, 4)))
    return heat, t_lo - f32(1e-5) * (1 + np.abs(t_lo)), t_hi + f32(1e-5) * (1 + np.abs(t_hi))


_announced = False


def _announce_compiling() -> None:
    """Say so, once per process, when numba has no cache of these kernels yet: their first compilation takes
    15-30 s (the Makefile's compile target does it: :func:`warm_up`)."""
    global _announced
    if _announced:
        return
    _announced = True
    try:  # numba's cache index of this file as it is now (empty when missing or stale)
        cached = bool(refine_argmax._cache._cache_file._load_index())
    except Exception:  # another numba's internals: say nothing
        cached = True
    if not cached:
        log.warning("compiling Lite Pose's decoder (numba, once per installation: 15-30 s)")


def warm_up() -> None:
    """Compile (or load from the cache) every kernel: a decode of small synthetic heads with the flip test."""
    rng = np.random.default_rng(0)
    heads = {"heatmaps_tags": rng.random((28, 8, 8), f32), "heatmaps": rng.random((14, 16, 16), f32)}
    heads.update({f"{k}_flip": v[:, :, ::-1].copy() for k, v in heads.items()})
    AECodec((32, 32), 14, flip_index=CROWDPOSE14.flip_index()).decode(heads)


def _ints(a) -> np.ndarray:
    return np.ascontiguousarray(a, np.int64)


def top_k(maps, bounds_heat: np.ndarray, cfg):
    """``associative_embedding.top_k``, compiled: the same val, loc, tag."""
    hq, hh, tq = sources(maps)
    js, ty, tx = (_ints(v) for v in np.nonzero(bounds_heat > f32(cfg.detection_threshold)))
    jj, ys, xs, values = nms_candidates(hq, hh, js, ty, tx, f32(cfg.detection_threshold), cfg.nms_kernel // 2)
    return ranked(maps, cfg, jj, ys, xs, values, lambda j, y, x: tags_at(tq, _ints(j), _ints(y), _ints(x)))


def adjust(maps, grouped: np.ndarray) -> np.ndarray:
    """``associative_embedding.adjust``, compiled."""
    hq, hh, _ = sources(maps)
    return adjusted(grouped, lambda j, x, y: quarter_shift(hq, hh, _ints(j), _ints(x), _ints(y)))


def refine(maps, people: np.ndarray, bounds) -> np.ndarray:
    """``associative_embedding.refine``, compiled."""
    out = people.copy()
    pp, jj, prev = person_tags(out, len(maps.tags))
    if not len(pp):
        return out
    hq, hh, tq = sources(maps)
    heat_b, lo, hi = (np.ascontiguousarray(b, f32) for b in bounds)
    jj = _ints(jj)
    flat = refine_argmax(hq, hh, tq, heat_b, lo, hi, np.ascontiguousarray(prev[pp], f32), jj)
    ys, xs = np.divmod(flat, maps.hw[1])
    return fill_refined(out, pp, jj, xs, ys, quarter_shift(hq, hh, jj, xs, ys))


if __name__ == "__main__":  # python -m featherpose.codecs.ae_compiled: compile now (the Makefile does)
    warm_up()
