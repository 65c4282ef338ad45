"""COCO-format keypoint datasets for any skeleton.

Dimensions: N persons in one image, K keypoints, image [H, W].

:class:`CocoKeypoints` reads one COCO keypoint json (``images``, ``annotations`` and a category
with ``keypoints``) and returns one :class:`Sample` per image: the RGB pixels, the kept persons'
keypoints (N, K, 3) and boxes (N, 4), and an ``ignore`` mask (H, W) over the people a model
cannot be graded on: crowd regions and persons without (enough) labelled keypoints.

K and the OKS sigmas come from the json (``oks_sigmas`` in the category or at the top level), or
else from :mod:`featherpose.skeletons` by keypoint name. COCO-WholeBody files, which keep 17 body
points in ``keypoints`` and the rest in ``foot_kpts`` / ``face_kpts`` / ``lefthand_kpts`` /
``righthand_kpts``, are assembled into K = 133 (the parts' names and sigmas:
:data:`featherpose.skeletons.WHOLEBODY_PARTS`).

Bad annotations never stop an epoch: each is logged once (``logging.warning``), recorded in
``CocoKeypoints.problems`` with its annotation / image id, and skipped. Coordinates are returned
exactly as stored in the json (x before y, float32); :mod:`.transforms` reads them as pixel
centres, (0, 0) being the centre of the top-left pixel.
"""
from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fileio import read_json, write_text
from ..image import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, ImageError, load_dataset_image
from ..skeletons import WHOLEBODY_PARTS, Skeleton, keypoints_without_sigma, sigmas_by_name, skeleton_for

logger = logging.getLogger(__name__)
f32 = np.float32
#: A person box longer than this many times the image's longer side (or, when the json gives no image
#: size, than MAX_BOX_SIDE pixels) is a data error: a top-down crop around it would need gigabytes.
MAX_BOX_FACTOR = 4
MAX_BOX_SIDE = 65536

@dataclass
class Sample:
    """One image and its people.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        keypoints: (N, K, 3) float32 x, y, v; v = 0 unlabelled, 1 labelled but occluded, 2 visible.
        boxes: (N, 4) float32 x1, y1, x2, y2.
        ignore: (H, W) bool, True where a crowd or an unlabelled person is (no loss there).
        image_id: the json's image id.
        file: the image file.
        matrix: (3, 3) float64 affine that maps pixels of ``file`` to pixels of ``image``
            (identity until a transform resizes, rotates or flips the sample).
    """

    image: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray
    ignore: np.ndarray
    image_id: int
    file: str
    matrix: np.ndarray = field(default_factory=lambda: np.eye(3))


@dataclass(frozen=True)
class Problem:
    """A json entry that was skipped, and why."""

    message: str
    image_id: int | None = None
    ann_id: int | None = None

    def __str__(self) -> str:
        ids = (("annotation", self.ann_id), ("image", self.image_id))
        where = ", ".join(f"{k} {v}" for k, v in ids if v is not None)
        return f"{where}: {self.message}" if where else self.message


@dataclass(frozen=True)
class ImageRecord:
    """What the json says about one image, validated (no pixels).

    Attributes:
        image_id: the json's image id.
        file: path of the image file.
        height, width: the json's size, or None when it gives none (then taken from the file).
        keypoints: (N, K, 3) float32 of the kept persons.
        boxes: (N, 4) float32 x1, y1, x2, y2 (clipped to the image).
        ann_ids: (N,) int64 annotation ids.
        ignore_regions: crowd and unlabelled-person regions, each ``("polygons", [[x, y, ...], ...])``,
            ``("rle", {"size": [h, w], "counts": ...})`` or ``("box", (x1, y1, x2, y2))``.
    """

    image_id: int
    file: Path
    height: int | None
    width: int | None
    keypoints: np.ndarray
    boxes: np.ndarray
    ann_ids: np.ndarray
    ignore_regions: tuple = ()


