"""Image loading and letterboxing shared by every estimator.

Images cross this module as HxWx3 uint8 RGB. ``load_image`` accepts what users have
(paths of any format OpenCV reads, grayscale, RGBA, 16-bit, numpy arrays, PIL images) and fails
with one clear line naming the file when it cannot. Images over ``MAX_IMAGE_PIXELS`` are refused
before they are decoded or copied (a pose model sees at most a few hundred pixels a side, and a
small PNG can decode to gigabytes).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

f32 = np.float32
# Extensions read by OpenCV that folder runs pick up.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".jp2", ".exr", ".hdr"}
# The largest image accepted (250 megapixels, e.g. 20000 x 12500; a 200 MP phone photo fits): one
# 8-bit RGB copy of it is 750 MB, and decoding and converting make several.
MAX_IMAGE_PIXELS = 250_000_000
#: Top-down crops are squares of this many times the longer side of the person box.
CROP_EXPAND = 1.25


class ImageError(ValueError):
    """An image that cannot be used: missing, empty, corrupt or of an unusable shape."""


class ImageTypeError(ImageError, TypeError):
    """Something that is not an image at all (None, a list, bytes...): a TypeError and an ImageError."""


def check_image_size(h: int, w: int, name: str = "image") -> None:
    """Raise :class:`ImageError` for an image over :data:`MAX_IMAGE_PIXELS` (before it is decoded or copied)."""
    if h * w > MAX_IMAGE_PIXELS:
        raise ImageError(f"{name}: {w}x{h} is {h * w / 1e6:.0f} megapixels, over the "
                         f"{MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel "
                         f"limit (it would take {3 * h * w / 1e9:.1f} GB of memory per copy); downscale it first "
                         "(the models see at most a few hundred pixels a side)")


def to_rgb8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Convert any 2-D / 3-D image array (gray, gray+alpha, RGB, RGBA; 8/16-bit, integer, bool or float)
    to HxWx3 uint8 RGB.

    Arrays are taken as RGB(A) channel order; bool as black / white; other integers than uint8 / uint16 as 0..255;
    floats as 0..1 if their largest finite value is <= 1, else 0..255; NaN pixels become 0 and infinities saturate.
    An array without one finite pixel, integers outside 0..255 (int8's negatives, say), another dtype, or over
    :data:`MAX_IMAGE_PIXELS` is an :class:`ImageError`.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)) or a.size == 0:
        raise ImageError(f"{name}: expected an HxW or HxWx{{1,3,4}} image, got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise ImageError(f"{name}: expected an image of numbers (uint8, uint16 or float), got dtype {a.dtype}")
    check_image_size(*a.shape[:2], name)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype == bool:  # a mask: True is white
        a = a.astype(np.uint8) * np.uint8(255)
    elif a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.any():
            raise ImageError(f"{name}: every pixel is NaN or infinite; expected values in 0..1 or 0..255")
        scale = 255.0 if a.max(where=finite, initial=-np.inf) <= 1.0 else 1.0
        del finite
        a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)  # one float copy, then in place
        a *= scale
        a += 0.5
        a = np.clip(a, 0, 255, out=a).astype(np.uint8)
    elif a.dtype != np.uint8:  # other integers: 0..255 (outside it, the array is something else: say so)
        low, high = int(a.min()), int(a.max())
        if low < 0 or high > 255:
            raise ImageError(f"{name}: {a.dtype} pixels from {low} to {high}; expected 0..255 (or uint16, or float "
                             "0..1): convert the array first")
        a = a.astype(np.uint8)
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 2:  # gray + alpha
        return np.repeat(a[..., :1], 3, axis=2)
    return np.ascontiguousarray(a[..., :3])


def _pil_to_array(image) -> np.ndarray:
    """A PIL image as an array ``to_rgb8`` takes (modes other than gray / RGB(A) / 16-bit / float go through RGB(A))."""
    if image.mode not in ("L", "LA", "RGB", "RGBA", "I;16", "F"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    return np.asarray(image)


def _is_pil_image(obj) -> bool:
    """A PIL image, recognised without importing PIL (it is optional)."""
    return any(c.__module__.startswith("PIL.") and c.__name__ == "Image" for c in type(obj).__mro__)


_FILL = re.compile(rb"\xff+")  # a JPEG marker: one or more 0xFF (the extra ones are fill bytes), then its code
#: Segments scanned for a JPEG's frame header; real files have a few dozen (a file with more is decoded
#: first and checked after, under OpenCV's own 1-gigapixel guard).
_MAX_JPEG_SEGMENTS = 10_000


def _header_size(data: np.ndarray) -> tuple[int, int] | None:
    """(height, width) from a PNG or JPEG header without decoding it; None for other formats or odd headers.

    JPEG segments are walked marker by marker up to the first start-of-frame; any number of 0xFF fill
    bytes may precede a marker, and markers without a length (RSTn, TEM) are stepped over.
    """
    head = data[:16].tobytes()
    if head.startswith(b"\x89PNG\r\n\x1a\n") and data.size >= 24:
        w, h = (int.from_bytes(data[i:i + 4].tobytes(), "big") for i in (16, 20))
        return h, w
    if head.startswith(b"\xff\xd8"):
        buf, i = memoryview(data), 2
        for _ in range(_MAX_JPEG_SEGMENTS):
            fill = _FILL.match(buf, i)
            if fill is None:  # not at a marker: the headers are damaged
                return None
            i = fill.end()  # at the marker's code
            if i + 7 >= len(buf):
                return None
            marker = buf[i]
            if marker == 0xD9:  # end of image before any frame
                return None
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # TEM, RSTn, SOI: no length, no payload
                i += 1
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
                return buf[i + 4] << 8 | buf[i + 5], buf[i + 6] << 8 | buf[i + 7]
            length = buf[i + 1] << 8 | buf[i + 2]  # counts itself, not the marker
            if length < 2:
                return None
            i += 1 + length
    return None


def load_image(source) -> np.ndarray:
    """Read an image file (or take an array or a PIL image) as HxWx3 uint8 RGB.

    Args:
        source: a path (str or Path), an HxW(x1/2/3/4) array in RGB(A) order, or a PIL image.

    Raises:
        FileNotFoundError: the path does not exist.
        ImageError: the file is empty, not an image, corrupt, or over :data:`MAX_IMAGE_PIXELS`; the
            array has an unusable shape, dtype or no finite pixel.
        ImageTypeError: ``source`` is none of the above (an ImageError and a TypeError).
    """
    if isinstance(source, np.ndarray):
        return to_rgb8(source)
    if _is_pil_image(source):
        check_image_size(source.height, source.width, "PIL image")
        return to_rgb8(_pil_to_array(source), "PIL image")
    if not isinstance(source, (str, os.PathLike)):
        hint = ("; decode the bytes first (cv2.imdecode) or pass the file's path"
                if isinstance(source, (bytes, bytearray)) else "")
        raise ImageTypeError(f"expected an image file path (str or Path), an HxWx3 RGB numpy array or a PIL image, "
                             f"got {type(source).__name__}{hint}")
    return _read_file(Path(source))


def load_dataset_image(path: str | Path, hw: tuple | None = None) -> np.ndarray:
    """:func:`load_image` of a dataset's file whose json gives its size ``hw`` (height, width): turned by its EXIF
    orientation as viewers show it, unless ``hw`` is the size of the pixels as stored (annotations made on those)."""
    image = _read_file(Path(path))
    if hw is not None and image.shape[:2] != tuple(hw) and image.shape[1::-1] == tuple(hw):
        image = _read_file(Path(path), turn=False)
    return image


def _read_file(path: Path, turn: bool = True) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB (see :func:`load_image`); ``turn``: by its EXIF orientation."""
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image")
    data = np.fromfile(path, np.uint8)
    if data.size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    size = _header_size(data)
    if size is not None:
        check_image_size(*size, str(path))
    # any depth and colour, turned as the EXIF orientation says (a phone photo stands as viewers show it;
    # IMREAD_UNCHANGED would ignore the tag, and keep an alpha channel that to_rgb8 drops anyway)
    img = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
                       | (0 if turn else cv2.IMREAD_IGNORE_ORIENTATION))
    if img is None:
        raise ImageError(f"{path}: not a readable image (corrupt or unsupported format)")
    check_image_size(*img.shape[:2], str(path))
    if img.ndim == 3:  # OpenCV decodes to BGR
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return to_rgb8(img, str(path))


