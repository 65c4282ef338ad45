"""Top-down Gaussian heatmap codec (stacked hourglass, Fast Pose Distillation): one person per input.

Dimensions: K keypoints, input [H, W] in pixels, heatmap [h, w] = [H / stride, W / stride].
    encode: keypoints (K, 3) x, y, v in input pixels -> heatmap (K, h, w) float32, weight (K,) float32
    decode: heads {"heatmap": (K, h, w)} -> Decoded, keypoints (1, K, 3) x, y, score in input pixels

A keypoint at input pixel ``x`` sits at heatmap column ``x / stride`` (the same convention as the
MoveNet codec). ``encode`` draws the seed's Gaussian (seed 004, eq. 2)

    m_k(x, y) = peak * exp(-((x - x_k)^2 + (y - y_k)^2) / (2 sigma^2))

centred on the exact (sub-cell) position, with ``peak = 1 / (2 pi sigma^2)`` as the seed writes it
(``normalize=True``) or 1. ``decode`` takes the argmax and moves it a quarter cell towards the higher
of its two neighbours on each axis (Newell et al.'s usual shift), so a round trip is exact to within
``stride / 4`` input pixels on each axis. Scores are the heatmap maximum divided by ``peak``, so a
perfect prediction scores 1.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import Codec, Decoded

f32 = np.float32


def gaussian_heatmaps(xy_heatmap: np.ndarray, visible: np.ndarray, heatmap_hw: tuple[int, int], sigma: float,
                      peak: float = 1.0) -> np.ndarray:
    """(K, h, w) Gaussians of height ``peak`` centred on each visible (K, 2) x, y heatmap position; zero elsewhere."""
    h, w = heatmap_hw
    x = np.arange(w, dtype=f32)
    y = np.arange(h, dtype=f32)
    gx = np.exp(-((x[None] - xy_heatmap[:, :1]) ** 2) / (2 * sigma ** 2))  # (K, w)
    gy = np.exp(-((y[None] - xy_heatmap[:, 1:2]) ** 2) / (2 * sigma ** 2))  # (K, h)
    maps = (gy[:, :, None] * gx[:, None, :]) * f32(peak)
    maps[~visible] = 0
    return maps.astype(f32)


def heatmap_argmax(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, h, w) -> ((K, 2) x, y of each map's maximum with the quarter-cell shift, (K,) maximum value)."""
    k, h, w = heatmaps.shape
    flat = heatmaps.reshape(k, -1)
    best = np.argmax(flat, axis=1)
    value = flat[np.arange(k), best]
    py, px = np.divmod(best, w)
    xy = np.stack([px, py], axis=1).astype(f32)
    idx = np.arange(k)
    right, left = heatmaps[idx, py, np.minimum(px + 1, w - 1)], heatmaps[idx, py, np.maximum(px - 1, 0)]
    down, up = heatmaps[idx, np.minimum(py + 1, h - 1), px], heatmaps[idx, np.maximum(py - 1, 0), px]
    inside_x, inside_y = (px > 0) & (px < w - 1), (py > 0) & (py < h - 1)
    xy[:, 0] += np.where(inside_x, 0.25 * np.nan_to_num(np.sign(right - left)), 0)  # inf - inf: no shift
    xy[:, 1] += np.where(inside_y, 0.25 * np.nan_to_num(np.sign(down - up)), 0)
    return xy, value.astype(f32)