def ignore_mask(regions: Sequence[tuple], height: int, width: int) -> np.ndarray:
    """Rasterise ignore regions (see :class:`ImageRecord`) into an (H, W) bool mask.

    Polygons and RLEs go through ``pycocotools.mask``; a box covers every pixel it touches.
    """
    mask = np.zeros((height, width), bool)
    rles = []
    for kind, value in regions:
        if kind == "box":
            x1, y1, x2, y2 = value
            mask[max(0, math.floor(y1)):max(0, math.ceil(y2)), max(0, math.floor(x1)):max(0, math.ceil(x2))] = True
        elif kind == "polygons" or isinstance(value["counts"], list):
            rles.append(value)
        else:
            rles.append({"size": value["size"], "counts": value["counts"]})
    if rles:
        from pycocotools import mask as mask_utils

        merged = []
        for r in rles:
            obj = mask_utils.frPyObjects(r, height, width)
            merged.extend(obj if isinstance(obj, list) else [obj])
        with warnings.catch_warnings():  # pycocotools 2.0.x under numpy 2: "__array__ ... copy keyword"
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            mask |= mask_utils.decode(mask_utils.merge(merged)).astype(bool)
    return mask


def _finite_numbers(value, n: int | None = None) -> bool:
    if not isinstance(value, (list, tuple)) or (n is not None and len(value) != n):
        return False
    try:
        return bool(np.isfinite(np.asarray(value, np.float64)).all())
    except (TypeError, ValueError):
        return False


def _segmentation_region(seg, height: int | None, width: int | None) -> tuple | None:
    """A usable ignore region from a COCO ``segmentation``, or None when it has none."""
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if height is not None and list(seg["size"]) != [height, width]:
            return None
        return ("rle", seg)
    if isinstance(seg, list):
        polys = [p for p in seg if _finite_numbers(p) and len(p) >= 6 and len(p) % 2 == 0]
        return ("polygons", polys) if polys else None
    return None