@dataclass(frozen=True)
class Letterbox:
    """Geometry of an aspect-preserving resize into a padded ``input_hw`` canvas.

    The image (``image_hw``) is resized to ``resized_hw`` and placed at (``top``, ``left``). ``scale``: when the
    resize used one factor on both axes (OpenCV's ``fx = fy = scale``, input pixels per image pixel, as
    :func:`resize_height_pad_centred`), points map with it exactly, in float64 as the reference does; None: each
    axis's own ratio ``resized / image`` (:func:`resize_with_pad`).
    """

    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    top: int
    left: int
    scale: float | None = None

    def _ratio(self) -> tuple[float, float]:
        """Input pixels per image pixel, (x, y)."""
        if self.scale is not None:
            return self.scale, self.scale
        return self.resized_hw[1] / self.image_hw[1], self.resized_hw[0] / self.image_hw[0]

    def _scale(self) -> np.ndarray:
        """Image pixels per input pixel, (x, y)."""
        if self.scale is not None:
            return np.array([1 / self.scale, 1 / self.scale], f32)
        return np.array([self.image_hw[1] / self.resized_hw[1], self.image_hw[0] / self.resized_hw[0]], f32)

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) affine from image pixels to input pixels (pixel centres at integers, as in TF's and
        OpenCV's half-pixel resizing): warping an image with it reproduces this letterbox's geometry."""
        sx, sy = self._ratio()
        return np.array([[sx, 0.0, self.left + 0.5 * sx - 0.5], [0.0, sy, self.top + 0.5 * sy - 0.5], [0, 0, 1.0]])

    def to_image(self, xy_input: np.ndarray) -> np.ndarray:
        """Map (..., 2) x, y in input pixels back to pixels of the original image (float32)."""
        if self.scale is not None:  # the reference's (x - left) / scale, in float64
            return ((np.asarray(xy_input, np.float64) - [self.left, self.top]) / self.scale).astype(f32)
        return ((xy_input - np.array([self.left, self.top], f32)) * self._scale()).astype(f32)

    def to_input(self, xy_image: np.ndarray) -> np.ndarray:
        """Map (..., 2) x, y in image pixels into the network input (inverse of :meth:`to_image`)."""
        if self.scale is not None:
            return (np.asarray(xy_image, np.float64) * self.scale + [self.left, self.top]).astype(f32)
        return (xy_image / self._scale() + np.array([self.left, self.top], f32)).astype(f32)


def load_frame(source, bgr: bool = False) -> np.ndarray:
    """:func:`load_image`; with ``bgr``, ``source`` is an array in OpenCV's channel order (``cv2.imread``,
    ``VideoCapture.read``), checked like any array and returned in that order.

    Raises:
        ValueError: ``bgr`` with a file or PIL image (those are read as RGB); else as :func:`load_image`.
    """
    if bgr and not isinstance(source, np.ndarray):
        raise ValueError("bgr=True describes an array's channel order; a file or PIL image is read as RGB: "
                         "pass it without bgr")
    return load_image(source)


def _axis(out_n: int, in_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of a half-pixel bilinear resize along one axis, in TF's float32 arithmetic."""
    x = (np.arange(out_n, dtype=f32) + f32(0.5)) * (f32(in_n) / f32(out_n)) - f32(0.5)
    lo = np.floor(x)
    return (np.maximum(lo, 0).astype(np.intp), np.minimum(np.ceil(x), in_n - 1).astype(np.intp),
            (x - lo).astype(f32))


