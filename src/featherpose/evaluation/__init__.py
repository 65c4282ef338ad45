"""Evaluation of a pose model on COCO-keypoints data: OKS AP (pycocotools) and PCK / PCKh / AUC.

    report = evaluate("movenet-multipose", "person_keypoints_val2017.json")
    report.coco["AP"], report.metrics(), print(report.table())

How predictions are made (``evaluate``):

- Multi-person models run on every whole image of the data, people included or not (detections
  on an image without people are false positives, as in COCO). Every instance the model returns
  is kept, with no score threshold; its ``score`` is the model's instance score.
- Single-person models run top-down on the ground-truth boxes, through the
  :class:`~featherpose.topdown.TopDown` that ``featherpose predict`` uses
  (:meth:`~featherpose.topdown.TopDown.on_boxes`): for each annotated person (``iscrowd`` 0, at
  least one labelled keypoint) a square of side ``CROP_EXPAND`` (1.25) x ``max(w, h)`` of its box is
  cut around the box centre (:func:`featherpose.image.crop_square`); parts outside the image are zero
  (black, like the letterbox padding), so the person stays in the middle of the network input, where
  MoveNet's centre prior looks. Keypoints are mapped back to the image and the result gets that
  person's ``image_id``: exactly one result per annotated person. Its ``score`` is the box score
  (1 for a ground-truth box) x the mean keypoint score over the evaluated keypoints.

PCK needs each ground-truth person paired with one prediction. Top-down, that is the prediction
made from the person's own box. Multi-person, pairs are taken greedily by OKS (the highest
remaining OKS pair of an image first, each prediction and person used once); a person left
without a prediction counts as all keypoints wrong.

When the model's keypoints differ from the data's (a COCO-17 model on LSP-14 data), keypoints
are matched by name and only the shared ones are scored, for AP (COCOeval on the data reduced
to those keypoints, with their sigmas) and for PCK; ``EvalReport.notes`` says which.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import zoo  # the module, not its load: zoo.load is looked up when called
from ..data.coco import CocoCheck, Problem, describe_problems, validate_coco
from ..estimator import Estimator
from ..fileio import check_writable, refuse_overwrite, same_file, write_text
from ..image import CROP_EXPAND, load_dataset_image
from ..skeletons import Skeleton, skeleton_for
from ..topdown import TopDown
from .coco import coco_keypoint_ap, dataset_sigmas, load_coco, oks, person_category, run_cocoeval
from .pck import (PCKScore, auc_from_distances, box_size, head_size, normalized_distances, pck, pck_auc,
                  pck_from_distances, pckh, torso_size)

__all__ = ["EvalReport", "PCKResult", "PCKScore", "ResultsNotWrittenError", "coco_keypoint_ap", "evaluate",
           "greedy_match", "oks", "pck", "pck_auc", "pckh", "run_cocoeval", "box_size", "head_size", "torso_size"]

log = logging.getLogger(__name__)

#: (normaliser, annotation field, alpha, AUC range end): the PCK variants, when the data allows them.
PCK_VARIANTS = (("box", "bbox", 0.2, 0.2), ("torso", "torso_size", 0.2, 0.2), ("head", "head_box", 0.5, 0.5))


@dataclass(frozen=True)
class PCKResult:
    """PCK at ``alpha`` and the AUC of the PCK curve over [0, ``auc_max``], for one normaliser.

    ``normaliser``: ``box`` (max side of the person box), ``torso`` (the ``torso_size`` field) or
    ``head`` (0.6 x diagonal of the ``head_box`` field, x, y, w, h: PCKh).
    """

    normaliser: str
    alpha: float
    pck: PCKScore
    auc_max: float
    auc: PCKScore

    @property
    def name(self) -> str:
        return f"PCKh@{self.alpha:g}" if self.normaliser == "head" else f"PCK@{self.alpha:g} ({self.normaliser})"

    @property
    def auc_name(self) -> str:
        return f"AUC 0-{self.auc_max:g} ({'PCKh' if self.normaliser == 'head' else self.normaliser})"


@dataclass
class EvalReport:
    """What :func:`evaluate` measured.

    Attributes:
        model: model name. data: the annotation file. mode: how predictions were made.
        joints: names of the evaluated keypoints (data order).
        images: images run (top-down: images with annotated people). persons: ground-truth people scored
            by PCK. detections: results submitted to COCOeval.
        coco: AP, AP50, AP75, APm, APl, AR (NaN where COCOeval has nothing to measure).
        pck: normaliser -> :class:`PCKResult` (``box`` always; ``torso`` / ``head`` when the data has them).
        coco_summary: COCOeval's printed summary. notes: caveats (e.g. keypoints not evaluated).
        results: the COCO results list, keypoints in the data's layout (unevaluated keypoints 0, 0, 0).
        results_path: where they were written, if asked. seconds: wall time.
    """

    model: str
    data: Path
    mode: str
    joints: tuple[str, ...]
    images: int
    persons: int
    detections: int
    coco: dict[str, float]
    pck: dict[str, PCKResult]
    coco_summary: str = ""
    notes: list[str] = field(default_factory=list)
    results: list[dict] = field(default_factory=list, repr=False)
    results_path: Path | None = None
    seconds: float = 0.0

    def metrics(self) -> dict[str, float]:
        """Every headline number by name: AP ... AR, then each PCK variant and its AUC (fractions)."""
        out = dict(self.coco)
        for result in self.pck.values():
            out[result.name] = result.pck.mean
            out[result.auc_name] = result.auc.mean
        return out

    def table(self) -> str:
        """A small two-column text table of :meth:`metrics` in percent, with the caveats below it."""
        rows = [f"{self.model} on {self.data.name}: {self.mode}; {self.images} images, {self.persons} people, "
                f"{self.detections} detections, {self.seconds:.1f} s",
                f"{'metric':<20} {'value':>7}", f"{'-' * 20} {'-' * 7}"]
        for name, value in self.metrics().items():
            rows.append(f"{name:<20} {'n/a' if np.isnan(value) else f'{100 * value:.1f}':>7}")
        return "\n".join(rows + [f"note: {n}" for n in self.notes])

    def joint_table(self) -> str:
        """Per keypoint, each PCK variant and its AUC in percent (``n/a`` where a joint is never labelled)."""
        heads = [name for r in self.pck.values() for name in (r.name, r.auc_name)]
        width = max(len(j) for j in self.joints)
        rows = [f"{'joint':<{width}} " + " ".join(f"{h:>18}" for h in heads)]
        for j, joint in enumerate(self.joints):
            values = [v for r in self.pck.values() for v in (r.pck.per_joint[j], r.auc.per_joint[j])]
            rows.append(f"{joint:<{width}} " + " ".join(f"{'n/a' if np.isnan(v) else f'{100 * v:.1f}':>18}"
                                                       for v in values))
        return "\n".join(rows)


def greedy_match(similarity: np.ndarray) -> np.ndarray:
    """Pair ground-truth people with predictions, highest similarity first, each used once.

    Args:
        similarity: (N, M) e.g. OKS of N predictions with M ground-truth people.

    Returns:
        (M,) index of the prediction paired with each person, -1 where none is left.
    """
    n, m = similarity.shape
    match = np.full(m, -1, np.intp)
    used = np.zeros(n, bool)
    for flat in np.argsort(-similarity, axis=None, kind="stable"):
        i, j = divmod(int(flat), m)
        if not used[i] and match[j] < 0:
            used[i], match[j] = True, i
    return match


def _shared_joints(data_names: list[str], skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(data indices, model indices, notes) of the keypoints both have, matched by name, in data order."""
    model_names = list(skeleton.keypoints)
    shared = [n for n in data_names if n in model_names]
    if not shared:
        raise ValueError(f"the model predicts {skeleton.name} keypoints ({', '.join(model_names)}) and the data has "
                         f"({', '.join(data_names)}): no keypoint names in common, so nothing can be evaluated; "
                         "use data with the model's keypoints")
    notes = []
    if len(shared) != len(model_names) or len(shared) != len(data_names):
        data_sk = skeleton_for(data_names)
        only_data = [n for n in data_names if n not in shared]
        only_model = [n for n in model_names if n not in shared]
        notes.append(f"model keypoints ({skeleton.name}, {len(model_names)}) differ from the data's "
                     f"({data_sk.name if data_sk else 'custom'}, {len(data_names)}): evaluated the {len(shared)} "
                     f"shared by name; not evaluated: {', '.join(only_data) or 'none'} (data only), "
                     f"{', '.join(only_model) or 'none'} (model only)")
    return (np.array([data_names.index(n) for n in shared]), np.array([model_names.index(n) for n in shared]),
            notes)


