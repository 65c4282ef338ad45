"""Top-down inference exists once: evaluate() runs the TopDown that predict runs, and topdown sits below evaluation."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from featherpose.estimator import Estimator
from featherpose.evaluation import evaluate
from featherpose.image import load_image
from featherpose.topdown import TopDown

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "labeled_dev"
COCO17 = DATA / "person_keypoints_coco17.json"


@pytest.fixture(scope="module")
def lightning():
    import featherpose

    return featherpose.load("movenet-lightning", backend="torch")


def test_evaluation_top_down_results_are_topdowns_on_the_ground_truth_boxes(lightning):
    report = evaluate(lightning, COCO17, progress=False)
    assert report.mode.startswith("top-down on ground-truth boxes")
    data = json.loads(COCO17.read_text())
    files = {im["id"]: im["file_name"] for im in data["images"]}
    people = {}  # image id -> boxes of its scored people, in annotation order (as evaluate orders its results)
    for a in data["annotations"]:
        if not a.get("iscrowd", 0) and any(v > 0 for v in a["keypoints"][2::3]):
            people.setdefault(a["image_id"], []).append(a["bbox"])
    td = TopDown(lightning, boxes={})
    expected, ids = [], []
    for image_id in sorted(people):
        poses = td.on_boxes(load_image(COCO17.parent / files[image_id]), np.array(people[image_id], np.float64))
        assert len(poses) == len(people[image_id])  # one pose per box, in box order
        expected.append(poses.keypoints)
        ids += [image_id] * len(poses)
    expected = np.round(np.concatenate(expected).astype(np.float64), 3)
    assert [r["image_id"] for r in report.results] == ids
    got = np.array([r["keypoints"] for r in report.results]).reshape(expected.shape)
    np.testing.assert_array_equal(got, expected)


def test_on_boxes_is_what_topdown_calls_on_given_boxes(lightning):
    image = load_image(COCO17.parent / json.loads(COCO17.read_text())["images"][0]["file_name"])
    boxes = np.array([[10, 20, 80, 160, 0.9], [-30, -30, 60, 60, 0.5]], np.float32)
    td = TopDown(lightning, boxes={"x.jpg": boxes})
    called = td(image, min_score=0, name="x.jpg")
    direct = td.on_boxes(image, boxes)
    np.testing.assert_array_equal(called.keypoints, direct.keypoints)
    np.testing.assert_array_equal(called.scores, direct.scores)
    np.testing.assert_allclose(direct.scores, boxes[:, 4] * direct.keypoints[..., 2].mean(axis=1), rtol=1e-6)
    gt = td.on_boxes(image, boxes[:, :4])  # no scores: ground-truth boxes score 1
    np.testing.assert_array_equal(gt.keypoints, direct.keypoints)
    assert len(td.on_boxes(image, np.zeros((0, 4)))) == 0


def test_estimator_and_topdown_share_one_call_shape(lightning):
    image = load_image(COCO17.parent / json.loads(COCO17.read_text())["images"][0]["file_name"])
    assert isinstance(lightning, Estimator)
    np.testing.assert_array_equal(lightning(image, min_score=0, name="ignored.jpg").keypoints,
                                  lightning(image, min_score=0).keypoints)
    td = TopDown(lightning, boxes={"a.jpg": np.array([[10, 20, 80, 160, 1.0]], np.float32)})
    assert len(td(image, min_score=0, name="a.jpg")) == 1 and len(td(image, min_score=0, name="b.jpg")) == 0
    bgr = np.ascontiguousarray(image[:, :, ::-1])  # both take OpenCV's channel order on request
    np.testing.assert_array_equal(td(bgr, min_score=0, name="a.jpg", bgr=True).keypoints,
                                  td(image, min_score=0, name="a.jpg").keypoints)
    np.testing.assert_array_equal(lightning(bgr, min_score=0, bgr=True).keypoints,
                                  lightning(image, min_score=0).keypoints)


def test_topdown_and_image_do_not_import_evaluation():
    code = ("import sys, featherpose.topdown, featherpose.image; "
            "print(sorted(m for m in sys.modules if m.startswith('featherpose.evaluation')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
