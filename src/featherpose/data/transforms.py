"""Training augmentation: one affine per sample, applied alike to image, keypoints, boxes and ignore mask.

Dimensions: N persons, K keypoints, source image [H, W], output (network input) [Ho, Wo].

Pixel convention: integer coordinates are pixel centres, so (0, 0) is the centre of the top-left
pixel and an image covers [-0.5, W - 0.5] x [-0.5, H - 0.5]; this is what ``cv2.warpAffine``
assumes. A horizontal flip maps x -> Wo - 1 - x, which is what ``image[:, ::-1]`` does to columns.

:class:`Compose` builds one (3, 3) matrix per sample: it starts from :func:`letterbox_matrix` (the
whole image fitted and centred in the output canvas), lets each geometric transform multiply its
own matrix on the left, in list order, and warps once with :func:`transform_sample`: INTER_LINEAR
for the image, INTER_NEAREST for the mask. Photometric transforms then change the output image only.

After the warp, keypoints keep their coordinates (also those off the canvas). A labelled keypoint
(v = 1 or 2) keeps its v while it lies on the canvas and becomes v = 0 when it leaves it. Boxes are
the envelope of the 4 transformed corners and are not clipped. N never changes.

Every random draw comes from the ``np.random.Generator`` passed to each call, so a seeded
generator reproduces a run.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ..image import letterbox, square_around
from ..skeletons import Skeleton
from .coco import Sample

f32 = np.float32
_LUMA = np.array([0.299, 0.587, 0.114], f32)


# ---------------------------------------------------------------------------------------- maths

def letterbox_matrix(image_hw: tuple[int, int], output_hw: tuple[int, int]) -> np.ndarray:
    """(3, 3) affine that fits a whole [H, W] image into an [Ho, Wo] canvas, centred, aspect kept.

    Exactly the geometry of inference's :func:`featherpose.image.resize_with_pad` (TF's
    resize_with_pad: whole-pixel padding, resized size floored), so a model sees people at the
    same place and scale in training as when it runs.
    """
    return letterbox(image_hw, output_hw).matrix


def person_crop_matrix(box_xywh, output_hw: tuple[int, int], expand: float) -> np.ndarray:
    """(3, 3) affine of top-down inference: the square :func:`featherpose.image.square_around` a person box,
    letterboxed into the [Ho, Wo] canvas (what evaluation's crop followed by the Estimator's letterbox does)."""
    x0, y0, side = square_around(box_xywh, expand)
    return letterbox_matrix((side, side), output_hw) @ translation_matrix(-x0, -y0)


def scale_rotate_matrix(center: tuple[float, float], scale: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """(3, 3) affine that scales by ``scale`` and rotates by ``angle`` degrees about ``center`` (x, y).

    A positive angle turns counter-clockwise as seen on screen (y down), as ``cv2.getRotationMatrix2D``.
    """
    a = math.radians(angle)
    c, s = scale * math.cos(a), scale * math.sin(a)
    cx, cy = center
    return np.array([[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy], [0.0, 0.0, 1.0]])


def translation_matrix(tx: float, ty: float) -> np.ndarray:
    """(3, 3) affine that moves every point by (tx, ty) pixels."""
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def hflip_matrix(width: int) -> np.ndarray:
    """(3, 3) horizontal mirror of a canvas ``width`` pixels wide: x -> width - 1 - x (pixel centres)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map (..., 2) x, y points by a (3, 3) or (2, 3) affine; float64 arithmetic, float32 result (..., 2)."""
    p = np.asarray(points, np.float64)
    m = np.asarray(matrix, np.float64)
    return (p @ m[:2, :2].T + m[:2, 2]).astype(f32)


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 boxes -> the (N, 4) envelopes of their 4 transformed corners."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    corners = b[:, [[0, 1], [2, 1], [0, 3], [2, 3]]]  # (N, 4 corners, 2)
    t = apply_affine(corners, matrix)
    return np.concatenate([t.min(axis=1), t.max(axis=1)], axis=1).astype(f32) if len(b) else np.zeros((0, 4), f32)


def inside_canvas(xy: np.ndarray, output_hw: tuple[int, int]) -> np.ndarray:
    """(...,) bool: the (..., 2) points lie on an [Ho, Wo] canvas, i.e. in [-0.5, Wo - 0.5] x [-0.5, Ho - 0.5]."""
    ho, wo = output_hw
    x, y = xy[..., 0], xy[..., 1]
    return (x >= -0.5) & (x <= wo - 0.5) & (y >= -0.5) & (y <= ho - 0.5)


def transform_sample(sample: Sample, matrix: np.ndarray, output_hw: tuple[int, int],
                     permutation: np.ndarray | None = None, border_value: int = 0) -> Sample:
    """Warp a sample into an [Ho, Wo] canvas by one affine: image, ignore mask, keypoints and boxes.

    Args:
        sample: the input; not modified.
        matrix: (3, 3) affine from ``sample`` pixels to output pixels.
        output_hw: (Ho, Wo).
        permutation: (K,) keypoint order after flips, ``out[:, k] = in[:, permutation[k]]``; None keeps it.
        border_value: grey level of the image outside the source (the mask is False there).

    Returns:
        A new :class:`Sample`; its ``matrix`` is ``matrix @ sample.matrix``. Labelled keypoints that
        leave the canvas get v = 0 (coordinates kept).
    """
    ho, wo = output_hw
    m = np.asarray(matrix, np.float64)
    image = cv2.warpAffine(sample.image, m[:2], (wo, ho), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(border_value,) * 3)
    ignore = cv2.warpAffine(sample.ignore.astype(np.uint8), m[:2], (wo, ho), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    kps = np.array(sample.keypoints, f32, copy=True)
    if permutation is not None:
        if len(permutation) != kps.shape[1]:
            raise ValueError(f"flip permutation has {len(permutation)} entries, the sample has K={kps.shape[1]} "
                             "keypoints; build RandomFlip from the dataset's skeleton (dataset.skeleton)")
        kps = kps[:, permutation]
    kps[..., :2] = apply_affine(kps[..., :2], m)
    kps[..., 2] = np.where(inside_canvas(kps[..., :2], output_hw), kps[..., 2], 0)
    return replace(sample, image=image, keypoints=kps, boxes=transform_boxes(sample.boxes, m), ignore=ignore,
                   matrix=m @ sample.matrix)


# ---------------------------------------------------------------------------------- transforms

@dataclass
class Geometry:
    """The affine being built for one sample.

    Attributes:
        matrix: (3, 3) from source-image pixels to output pixels.
        output_hw: (Ho, Wo).
        permutation: (K,) keypoint order after flips (None: unchanged).
    """

    matrix: np.ndarray
    output_hw: tuple[int, int]
    permutation: np.ndarray | None = None

    def then(self, matrix: np.ndarray) -> None:
        """Apply ``matrix`` (in output pixels) after the current one."""
        self.matrix = matrix @ self.matrix


class GeometricTransform:
    """A transform that contributes a matrix to the sample's single affine."""

    def update(self, geometry: Geometry, sample: Sample, rng: np.random.Generator) -> None:
        """Multiply ``geometry`` by this transform's (random) matrix; ``sample`` is the untransformed input."""
        raise NotImplementedError(f"{type(self).__name__} must implement update(geometry, sample, rng)")