@dataclass
class _GroundTruth:
    """The people PCK scores (non-crowd, >= 1 labelled evaluated keypoint), as arrays; M people."""

    image_ids: np.ndarray          # (M,)
    keypoints: np.ndarray          # (M, Ks, 3) evaluated keypoints x, y, v
    boxes: np.ndarray              # (M, 4) x, y, w, h
    areas: np.ndarray              # (M,)
    fields: dict[str, np.ndarray]  # optional normaliser fields present on every person: torso_size, head_box

    @classmethod
    def from_dataset(cls, dataset: dict, category_id: int, data_idx: np.ndarray, source: str = "the data",
                     skipped: str = "") -> "_GroundTruth":
        k = len(person_category(dataset)["keypoints"])
        anns = [a for a in dataset["annotations"] if a.get("category_id", category_id) == category_id
                and not a.get("iscrowd", 0) and len(a.get("keypoints", ())) == 3 * k
                and (np.asarray(a["keypoints"], np.float64).reshape(k, 3)[data_idx, 2] > 0).any()]
        if not anns:
            raise ValueError(f"{source}: no annotated person (non-crowd, with labelled keypoints the model predicts) "
                             f"in the data: nothing to evaluate{'; ' + skipped if skipped else ''}")
        missing = [a.get("id") for a in anns if "bbox" not in a]
        if missing:
            raise ValueError(f"{len(missing)} annotations have no 'bbox' (ids {missing[:5]}); evaluation needs each "
                             "person's box (x, y, w, h)")
        boxes = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        fields = {}
        for name in ("torso_size", "head_box"):
            if all(name in a for a in anns):
                fields[name] = np.array([a[name] for a in anns], np.float64)
        return cls(np.array([a["image_id"] for a in anns], np.int64),
                   np.array([a["keypoints"] for a in anns], np.float64).reshape(len(anns), k, 3)[:, data_idx],
                   boxes, np.array([a.get("area", b[2] * b[3]) for a, b in zip(anns, boxes)], np.float64), fields)


    def subset(self, keep: np.ndarray) -> "_GroundTruth":
        """The people where ``keep`` (M,) is True."""
        return _GroundTruth(self.image_ids[keep], self.keypoints[keep], self.boxes[keep], self.areas[keep],
                            {k: v[keep] for k, v in self.fields.items()})


