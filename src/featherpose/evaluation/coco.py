"""OKS average precision through pycocotools' COCOeval, and the OKS itself for matching.

Dimensions: N predicted people, M ground-truth people, K keypoints.

COCOeval is the maintained reference for keypoint AP; this module only feeds it: the ground
truth (a COCO keypoints dict or json path), the results list and the per-keypoint OKS sigmas.
Sigmas come from the json's ``oks_sigmas`` category field, else the registered skeleton with
the same keypoint names (:mod:`featherpose.skeletons`); COCOeval's built-in COCO-17 sigmas are
never used silently, since they are wrong whenever K != 17. pycocotools prints while it works;
its output is captured and logged at INFO level, and the ten-line summary is kept as text.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.coco import keypoint_category, keypoint_sigmas
from ..fileio import read_json

log = logging.getLogger(__name__)

#: The metrics returned by :func:`coco_keypoint_ap`, in COCOeval's ``stats`` order (indices 0-5).
METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR")


def load_coco(data: dict | str | Path) -> dict:
    """A COCO keypoints dataset as a dict (a path is read as json; a dict is returned as is)."""
    if isinstance(data, dict):
        return data
    path = Path(data)
    if path.is_dir():
        found = sorted(path.glob("*.json"))
        raise FileNotFoundError(f"{path} is a folder; give the COCO keypoints json inside it"
                                f"{f', e.g. {found[0]}' if found else ' (it has none)'}")
    dataset = read_json(path, "annotation file")
    if not isinstance(dataset, dict) or not {"images", "annotations", "categories"} <= set(dataset):
        raise ValueError(f"{path}: not a COCO keypoints file (needs 'images', 'annotations' and 'categories')")
    return dataset


def person_category(dataset: dict, source: str = "the annotation file") -> dict:
    """The keypoint category, chosen as the training data loader chooses it (``data.coco``)."""
    return keypoint_category(dataset.get("categories", []), source=source)


def dataset_sigmas(dataset: dict, source: str = "the annotation file") -> np.ndarray:
    """(K,) OKS sigmas of a dataset, found as the training data loader finds them: the category's (or
    the file's) ``oks_sigmas``, else the registered skeleton's.

    Raises:
        ValueError: no source gives K sigmas.
    """
    cat = person_category(dataset, source)
    names = list(cat["keypoints"])
    given = keypoint_sigmas(names, cat.get("oks_sigmas", dataset.get("oks_sigmas")), source)
    try:
        sigmas = np.asarray(given, np.float64)
    except (TypeError, ValueError):
        sigmas = np.zeros(0)
    if sigmas.shape != (len(names),) or not (np.isfinite(sigmas) & (sigmas > 0)).all():
        raise ValueError(f"{source}: 'oks_sigmas' must be {len(names)} positive numbers, one per keypoint, got "
                         f"{str(given)[:80]}; fix it or remove it to use the registered skeleton's")
    return sigmas


def oks(pred_xy: np.ndarray, gt: np.ndarray, areas: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Object keypoint similarity of every prediction with every ground-truth person.

    OKS = mean over the labelled (v > 0) ground-truth keypoints of exp(-d^2 / (2 s^2 (2 sigma)^2)),
    with d the pixel distance and s^2 the ground-truth ``area``: COCOeval's ``computeOks`` for
    people with labelled keypoints. A person without labelled keypoints has OKS 0 with everything.

    Args:
        pred_xy: (N, K, 2) predicted x, y (a score channel, (N, K, 3), is ignored).
        gt: (M, K, 3) ground-truth x, y, visibility v.
        areas: (M,) ground-truth areas (pixels^2).
        sigmas: (K,) per-keypoint sigmas.

    Returns:
        (N, M) OKS in [0, 1].
    """
    pred_xy = np.asarray(pred_xy, np.float64)[..., :2]
    gt = np.asarray(gt, np.float64)
    var = (2.0 * np.asarray(sigmas, np.float64)) ** 2                                   # (K,)
    d2 = ((pred_xy[:, None] - gt[None, :, :, :2]) ** 2).sum(-1)                           # (N, M, K)
    e = d2 / var / (np.asarray(areas, np.float64)[None, :, None] + np.spacing(1)) / 2.0
    labelled = gt[None, :, :, 2] > 0                                                      # (1, M, K)
    count = labelled.sum(-1)
    total = np.where(labelled, np.exp(-e), 0.0).sum(-1)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def _coco_api(dataset: dict):
    from pycocotools.coco import COCO

    api = COCO()
    api.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    return api