class PhotometricTransform:
    """A transform of the (already warped) image's pixels only."""

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(image, rng)")


def _range(name: str, value, low: float = 0.0) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not (math.isfinite(lo) and math.isfinite(hi) and low < lo <= hi):
        raise ValueError(f"{name} must be (low, high) with {low} < low <= high, got {value}")
    return lo, hi


class RandomAffine(GeometricTransform):
    """Random scale, rotation and translation about the canvas centre.

    Args:
        scale: (low, high) zoom factor, drawn uniformly.
        rotation: largest rotation in degrees; the angle is uniform in [-rotation, rotation].
        translate: largest shift as a fraction of the output width (x) and height (y).
        p: probability of applying it at all.
    """

    def __init__(self, scale: tuple[float, float] = (0.75, 1.25), rotation: float = 30.0,
                 translate: float = 0.1, p: float = 1.0):
        self.scale = _range("scale", scale)
        if rotation < 0 or translate < 0:
            raise ValueError(f"rotation and translate must be >= 0, got {rotation}, {translate}")
        self.rotation, self.translate, self.p = float(rotation), float(translate), float(p)

    def update(self, geometry: Geometry, sample: Sample, rng: np.random.Generator) -> None:
        if rng.random() >= self.p:
            return
        ho, wo = geometry.output_hw
        s = rng.uniform(*self.scale)
        angle = rng.uniform(-self.rotation, self.rotation)
        tx, ty = rng.uniform(-self.translate, self.translate, 2) * (wo, ho)
        geometry.then(translation_matrix(tx, ty) @ scale_rotate_matrix(((wo - 1) / 2, (ho - 1) / 2), s, angle))


