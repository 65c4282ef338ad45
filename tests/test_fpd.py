"""Fast Pose Distillation: hourglass networks, the top-down heatmap codec, person crops, the FPD loss,
teacher-to-target conversion across skeletons, and distillation runs of the trainer (live, cached, unlabelled)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import featherpose
from featherpose.codecs.heatmap import HeatmapCodec, heatmap_argmax
from featherpose.data import CocoKeypoints, Compose
from featherpose.data.coco import first_images
from featherpose.data.topdown import TopDownKeypoints
from featherpose.data.transforms import apply_affine
from featherpose.image import crop_square, letterbox
from featherpose.models import complexity
from featherpose.models.hourglass import HourglassConfig, StackedHourglass
from featherpose.skeletons import COCO17, LSP14
from featherpose.train.distill import Teacher, joint_map, live_targets, to_student_keypoints
from featherpose.train.losses import DistillationLoss, HeatmapLoss
from featherpose.train.trainer import train

from conftest import DATA, MEDIA

LSP = DATA / "lsp"
LABELED = DATA / "labeled_dev"


def lsp_subset(tmp_path: Path, name: str, n: int) -> Path:
    """The first n people of an LSP json, with absolute image paths, as a new json."""
    return first_images(LSP / name, n, tmp_path / f"{n}_{name}")


# ------------------------------------------------------------------------------------------ network

def test_hourglass_shapes_and_intermediate_supervision():
    net = StackedHourglass(HourglassConfig(stacks=2, channels=32, num_keypoints=14, input_size=128))
    x = torch.rand(2, 3, 128, 128) * 255
    out = net.train()(x)
    assert out["heatmap"].shape == (2, 14, 32, 32) and out["stacks"].shape == (2, 2, 14, 32, 32)
    assert torch.equal(out["stacks"][:, -1], out["heatmap"])
    assert list(net.eval()(x)) == ["heatmap"]  # inference (and ONNX) returns only the last stack
    with pytest.raises(ValueError, match="multiple of 64"):
        HourglassConfig(input_size=96)


def test_fpd_teacher_and_student_sizes_match_the_paper():
    # FPD (Zhang et al., CVPR 2019) Table 1 / Newell et al.: teacher ~25.5 M parameters and ~55 GFLOPs,
    # the 4x128 student about a sixth of the cost.
    teacher = complexity(StackedHourglass(HourglassConfig(8, 256, 16, 256)), (256, 256))
    student = complexity(StackedHourglass(HourglassConfig(4, 128, 16, 256)), (256, 256))
    assert 25.0e6 < teacher[0] < 26.0e6 and 50e9 < teacher[1] < 60e9
    assert 3.0e6 < student[0] < 3.6e6 and teacher[1] / student[1] > 5.5


# ------------------------------------------------------------------------------------------ codec

def test_codec_encode_decode_shapes_and_errors():
    codec = HeatmapCodec((256, 192), 14)
    kp = np.zeros((14, 3), np.float32)
    kp[:, :2] = [[100, 48]]   # exactly on cell (25, 12)
    kp[:, 2] = 2
    kp[3, 2] = 0               # unlabelled: no target, no loss
    kp[4, :2] = (500, 50)      # off the canvas: no target either
    t = codec.encode(kp)
    assert t["heatmap"].shape == (14, 64, 48) and t["weight"].shape == (14,)
    assert t["weight"][3] == 0 and t["weight"][4] == 0 and t["weight"].sum() == 12
    assert t["heatmap"][3].max() == 0 and t["heatmap"][0].max() == pytest.approx(1 / (2 * np.pi), rel=1e-5)
    dec = codec.decode({"heatmap": t["heatmap"]})
    assert dec.keypoints.shape == (1, 14, 3) and dec.scores.shape == (1,)
    with pytest.raises(ValueError, match="expected 14 keypoints"):
        codec.encode(np.zeros((17, 3)))
    with pytest.raises(ValueError, match="heatmap of shape"):
        codec.decode({"heatmap": np.zeros((17, 64, 48), np.float32)})
    with pytest.raises(ValueError, match="multiple of the heatmap stride"):
        HeatmapCodec((255, 256), 14)


def test_quarter_pixel_shift_by_hand():
    maps = np.zeros((3, 5, 5), np.float32)
    maps[0, 2, 2], maps[0, 2, 3], maps[0, 1, 2] = 1.0, 0.5, 0.2   # right and up higher than their opposites
    maps[1, 2, 2] = 1.0                                            # equal neighbours: no shift
    maps[2, 0, 4] = 1.0                                            # on the border: no shift
    xy, value = heatmap_argmax(maps)
    np.testing.assert_allclose(xy, [[2.25, 1.75], [2, 2], [4, 0]])
    np.testing.assert_allclose(value, [1, 1, 1])


@pytest.mark.parametrize("data", ["labeled_dev", "lsp"])
def test_round_trip_on_real_people_within_a_quarter_cell(data):
    """encode then decode gives every labelled keypoint back within stride / 4 = 1 px per axis (256x256 input),
    and within (stride / 4) x the crop's scale in image pixels after mapping back through the crop."""
    if data == "lsp":
        coco = CocoKeypoints(LSP / "lsp_test.json")
    else:
        coco = CocoKeypoints(LABELED / "mpii16.json")
    people = TopDownKeypoints(coco, Compose([], (256, 256)))
    codec = HeatmapCodec((256, 256), coco.num_keypoints)
    worst, count = 0.0, 0
    for i in range(min(len(people), 200)):
        sample = people[i]
        kp = sample.keypoints[0]
        dec = codec.decode({"heatmap": codec.encode(kp)["heatmap"]}).keypoints[0]
        lab = kp[:, 2] > 0
        err = np.abs(dec[lab, :2] - kp[lab, :2])
        inner = ((kp[lab, :2] >= 4) & (kp[lab, :2] <= 248)).all(axis=1)  # the shift needs two neighbours
        worst = max(worst, float(err[inner].max(initial=0)))
        count += int(inner.sum())
        # back to the image through the crop's affine
        back = apply_affine(dec[lab, :2], np.linalg.inv(sample.matrix))
        orig = apply_affine(kp[lab, :2], np.linalg.inv(sample.matrix))
        scale = 1 / sample.matrix[0, 0]
        assert np.abs(back - orig)[inner].max(initial=0) <= scale * 1.0 + 1e-3
    assert count > (1000 if data == "lsp" else 10) and worst <= 1.0 + 1e-4