def _clean_dataset(dataset: dict, check: CocoCheck, category_id: int, k: int) -> dict:
    """The data as evaluation scores it: the usable images, and the usable annotations of the keypoint
    category with their validated keypoints (:func:`~featherpose.data.coco.validate_coco`).

    Crowd regions and unlabelled people stay (COCOeval ignores detections on them) when their box is
    usable; their keypoints are zeroed when malformed, since COCOeval reads them.
    """
    images, seen = [], set()
    for img in dataset["images"]:
        if isinstance(img, dict) and isinstance(img.get("id"), int) and img["id"] in check.images \
                and img["id"] not in seen:
            seen.add(img["id"])
            images.append(img)
    anns, seen_anns = [], set()
    for a in dataset["annotations"]:
        if not isinstance(a, dict) or a.get("category_id", category_id) != category_id:
            continue
        ann_id = a.get("id") if isinstance(a.get("id"), int) else None
        if ann_id in seen_anns:  # a duplicate id: the check kept the first
            continue
        seen_anns.add(ann_id)
        if ann_id in check.people:
            kps = check.people[ann_id][:k]
        elif check.regions.get(ann_id) is not None:
            x1, y1, x2, y2 = check.regions[ann_id]
            kps = np.asarray(a.get("keypoints"), np.float64).reshape(k, 3) if _keypoints_ok(a, k) else np.zeros((k, 3))
            a = dict(a, bbox=[x1, y1, x2 - x1, y2 - y1])
        else:
            continue
        area = a.get("area")
        if isinstance(area, bool) or not isinstance(area, (int, float)) or not np.isfinite(area) or area <= 0:
            area = float(a["bbox"][2] * a["bbox"][3])
        kps = np.asarray(kps, np.float64)
        anns.append(dict(a, category_id=category_id, iscrowd=int(bool(a.get("iscrowd", 0))),
                         keypoints=kps.reshape(-1).tolist(), num_keypoints=int((kps[:, 2] > 0).sum()),
                         area=float(area)))
    return dict(dataset, images=images, annotations=anns)


