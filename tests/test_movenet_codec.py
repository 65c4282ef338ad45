"""MoveNet codec encode: shapes, errors, and decode(encode(ground truth)) round trips on real labels."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from featherpose.codecs.movenet import MoveNetCodec
from featherpose.codecs.movenet_multipose import GOOGLE_MULTIPOSE
from featherpose.codecs.movenet_targets import TargetConfig, encode_movenet
from featherpose.image import resize_with_pad
from featherpose.train.losses import MoveNetLoss, bone_loss, masked_l1, soft_sigmoid, weighted_mse

from conftest import DATA

LABELED = ["person_keypoints_coco17.json", "crowdpose14.json", "mpii16.json"]


def labelled_people(json_name: str, size: int):
    """Per image: (K, keypoints (N, K, 3) mapped into the size x size letterboxed input)."""
    data = json.loads((DATA / "labeled_dev" / json_name).read_text())
    k = len(data["categories"][0]["keypoints"])
    for img in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == img["id"] and a.get("num_keypoints", 1) > 0
                and any(a["keypoints"][2::3])]
        if not anns:
            continue
        kp = np.array([a["keypoints"] for a in anns], np.float32).reshape(-1, k, 3)
        _, box = resize_with_pad(np.zeros((img["height"], img["width"], 3), np.uint8), (size, size))
        kp[..., :2] = np.where(kp[..., 2:] > 0, box.to_input(kp[..., :2]), 0)
        xywh = np.array([a["bbox"] for a in anns], np.float32)
        corners = box.to_input(np.stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1))
        yield k, kp, corners.reshape(-1, 4)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).astype(np.float32)


@pytest.mark.parametrize("json_name", LABELED)
@pytest.mark.parametrize("kernel", ["exponential", "gaussian"])
@pytest.mark.parametrize("box_heads", [False, True])
def test_round_trip_every_person(json_name, kernel, box_heads):
    size = 256
    for k, kp, boxes in labelled_people(json_name, size):
        consts = dataclasses.replace(GOOGLE_MULTIPOSE, num_instances=len(kp))
        codec = MoveNetCodec((size, size), k, multi=True, fp16_constants=False, multipose=consts,
                             targets=TargetConfig(kernel=kernel))
        t = codec.encode(kp, boxes=boxes if box_heads else None)
        heads = {"heatmap": logit(t["heatmap"]), "center": logit(t["center"]), "regress": t["regress"],
                 "offset": t["offset"]}
        if box_heads:
            heads.update(box_scale=t["box_scale"], box_offset=t["box_offset"])
            decoded_boxes = codec.decode(heads).boxes  # each person box comes back (grown to its keypoints)
            for b in boxes:
                inside = (decoded_boxes[:, :2] <= b[:2] + 0.5) & (decoded_boxes[:, 2:] >= np.minimum(b[2:], size) - 0.5)
                assert inside.all(axis=1).any()
        decoded = codec.decode(heads).keypoints
        for person in kp:
            vis = person[:, 2] > 0
            err = min(np.abs(d[vis, :2] - person[vis, :2]).max() for d in decoded)
            assert err <= 1.0, (json_name, err)


def test_single_pose_round_trip_central_person():
    """The single-pose decoder recovers the person its centre prior prefers."""
    size = 192
    k, kp, _ = next(labelled_people("person_keypoints_coco17.json", size))
    codec = MoveNetCodec((size, size), k, fp16_constants=False)
    t = codec.encode(kp[:1])
    heads = {"heatmap": logit(t["heatmap"]), "center": logit(t["center"]), "regress": t["regress"], "offset": t["offset"]}
    got = codec.decode(heads).keypoints[0]
    vis = kp[0, :, 2] > 0
    assert np.abs(got[vis, :2] - kp[0, vis, :2]).max() <= 1.0


def test_encode_shapes_and_values():
    kp = np.array([[[40.0, 60.0, 2], [44.0, 61.0, 2], [0, 0, 0]]], np.float32)
    t = encode_movenet(kp, (96, 128))
    assert t["heatmap"].shape == (3, 24, 32) and t["center"].shape == (1, 24, 32)
    assert t["regress"].shape == t["offset"].shape == t["regress_mask"].shape == (6, 24, 32)
    assert t["heatmap"][0, 15, 10] == 1.0 and t["heatmap"][2].max() == 0  # unlabelled keypoint: no peak
    assert t["offset"][1, 15, 10] == 0 and t["offset_mask"][:, 15, 10].tolist() == [1, 1, 0, 0, 0, 0]
    cy, cx = np.argwhere(t["center"][0] == 1)[0]
    assert (cy, cx) == (15, 10) or (cy, cx) == (15, 11)  # centre of the keypoints' box (x 10..11 cells)
    assert t["regress_mask"][4:, cy, cx].sum() == 0  # no regression for the unlabelled keypoint
    # the 3x3 neighbourhood: every cell regresses to the same keypoint from its own position
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            np.testing.assert_allclose(t["regress"][0:2, cy + dy, cx + dx] + [cy + dy, cx + dx], [15, 10])


def test_encode_errors_and_empty():
    with pytest.raises(ValueError, match=r"must be \(N, K, 3\)"):
        encode_movenet(np.zeros((17, 3)), (192, 192))
    with pytest.raises(ValueError, match="not a multiple of the stride"):
        encode_movenet(np.zeros((1, 17, 3)), (190, 192))
    with pytest.raises(ValueError, match="unknown heatmap kernel 'box'"):
        TargetConfig(kernel="box")
    t = encode_movenet(np.zeros((0, 17, 3), np.float32), (192, 192))
    assert t["heatmap"].shape == (17, 48, 48) and t["heatmap"].max() == 0


def test_ignore_mask_zeroes_weight():
    ignore = np.zeros((192, 192), bool)
    ignore[:96] = True
    t = encode_movenet(np.zeros((0, 17, 3), np.float32), (192, 192), ignore=ignore)
    assert t["weight"][0, :24].max() == 0 and t["weight"][0, 24:].min() == 1


def test_weighted_mse_hand_computed():
    pred = torch.tensor([[[[0.5, 0.0]]]])
    target = torch.tensor([[[[1.0, 0.0]]]])
    # cell 1: (0.5 - 1)^2 * (1 * 5 + 1) = 1.5; cell 2: 0 -> mean 0.75
    assert float(weighted_mse(pred, target, k=5)) == pytest.approx(0.75)
    weight = torch.tensor([[[[0.0, 1.0]]]])
    assert float(weighted_mse(pred, target, k=5, weight=weight)) == 0.0


def test_l1_bone_and_total():
    pred = torch.zeros(1, 4, 1, 2)
    target = torch.tensor([0.0, 0.0, 3.0, 4.0]).reshape(1, 4, 1, 1).expand(1, 4, 1, 2).clone()
    mask = torch.zeros_like(target)
    mask[..., 0] = 1
    assert float(masked_l1(pred, target, mask)) == pytest.approx((3 + 4) / 4)
    # bone (keypoint 1 - keypoint 0) = (3, 4) true vs (0, 0) predicted -> L1 per component 3.5
    assert float(bone_loss(pred, target, mask, [(0, 1)])) == pytest.approx(3.5)
    assert float(soft_sigmoid(torch.tensor(0.0))) == 0.5 and 0 < float(soft_sigmoid(torch.tensor(-50.0))) < 0.01
    heads = {"heatmap": torch.zeros(1, 2, 1, 2), "center": torch.zeros(1, 1, 1, 2), "regress": pred, "offset": pred}
    targets = {"heatmap": torch.zeros(1, 2, 1, 2), "center": torch.zeros(1, 1, 1, 2), "regress": target,
               "regress_mask": mask, "offset": target, "offset_mask": mask}
    total, parts = MoveNetLoss(head_weights=(1, 1, 0.1, 1))(heads, targets)
    # sigmoid(0) = 0.5 against 0 -> 0.25 per cell for heatmap and centre
    assert parts["heatmap"] == pytest.approx(0.25) and float(total) == pytest.approx(0.25 + 0.25 + 0.175 + 1.75)