class HeatmapCodec(Codec):
    """Encoder / decoder for top-down heatmap models (one person per input); a :class:`~.base.Codec`.

    Args:
        input_hw: network input (H, W) in pixels.
        num_keypoints: K.
        stride: input pixels per heatmap cell (hourglass: 4).
        sigma: Gaussian standard deviation in heatmap cells (default 1, as in Newell et al.'s and
            FPD's code at 64x64).
        normalize: the seed's ``1 / (2 pi sigma^2)`` peak (True) or a peak of 1 (False).
    """

    kind = "top-down"

    def __init__(self, input_hw: tuple[int, int], num_keypoints: int, stride: int = 4, sigma: float = 1.0,
                 normalize: bool = True):
        if input_hw[0] % stride or input_hw[1] % stride:
            raise ValueError(f"input size {input_hw} is not a multiple of the heatmap stride {stride}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.input_hw = tuple(int(v) for v in input_hw)
        self.num_keypoints = int(num_keypoints)
        self.stride = int(stride)
        self.sigma = float(sigma)
        self.normalize = bool(normalize)
        self.peak = 1.0 / (2 * np.pi * self.sigma ** 2) if normalize else 1.0
        self.heatmap_hw = (self.input_hw[0] // stride, self.input_hw[1] // stride)

    def to_dict(self) -> dict[str, Any]:
        """What rebuilds this codec (stored in weight files); input_hw and K come from the model config."""
        return {"stride": self.stride, "sigma": self.sigma, "normalize": self.normalize}

    @classmethod
    def from_dict(cls, d: dict[str, Any], input_hw: tuple[int, int], num_keypoints: int,
                  arrays: dict[str, np.ndarray] | None = None) -> HeatmapCodec:
        """The codec :meth:`to_dict` describes (``arrays`` is unused: the codec has none).

        Raises:
            TypeError, ValueError: ``d`` has an unknown key or a bad value.
        """
        return cls(input_hw, num_keypoints, **d)

    def encode(self, keypoints: np.ndarray, ignore: np.ndarray | None = None, boxes: np.ndarray | None = None
               ) -> dict[str, np.ndarray]:
        """Targets for one person: keypoints (K, 3) or (1, K, 3) x, y, v in input pixels.

        Returns:
            ``heatmap`` (K, h, w) and ``weight`` (K,): 1 for labelled keypoints (v > 0) on the heatmap,
            0 for the rest (no loss on them). ``ignore`` and ``boxes`` are accepted for a common
            signature with the bottom-up codecs and not used.
        """
        kp = np.asarray(keypoints, f32).reshape(-1, 3)
        if kp.shape[0] != self.num_keypoints:
            raise ValueError(f"expected {self.num_keypoints} keypoints (K, 3) for one person, got {np.shape(keypoints)}")
        xy = kp[:, :2] / self.stride
        h, w = self.heatmap_hw
        on_map = (kp[:, 2] > 0) & np.isfinite(xy).all(axis=1) & (xy[:, 0] >= -0.5) & (xy[:, 0] <= w - 0.5) \
            & (xy[:, 1] >= -0.5) & (xy[:, 1] <= h - 0.5)
        xy = np.where(np.isfinite(xy), xy, 0)
        return {"heatmap": gaussian_heatmaps(xy, on_map, self.heatmap_hw, self.sigma, self.peak),
                "weight": on_map.astype(f32)}

    def head_shapes(self) -> dict[str, tuple[int, ...]]:
        """The raw heads :meth:`decode` takes, name -> (C, h, w)."""
        return {"heatmap": (self.num_keypoints, *self.heatmap_hw)}

    def decode(self, heads: dict[str, np.ndarray]) -> Decoded:
        """Heads (batch axis dropped) -> one instance in input pixels; its score is the mean keypoint score.

        Never raises on NaN/inf or huge heads; scores are clipped to [0, 1] (a NaN heatmap gives NaN,
        which the :class:`~featherpose.estimator.Estimator` reports before decoding)."""
        heatmap = np.asarray(heads["heatmap"], f32)
        if heatmap.ndim != 3 or heatmap.shape[0] != self.num_keypoints:
            raise ValueError(f"expected a heatmap of shape ({self.num_keypoints}, h, w), got {heatmap.shape}")
        scale = f32(self.input_hw[0] / heatmap.shape[1]), f32(self.input_hw[1] / heatmap.shape[2])
        with np.errstate(over="ignore", invalid="ignore"):  # inf - inf beside an infinite maximum: no shift, no warning
            xy, value = heatmap_argmax(heatmap)
        score = np.clip(value / f32(self.peak), 0, 1)
        kpts = np.concatenate([xy * np.array([scale[1], scale[0]], f32), score[:, None]], axis=1)[None]
        return Decoded(kpts.astype(f32), None, score.mean(keepdims=True).astype(f32))