def _keypoints_ok(ann: dict, k: int) -> bool:
    kps = ann.get("keypoints")
    if not isinstance(kps, list) or len(kps) != 3 * k:
        return False
    try:
        return bool(np.isfinite(np.asarray(kps, np.float64)).all())
    except (TypeError, ValueError):
        return False


def _reduce_dataset(dataset: dict, data_idx: np.ndarray) -> dict:
    """A shallow copy of ``dataset`` whose keypoints are only ``data_idx`` (num_keypoints recounted)."""
    cat = person_category(dataset)
    k = len(cat["keypoints"])
    anns = []
    for a in dataset["annotations"]:
        if len(a.get("keypoints", ())) == 3 * k:
            kp = np.asarray(a["keypoints"], np.float64).reshape(k, 3)[data_idx]
            a = dict(a, keypoints=kp.reshape(-1).tolist(), num_keypoints=int((kp[:, 2] > 0).sum()))
        anns.append(a)
    cats = [dict(c, keypoints=[c["keypoints"][i] for i in data_idx], skeleton=[]) if c is cat else c
            for c in dataset["categories"]]
    return dict(dataset, annotations=anns, categories=cats)


def _predict(est: Estimator, dataset: dict, root: Path, gt: _GroundTruth, progress: bool,
             sizes: dict[int, tuple[int, int]]):
    """Run the model over the data; ``sizes``: image id -> the json's (height, width), which picks an image's
    orientation (:func:`~featherpose.image.load_dataset_image`).

    Returns:
        image_ids (R,), keypoints (R, K_model, 3) in image pixels, instance scores (R,) (multi-person;
        empty top-down), owner (R,): the ground-truth person a top-down result was cropped from (-1 otherwise),
        and the images that could not be read: image id -> reason (no results on them).
    """
    ids, kpts, scores, owner = [], [], [], []
    unreadable: dict[int, str] = {}
    k = est.skeleton.num_keypoints

    def read(image_id, file_name):
        try:
            return load_dataset_image(root / file_name, sizes.get(image_id))
        except (OSError, ValueError) as exc:  # gone or corrupt since validation: report, skip, score the rest
            unreadable[image_id] = f"unreadable image: {exc}"
            log.warning("%s (skipped)", unreadable[image_id])
            return None

    if est.multi_person:
        for img in tqdm(dataset["images"], desc="evaluate", unit="img", disable=not progress):
            image = read(img["id"], img["file_name"])
            if image is None:
                continue
            poses = est(image, min_score=0)
            ids += [img["id"]] * len(poses)
            kpts.append(poses.keypoints)
            scores.append(poses.scores)
        owner = [-1] * len(ids)
    else:  # the top-down inference predict runs, on each image's ground-truth boxes
        topdown = TopDown(est, boxes={})  # boxes come per image, to on_boxes
        files = {img["id"]: img["file_name"] for img in dataset["images"]}
        order = np.argsort(gt.image_ids, kind="stable")
        sorted_ids = gt.image_ids[order]
        people_of = np.split(order, np.flatnonzero(sorted_ids[1:] != sorted_ids[:-1]) + 1) if len(order) else []
        with tqdm(total=len(order), desc="evaluate", unit="person", disable=not progress) as bar:
            for people in people_of:  # image by image, in image id order; people in annotation order
                image_id = int(gt.image_ids[people[0]])
                image = read(image_id, files[image_id])
                if image is not None:
                    poses = topdown.on_boxes(image, gt.boxes[people], files[image_id])
                    ids += [image_id] * len(people)
                    kpts.append(poses.keypoints)
                    owner += people.tolist()  # no score here: evaluate() scores from the evaluated keypoints
                bar.update(len(people))
    kpts = np.concatenate(kpts) if kpts else np.zeros((0, k, 3), np.float32)
    scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    return np.array(ids, np.int64), kpts, scores, np.array(owner, np.intp), unreadable