def _complete(ann: dict) -> dict:
    """A copy of a ground-truth annotation with the fields COCOeval needs: ``area`` (bbox w*h if absent)
    and ``num_keypoints`` (labelled keypoints counted if absent)."""
    ann = dict(ann)
    if "area" not in ann:
        ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
    if "num_keypoints" not in ann:
        ann["num_keypoints"] = int((np.asarray(ann.get("keypoints", []), np.float64)[2::3] > 0).sum())
    return ann


def run_cocoeval(gt: dict | str | Path, results: list[dict],
                 sigmas: Sequence[float] | None = None) -> tuple[dict[str, float], str]:
    """COCOeval 'keypoints' of ``results`` against ``gt``, quietly.

    Args:
        gt: COCO keypoints dataset (dict or json path; not modified). Annotations without ``area`` get
            bbox w*h.
        results: COCO keypoint results: ``image_id``, ``category_id``, ``keypoints`` (3K values:
            x, y, score) and ``score``. Not modified.
        sigmas: (K,) OKS sigmas; None: :func:`dataset_sigmas`.

    Returns:
        (metrics, summary): ``METRICS`` -> value, NaN where COCOeval has nothing to measure
        (it reports -1, e.g. APm when no ground-truth person is medium-sized); and the ten-line text
        COCOeval prints. Empty ``results`` give 0 for every metric (COCOeval itself would crash).

    Raises:
        ValueError: a result has the wrong number of keypoints, or names an image not in ``gt``.
    """
    from pycocotools.cocoeval import COCOeval

    dataset = load_coco(gt)
    sig = dataset_sigmas(dataset) if sigmas is None else np.asarray(sigmas, np.float64)
    k = len(person_category(dataset)["keypoints"])
    if len(sig) != k:
        raise ValueError(f"{len(sig)} OKS sigmas for {k} keypoints; give one sigma per keypoint")
    if not results:
        log.info("no detections: every AP and AR is 0")
        return dict.fromkeys(METRICS, 0.0), "no detections: AP = AR = 0"
    image_ids = {img["id"] for img in dataset["images"]}
    for r in results:
        if not isinstance(r, dict) or not {"image_id", "keypoints", "score"} <= set(r):
            raise ValueError(f"a result must be an object with 'image_id', 'keypoints' and 'score', got {str(r)[:80]}")
        if not isinstance(r["keypoints"], list) or not _finite(r["keypoints"] + [r["score"]]):
            raise ValueError(f"a result's 'keypoints' and 'score' must be finite numbers, got {str(r)[:80]}")
        if len(r["keypoints"]) != 3 * k:
            raise ValueError(f"a result has {len(r['keypoints'])} keypoint values, the ground truth needs {3 * k} "
                             f"({k} keypoints x (x, y, score))")
        if r["image_id"] not in image_ids:
            raise ValueError(f"a result names image_id {r['image_id']}, which is not in the ground truth")
    # Copies: COCOeval writes an 'ignore' flag into every ground-truth annotation it reads.
    dataset = dict(dataset, annotations=[_complete(a) for a in dataset["annotations"]])
    api = _coco_api(dataset)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        dets = api.loadRes(copy.deepcopy(results))
        evaluator = COCOeval(api, dets, "keypoints")
        evaluator.params.kpt_oks_sigmas = sig
        evaluator.evaluate()
        evaluator.accumulate()
    log.debug("%s", printed.getvalue().strip())
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    text = summary.getvalue().rstrip()
    log.info("COCOeval keypoints:\n%s", text)
    stats = evaluator.stats
    return {name: float(stats[i]) if stats[i] >= 0 else float("nan") for i, name in enumerate(METRICS)}, text


def _finite(values: list) -> bool:
    try:
        return bool(np.isfinite(np.asarray(values, np.float64)).all())
    except (TypeError, ValueError):
        return False


def coco_keypoint_ap(gt: dict | str | Path, results: list[dict],
                     sigmas: Sequence[float] | None = None) -> dict[str, float]:
    """OKS AP of keypoint results: AP, AP50, AP75, APm, APl, AR (see :func:`run_cocoeval`)."""
    return run_cocoeval(gt, results, sigmas)[0]
