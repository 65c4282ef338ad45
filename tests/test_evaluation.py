"""Evaluation: COCO OKS AP through pycocotools, PCK / PCKh / AUC, evaluate() and `featherpose eval`.

Hand-computed cases check the formulas; the real data checks the plumbing: the ground truth
scored against itself is perfect, and MultiPose reproduces the AP Google's own TFLite runtime
got on coco_mini val.
"""
from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest

from featherpose.cli import main
from featherpose.evaluation import evaluate, greedy_match
from featherpose.evaluation.coco import dataset_sigmas, load_coco, oks, run_cocoeval
from featherpose.evaluation.pck import (auc_from_distances, box_size, head_size, normalized_distances, pck,
                                        pck_auc, pckh, torso_size)
from featherpose.image import crop_square
from featherpose.skeletons import LSP14

from conftest import DATA

DEV = DATA / "labeled_dev"
COCO_VAL = DATA / "coco_mini" / "person_keypoints_val2017.json"
# Google's MoveNet MultiPose as float32 TFLite (shared/peers), whole images, resize_with_pad,
# all 6 instances, pycocotools: AP on coco_mini val2017 at 256x256.
TFLITE_MULTIPOSE_AP = 0.275
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def gt_as_results(dataset: dict) -> list[dict]:
    """Every non-crowd person with keypoints, submitted as a detection with score 1."""
    return [{"image_id": a["image_id"], "category_id": 1, "score": 1.0,
             "keypoints": [float(v) for v in a["keypoints"]]}
            for a in dataset["annotations"] if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0]


@pytest.mark.parametrize("name, k", [("person_keypoints_coco17.json", 17), ("crowdpose14.json", 14),
                                     ("mpii16.json", 16)])
def test_ground_truth_against_itself_is_perfect(name, k):
    dataset = load_coco(DEV / name)
    sigmas = dataset_sigmas(dataset)
    assert sigmas.tolist() == dataset["categories"][0]["oks_sigmas"] and len(sigmas) == k
    metrics, summary = run_cocoeval(dataset, gt_as_results(dataset))
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP75"] == pytest.approx(1.0)
    assert "Average Precision" in summary and len(summary.splitlines()) == 10


def test_sigmas_fall_back_to_the_skeleton_and_unknown_names_say_the_fix():
    dataset = load_coco(DATA / "lsp" / "lsp_test.json")
    cat = {k: v for k, v in dataset["categories"][0].items() if k != "oks_sigmas"}
    assert dataset_sigmas(dict(dataset, categories=[cat])).tolist() == list(LSP14.sigmas)
    odd = dict(cat, keypoints=[f"joint{i}" for i in range(14)])
    with pytest.raises(ValueError, match="add an 'oks_sigmas' list"):
        dataset_sigmas(dict(dataset, categories=[odd]))


def one_person(shift_xy):
    """labeled_dev's first COCO person alone in its image, and that person shifted by ``shift_xy`` pixels."""
    dataset = load_coco(DEV / "person_keypoints_coco17.json")
    ann = next(a for a in dataset["annotations"] if a["num_keypoints"] == 17)
    image = next(i for i in dataset["images"] if i["id"] == ann["image_id"])
    gt = dict(dataset, images=[image], annotations=[ann])
    kp = np.array(ann["keypoints"], np.float64).reshape(17, 3)
    moved = kp.copy()
    moved[:, :2] += shift_xy
    moved[:, 2] = 0.9
    result = {"image_id": ann["image_id"], "category_id": 1, "score": 0.8, "keypoints": moved.reshape(-1).tolist()}
    return gt, ann, kp, moved, result


def test_oks_of_a_shifted_person_matches_the_formula_and_cocoeval():
    gt, ann, kp, moved, result = one_person((6.0, -8.0))  # 10 px from every keypoint
    sigmas = gt["categories"][0]["oks_sigmas"]
    # By hand: OKS = mean over labelled keypoints of exp(-d^2 / (2 * area * (2 sigma)^2)), d = 10.
    terms = [math.exp(-100.0 / (2.0 * ann["area"] * (2.0 * s) ** 2)) for s, v in zip(sigmas, kp[:, 2]) if v > 0]
    by_hand = sum(terms) / len(terms)
    assert 0.5 < by_hand < 0.95
    ours = oks(moved[None], kp[None], np.array([ann["area"]]), np.array(sigmas))
    assert ours.shape == (1, 1) and ours[0, 0] == pytest.approx(by_hand, abs=1e-9)

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO()
        api.dataset = gt
        api.createIndex()
        evaluator = COCOeval(api, api.loadRes([dict(result)]), "keypoints")
        evaluator.params.kpt_oks_sigmas = np.array(sigmas)
        evaluator.evaluate()
    assert evaluator.ious[(ann["image_id"], 1)][0, 0] == pytest.approx(by_hand, abs=1e-9)

    # One detection, one person: AP at each OKS threshold is 1 if OKS >= threshold, else 0.
    assert np.abs(OKS_THRESHOLDS - by_hand).min() > 1e-3
    metrics, _ = run_cocoeval(gt, [result])
    assert metrics["AP"] == pytest.approx((OKS_THRESHOLDS <= by_hand).mean())
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP75"] == pytest.approx(float(by_hand >= 0.75))