def test_training_crop_is_the_evaluation_crop():
    """With no augmentation, a top-down training item is exactly what evaluation feeds the model."""
    coco = CocoKeypoints(LABELED / "person_keypoints_coco17.json")
    people = TopDownKeypoints(coco, Compose([], (192, 192)))
    sample = people[0]
    image = coco.load(int(people.people[0, 0])).image
    crop, corner = crop_square(image, people.box_xywh(0))
    lb = letterbox(crop.shape[:2], (192, 192))
    kp_image = coco.records[int(people.people[0, 0])].keypoints[people.people[0, 1], :, :2]
    np.testing.assert_allclose(sample.keypoints[0, :, :2], apply_affine(kp_image - corner, lb.matrix), atol=1e-3)
    warped = cv2.warpAffine(crop, lb.matrix[:2], (192, 192), flags=cv2.INTER_LINEAR)
    assert np.abs(warped.astype(int) - sample.image.astype(int)).max() <= 1  # the same pixels
    assert len(sample.keypoints) == 1


# ------------------------------------------------------------------------------------------ loss

def test_heatmap_loss_by_hand():
    pred = torch.zeros(1, 2, 2, 1, 2)            # B, S, K, h, w
    pred[0, 0, 0] = torch.tensor([[1.0, 0.0]])   # stack 1, keypoint 0
    pred[0, 1, 1] = torch.tensor([[0.0, 3.0]])   # stack 2, keypoint 1 (weight 0: does not count)
    target = torch.zeros(1, 2, 1, 2)
    target[0, 0] = torch.tensor([[0.0, 2.0]])
    weight = torch.tensor([[1.0, 0.0]])
    loss, parts = HeatmapLoss()({"heatmap": pred[:, -1], "stacks": pred}, {"heatmap": target, "weight": weight})
    # stack 1, keypoint 0: ((1-0)^2 + (0-2)^2) / 2 cells = 2.5; stack 2, keypoint 0: (0 + 4) / 2 = 2.0
    assert float(loss) == pytest.approx(4.5) and parts["heatmap"] == pytest.approx(2.0)