def keypoint_category(categories: list, category_id: int | None = None, source: str = "the json") -> dict:
    """The category to read keypoints from: ``category_id`` if given, else the one named ``person``,
    else the first with a ``keypoints`` list. Shared by training data and evaluation."""
    if not isinstance(categories, list):
        raise ValueError(f"{source}: 'categories' must be a list of objects, got {type(categories).__name__}")
    with_kps = [c for c in categories if isinstance(c, dict) and c.get("keypoints")]
    if category_id is not None:
        with_kps = [c for c in with_kps if c.get("id") == category_id]
    if not with_kps:
        raise ValueError(f"{source}: no category{'' if category_id is None else f' {category_id}'} "
                         "with a 'keypoints' list; is this a COCO keypoint json (person_keypoints_*.json)?")
    category = next((c for c in with_kps if c.get("name") == "person"), with_kps[0])
    names = category["keypoints"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ValueError(f"{source}: category {category.get('name', category.get('id'))!r}: 'keypoints' must be a "
                         f"list of distinct keypoint names, got {str(names)[:80]}")
    if isinstance(category.get("id"), bool) or not isinstance(category.get("id"), int):
        raise ValueError(f"{source}: category {category.get('name')!r} needs an integer 'id', got "
                         f"{category.get('id')!r}")
    return category


def keypoint_sigmas(names: list[str], json_sigmas=None, source: str = "the json", hint: str = "") -> list[float]:
    """OKS sigmas for ``names``: the json's ``oks_sigmas``, else the registered skeleton's, else a
    per-name look-up in the registry. Shared by training data and evaluation."""
    if json_sigmas is not None:
        if not _finite_numbers(json_sigmas, len(names)) or not all(s > 0 for s in json_sigmas):
            raise ValueError(f"{source}: 'oks_sigmas' must be {len(names)} positive numbers, one per keypoint, got "
                             f"{str(json_sigmas)[:80]}; fix it, or remove it to use the registered skeleton's{hint}")
        return [float(s) for s in json_sigmas]
    found = sigmas_by_name(names)
    if found is None:
        unknown = keypoints_without_sigma(names)
        raise ValueError(f"{source}: no OKS sigma for keypoints {unknown}; add an 'oks_sigmas' list "
                         f"(one per keypoint) to the json's category{hint}")
    return found


@dataclass
class CocoCheck:
    """A COCO keypoint json, validated (:func:`validate_coco`): what is usable, and what was skipped and why.

    Attributes:
        images: image id -> (file, height, width) of every usable image (height and width None when the
            json gives none).
        per_image: image id -> (keypoints (K, 3) arrays, boxes x1, y1, x2, y2 clipped to the image,
            annotation ids, ignore regions) of the usable people and regions in it.
        people: annotation id -> (K, 3) float32 keypoints of every usable person (>= ``min_keypoints``
            labelled keypoints and a usable box).
        regions: annotation id -> clipped box (None when only the segmentation is usable) of every crowd
            and unlabelled person, which a model is not graded on.
        problems: every skipped entry, with its image / annotation id and the reason.
    """

    images: dict[int, tuple[Path, int | None, int | None]]
    per_image: dict[int, tuple[list, list, list, list]]
    people: dict[int, np.ndarray]
    regions: dict[int, tuple[float, float, float, float] | None]
    problems: list[Problem]


def validate_coco(data: dict, source: str | Path, image_root: str | Path, *, category_id: int,
                  num_keypoints: int, wholebody: bool = False, min_keypoints: int = 1,
                  report: Callable[[str, int | None, int | None], None] | None = None) -> CocoCheck:
    """Check every image and annotation of a COCO keypoint json: the one validation that training data
    (:class:`CocoKeypoints`) and evaluation (:func:`featherpose.evaluation.evaluate`) share.

    An entry is skipped, with the reason, when: an image has no integer ``id`` or ``file_name``, a
    duplicate id, a bad size or no file under ``image_root``; an annotation has no integer ``id`` /
    ``image_id``, a duplicate id, an ``image_id`` not among the usable images, keypoints that are not
    ``3 * num_keypoints`` finite numbers with visibility 0 / 1 / 2, or (a graded person) an unusable
    ``bbox``. Annotations of other categories are ignored.

    Args:
        data: the parsed json. source: its path, for messages. image_root: folder of the ``file_name`` s.
        category_id: the keypoint category (:func:`keypoint_category`). num_keypoints: its K.
        wholebody: append COCO-WholeBody's foot / face / hand keypoints.
        min_keypoints: fewer labelled keypoints make a person an ignore region instead.
        report: called as ``report(message, image_id, ann_id)`` for each skipped entry (default: collect only).

    Raises:
        ValueError: ``images`` or ``annotations`` is not a list.
    """
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{source}: '{key}' must be a list of objects, got {type(data.get(key)).__name__}; "
                             "is this a COCO keypoint json (person_keypoints_*.json)?")
    problems: list[Problem] = []

    def collect(message: str, image_id=None, ann_id=None) -> None:
        problems.append(Problem(message, image_id, ann_id))
        if report is not None:
            report(message, image_id, ann_id)

    check = _Validator(Path(image_root), category_id, num_keypoints, wholebody, min_keypoints, collect)
    images = check._read_images(data["images"])
    per_image = check._read_annotations(data["annotations"], images)
    return CocoCheck(images, per_image, check.people, check.regions, problems)


def describe_problems(problems: Sequence[Problem], limit: int = 10) -> str:
    """One line for skipped entries, e.g. ``skipped 2 annotations: id 123 (keypoints contain NaN, inf or
    non-numbers), id 456 (refers to an image id that is not in 'images')``; images likewise; '' if none."""
    parts = []
    for noun, items in (("annotation", [p for p in problems if p.ann_id is not None]),
                        ("image", [p for p in problems if p.ann_id is None])):
        if items:
            named = ", ".join(f"id {p.ann_id if p.ann_id is not None else p.image_id} ({p.message})"
                              if (p.ann_id if p.ann_id is not None else p.image_id) is not None else p.message
                              for p in items[:limit])
            more = f", and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"skipped {len(items)} {noun}{'s' if len(items) != 1 else ''}: {named}{more}")
    return "; ".join(parts)