class _ResizePlan(NamedTuple):
    """Everything of ``resize_with_pad`` that depends only on the sizes: the geometry and each axis's sources and
    weights (:func:`_axis`)."""

    box: Letterbox
    rows: tuple[np.ndarray, np.ndarray, np.ndarray]  #: upper, lower, the lower's weight
    columns: tuple[np.ndarray, np.ndarray, np.ndarray]  #: left, right, the right's weight


@lru_cache(maxsize=16)
def _resize_plan(h: int, w: int, th: int, tw: int) -> _ResizePlan:
    """The :class:`_ResizePlan` of an image of (h, w) into (th, tw) (cached: video frames repeat it)."""
    r = max(f32(w) / f32(tw), f32(h) / f32(th))
    rh, rw = f32(h) / r, f32(w) / r
    oh, ow = max(1, int(np.floor(rh))), max(1, int(np.floor(rw)))
    top = max(0, int(np.floor((f32(th) - rh) / f32(2))))
    left = max(0, int(np.floor((f32(tw) - rw) / f32(2))))
    return _ResizePlan(Letterbox((h, w), (th, tw), (oh, ow), top, left), _axis(oh, h), _axis(ow, w))


@lru_cache(maxsize=16)
def _corners(h: int, w: int, th: int, tw: int) -> list[np.ndarray]:
    """The NumPy reference's flat pixel indices of the four corners each output pixel lerps (cached per size, as the
    plan is)."""
    _, (y0, y1, _), (x0, x1, _) = _resize_plan(h, w, th, tw)
    return [(ya[:, None] * w + xa[None, :]).ravel() for ya in (y0, y1) for xa in (x0, x1)]