def test_fpd_loss_mixes_teacher_and_labels_by_alpha():
    pred = {"heatmap": torch.zeros(1, 1, 1, 2)}
    targets = {"heatmap": torch.tensor([[[[2.0, 0.0]]]]), "weight": torch.ones(1, 1),          # MSE 2
               "teacher_heatmap": torch.tensor([[[[1.0, 1.0]]]]), "teacher_weight": torch.ones(1, 1)}  # MSE 1
    for alpha, expect in ((0.0, 2.0), (0.5, 1.5), (0.25, 1.75), (1.0, 1.0)):
        loss, parts = DistillationLoss(HeatmapLoss(), alpha)(pred, targets)
        assert float(loss) == pytest.approx(expect)
    loss, _ = DistillationLoss(HeatmapLoss(), 1.0)(pred, {k: v for k, v in targets.items() if "teacher" in k})
    assert float(loss) == pytest.approx(1.0)  # alpha 1 needs no labels


# ------------------------------------------------------------------------------------------ teacher

def test_coco_teacher_to_lsp_student_maps_shared_joints_and_masks_the_rest():
    mapping = joint_map(COCO17, LSP14)
    assert [LSP14.keypoints[i] for i in np.flatnonzero(mapping < 0)] == ["neck", "head_top"]
    assert all(COCO17.keypoints[mapping[i]] == n for i, n in enumerate(LSP14.keypoints) if mapping[i] >= 0)
    teacher = np.zeros((1, 17, 3), np.float32)
    teacher[0, :, 0] = np.arange(17)
    teacher[0, :, 2] = 0.9
    teacher[0, COCO17.keypoints.index("left_wrist"), 2] = 0.1   # below min_confidence
    out = to_student_keypoints(teacher, mapping, 0.3)
    assert out.shape == (1, 14, 3)
    lw, rk = LSP14.keypoints.index("left_wrist"), LSP14.keypoints.index("right_knee")
    assert out[0, rk, 0] == COCO17.keypoints.index("right_knee") and out[0, rk, 2] == 2
    assert out[0, lw, 2] == 0 and out[0, LSP14.keypoints.index("neck"), 2] == 0
    with pytest.raises(ValueError, match="no keypoint names in common"):
        joint_map(COCO17, type(LSP14)("x", ("a", "b"), (), (0.1, 0.1)))


def test_movenet_teacher_targets_on_a_real_lsp_person(tmp_path):
    """movenet-thunder (COCO-17) teaching an LSP-14 hourglass: its keypoints on a real LSP crop land near
    the labels, and the student's targets carry weight only on confident shared joints."""
    from featherpose.train.config import load_config
    from featherpose.train.data import TrainDataset

    recipe = {"model": {"architecture": "hourglass", "stacks": 1, "channels": 16, "input_size": 256},
              "data": {"train": str(lsp_subset(tmp_path, "lsp_test.json", 4)), "workers": 0}, "augment": [],
              "teacher": {"model": "movenet-thunder", "alpha": 0.5}, "out": str(tmp_path / "run")}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    dataset = TrainDataset(load_config(tmp_path / "r.yaml"))
    teacher = Teacher("movenet-thunder", dataset.codec, dataset.skeleton, 0.3)
    images = torch.stack([dataset[i][0] for i in range(4)])
    kps = teacher.keypoints(images)
    labels = np.stack([dataset.people[i].keypoints[0] for i in range(4)])
    shared = teacher.mapping >= 0
    err = np.linalg.norm(np.stack([k[0] for k in kps])[:, shared, :2] - labels[:, shared, :2], axis=-1)
    assert np.median(err) < 12  # px on the 256x256 crop: Thunder finds the LSP joints
    targets = live_targets(teacher, dataset, images)
    assert targets["teacher_heatmap"].shape == (4, 14, 64, 64)
    weight = targets["teacher_weight"].numpy()
    assert (weight[:, ~shared] == 0).all() and weight[:, shared].mean() > 0.7


# ------------------------------------------------------------------------------------------ training