class _Validator:
    """The checks of :func:`validate_coco`, entry by entry."""

    def __init__(self, image_root: Path, category_id: int, body_k: int, wholebody: bool, min_keypoints: int,
                 report: Callable[[str, int | None, int | None], None]):
        self.image_root, self.category_id, self.body_k = image_root, category_id, body_k
        self.wholebody, self.min_keypoints, self.report = wholebody, min_keypoints, report
        self.skipped_images: set = set()
        self.people: dict[int, np.ndarray] = {}
        self.regions: dict[int, tuple | None] = {}

    def _read_images(self, entries: list) -> dict[int, tuple[Path, int | None, int | None]]:
        images: dict[int, tuple[Path, int | None, int | None]] = {}
        for im in entries:
            image_id = im.get("id") if isinstance(im, dict) else None
            if not isinstance(image_id, int) or not isinstance(im.get("file_name"), str):
                self.report(f"image entry without an integer 'id' and a 'file_name': {str(im)[:80]}", image_id)
                continue
            if image_id in images:
                self.report("duplicate image id", image_id)
                continue
            h, w = im.get("height"), im.get("width")
            if h is not None or w is not None:
                if not (_finite_numbers([h, w]) and h > 0 and w > 0 and int(h) == h and int(w) == w):
                    self.skipped_images.add(image_id)
                    self.report(f"height and width must be positive integers, got {h} x {w}", image_id)
                    continue
                h, w = int(h), int(w)
                if h * w > MAX_IMAGE_PIXELS:
                    self.skipped_images.add(image_id)
                    self.report(f"{w}x{h} is over the {MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel limit of load_image",
                                image_id)
                    continue
            path = self.image_root / im["file_name"]
            if not path.is_file():
                self.skipped_images.add(image_id)
                self.report(f"image file missing: {path}", image_id)
                continue
            images[image_id] = (path, h, w)
        return images

    def _box(self, bbox, height, width) -> tuple[float, float, float, float] | str:
        """x1, y1, x2, y2 clipped to the image, or the reason the COCO ``bbox`` is unusable."""
        if not _finite_numbers(bbox, 4):
            return f"bbox must be 4 finite numbers [x, y, w, h], got {bbox}"
        x, y, w, h = (float(b) for b in bbox)
        if w <= 0 or h <= 0:
            return f"bbox has non-positive size {w}x{h}"
        # a crop around the box is allocated (top-down data, evaluation): absurd sizes are data errors
        if height is not None and max(w, h) > MAX_BOX_FACTOR * max(height, width):
            return f"bbox {w:g}x{h:g} is over {MAX_BOX_FACTOR} times the size of the {width}x{height} image"
        if max(w, h) > MAX_BOX_SIDE:
            return f"bbox {w:g}x{h:g} is over {MAX_BOX_SIDE} pixels"
        x1, y1, x2, y2 = x, y, x + w, y + h
        if height is not None:
            if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
                return f"bbox {bbox} lies outside the {width}x{height} image"
            x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
        return x1, y1, x2, y2

    def _keypoints(self, ann: dict) -> np.ndarray | str:
        """(K, 3) float32 keypoints of one annotation (WholeBody parts appended), or why they are unusable."""
        kps = ann.get("keypoints")
        if not isinstance(kps, list):
            return f"keypoints missing or not a list (got {type(kps).__name__})"
        if len(kps) != 3 * self.body_k:
            return f"keypoints has {len(kps)} values, expected {3 * self.body_k} (K={self.body_k} x 3)"
        if not _finite_numbers(kps):
            return "keypoints contain NaN, inf or non-numbers"
        out = np.asarray(kps, np.float64).reshape(-1, 3)
        if not np.isin(out[:, 2], (0, 1, 2)).all():
            return f"keypoint visibility must be 0, 1 or 2, got {sorted(set(out[:, 2].tolist()) - {0, 1, 2})}"
        if self.wholebody:
            parts = [out]
            for part, names, _ in WHOLEBODY_PARTS:
                values = ann.get(f"{part}_kpts")
                if values is None or not ann.get(f"{part}_valid", True):
                    parts.append(np.zeros((len(names), 3)))
                    continue
                if not _finite_numbers(values, 3 * len(names)):
                    return f"{part}_kpts must be {3 * len(names)} finite numbers"
                p = np.asarray(values, np.float64).reshape(-1, 3)
                # WholeBody stores confidences in (0, 1] for face and hands: any v > 0 is labelled.
                p[:, 2] = np.where(p[:, 2] <= 0, 0, np.where(p[:, 2] >= 1.5, 2, 1))
                parts.append(p)
            out = np.concatenate(parts)
        if (np.abs(out) > 1e9).any():  # finite in float64 but absurd (and inf once float32)
            return "keypoint coordinates beyond 1e9 pixels"
        return out.astype(f32)

    def _read_annotations(self, anns: list, images: dict) -> dict[int, tuple[list, list, list, list]]:
        per_image: dict[int, tuple[list, list, list, list]] = {}
        seen_ids: set = set()
        for ann in anns:
            if not isinstance(ann, dict):
                self.report(f"annotation is not an object: {str(ann)[:80]}")
                continue
            ann_id, image_id = ann.get("id"), ann.get("image_id")
            if ann.get("category_id", self.category_id) != self.category_id:
                continue
            if not isinstance(ann_id, int) or not isinstance(image_id, int):
                self.report(f"annotation needs integer 'id' and 'image_id', got {ann_id!r} and {image_id!r}",
                             image_id if isinstance(image_id, int) else None,
                             ann_id if isinstance(ann_id, int) else None)
                continue
            if ann_id in seen_ids:
                self.report("duplicate annotation id", image_id, ann_id)
                continue
            seen_ids.add(ann_id)
            if image_id not in images:
                if image_id not in self.skipped_images:  # else the image itself was reported
                    self.report("refers to an image id that is not in 'images'", image_id, ann_id)
                continue
            _, height, width = images[image_id]
            kps_list, boxes, ids, regions = per_image.setdefault(image_id, ([], [], [], []))
            box = self._box(ann.get("bbox"), height, width)
            seg = _segmentation_region(ann.get("segmentation"), height, width)
            if ann.get("iscrowd", 0):
                if seg is None and isinstance(box, str):
                    self.report(f"crowd region without a usable segmentation or bbox: {box}", image_id, ann_id)
                else:
                    regions.append(seg or ("box", box))
                    self.regions[ann_id] = None if isinstance(box, str) else box
                continue
            kps = self._keypoints(ann)
            if isinstance(kps, str):
                self.report(kps, image_id, ann_id)
                continue
            labelled = int((kps[:, 2] > 0).sum())
            if labelled < self.min_keypoints:  # a person we cannot grade: no loss on it
                if seg is None and isinstance(box, str):
                    self.report(f"unlabelled person without a usable segmentation or bbox: {box}", image_id, ann_id)
                else:
                    regions.append(seg or ("box", box))
                    self.regions[ann_id] = None if isinstance(box, str) else box
                continue
            if isinstance(box, str):
                self.report(box, image_id, ann_id)
                continue
            kps_list.append(kps)
            boxes.append(box)
            ids.append(ann_id)
            self.people[ann_id] = kps
        return per_image