class RandomFlip(GeometricTransform):
    """Horizontal flip of the canvas (x -> Wo - 1 - x) that also swaps left and right keypoints.

    Args:
        flip_index: a :class:`~featherpose.skeletons.Skeleton` (its ``flip_index()``) or a (K,)
            permutation. Keypoints without a ``left_``/``right_`` partner (e.g. the 68 face points
            of WholeBody) keep their index; pass an explicit permutation to mirror them too.
        p: probability of flipping.
    """

    def __init__(self, flip_index: Skeleton | Sequence[int], p: float = 0.5):
        perm = flip_index.flip_index() if isinstance(flip_index, Skeleton) else np.asarray(flip_index, np.intp)
        if perm.ndim != 1 or sorted(perm.tolist()) != list(range(len(perm))):
            raise ValueError("flip_index must be a permutation of 0..K-1 (use skeleton.flip_index())")
        self.flip_index, self.p = perm, float(p)

    def update(self, geometry: Geometry, sample: Sample, rng: np.random.Generator) -> None:
        if rng.random() >= self.p:
            return
        geometry.then(hflip_matrix(geometry.output_hw[1]))
        perm = geometry.permutation if geometry.permutation is not None else np.arange(len(self.flip_index))
        geometry.permutation = perm[self.flip_index]


def _person_size(xy: np.ndarray, measure: str, output_hw: tuple[int, int]) -> tuple[float, np.ndarray, int]:
    """Size of one person from its (M, 2) output-pixel points: (value, (4,) extent box, power of the zoom)."""
    extent = np.concatenate([xy.min(axis=0), xy.max(axis=0)]).astype(np.float64)
    w, h = extent[2] - extent[0], extent[3] - extent[1]
    if measure == "height_fraction":
        return h / output_hw[0], extent, 1
    return w * h, extent, 2