def hourglass_recipe(tmp_path: Path, name: str, **extra) -> Path:
    recipe = {"model": {"architecture": "hourglass", "stacks": 2, "channels": 32, "input_size": 128},
              "data": {"train": str(lsp_subset(tmp_path, "lsp_train.json", 8)),
                       "val": str(lsp_subset(tmp_path, "lsp_test.json", 8)), "workers": 0},
              "augment": [{"RandomAffine": {"scale": [0.75, 1.25], "rotation": 30, "translate": 0}}, {"RandomFlip": {}}],
              "optim": {"name": "rmsprop", "lr": 2.5e-4, "warmup_steps": 0, "weight_decay": 0},
              "epochs": 1, "batch_size": 4, "out": str(tmp_path / name), **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_fpd_teacher_then_student_live_and_cached(tmp_path):
    teacher = train(hourglass_recipe(tmp_path, "teacher"), progress=False)
    ckpt = teacher.out / "checkpoints" / "last.safetensors"
    assert "PCK@0.2 (torso)" in teacher.metrics
    est = featherpose.load(ckpt)  # a trained hourglass runs like any model (onnxruntime by default)
    poses = est(LSP / "images" / "im1001.jpg", min_score=0)
    assert poses.keypoints.shape == (1, 14, 3)

    live = train(hourglass_recipe(tmp_path, "live", teacher={"model": str(ckpt), "alpha": 0.5}), progress=False)
    assert live.step == 2 and np.isfinite(live.last_loss)
    rows = (live.out / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert rows[1].split(",")[header.index("distill")]  # the teacher term is logged

    cache = tmp_path / "cache"
    cached = train(hourglass_recipe(tmp_path, "cached", teacher={"model": str(ckpt), "alpha": 0.5,
                                                                  "cache": str(cache)}), progress=False)
    files = list(cache.glob("teacher-*.npz"))
    assert cached.step == 2 and len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    train(hourglass_recipe(tmp_path, "cached2", teacher={"model": str(ckpt), "alpha": 0.5, "cache": str(cache)}),
          progress=False)
    assert files[0].stat().st_mtime_ns == stamp  # reused, not recomputed
    meta = featherpose.weights_io.load_weights(cached.out / "checkpoints" / "last.safetensors").meta
    assert "distilled from last.safetensors (alpha 0.5)" in meta["source"]


def test_distil_movenet_from_unlabelled_frames_alpha_1(tmp_path):
    """alpha 1 on a folder of unlabelled images: a slim MoveNet learns Thunder's keypoints (pseudo-labels)."""
    frames = tmp_path / "frames"
    frames.mkdir()
    video = cv2.VideoCapture(str(MEDIA / "vtest.avi"))
    for i in range(4):
        ok, frame = video.read()
        assert ok
        cv2.imwrite(str(frames / f"{i}.jpg"), frame)
    (frames / "broken.jpg").write_bytes(b"not a jpeg")  # reported and skipped, never a crash
    recipe = {"model": {"architecture": "movenet", "width": 0.5, "input_size": 128},
              "data": {"train": str(frames), "workers": 0}, "augment": [{"RandomFlip": {}}],
              "teacher": {"model": "movenet-thunder", "alpha": 1, "cache": str(tmp_path / "cache")},
              "epochs": 1, "batch_size": 2, "out": str(tmp_path / "student")}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    result = train(tmp_path / "r.yaml", progress=False)
    assert result.step >= 2 and np.isfinite(result.last_loss)
    est = featherpose.load(result.out / "checkpoints" / "last.safetensors")
    assert est.skeleton.keypoints == COCO17.keypoints
    cache, = (tmp_path / "cache").glob("teacher-*.npz")
    stamp = cache.stat().st_mtime_ns
    (tmp_path / "r2.yaml").write_text(yaml.safe_dump({**recipe, "out": str(tmp_path / "student2")}))
    train(tmp_path / "r2.yaml", progress=False)  # a second run, the same cache: the teacher's keypoints are reused
    assert cache.stat().st_mtime_ns == stamp


def test_movenet_teacher_targets_never_teach_absence_of_what_the_teacher_doubts(tmp_path):
    from featherpose.train.config import load_config
    from featherpose.train.data import TrainDataset

    (tmp_path / "r.yaml").write_text(yaml.safe_dump({
        "model": {"architecture": "movenet", "width": 0.5, "input_size": 128},
        "data": {"train": str(LABELED / "person_keypoints_coco17.json")}, "augment": [],
        "teacher": {"model": "movenet-thunder", "alpha": 0.5}, "out": str(tmp_path / "run")}))
    dataset = TrainDataset(load_config(tmp_path / "r.yaml"))
    teacher = np.zeros((1, 17, 3), np.float32)
    teacher[0, :, :2] = 64
    teacher[0, :, 2] = 2
    teacher[0, 9, 2] = 0                                     # a wrist the teacher doubts
    targets = dataset.encode_teacher(teacher)
    assert targets["teacher_keypoint_weight"].tolist() == [1.0] * 9 + [0.0] + [1.0] * 7
    assert targets["teacher_weight"].min() == 1
    teacher[0, :, 2] = 0                                     # the teacher is sure of nothing here
    targets = dataset.encode_teacher(teacher)
    assert targets["teacher_weight"].max() == 0 and targets["teacher_keypoint_weight"].max() == 0
    nobody = dataset.encode_teacher(np.zeros((0, 17, 3), np.float32))  # found nobody: "no one here" is taught
    assert nobody["teacher_weight"].min() == 1 and nobody["teacher_keypoint_weight"].min() == 1


def test_unlabelled_folder_needs_a_teacher_and_a_bottom_up_student(tmp_path):
    from featherpose.train.config import load_config

    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"data": {"train": str(tmp_path)}}))
    with pytest.raises(ValueError, match="needs teacher.model and teacher.alpha: 1"):
        load_config(tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({
        "model": {"architecture": "hourglass", "stacks": 1, "channels": 16, "input_size": 64},
        "data": {"train": str(LSP / "images")}, "teacher": {"model": "movenet-thunder", "alpha": 1},
        "out": str(tmp_path / "run")}))
    with pytest.raises(ValueError, match="no person boxes for a top-down"):
        train(tmp_path / "r.yaml", progress=False)


