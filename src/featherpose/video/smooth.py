"""Temporal smoothing of keypoints: the One-Euro filter, per keypoint and per track, vectorised.

The One-Euro filter (Casiez, Roussel, Vogel, "1 Euro Filter: A Simple Speed-based Low-pass Filter for Noisy Input
in Interactive Systems", CHI 2012) is a first-order low-pass filter whose cutoff frequency rises with the signal's
speed: a still joint is smoothed hard (jitter removed), a moving one lightly (little lag). For a sample ``x`` at
time ``t`` (``dt`` seconds after the previous one), with ``alpha(fc) = 1 / (1 + 1 / (2 pi fc dt))``:

    dx      = (x - x_hat_prev) / dt                                   the speed, pixels per second
    dx_hat  = alpha(d_cutoff) * dx + (1 - alpha(d_cutoff)) * dx_hat_prev
    fc      = min_cutoff + beta * |dx_hat|                            |.|: the 2-D speed of the keypoint
    x_hat   = alpha(fc) * x + (1 - alpha(fc)) * x_hat_prev

The parameters and what they trade (defaults chosen on ``benchmarks/video_quality.py``'s clips):

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

from dataclasses import dataclass

import numpy as np

DEFAULT_MIN_CUTOFF = 1.0
DEFAULT_BETA = 0.01
DEFAULT_D_CUTOFF = 1.0


def _alpha(cutoff: np.ndarray | float, dt: np.ndarray) -> np.ndarray:
    """The smoothing factor of a first-order low-pass filter with ``cutoff`` Hz for samples ``dt`` s apart."""
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


@dataclass
class _State:
    """One track's filter state: smoothed positions (K, 2), speeds (K, 2), last update time per keypoint (K,)
    (NaN: never seen)."""

    x: np.ndarray
    dx: np.ndarray
    t: np.ndarray


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
        self._states: dict[int, _State] = {}

    def __len__(self) -> int:
        return len(self._states)

    def forget(self, track_id: int) -> None:
        """Drop a track's state (its next sample passes unfiltered)."""
        self._states.pop(int(track_id), None)

    def __call__(self, ids: np.ndarray, xy: np.ndarray, found: np.ndarray, timestamp: float) -> np.ndarray:
        """Smoothed copy of ``xy``.

        Args:
            ids: (M,) track ids of the rows of ``xy``.
            xy: (M, K, 2) raw keypoint positions, pixels.
            found: (M, K) bool: keypoints that were found; the others pass through and leave their state alone.
            timestamp: seconds of this frame (must increase from frame to frame for a track).
        """
        xy = np.asarray(xy, np.float64)
        found = np.asarray(found, bool) & np.isfinite(xy).all(axis=-1)
        m, k = found.shape
        out = xy.copy()
        if m == 0:
            return out.astype(np.float32)
        states = [self._states.get(int(i)) for i in ids]
        x_prev = np.stack([s.x if s is not None else np.full((k, 2), np.nan) for s in states])
        dx_prev = np.stack([s.dx if s is not None else np.zeros((k, 2)) for s in states])
        t_prev = np.stack([s.t if s is not None else np.full(k, np.nan) for s in states])
        dt = float(timestamp) - t_prev  # (M, K); NaN where never seen
        seen = found & np.isfinite(dt) & (dt > 0)
        dt_safe = np.where(seen, dt, 1.0)[..., None]
        dx = (xy - np.where(seen[..., None], x_prev, xy)) / dt_safe
        dx_hat = dx_prev + _alpha(self.d_cutoff, dt_safe) * (dx - dx_prev)
        cutoff = self.min_cutoff + self.beta * np.linalg.norm(dx_hat, axis=-1, keepdims=True)
        x_hat = x_prev + _alpha(cutoff, dt_safe) * (xy - x_prev)
        out = np.where(seen[..., None], x_hat, xy)  # first sight or not found: the raw position
        new_x = np.where(found[..., None], out, x_prev)
        new_dx = np.where(seen[..., None], dx_hat, np.where(found[..., None], 0.0, dx_prev))
        new_t = np.where(found, float(timestamp), t_prev)
        for row, track_id in enumerate(ids):
            self._states[int(track_id)] = _State(new_x[row], new_dx[row], new_t[row])
        return out.astype(np.float32)