def _image_files(data: str | Path) -> dict[str, str]:
    """The images a COCO json lists, as :func:`~featherpose.fileio.refuse_overwrite`'s inputs (none when the json
    cannot be read: evaluate says why in its turn)."""
    try:
        images = json.loads(Path(data).read_text()).get("images", [])
        root = Path(data).parent
        return {same_file(root / im["file_name"]): f"the image {im['file_name']} of {data}" for im in images
                if isinstance(im, dict) and isinstance(im.get("file_name"), str)}
    except (OSError, ValueError, AttributeError):
        return {}


def evaluate(model: str | Path | Estimator, data: str | Path, *, input_size: int | None = None, backend: str = "auto",
             threads: int | None = None, results_path: str | Path | None = None, progress: bool = True) -> EvalReport:
    """Evaluate a model on COCO-keypoints data: OKS AP through COCOeval, and PCK / PCKh / AUC.

    Args:
        model: zoo name, featherpose weight file, or a loaded :class:`~featherpose.estimator.Estimator`.
        data: COCO keypoints json; each ``file_name`` is relative to the json's folder. The
            category's ``oks_sigmas`` are used for OKS when present (see :mod:`.coco`).
        input_size, backend, threads: passed to :func:`featherpose.load` (not for an Estimator).
        results_path: also write the COCO results json here (atomically).
        progress: show a progress bar.

    Returns:
        An :class:`EvalReport`; how predictions are made and matched is in the module docstring.

    Bad images and annotations are skipped, as training skips them (one shared check,
    :func:`~featherpose.data.coco.validate_coco`), and left out of the ground truth too; so is an image
    that cannot be read when its turn comes. ``EvalReport.notes`` lists them with their ids.

    Raises:
        FileNotFoundError: the json is missing.
        ValueError: not a COCO keypoints file, no usable person to evaluate, no keypoint shared with the
            model, or ``results_path`` is the json itself or the weight file.
        OSError: ``results_path`` cannot be written (checked before the model runs).
        ResultsNotWrittenError: writing ``results_path`` failed at the end; its ``report`` has every metric.
    """
    start = time.perf_counter()
    if results_path is not None:  # before the model runs: an unwritable location fails in a second
        inputs = {same_file(data): f"the annotation file {data}", **_image_files(data)}
        if not isinstance(model, Estimator):
            inputs.update(zoo.weight_files(model))
        refuse_overwrite(results_path, inputs, f"results file {results_path}", "give another results file")
        check_writable(results_path, "results file")
    if isinstance(model, Estimator):
        if input_size is not None or threads is not None or backend != "auto":
            raise ValueError("input_size, backend and threads apply when evaluate() loads the model; for an "
                             "Estimator pass them to featherpose.load() instead")
        est = model
    else:
        est = zoo.load(model, backend=backend, threads=threads, input_size=input_size)
    path = Path(data)
    dataset = load_coco(path)
    cat = person_category(dataset, str(path))
    data_names = list(cat["keypoints"])
    sigmas = dataset_sigmas(dataset, str(path))
    data_idx, model_idx, notes = _shared_joints(data_names, est.skeleton)
    # The validation training uses: bad entries are skipped, reported, and left out of the ground truth too.
    check = validate_coco(dataset, path, path.parent, category_id=cat["id"], num_keypoints=len(data_names))
    problems = list(check.problems)
    dataset = _clean_dataset(dataset, check, cat["id"], len(data_names))
    gt = _GroundTruth.from_dataset(dataset, cat["id"], data_idx, str(path), describe_problems(problems))

    sizes = {i: (h, w) for i, (_, h, w) in check.images.items() if h is not None}  # the json's, validated
    ids, kpts, scores, owner, unreadable = _predict(est, dataset, path.parent, gt, progress, sizes)
    if unreadable:  # leave those images out of the ground truth as well, so every image scored was seen
        problems += [Problem(why, image_id) for image_id, why in unreadable.items()]
        keep = ~np.isin(gt.image_ids, list(unreadable))
        owner = (np.cumsum(keep) - 1)[owner] if len(owner) else owner
        gt = gt.subset(keep)
        dataset = dict(dataset, images=[i for i in dataset["images"] if i["id"] not in unreadable],
                       annotations=[a for a in dataset["annotations"] if a["image_id"] not in unreadable])
        if not len(gt.image_ids):
            raise ValueError(f"{path}: no annotated person left to evaluate; {describe_problems(problems)}")
    if problems:
        notes.insert(0, f"{describe_problems(problems)}; left out of the ground truth too (a skipped image with "
                        "all its people), so the scores are over the rest (a multi-person model that finds a person "
                        "whose annotation was skipped is charged a false positive)")
    kpts = kpts[:, model_idx].astype(np.float64)                              # (R, Ks, 3), data order
    if not est.multi_person:
        scores = kpts[..., 2].mean(axis=1)
    results = [{"image_id": int(i), "category_id": cat["id"], "keypoints": np.round(kp, 3).reshape(-1).tolist(),
                "score": round(float(s), 5)} for i, kp, s in zip(ids, kpts, scores)]
    full = len(data_idx) == len(data_names)
    coco, summary = run_cocoeval(dataset if full else _reduce_dataset(dataset, data_idx), results, sigmas[data_idx])

    pred_for_gt = np.full(gt.keypoints.shape[:2] + (2,), np.nan)
    if est.multi_person:
        for image_id in np.unique(gt.image_ids):
            people, preds = np.flatnonzero(gt.image_ids == image_id), np.flatnonzero(ids == image_id)
            if len(preds):
                match = greedy_match(oks(kpts[preds], gt.keypoints[people], gt.areas[people], sigmas[data_idx]))
                pred_for_gt[people[match >= 0]] = kpts[preds[match[match >= 0]], :, :2]
    elif len(owner):
        pred_for_gt[owner] = kpts[:, :, :2]
    normalisers = {"bbox": box_size(gt.boxes)}
    if "torso_size" in gt.fields:
        normalisers["torso_size"] = gt.fields["torso_size"]
    if "head_box" in gt.fields:
        normalisers["head_box"] = head_size(gt.fields["head_box"])
    pck_results = {}
    for name, key, alpha, auc_max in PCK_VARIANTS:
        if key in normalisers:
            dist = normalized_distances(pred_for_gt, gt.keypoints[..., :2], gt.keypoints[..., 2], normalisers[key])
            pck_results[name] = PCKResult(name, alpha, pck_from_distances(dist, alpha), auc_max,
                                          auc_from_distances(dist, auc_max))
    if "torso_size" in normalisers and not full:
        notes.append("PCK (torso) is over the shared keypoints only, so it is not comparable with published "
                     "14-joint LSP numbers")

    if full:
        written = results
    else:  # the data's layout, so the file pairs with the original json; unevaluated keypoints are 0, 0, 0
        layout = np.zeros((len(kpts), len(data_names), 3))
        layout[:, data_idx] = np.round(kpts, 3)
        written = [dict(r, keypoints=kp.reshape(-1).tolist()) for r, kp in zip(results, layout)]
    mode = ("multi-person, whole images" if est.multi_person
            else f"top-down on ground-truth boxes (square crops x{CROP_EXPAND:g})")
    mode += ", input each image's own" if est.dynamic_size else f", input {est.input_hw[1]}x{est.input_hw[0]}"
    images = len(dataset["images"]) if est.multi_person else len(np.unique(gt.image_ids))
    report = EvalReport(est.name, path, mode, tuple(data_names[i] for i in data_idx), images, len(gt.image_ids),
                        len(results), coco, pck_results, summary, notes, written,
                        Path(results_path) if results_path is not None else None, time.perf_counter() - start)
    for note in notes:
        log.info("%s", note)
    if results_path is not None:
        try:
            write_text(results_path, json.dumps(written))
        except OSError as exc:
            report.results_path = None
            raise ResultsNotWrittenError(exc, report) from None
    return report


class ResultsNotWrittenError(OSError):
    """The evaluation finished but its results file could not be written; the metrics are not lost.

    Attributes:
        report: the complete :class:`EvalReport` (``results`` included, ``results_path`` None).
    """

    def __init__(self, error: OSError, report: EvalReport):
        self.report = report
        super().__init__(f"{error} (the evaluation itself finished: its metrics are kept)")
        self.errno = error.errno
