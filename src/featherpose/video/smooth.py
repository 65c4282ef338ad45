"""Temporal smoothing of keypoints: the One-Euro filter, per keypoint and per track, vectorised.

The One-Euro filter (Casiez, Roussel, Vogel, "1 Euro Filter: A Simple Speed-based Low-pass Filter for Noisy Input
in Interactive Systems", CHI 2012) is a first-order low-pass filter whose cutoff frequency rises with the signal's
speed: a still joint is smoothed hard (jitter removed), a moving one lightly (little lag). For a sample ``x`` at
time ``t`` (``dt`` seconds after the previous one), with ``alpha(fc) = 1 / (1 + 1 / (2 pi fc dt))``:

    dx      = (x - x_hat_prev) / dt                                   the speed, pixels per second
    dx_hat  = alpha(d_cutoff) * dx + (1 - alpha(d_cutoff)) * dx_hat_prev
    fc      = min_cutoff + beta * |dx_hat|                            |.|: the 2-D speed of the keypoint
    x_hat   = alpha(fc) * x + (1 - alpha(fc)) * x_hat_prev

The parameters and what they trade (defaults chosen on ``benchmarks/video_quality.py``'s clips: min_cutoff 1 Hz and
beta 0.01 cut the jitter of MoveNet MultiPose's keypoints to a third, moving them 7.5 px from the raw ones on
average on 1080p people; beta 0.03 keeps half the jitter at 4.5 px, beta 0.003 a fifth at 12 px):

- ``min_cutoff`` (Hz, default 1.0): the cutoff of a still keypoint. Lower removes more jitter and adds lag.
- ``beta`` (seconds per pixel, default 0.01): how fast the cutoff rises with speed (``fc`` gains ``beta * speed``
  Hz; a joint moving 300 px/s gets 1 + 3 = 4 Hz). Higher follows fast motion with less lag and lets more jitter
  through while moving.
- ``d_cutoff`` (Hz, default 1.0): the cutoff of the speed estimate itself; rarely worth changing.

``dt`` is real time (a video's frame index / fps, a webcam's capture clock), so the same motion is smoothed the same
at 10 and at 60 frames/s. Each keypoint keeps its own time of last update: a keypoint that is not found (score below
the threshold) is passed through as it is and leaves its state untouched, so a missing joint's (0, 0) is never
filtered into the track; when it comes back its ``dt`` is the whole gap, which makes ``alpha`` close to 1 (it
follows the new position rather than dragging it from the old one).
"""
from __future__ import annotations

import numpy as np

DEFAULT_MIN_CUTOFF = 1.0
DEFAULT_BETA = 0.01
DEFAULT_D_CUTOFF = 1.0


def _alpha(cutoff: np.ndarray | float, dt: np.ndarray) -> np.ndarray:
    """The smoothing factor of a first-order low-pass filter with ``cutoff`` Hz for samples ``dt`` s apart."""
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filters for the keypoints of many tracks, keyed by track id; one vectorised step per frame.

    Args:
        min_cutoff, beta, d_cutoff: see the module docstring (Hz, s/px, Hz).

    Use :meth:`__call__` once per frame with the ids present in that frame; :meth:`forget` drops a track's state
    (a new or re-found track starts unfiltered).
    """

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF):
        for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"OneEuroFilter: {name} must be a positive frequency in Hz (got {value})")
        if not (np.isfinite(beta) and beta >= 0):
            raise ValueError(f"OneEuroFilter: beta must be >= 0 (got {beta}); 0 is a plain low-pass filter")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self._ids = np.zeros(0, np.int64)  # the tracks with a state, sorted; their rows of the arrays below:
        self._x = np.zeros((0, 0, 2))  # smoothed positions (T, K, 2), px
        self._dx = np.zeros((0, 0, 2))  # smoothed speeds (T, K, 2), px/s
        self._t = np.zeros((0, 0))  # each keypoint's last update time (T, K), s; NaN: never seen

    def __len__(self) -> int:
        return len(self._ids)

    def forget(self, track_ids) -> None:
        """Drop the state of a track (or of an array of tracks): its next sample passes unfiltered."""
        keep = ~np.isin(self._ids, np.atleast_1d(np.asarray(track_ids, np.int64)))
        self._ids, self._x, self._dx, self._t = self._ids[keep], self._x[keep], self._dx[keep], self._t[keep]

    def __call__(self, ids: np.ndarray, xy: np.ndarray, found: np.ndarray, timestamp: float) -> np.ndarray:
        """Smoothed copy of ``xy``.

        Args:
            ids: (M,) distinct track ids of the rows of ``xy``.
            xy: (M, K, 2) raw keypoint positions, pixels.
            found: (M, K) bool: keypoints that were found; the others pass through and leave their state alone.
            timestamp: seconds of this frame (must increase from frame to frame for a track).
        """
        ids = np.asarray(ids, np.int64)
        xy = np.asarray(xy, np.float64)
        found = np.asarray(found, bool) & np.isfinite(xy).all(axis=-1)
        m, k = found.shape
        if m == 0:
            return xy.astype(np.float32)
        if self._x.shape[1] != k:  # the first call fixes the keypoint count
            self._ids, self._x = np.zeros(0, np.int64), np.zeros((0, k, 2))
            self._dx, self._t = np.zeros((0, k, 2)), np.zeros((0, k))
        row = np.searchsorted(self._ids, ids)
        row_c = np.minimum(row, max(len(self._ids) - 1, 0))
        have = (row < len(self._ids)) & (self._ids[row_c] == ids) if len(self._ids) else np.zeros(m, bool)
        x_prev = np.where(have[:, None, None], self._x[row_c] if len(self._ids) else 0.0, np.nan)
        dx_prev = np.where(have[:, None, None], self._dx[row_c] if len(self._ids) else 0.0, 0.0)
        t_prev = np.where(have[:, None], self._t[row_c] if len(self._ids) else 0.0, np.nan)
        dt = float(timestamp) - t_prev  # (M, K); NaN where never seen
        seen = found & np.isfinite(dt) & (dt > 0)
        dt_safe = np.where(seen, dt, 1.0)[..., None]
        dx = (xy - np.where(seen[..., None], x_prev, xy)) / dt_safe
        dx_hat = dx_prev + _alpha(self.d_cutoff, dt_safe) * (dx - dx_prev)
        cutoff = self.min_cutoff + self.beta * np.sqrt((dx_hat * dx_hat).sum(-1, keepdims=True))
        x_hat = x_prev + _alpha(cutoff, dt_safe) * (xy - x_prev)
        out = np.where(seen[..., None], x_hat, xy)  # first sight or not found: the raw position
        new_x = np.where(found[..., None], out, x_prev)
        new_dx = np.where(seen[..., None], dx_hat, np.where(found[..., None], 0.0, dx_prev))
        new_t = np.where(found, float(timestamp), t_prev)
        self._x[row[have]], self._dx[row[have]], self._t[row[have]] = new_x[have], new_dx[have], new_t[have]
        if not have.all():  # new tracks join, kept sorted by id
            ids_all = np.concatenate([self._ids, ids[~have]])
            order = np.argsort(ids_all, kind="stable")
            self._ids = ids_all[order]
            self._x = np.concatenate([self._x, new_x[~have]])[order]
            self._dx = np.concatenate([self._dx, new_dx[~have]])[order]
            self._t = np.concatenate([self._t, new_t[~have]])[order]
        return out.astype(np.float32)
