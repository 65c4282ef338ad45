"""The ``litepose`` family: Lite Pose (bottom-up, multi-person, heatmaps + associative-embedding tags), its
preprocessing, hooks and row.

The network is :mod:`featherpose.models.litepose` and the importer :mod:`featherpose.convert.litepose` (upstream's
PyTorch checkpoint), which loads only when its hook runs. Inference feeds each image as upstream's test script
does (:func:`upstream_geometry`, :func:`litepose_preprocess`): the short side scaled to the input size, the long
side following the image (rounded up to a multiple of 64), one ``cv2.warpAffine`` with upstream's matrix; points
map back through upstream's inverse matrix (:class:`AffineLetterbox`).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..image import Letterbox

#: The long side of the input is rounded up to a multiple of this (upstream's ``get_multi_scale_size``).
LONG_SIDE_MULTIPLE = 64
#: A recipe's or user's input size (the short side) must be a multiple of this.
INPUT_MULTIPLE = 32


@dataclass(frozen=True)
class Geometry:
    """Where an image goes in the network input (upstream's ``get_multi_scale_size`` + ``get_affine_transform``).

    Attributes:
        input_hw: (H, W) of the network input, pixels.
        center: (cx, cy) image point mapped to the input's centre, whole pixels.
        scale: (sx, sy) upstream's person scale (image extent / 200 along each axis).
        to_input: (2, 3) float64 affine, image pixels -> input pixels (``cv2.warpAffine``'s matrix).
        to_image: (2, 3) float64 affine, input pixels -> image pixels (upstream's ``inv=1`` matrix).
    """

    input_hw: tuple[int, int]
    center: tuple[int, int]
    scale: tuple[float, float]
    to_input: np.ndarray
    to_image: np.ndarray


def _affine(center: np.ndarray, size_x: float, out_wh: tuple[int, int], inverse: bool) -> np.ndarray:
    """Upstream's three-point affine (rotation 0, no shift): ``center`` -> the output centre and ``center`` +
    (0, -size_x / 2) -> the output centre + (0, -W / 2), a third point at 90 degrees; points held in float32 as
    upstream holds them, solved by ``cv2.getAffineTransform`` (float64 result)."""
    w, h = out_wh
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = center + np.array([0.0, size_x * -0.5])
    dst[0] = [w * 0.5, h * 0.5]
    dst[1] = np.array([w * 0.5, h * 0.5]) + np.array([0, w * -0.5], np.float32)
    for pts in (src, dst):  # the point at 90 degrees: b + rot90(a - b), in float32
        d = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-d[1], d[0]], np.float32)
    return cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)


def upstream_geometry(image_hw: tuple[int, int], short_side: int = 448) -> Geometry:
    """The input size and affine upstream's test path gives an (h, w) image at ``short_side`` (one scale).

    The short side becomes ``short_side``; the long side ``short_side * long / short`` rounded up to a multiple
    of 64 (computed in float64, as Python does upstream), so the image is centred with black bands. Equal to
    upstream for every ``short_side`` that is a multiple of 64 (448 included); upstream also rounds the short
    side up to a multiple of 64, featherpose keeps it as asked.
    """
    h, w = image_hw
    center = np.array([int(w / 2.0 + 0.5), int(h / 2.0 + 0.5)])
    m = LONG_SIDE_MULTIPLE
    if w < h:
        out_w, out_h = short_side, int((short_side / w * h + m - 1) // m * m)
        scale = (w / 200.0, out_h / out_w * w / 200.0)
    else:
        out_h, out_w = short_side, int((short_side / h * w + m - 1) // m * m)
        scale = (out_w / out_h * h / 200.0, h / 200.0)
    size_x = scale[0] * 200.0
    return Geometry((out_h, out_w), (int(center[0]), int(center[1])), scale,
                    _affine(center, size_x, (out_w, out_h), False), _affine(center, size_x, (out_w, out_h), True))


@dataclass(frozen=True)
class AffineLetterbox(Letterbox):
    """A :class:`~featherpose.image.Letterbox` whose points map through upstream's two affine matrices (the
    forward one warps the image; the inverse, solved separately in float32 points, maps results back), so poses
    land where upstream's ``get_final_preds`` puts them. ``resized_hw`` is the image's extent in the input."""

    to_input_matrix: tuple = ()
    to_image_matrix: tuple = ()

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) affine from image pixels to input pixels (the warp's)."""
        return np.vstack([np.asarray(self.to_input_matrix, np.float64), [0.0, 0.0, 1.0]])

    def to_image(self, xy_input: np.ndarray) -> np.ndarray:
        """(..., 2) input pixels -> image pixels: float64 ``M_inv @ (x, y, 1)``, stored float32 (upstream's)."""
        m = np.asarray(self.to_image_matrix, np.float64)
        xy = np.asarray(xy_input, np.float64)
        return (xy @ m[:, :2].T + m[:, 2]).astype(np.float32)

    def to_input(self, xy_image: np.ndarray) -> np.ndarray:
        """(..., 2) image pixels -> input pixels through the warp's matrix (float32)."""
        m = np.asarray(self.to_input_matrix, np.float64)
        return (np.asarray(xy_image, np.float64) @ m[:, :2].T + m[:, 2]).astype(np.float32)


def litepose_preprocess(image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, AffineLetterbox]:
    """Upstream's test-path input, bit for bit: an (h, w, 3) uint8 RGB image warped by ``cv2.warpAffine`` (bilinear,
    black border) with :func:`upstream_geometry`'s matrix at short side ``min(input_hw)``; the network normalises it
    (:meth:`~featherpose.models.litepose.LitePose.normalise`).

    Returns:
        ((H, W, 3) int32 RGB 0..255, the geometry as an :class:`AffineLetterbox`).
    """
    g = upstream_geometry(image.shape[:2], min(input_hw))
    out_h, out_w = g.input_hw
    warped = cv2.warpAffine(np.ascontiguousarray(image), g.to_input, (out_w, out_h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if warped.ndim == 2:
        warped = warped[..., None]
    s = min(out_h / image.shape[0], out_w / image.shape[1])
    resized = (round(image.shape[0] * s), round(image.shape[1] * s))
    top, left = (out_h - resized[0]) // 2, (out_w - resized[1]) // 2
    box = AffineLetterbox(tuple(image.shape[:2]), (out_h, out_w), resized, top, left, None,
                          tuple(map(tuple, g.to_input)), tuple(map(tuple, g.to_image)))
    return warped.astype(np.int32), box


def default_codec(config):
    """The codec a converted or trained Lite Pose file stores (None until the associative-embedding codec exists)."""
    return None