# ------------------------------------------------------------------------------------------ top-down inference

def random_hourglass(tmp_path: Path) -> Path:
    from featherpose.skeletons import skeleton_to_json
    from featherpose.weights_io import save_weights

    net = StackedHourglass(HourglassConfig(1, 16, 14, 64))
    return save_weights(tmp_path / "hg.safetensors", net.state_dict(), name="hg", architecture="hourglass",
                        config=net.config.to_dict(), codec=HeatmapCodec((64, 64), 14).to_dict(),
                        skeleton=skeleton_to_json(LSP14))


def test_top_down_predict_uses_given_boxes_or_the_multipose_detector(tmp_path):
    from featherpose.predict import predict

    model = random_hourglass(tmp_path)
    image = LSP / "images" / "im1001.jpg"
    report = predict(image, model, boxes=LSP / "lsp_test.json", min_score=0, progress=False)
    ann = next(a for a in json.loads((LSP / "lsp_test.json").read_text())["annotations"] if a["image_id"] == 1001)
    x, y, w, h = ann["bbox"]
    assert len(report.poses[0]) == 1
    np.testing.assert_allclose(report.poses[0].boxes[0], [x, y, x + w, y + h], atol=1e-3)
    kp = report.poses[0].keypoints[0]
    side = 1.25 * max(w, h)  # keypoints lie in the crop around the box
    assert (np.abs(kp[:, 0] - (x + w / 2)) <= side / 2 + 1).all() and (np.abs(kp[:, 1] - (y + h / 2)) <= side / 2 + 1).all()

    crowd = MEDIA / "basketball1.png"
    detected = featherpose.load("movenet-multipose")(crowd)
    report = predict(crowd, model, min_score=0, progress=False)
    assert report.model == "hg on movenet-multipose boxes" and len(report.poses[0]) == len(detected) > 1
    with pytest.raises(ValueError, match="boxes per image file"):
        predict(MEDIA / "vtest.avi", model, boxes=LSP / "lsp_test.json", progress=False)
    with pytest.raises(ValueError, match="for top-down models"):
        predict(image, "movenet-lightning", boxes=LSP / "lsp_test.json", progress=False)
    (tmp_path / "bad.json").write_text(json.dumps([{"file_name": "a.jpg", "bbox": [1, 2]}]))
    with pytest.raises(ValueError, match="entry 0 needs a file_name and a bbox"):
        predict(image, model, boxes=tmp_path / "bad.json", progress=False)


def test_multipose_teacher_keeps_only_the_people_it_found():
    codec = HeatmapCodec((256, 256), 14)
    teacher = Teacher("movenet-multipose", codec, LSP14, 0.3)
    image = featherpose.load_image(MEDIA / "basketball1.png")
    canvas = cv2.resize(image, (256, 256))
    people = teacher.keypoints(torch.from_numpy(canvas.transpose(2, 0, 1).copy()).float()[None])[0]
    found = featherpose.load("movenet-multipose")(canvas, min_score=0.3)
    assert 1 <= len(people) == len(found) < 6 and people.shape[1:] == (14, 3)