class CocoKeypoints:
    """A COCO keypoint json as a map-style dataset of :class:`Sample` (numpy, no torch tensors).

    Works with ``torch.utils.data.DataLoader`` (define ``collate_fn``: samples differ in N and size).

    Args:
        ann_file: the json.
        image_root: folder the images' ``file_name`` are relative to; default the json's folder.
        min_keypoints: a person is kept if it has at least this many labelled keypoints (v > 0);
            persons with fewer are added to the ignore mask instead.
        images_with_people_only: drop images without a kept person.
        sigmas: K OKS sigmas overriding the json's and the registry's.
        wholebody: append COCO-WholeBody's foot / face / hand fields (K = 17 + 116); default: when the
            annotations have them.
        category_id: the category to read; default the one named ``person``, else the first with keypoints.
        transform: ``transform(sample, rng) -> sample``, e.g. a :class:`~featherpose.data.transforms.Compose`.
        seed: with ``set_epoch``, seeds the transform's generator per item:
            ``np.random.default_rng([seed, epoch, index])``, the same in any worker process.

    Attributes:
        skeleton: the :class:`~featherpose.skeletons.Skeleton` (registered one when names and
            sigmas match, else built from the json: names, 1-based ``skeleton`` limbs, sigmas).
        sigmas: (K,) float32.
        records: one :class:`ImageRecord` per usable image.
        problems: every :class:`Problem` met so far (load time and ``__getitem__``). With worker
            processes, problems found in ``__getitem__`` stay in the worker (they are still logged).

    Raises:
        FileNotFoundError: ``ann_file`` or ``image_root`` does not exist.
        ValueError: the json is not COCO keypoint layout, or K sigmas cannot be found.
    """

    def __init__(self, ann_file: str | Path, image_root: str | Path | None = None, *, min_keypoints: int = 1,
                 images_with_people_only: bool = False, sigmas: Sequence[float] | None = None,
                 wholebody: bool | None = None, category_id: int | None = None,
                 transform: Callable[[Sample, np.random.Generator], Sample] | None = None, seed: int = 0):
        self.ann_file = Path(ann_file)
        data = read_json(self.ann_file, "annotation file")
        self.image_root = Path(image_root) if image_root is not None else self.ann_file.parent
        if not self.image_root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.image_root} (pass image_root=)")
        if min_keypoints < 1:
            raise ValueError(f"min_keypoints must be >= 1, got {min_keypoints}")
        if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= data.keys():
            raise ValueError(f"{self.ann_file}: expected COCO layout with 'images', 'annotations' and "
                             f"'categories'; got keys {sorted(data) if isinstance(data, dict) else type(data)}")
        self.min_keypoints = min_keypoints
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.problems: list[Problem] = []
        self._reported: set[Problem] = set()
        self._unreadable: set[int] = set()

        category = keypoint_category(data["categories"], category_id, str(self.ann_file))
        self.category_id = category["id"]
        body_names = list(category["keypoints"])
        self._body_k = len(body_names)
        if wholebody is None:
            wholebody = any(isinstance(a, dict) and all(f"{p}_kpts" in a for p, _, _ in WHOLEBODY_PARTS)
                            for a in data["annotations"])
        self.wholebody = bool(wholebody)
        names = body_names
        if self.wholebody:
            if self._body_k != 17:
                raise ValueError(f"{self.ann_file}: wholebody=True needs the 17 COCO body keypoints, "
                                 f"the category has {self._body_k}; pass wholebody=False")
            names = names + [n for _, part, _ in WHOLEBODY_PARTS for n in part]
        if sigmas is None:
            sigmas = keypoint_sigmas(body_names, category.get("oks_sigmas", data.get("oks_sigmas")), str(self.ann_file),
                                     hint=", or pass sigmas=")
            if self.wholebody:
                sigmas = list(sigmas) + [s for _, _, part_sigmas in WHOLEBODY_PARTS for s in part_sigmas]
        if len(sigmas) != len(names) or not _finite_numbers(list(sigmas)):
            raise ValueError(f"{self.ann_file}: {len(sigmas)} OKS sigmas for {len(names)} keypoints; "
                             "fix 'oks_sigmas' in the json or pass sigmas= with one number per keypoint")
        self.keypoint_names = tuple(names)
        self.sigmas = np.asarray(sigmas, f32)
        self.skeleton = self._make_skeleton(category)

        check = validate_coco(data, self.ann_file, self.image_root, category_id=self.category_id,
                              num_keypoints=self._body_k, wholebody=self.wholebody, min_keypoints=min_keypoints,
                              report=self.report)
        images, per_image = check.images, check.per_image
        self.records: list[ImageRecord] = []
        for image_id, (path, height, width) in images.items():
            kps, boxes, ids, regions = per_image.get(image_id, ([], [], [], []))
            if images_with_people_only and not kps:
                continue
            self.records.append(ImageRecord(
                image_id, path, height, width,
                np.asarray(kps, f32).reshape(-1, self.num_keypoints, 3), np.asarray(boxes, f32).reshape(-1, 4),
                np.asarray(ids, np.int64), tuple(regions)))
        logger.info("%s: %d images, %d persons, K=%d, %d problems", self.ann_file.name, len(self.records),
                    sum(len(r.keypoints) for r in self.records), self.num_keypoints, len(self.problems))

    # ----------------------------------------------------------------------------------- metadata

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def _make_skeleton(self, category: dict) -> Skeleton:
        registered = skeleton_for(self.keypoint_names)
        if registered is not None and np.allclose(registered.sigmas, self.sigmas):
            return registered
        k = self.num_keypoints
        limbs = []
        for pair in category.get("skeleton") or []:
            if _finite_numbers(pair, 2) and all(1 <= int(j) <= k for j in pair):
                limbs.append((int(pair[0]) - 1, int(pair[1]) - 1))
            else:
                logger.warning("%s: dropped limb %r of the category skeleton (1-based indices up to %d expected)",
                               self.ann_file.name, pair, k)
        name = registered.name if registered is not None else self.ann_file.stem
        return Skeleton(name, self.keypoint_names, tuple(limbs), tuple(float(s) for s in self.sigmas))

    # ------------------------------------------------------------------------------------ parsing

    def report(self, message: str, image_id=None, ann_id=None) -> None:
        problem = Problem(message, image_id, ann_id)
        if problem in self._reported:
            return
        self._reported.add(problem)
        self.problems.append(problem)
        logger.warning("%s: %s (skipped)", self.ann_file.name, problem)

    # ------------------------------------------------------------------------------------ samples

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Change the per-item transform seeds (``[seed, epoch, index]``) for a new epoch."""
        self.epoch = int(epoch)

    def rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The augmentation generator of item ``index`` in ``epoch`` (default: this one's, :meth:`set_epoch`):
        ``np.random.default_rng([seed, epoch, index])``."""
        return np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch), int(index)])

    def load(self, index: int) -> Sample:
        """The untransformed sample of ``records[index]``.

        Raises:
            FileNotFoundError, ImageError: the image cannot be read, or has another size than the json says.
        """
        rec = self.records[index]
        image = load_dataset_image(rec.file, None if rec.height is None else (rec.height, rec.width))
        h, w = image.shape[:2]
        if rec.height is not None and (h, w) != (rec.height, rec.width):
            raise ImageError(f"{rec.file}: the json says {rec.width}x{rec.height}, the file is {w}x{h}")
        return Sample(image, rec.keypoints.copy(), rec.boxes.copy(), ignore_mask(rec.ignore_regions, h, w),
                      rec.image_id, str(rec.file))

    def __getitem__(self, index: int) -> Sample:
        """Sample ``index``, transformed if the dataset has a transform.

        An unreadable image is reported once and replaced by the next readable one; if none is
        readable, an empty sample (no persons, black image) is returned.
        """
        n = len(self.records)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index %= n
        rng = self.rng(index) if self.transform is not None else None
        for step in range(n):
            i = (index + step) % n
            rec = self.records[i]
            if rec.image_id in self._unreadable:
                continue
            try:
                sample = self.load(i)
            except (OSError, ImageError) as exc:
                self._unreadable.add(rec.image_id)
                self.report(f"unreadable image: {exc}", rec.image_id)
                continue
            return self.transform(sample, rng) if self.transform is not None else sample
        rec = self.records[index]
        h, w = rec.height or 1, rec.width or 1
        sample = Sample(np.zeros((h, w, 3), np.uint8), np.zeros((0, self.num_keypoints, 3), f32),
                        np.zeros((0, 4), f32), np.zeros((h, w), bool), rec.image_id, str(rec.file))
        return self.transform(sample, rng) if self.transform is not None else sample