class ZoomSmallPeople(GeometricTransform):
    """The "random crop that enlarges small people": rescale so a chosen person's size follows ``target``.

    With probability ``p``, one person (uniformly among those with >= ``min_keypoints`` labelled
    points and a non-zero size) is picked, a target size t is drawn from the target distribution,
    and the canvas is zoomed about the person so that its size in the output becomes exactly t;
    the person is then moved to a uniformly random place where its extent fits in the canvas
    (centred if it cannot fit).

    The target distribution is the explicit parameter: ``target`` values, read by ``distribution``:
    ``"uniform"`` (target = (low, high)), ``"log_uniform"`` (uniform in log size between low and
    high), or ``"choice"`` (any number of values, one drawn uniformly: an empirical distribution,
    e.g. the sizes measured on the images of the deployment scene). It is met exactly whenever the
    zoom fires, except where the needed zoom falls outside ``zoom_range`` (clipped to its end).
    Geometric transforms listed after this one change the size again: list it after
    :class:`RandomAffine` (a :class:`RandomFlip` after it does not change sizes).

    Args:
        target: target sizes, in the unit of ``measure``.
        p: probability of zooming a sample.
        distribution: ``"uniform"``, ``"log_uniform"`` or ``"choice"``.
        measure: ``"keypoint_area"``: area in output pixels^2 of the box around the person's
            labelled keypoints (the MoveNet reproduction's measure, e.g. target (2000, 12000) at
            192 x 192); ``"box_area"``: area of the person's (transformed) box; ``"height_fraction"``:
            height of the keypoint box over the output height.
        zoom_range: (lowest, highest) zoom factor allowed, to bound blur and shrinking.
        min_keypoints: labelled keypoints a person needs to be picked.
    """

    MEASURES = ("keypoint_area", "box_area", "height_fraction")
    DISTRIBUTIONS = ("uniform", "log_uniform", "choice")

    def __init__(self, target: Sequence[float], p: float = 0.5, distribution: str = "uniform",
                 measure: str = "keypoint_area", zoom_range: tuple[float, float] = (0.25, 4.0),
                 min_keypoints: int = 2):
        if measure not in self.MEASURES:
            raise ValueError(f"measure must be one of {self.MEASURES}, got {measure!r}")
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {self.DISTRIBUTIONS}, got {distribution!r}")
        values = np.asarray(target, np.float64).ravel()
        if values.size == 0 or not (np.isfinite(values).all() and (values > 0).all()):
            raise ValueError(f"target must be positive finite sizes, got {target}")
        if distribution != "choice" and (values.size != 2 or values[0] > values[1]):
            raise ValueError(f"distribution={distribution!r} needs target=(low, high) with low <= high, got "
                             f"{list(target)}; use distribution='choice' for a list of sizes")
        self.target, self.p, self.distribution, self.measure = values, float(p), distribution, measure
        self.zoom_range = _range("zoom_range", zoom_range)
        self.min_keypoints = max(int(min_keypoints), 1)

    def draw_target(self, rng: np.random.Generator) -> float:
        """One size from the target distribution."""
        if self.distribution == "uniform":
            return float(rng.uniform(*self.target))
        if self.distribution == "log_uniform":
            return float(np.exp(rng.uniform(*np.log(self.target))))
        return float(rng.choice(self.target))

    def update(self, geometry: Geometry, sample: Sample, rng: np.random.Generator) -> None:
        if rng.random() >= self.p or len(sample.keypoints) == 0:
            return
        labelled = sample.keypoints[..., 2] > 0
        candidates = []
        for i in np.flatnonzero(labelled.sum(axis=1) >= self.min_keypoints):
            if self.measure == "box_area":
                b = sample.boxes[i]
                points = np.array([[b[0], b[1]], [b[2], b[1]], [b[0], b[3]], [b[2], b[3]]])
            else:
                points = sample.keypoints[i, labelled[i], :2]
            size, extent, power = _person_size(apply_affine(points, geometry.matrix), self.measure,
                                               geometry.output_hw)
            if size > 0:
                candidates.append((size, extent, power))
        if not candidates:
            return
        size, extent, power = candidates[rng.integers(len(candidates))]
        zoom = float(np.clip((self.draw_target(rng) / size) ** (1 / power), *self.zoom_range))
        centre = (extent[:2] + extent[2:]) / 2
        half = (extent[2:] - extent[:2]) * zoom / 2
        ho, wo = geometry.output_hw
        lo, hi = half - 0.5, np.array([wo, ho]) - 0.5 - half
        placed = np.where(lo <= hi, lo + rng.random(2) * (hi - lo), (np.array([wo, ho]) - 1) / 2)
        geometry.then(translation_matrix(*(placed - centre)) @ scale_rotate_matrix(tuple(centre), zoom))


class ColorJitter(PhotometricTransform):
    """Random brightness, contrast, saturation and hue, on the image only.

    Args:
        brightness, contrast, saturation: largest relative change; each factor is uniform in [1 - x, 1 + x].
        hue: largest hue rotation as a fraction of the colour circle (0.5 = half a turn).
        p: probability of applying it at all.
    """

    def __init__(self, brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3,
                 hue: float = 0.03, p: float = 1.0):
        for name, v, top in (("brightness", brightness, 1), ("contrast", contrast, 1),
                             ("saturation", saturation, 1), ("hue", hue, 0.5)):
            if not 0 <= v <= top:
                raise ValueError(f"{name} must be in [0, {top}], got {v}")
        self.brightness, self.contrast, self.saturation, self.hue, self.p = brightness, contrast, saturation, hue, p

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return image
        b, c, s = rng.uniform(-1, 1, 3) * (self.brightness, self.contrast, self.saturation) + 1
        h = rng.uniform(-self.hue, self.hue)
        img = image.astype(f32) * f32(b)
        mean = float((img @ _LUMA).mean())
        img = (img - mean) * f32(c) + mean
        grey = (img @ _LUMA)[..., None]
        img = (img - grey) * f32(s) + grey
        if h:
            hsv = cv2.cvtColor(np.clip(img, 0, 255) / f32(255), cv2.COLOR_RGB2HSV)  # float: H in [0, 360)
            hsv[..., 0] = (hsv[..., 0] + f32(360 * h)) % 360
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * f32(255)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)