def letterbox(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> Letterbox:
    """The geometry :func:`resize_with_pad` uses for an image of ``image_hw`` (without resizing anything)."""
    return _resize_plan(*image_hw, *input_hw).box


def resize_with_pad(image: np.ndarray, input_hw: tuple[int, int], reference: bool = False
                    ) -> tuple[np.ndarray, Letterbox]:
    """TensorFlow's ``tf.image.resize_with_pad`` followed by ``tf.cast(int32)``, bit for bit.

    Aspect-preserving bilinear resize (half-pixel centres, no antialias) of an HxWx3 uint8 image
    to fit ``input_hw``, zero padding split top/bottom and left/right with the odd pixel at the
    bottom/right, truncated toward zero. This is the preprocessing of Google's MoveNet; the
    arithmetic (float32, lerp along x first, then y, each as ``a + (b - a) * t``) is TF's.

    Runs as one compiled loop (:mod:`featherpose.image_compiled`); ``reference=True`` runs the NumPy steps it was
    checked against, which give the same array.

    Returns:
        (int32 array (Hi, Wi, 3), the letterbox geometry).
    """
    h, w = image.shape[:2]
    box, (y0, y1, wy), (x0, x1, wx) = _resize_plan(h, w, *input_hw)
    out = np.zeros((*input_hw, 3), np.int32)
    if not reference:
        from .image_compiled import resize_into

        resize_into(np.ascontiguousarray(image), y0, y1, wy, x0, x1, wx, box.top, box.left, out)
        return out, box
    oh, ow = box.resized_hw
    flat = np.ascontiguousarray(image).reshape(-1, 3)
    tl, tr, bl, br = (flat.take(i, axis=0).reshape(oh, ow, 3).astype(f32) for i in _corners(h, w, *input_hw))
    wx, wy = wx[None, :, None], wy[:, None, None]
    # TF's a + (b - a) * t in place (the same float32 operations in the same order, no temporaries)
    tr -= tl; tr *= wx; tr += tl  # noqa: E702  top:    tl + (tr - tl) * wx
    br -= bl; br *= wx; br += bl  # noqa: E702  bottom: bl + (br - bl) * wx
    br -= tr; br *= wy; br += tr  # noqa: E702  top + (bottom - top) * wy
    out[box.top:box.top + oh, box.left:box.left + ow] = br
    return out, box


class LetterboxTables(NamedTuple):
    """:func:`resize_with_pad` as lookup tables over the whole network input (Hi, Wi), for a graph that letterboxes
    frames itself (``runtime/graphs.py``'s ``GraphLetterbox``): the same sources, weights and float32 arithmetic.
    A frame row is read as its ``3 w`` elements (x * 3 + channel); the padding reads element 0 with weight 0 and is
    zeroed by the ``inside`` weights."""

    rows: np.ndarray  #: (2, Hi) int32: the frame rows each input row lerps, upper and lower
    elements: np.ndarray  #: (2, 3 Wi) int32: the row elements each input element lerps, left and right
    row_weights: np.ndarray  #: (2, Hi, 1) float32: the lower row's weight; 1 inside the resized image, 0 in the padding
    element_weights: np.ndarray  #: (2, 1, 3 Wi) float32: the right element's weight; 1 inside, 0 in the padding


class LetterboxedFrame(NamedTuple):
    """What a backend that letterboxes in its graph takes in place of the (1, Hi, Wi, 3) network input: the frame
    (1, H, W, 3) uint8 RGB and its :class:`LetterboxTables`."""

    frame: np.ndarray
    tables: LetterboxTables


@lru_cache(maxsize=16)
def letterbox_tables(image_hw: tuple[int, int], input_hw: tuple[int, int], bgr: bool = False) -> LetterboxTables:
    """The :class:`LetterboxTables` of :func:`resize_with_pad` for an image of ``image_hw`` (read-only, cached). An
    image of ``input_hw`` itself gets the identity (every weight 0 or 1). ``bgr``: the frame's channels are in
    OpenCV's order; the tables read them reversed, so the network still gets RGB (no conversion of the frame)."""
    box, (y0, y1, wy), (x0, x1, wx) = _resize_plan(*image_hw, *input_hw)
    oh, ow = box.resized_hw
    rows, row_weights = np.zeros((2, input_hw[0]), np.int32), np.zeros((2, input_hw[0], 1), f32)
    inside = slice(box.top, box.top + oh)
    rows[0, inside], rows[1, inside] = y0, y1
    row_weights[0, inside, 0], row_weights[1, inside] = wy, 1
    elements, element_weights = np.zeros((2, 3 * input_hw[1]), np.int32), np.zeros((2, 1, 3 * input_hw[1]), f32)
    inside = slice(3 * box.left, 3 * (box.left + ow))  # x * 3 + channel
    channels = np.arange(3)[::-1] if bgr else np.arange(3)  # the frame's element of each RGB channel
    elements[0, inside] = (x0[:, None] * 3 + channels).ravel()
    elements[1, inside] = (x1[:, None] * 3 + channels).ravel()
    element_weights[0, 0, inside], element_weights[1, 0, inside] = np.repeat(wx, 3), 1
    tables = LetterboxTables(rows, elements, row_weights, element_weights)
    for a in tables:
        a.setflags(write=False)
    return tables


def letterbox_frame(image: np.ndarray, input_hw: tuple[int, int], bgr: bool = False
                    ) -> tuple[LetterboxedFrame, Letterbox]:
    """:func:`resize_with_pad` left to the graph: the HxWx3 uint8 image (RGB, or ``bgr``: OpenCV's order, read
    reversed by the tables) as a :class:`LetterboxedFrame`, and the letterbox geometry."""
    h, w = image.shape[:2]
    frame = LetterboxedFrame(np.ascontiguousarray(image)[None], letterbox_tables((h, w), tuple(input_hw), bool(bgr)))
    return frame, letterbox((h, w), input_hw)


#: Raw value of the padding :func:`resize_height_pad_centred` adds (Lightweight OpenPose: 0 once normalised).
CENTRED_PAD_VALUE = 128


def resize_height_pad_centred(image: np.ndarray, height: int, multiple: int = 8,
                              pad_value: int = CENTRED_PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """The reference Lightweight OpenPose demo's preprocessing (``infer_fast``), bit for bit: the image keeps its
    aspect and gets its own input width.

    An HxWx3 uint8 image is resized by ``scale = height / H`` on both axes with OpenCV's bilinear
    (``cv2.resize(fx=fy=scale, INTER_LINEAR)``: 11-bit fixed-point weights, still uint8), to
    ``round(H * scale) x round(W * scale)``; then padded with ``pad_value`` to ``ceil(height / multiple)`` x
    ``ceil(max(w', height) / multiple)`` multiples, centred (the odd pixel at the bottom / right). The channels
    are resized independently, so RGB in gives RGB out.

    Returns:
        (int32 array (Hi, Wi, 3) 0..255, the letterbox geometry with ``scale``: input point (x, y) is image point
        ``((x - left) / scale, (y - top) / scale)``).
    """
    if height < 1 or multiple < 1:
        raise ValueError(f"height and multiple must be positive, got {height} and {multiple}")
    h, w = image.shape[:2]
    scale = height / h
    scaled = cv2.resize(np.ascontiguousarray(image), (0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    if scaled.ndim == 2:  # a one-pixel-wide result loses nothing, but keep 3 channels
        scaled = scaled[..., None]
    sh, sw = scaled.shape[:2]
    out_h = -(-height // multiple) * multiple
    out_w = -(-max(sw, height) // multiple) * multiple
    top, left = (out_h - sh) // 2, (out_w - sw) // 2
    out = np.full((out_h, out_w, 3), pad_value, np.int32)
    out[top:top + sh, left:left + sw] = scaled
    return out, Letterbox((h, w), (out_h, out_w), (sh, sw), top, left, scale)


def lwop_preprocess(image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Lightweight OpenPose's input, the reference demo's (``infer_fast``): resized to height ``input_hw[0]`` keeping
    the aspect (OpenCV bilinear), width padded to a multiple of 8 (the network's stride) with raw 128, centred
    (:func:`resize_height_pad_centred`); ``input_hw``'s width is not used. RGB in, RGB out (the bundled network takes
    RGB)."""
    return resize_height_pad_centred(image, input_hw[0], 8)


# ---------------------- Lite Pose's input, the litepose family's: upstream's (mit-han-lab/litepose) test path, exactly

#: The long side of the input is rounded up to a multiple of this (upstream's ``get_multi_scale_size``).
LONG_SIDE_MULTIPLE = 64


@dataclass(frozen=True)
class AffineGeometry:
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


def _litepose_affine(center: np.ndarray, size_x: float, out_wh: tuple[int, int], inverse: bool) -> np.ndarray:
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


def litepose_geometry(image_hw: tuple[int, int], short_side: int = 448) -> AffineGeometry:
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
    return AffineGeometry((out_h, out_w), (int(center[0]), int(center[1])), scale,
                          _litepose_affine(center, size_x, (out_w, out_h), False),
                          _litepose_affine(center, size_x, (out_w, out_h), True))


@dataclass(frozen=True)
class AffineLetterbox(Letterbox):
    """A :class:`Letterbox` whose points map through upstream's two affine matrices (the
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
    black border) with :func:`litepose_geometry`'s matrix at short side ``min(input_hw)``; the network normalises it
    (:meth:`~featherpose.models.litepose.LitePose.normalise`).

    Returns:
        ((H, W, 3) int32 RGB 0..255, the geometry as an :class:`AffineLetterbox`).
    """
    g = litepose_geometry(image.shape[:2], min(input_hw))
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


def square_around(box_xywh, expand: float) -> tuple[int, int, int]:
    """The square of side ``ceil(expand * max(w, h))`` (at least 2) centred on an x, y, w, h box, in whole
    pixels: (x0, y0 of its top-left pixel, side). Top-down inference crops it (:func:`crop_square`); top-down
    training warps it."""
    x, y, w, h = (float(v) for v in box_xywh)
    side = max(2, int(np.ceil(expand * max(w, h))))
    return int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2)), side


def crop_square(image: np.ndarray, bbox_xywh, expand: float = CROP_EXPAND) -> tuple[np.ndarray, np.ndarray]:
    """Cut the square of side ``expand * max(w, h)`` centred on a box (:func:`square_around`); outside the
    image is zero (black, like the letterbox padding).

    Args:
        image: (H, W, 3) uint8.
        bbox_xywh: x, y, w, h of the person box in image pixels.

    Returns:
        (crop (S, S, 3), (2,) x, y of the crop's top-left corner in image pixels: add it to
        crop coordinates to get image coordinates).
    """
    x0, y0, side = square_around(bbox_xywh, expand)
    crop = np.zeros((side, side, 3), np.uint8)
    ih, iw = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, iw), min(y0 + side, ih)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return crop, np.array([x0, y0], np.float32)