def image_folder_as_coco(folder: str | Path, skeleton: Skeleton, out_json: str | Path) -> Path:
    """Write a COCO keypoints json listing every image under ``folder`` (recursively), with no people.

    Unlabelled images become a :class:`CocoKeypoints` dataset this way, so distillation from a teacher
    reads them through the same loader, checks and augmentation as labelled data.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(skeleton.keypoints),
                "skeleton": [[a + 1, b + 1] for a, b in skeleton.limbs], "oks_sigmas": list(skeleton.sigmas)}
    data = {"images": [{"id": i + 1, "file_name": p.relative_to(folder).as_posix()} for i, p in enumerate(files)],
            "annotations": [], "categories": [category]}
    write_text(out_json, json.dumps(data))
    return Path(out_json)


def first_images(ann_file: str | Path, n: int, out_json: str | Path) -> Path:
    """Write a copy of the COCO json ``ann_file`` holding only its first ``n`` images and their annotations.

    Image paths become absolute, so the copy can live anywhere (a memorisation or timing subset).
    """
    ann_file = Path(ann_file)
    data = read_json(ann_file, "annotation file")
    data["images"] = [dict(im, file_name=str((ann_file.parent / im["file_name"]).resolve()))
                      for im in data["images"][:n]]
    ids = {im["id"] for im in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    write_text(out_json, json.dumps(data))
    return Path(out_json)