class Compose:
    """A training pipeline: one affine (letterbox, then the geometric transforms) and photometric changes.

    Args:
        transforms: :class:`GeometricTransform` and :class:`PhotometricTransform` objects. Geometric
            ones compose in list order (each acts in output pixels, after the previous); photometric
            ones run after the warp, in list order.
        output_hw: (Ho, Wo), the network input.
        border_value: grey level of the canvas outside the source image.

    Call it as ``pipeline(sample, rng)`` with a seeded ``np.random.default_rng(seed)``.
    """

    def __init__(self, transforms: Sequence[GeometricTransform | PhotometricTransform],
                 output_hw: tuple[int, int], border_value: int = 0):
        if len(output_hw) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in output_hw):
            raise ValueError(f"output_hw must be two positive integers (height, width), got {output_hw}")
        for t in transforms:
            if not isinstance(t, (GeometricTransform, PhotometricTransform)):
                raise TypeError(f"{type(t).__name__} is neither a GeometricTransform nor a PhotometricTransform; "
                                "subclass one of them (featherpose.data.transforms)")
        self.transforms = list(transforms)
        self.output_hw = (int(output_hw[0]), int(output_hw[1]))
        self.border_value = border_value

    def geometry(self, sample: Sample, rng: np.random.Generator, start: np.ndarray | None = None) -> Geometry:
        """The affine (and keypoint permutation) this pipeline draws for ``sample``, without warping.

        ``start`` is the (3, 3) affine the random ones follow: by default the letterbox of the whole
        image; top-down training passes the crop around one person (:func:`person_crop_matrix`).
        """
        start = letterbox_matrix(sample.image.shape[:2], self.output_hw) if start is None else start
        geometry = Geometry(np.asarray(start, np.float64), self.output_hw)
        for t in self.transforms:
            if isinstance(t, GeometricTransform):
                t.update(geometry, sample, rng)
        return geometry

    def __call__(self, sample: Sample, rng: np.random.Generator, start: np.ndarray | None = None) -> Sample:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"pass a seeded generator, np.random.default_rng(seed), not {type(rng).__name__}")
        g = self.geometry(sample, rng, start)
        out = transform_sample(sample, g.matrix, self.output_hw, g.permutation, self.border_value)
        for t in self.transforms:
            if isinstance(t, PhotometricTransform):
                out.image = t(out.image, rng)
        return out


TRANSFORMS = {cls.__name__: cls for cls in (RandomAffine, RandomFlip, ZoomSmallPeople, ColorJitter)}


def build_transforms(config: Sequence[dict], output_hw: tuple[int, int], skeleton: Skeleton) -> Compose:
    """A :class:`Compose` from a config list such as a YAML recipe's.

    Args:
        config: one single-key dict per transform, ``{name: {keyword arguments}}``, e.g.
            ``[{"RandomAffine": {"rotation": 30}}, {"ZoomSmallPeople": {"target": [2000, 12000], "p": 0.5}},
            {"RandomFlip": {}}, {"ColorJitter": {}}]``. ``RandomFlip`` gets ``skeleton`` unless given a
            ``flip_index``.
        output_hw: (Ho, Wo).
        skeleton: the dataset's skeleton.
    """
    steps = []
    for entry in config:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ValueError(f"each transform must be a one-key mapping {{name: {{arguments}}}}, got {entry!r}")
        (name, kwargs), = entry.items()
        if name not in TRANSFORMS:
            raise ValueError(f"unknown transform {name!r}; known: {', '.join(TRANSFORMS)}")
        kwargs = dict(kwargs or {})
        if name == "RandomFlip":
            kwargs.setdefault("flip_index", skeleton)
        steps.append(TRANSFORMS[name](**kwargs))
    return Compose(steps, output_hw)
