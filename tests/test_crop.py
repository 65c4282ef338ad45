"""video/crop.py: MoveNet's crop-from-the-previous-frame for single-person video (Google's tutorial rule).

The region rule on synthetic keypoints (each branch: torso visible, torso lost, capped by the borders, larger than
the image), then Lightning on the first 20 frames of a real clip: the region shrinks from the whole frame to the
person, the keypoints land in image pixels (the same person as the whole-frame run), and the model is more sure
of them; and ``predict`` crops single-person video by default, not with ``crop=False``.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

import featherpose
from featherpose.predict import predict
from featherpose.skeletons import COCO17, Skeleton
from featherpose.video.crop import (BODY_EXPAND, TORSO_EXPAND, CropRegion, SinglePoseCropper, crop_region,
                                    whole_frame_region)
from featherpose.video.io import VideoReader

from conftest import MEDIA

CLIP = MEDIA / "people" / "pose2sim_single_cam01.mp4"  # one person walking, 1080x1920 portrait, 60 fps
HW = (800, 1000)  # a landscape test frame: H, W
I = {n: i for i, n in enumerate(COCO17.keypoints)}


def person(centre=(500.0, 500.0), score: float = 0.9) -> np.ndarray:
    """(17, 3) a standing person whose hips are at ``centre``: shoulders 150 px above, head 200 above, ankles
    200 below; every joint not placed sits on the mid-hips."""
    cx, cy = centre
    kp = np.zeros((17, 3), np.float32)
    kp[:] = [cx, cy, score]
    kp[I["left_hip"], :2], kp[I["right_hip"], :2] = (cx + 30, cy), (cx - 30, cy)
    kp[I["left_shoulder"], :2], kp[I["right_shoulder"], :2] = (cx + 40, cy - 150), (cx - 40, cy - 150)
    kp[I["nose"], :2] = (cx, cy - 200)
    kp[I["left_ankle"], :2], kp[I["right_ankle"], :2] = (cx + 20, cy + 200), (cx - 20, cy + 200)
    return kp


def test_torso_visible_centres_on_the_hips():
    r = crop_region(person(), HW, COCO17)
    half = max(TORSO_EXPAND * 150, BODY_EXPAND * 200)  # torso: the shoulders' 150 px in y; body: head / ankles 200
    assert not r.whole
    assert np.allclose([r.x, r.y, r.side], [500 - half, 500 - half, 2 * half], atol=1e-3)
    assert np.allclose(r.centre, [500, 500])
    # a body joint far out widens the square only when it scores at least the threshold
    kp = person()
    kp[I["left_wrist"]] = [900, 500, 0.1]
    assert crop_region(kp, HW, COCO17) == r
    kp[I["left_wrist"], 2] = 0.5
    assert np.isclose(crop_region(kp, HW, COCO17).side, 2 * BODY_EXPAND * 400)
    # one hip and one shoulder are enough
    kp = person()
    kp[[I["left_hip"], I["right_shoulder"]], 2] = 0.05
    assert not crop_region(kp, HW, COCO17).whole


@pytest.mark.parametrize("lost", [("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")])
def test_torso_lost_gives_the_whole_frame(lost):
    kp = person()
    kp[[I[n] for n in lost], 2] = 0.2  # at the threshold is not above it
    r = crop_region(kp, HW, COCO17)
    assert r == whole_frame_region(HW) == CropRegion(0.0, -100.0, 1000.0, whole=True)  # the 1000-px square, centred


def test_capped_by_the_farthest_border():
    kp = person(centre=(500, 350))
    kp[I["left_ankle"], :2] = (520, 950)  # 600 px below the hips: 1.2 x 600 = 720 wanted
    r = crop_region(kp, HW, COCO17)
    assert not r.whole  # the farthest border (x = 0 or 1000) is 500 px away: half side 500, not 720
    assert np.allclose([r.x, r.y, r.side], [0, -150, 1000])
    assert r != whole_frame_region(HW)  # centred on the hips, not on the frame


def test_larger_than_the_image_gives_the_whole_frame():
    kp = person(centre=(300, 400))
    kp[I["left_ankle"], :2] = (320, 1000)  # 1.2 x 600 = 720, capped at 700 (the right border): over 1000 / 2
    assert crop_region(kp, HW, COCO17).whole
    assert crop_region(np.full((17, 3), np.nan, np.float32), HW, COCO17).whole  # nonsense keypoints: start over
    assert crop_region(person() * [0, 0, 1] + [500, 500, 0], HW, COCO17).whole  # collapsed to one point


def test_only_single_person_models_with_a_torso():
    multi = SimpleNamespace(name="movenet-multipose", multi_person=True, top_down=False, skeleton=COCO17)
    with pytest.raises(ValueError, match="single-person models; movenet-multipose is multi-person"):
        SinglePoseCropper(multi)
    headless = Skeleton("heads", ("nose", "left_eye"), (), (0.026, 0.025))
    with pytest.raises(ValueError, match="skeleton heads lacks left_shoulder"):
        SinglePoseCropper(SimpleNamespace(name="x", multi_person=False, top_down=False, skeleton=headless))


@pytest.fixture(scope="module")
def lightning():
    return featherpose.load("movenet-lightning", threads=1)


def test_follows_the_person_on_a_real_clip(lightning):
    cropper = SinglePoseCropper(lightning)
    regions, crop_scores, whole_scores = [], [], []
    prev = None
    for i, frame in enumerate(VideoReader(CLIP)):
        if i == 20:
            break
        h, w = frame.shape[:2]
        whole = lightning(frame, min_score=0).keypoints[0]
        kp = cropper(frame, min_score=0).keypoints[0]
        r = cropper.region
        regions.append(r)
        if i == 0:  # the first frame is the whole frame, exactly as a single image
            assert r.whole and r.side == max(h, w)
            np.testing.assert_array_equal(kp, whole)
        else:
            # each region is centred on the previous frame's mid-hips and holds everything the model is sure of
            assert np.allclose(r.centre, prev[[I["left_hip"], I["right_hip"]], :2].mean(0), atol=0.5)
            sure = kp[kp[:, 2] >= 0.3, :2]
            assert len(sure) >= 10
            assert ((sure >= [r.x, r.y]) & (sure <= [r.x + r.side, r.y + r.side])).all()
        # the same person as the whole-frame run, in image pixels: mid-hips and mid-shoulders agree within 120 px
        # (measured at most 94 px over these frames; the person is about 1000 px tall, the frame 1920)
        for pair in (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")):
            idx = [I[n] for n in pair]
            assert np.linalg.norm(kp[idx, :2].mean(0) - whole[idx, :2].mean(0)) < 120, (i, pair)
        crop_scores.append(kp[:, 2].mean())
        whole_scores.append(whole[:, 2].mean())
        prev = kp
    assert len(regions) == 20
    # from the whole 1920-px square down to the person (measured 1026-1173 px)
    assert all(not r.whole and r.side < 0.7 * 1920 for r in regions[1:])
    # the model sees the person larger and is surer (measured mean 0.68 against 0.36)
    assert np.mean(crop_scores[1:]) > np.mean(whole_scores[1:]) + 0.2
    cropper.reset()
    assert cropper.region is None and cropper.next_region is None


def test_predict_crops_single_person_video(tmp_path):
    scores = {}
    for crop in (True, False):
        out = tmp_path / f"{crop}.json"
        predict(CLIP, "movenet-lightning", threads=1, max_frames=3, json_path=out, progress=False, crop=crop,
                min_score=0)
        text = out.read_text()
        try:  # one JSON document with the frames, or JSON Lines (one frame per line)
            frames = json.loads(text)["frames"]
        except json.JSONDecodeError:
            frames = [json.loads(line) for line in text.splitlines() if line.strip()]
        scores[crop] = [f["people"][0]["score"] for f in frames]
    assert scores[True][0] == scores[False][0]  # frame 0: the whole frame either way
    assert min(scores[True][1:]) > max(scores[False][1:]) + 0.1  # measured 0.64 / 0.70 against 0.44 / 0.36


@pytest.fixture(scope="module")
def bench():
    from conftest import load_benchmark

    yield from load_benchmark("video_crop")


def test_benchmark_jitter_and_distance(bench):
    t = np.arange(10, dtype=np.float32)
    kp = np.zeros((10, 17, 3), np.float32)
    kp[..., 0] = 5 * t[:, None]  # constant velocity: no acceleration
    kp[..., 1] = 100
    kp[..., 2] = 0.9
    assert bench.jitter(kp) == (0.0, 8 * 17)
    kp[5, 0, 1] += 4  # one joint 4 px off in one frame: accelerations 4, 8, 4 around it
    total, count = bench.jitter(kp)
    assert count == 8 * 17 and np.isclose(total, 16)
    kp[5, 0, 2] = 0.1  # unsure there: its three accelerations are not counted
    assert bench.jitter(kp) == (0.0, 8 * 17 - 3)
    ref = kp.copy()
    ref[..., 1] = np.linspace(0, 200, 17)  # a 200-px-tall reference person
    ref[..., 2] = 0.9
    moved = ref.copy()
    moved[..., 0] += 10  # 10 px away = 5 % of its height
    assert np.allclose(bench.distance_to(moved, ref), 5.0)
    ref[3, :, 2] = 0.1  # the reference unsure of a frame: no distance there
    assert np.isnan(bench.distance_to(moved, ref)[3])