def test_empty_results_and_images_without_detections():
    dataset = load_coco(DEV / "person_keypoints_coco17.json")
    metrics, summary = run_cocoeval(dataset, [])
    assert metrics == dict.fromkeys(("AP", "AP50", "AP75", "APm", "APl", "AR"), 0.0) and "no detections" in summary
    results = gt_as_results(dataset)
    first = results[0]["image_id"]
    partial, _ = run_cocoeval(dataset, [r for r in results if r["image_id"] == first])
    assert 0 < partial["AP"] < 1 and 0 < partial["AR"] < 1
    with pytest.raises(ValueError, match="34 keypoint values"):
        run_cocoeval(dataset, [dict(results[0], keypoints=results[0]["keypoints"][:34])])


def test_pck_by_hand():
    gt = np.zeros((2, 3, 2))
    # person 0: normaliser 100 -> PCK@0.2 radius 20 px; person 1: normaliser 50 -> radius 10 px.
    pred = np.array([[[12, 16], [0, 21], [3, 4]],        # distances 20 (hit), 21 (miss), 5 (hit)
                     [[6, 8], [0, -11], [100, 100]]],    # distances 10 (hit), 11 (miss), far but unlabelled
                    np.float64)
    visible = np.array([[2, 1, 2], [2, 2, 0]])
    score = pck(pred, gt, visible, np.array([100.0, 50.0]), alpha=0.2)
    assert score.mean == pytest.approx(3 / 5)
    np.testing.assert_allclose(score.per_joint, [1.0, 0.0, 1.0])
    # A missing prediction (NaN) is wrong; a person whose normaliser is 0 does not count.
    pred[1, 0] = np.nan
    assert pck(pred, gt, visible, np.array([100.0, 50.0])).mean == pytest.approx(2 / 5)
    assert pck(pred, gt, visible, np.array([100.0, 0.0])).mean == pytest.approx(2 / 3)
    np.testing.assert_allclose(box_size(np.array([[5, 5, 30, 80], [0, 0, 60, 10]])), [80, 60])


def test_pckh_uses_six_tenths_of_the_head_box_diagonal():
    head_boxes = np.array([[10, 10, 30, 40]])                   # diagonal 50 -> head size 30 -> radius 15 px
    np.testing.assert_allclose(head_size(head_boxes), [30.0])
    gt = np.array([[[50.0, 50.0], [50.0, 50.0]]])
    pred = np.array([[[50.0, 64.9], [65.1, 50.0]]])              # 14.9 px (hit) and 15.1 px (miss)
    score = pckh(pred, gt, np.ones((1, 2)), head_boxes, alpha=0.5)
    assert score.mean == pytest.approx(0.5)
    np.testing.assert_allclose(score.per_joint, [1.0, 0.0])


def test_lsp_torso_size_is_left_shoulder_to_right_hip():
    dataset = load_coco(DATA / "lsp" / "lsp_test.json")
    anns = dataset["annotations"][:50]
    kp = np.array([a["keypoints"] for a in anns], np.float64).reshape(-1, 14, 3)
    ours = torso_size(kp, LSP14.index("left_shoulder"), LSP14.index("right_hip"))
    np.testing.assert_allclose(ours, [a["torso_size"] for a in anns], atol=1e-3)


def test_auc_by_hand():
    # Two people, one joint, normalised errors 0.055 and 0.145: the PCK curve is 0 up to 0.055,
    # 1/2 up to 0.145, then 1. Area on [0, 0.2] = 0.5 * 0.09 + 1 * 0.055 = 0.1, / 0.2 = 0.5; the
    # trapezoids on the 0.01 grid give the same value.
    dist = np.array([[0.055], [0.145]])
    score = auc_from_distances(dist, alpha_max=0.2, step=0.01)
    assert score.mean == pytest.approx(0.5) and score.per_joint[0] == pytest.approx(0.5)
    # Step 0.1: one error of exactly 0.1 samples the curve as 0, 1, 1 -> (0.5 + 1) * 0.1 / 0.2 = 0.75.
    assert auc_from_distances(np.array([[0.1]]), 0.2, 0.1).mean == pytest.approx(0.75)
    gt = np.random.default_rng(0).uniform(0, 100, (4, 5, 2))
    perfect = pck_auc(gt, gt, np.ones((4, 5)), np.full(4, 40.0))
    assert perfect.mean == pytest.approx(1.0) and perfect.per_joint == pytest.approx(np.ones(5))
    assert np.isnan(normalized_distances(gt, gt, np.zeros((4, 5)), np.full(4, 40.0))).all()
    with pytest.raises(ValueError, match="alpha_max > 0"):
        auc_from_distances(dist, 0.0)


def test_crop_square_pads_outside_the_image_and_keeps_the_box_centred():
    image = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    crop, corner = crop_square(image, (20, 4, 16, 8), expand=1.25)   # centre (28, 8), side 20
    assert crop.shape == (20, 20, 3) and corner.tolist() == [18, -2]
    np.testing.assert_array_equal(crop[2:, :12], image[0:18, 18:30])
    assert not crop[:2].any() and not crop[:, 12:].any()


def test_greedy_match_takes_the_best_pairs_first():
    sim = np.array([[0.9, 0.8, 0.0],
                    [0.85, 0.1, 0.0]])
    np.testing.assert_array_equal(greedy_match(sim), [0, 1, -1])
    assert greedy_match(np.zeros((0, 2))).tolist() == [-1, -1]


def test_multipose_reproduces_google_tflite_ap_on_coco_mini(tmp_path):
    report = evaluate("movenet-multipose", COCO_VAL, input_size=256, results_path=tmp_path / "res.json",
                      progress=False)
    assert report.coco["AP"] == pytest.approx(TFLITE_MULTIPOSE_AP, abs=0.005)
    assert report.images == 30 and report.detections == 6 * 30 and report.persons == 40
    written = json.loads((tmp_path / "res.json").read_text())
    assert len(written) == 180 and {len(r["keypoints"]) for r in written} == {51}
    assert 0.5 < report.pck["box"].pck.mean <= 1 and 0 < report.pck["box"].auc.mean < report.pck["box"].pck.mean


def test_cli_eval_single_person_top_down(tmp_path, capsys):
    results = tmp_path / "res.json"
    assert main(["eval", "--model", "movenet-lightning", "--data", str(DEV / "person_keypoints_coco17.json"),
                 "--results", str(results), "--quiet", "--per-joint"]) == 0
    out = capsys.readouterr().out
    wrist = next(line for line in out.splitlines() if line.startswith("left_wrist "))
    report = evaluate("movenet-lightning", DEV / "person_keypoints_coco17.json", progress=False)
    j = report.joints.index("left_wrist")
    assert [float(v) for v in wrist.split()[1:]] == pytest.approx(
        [100 * report.pck["box"].pck.per_joint[j], 100 * report.pck["box"].auc.per_joint[j]], abs=0.05)
    ap = next(line for line in out.splitlines() if line.split()[:1] == ["AP"])
    assert 30 < float(ap.split()[-1]) <= 100
    assert "PCK@0.2 (box)" in out and "AUC 0-0.2 (box)" in out and f"wrote {results}" in out
    written = json.loads(results.read_text())
    dataset = load_coco(DEV / "person_keypoints_coco17.json")
    people = sorted(a["image_id"] for a in dataset["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"])
    assert sorted(r["image_id"] for r in written) == people                # one result per annotated person


def test_skeleton_mismatch_evaluates_the_shared_joints_or_says_why_not(tmp_path, capsys):
    report = evaluate("movenet-lightning", DEV / "crowdpose14.json", progress=False)
    assert len(report.joints) == 12 and "head" not in report.joints and "neck" not in report.joints
    assert report.notes and "12 shared by name" in report.notes[0]
    assert len(report.results[0]["keypoints"]) == 3 * 14                    # the data's layout
    dataset = load_coco(DEV / "mpii16.json")
    cat = dict(dataset["categories"][0], keypoints=[f"joint{i}" for i in range(16)])
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(dict(dataset, categories=[cat])))
    assert main(["eval", "--model", "movenet-lightning", "--data", str(odd), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no keypoint names in common" in err[0]
