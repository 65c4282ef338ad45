"""Skeleton metadata against the real datasets, and the Poses result type."""
from __future__ import annotations

import json

import numpy as np
import pytest

import featherpose
from featherpose.image import ImageError, load_image, to_rgb8
from featherpose.poses import Poses
from featherpose.skeletons import COCO17, SKELETONS, get_skeleton, skeleton_for

from conftest import DATA, MEDIA

DATASET_SKELETONS = {
    "labeled_dev/person_keypoints_coco17.json": "coco17",
    "labeled_dev/crowdpose14.json": "crowdpose14",
    "labeled_dev/mpii16.json": "mpii16",
    "lsp/lsp_test.json": "lsp14",
    "coco_mini/person_keypoints_val2017.json": "coco17",
}


@pytest.mark.parametrize("file, name", DATASET_SKELETONS.items())
def test_skeletons_match_dataset_files(file, name):
    data = json.loads((DATA / file).read_text())
    category = data["categories"][0]
    skeleton = SKELETONS[name]
    assert skeleton_for(category["keypoints"]) is skeleton
    sigmas = data.get("oks_sigmas") or category.get("oks_sigmas")
    np.testing.assert_allclose(skeleton.sigmas, sigmas)


@pytest.mark.parametrize("skeleton", SKELETONS.values(), ids=list(SKELETONS))
def test_flip_pairs_swap_left_and_right(skeleton):
    perm = skeleton.flip_index()
    assert sorted(perm) == list(range(skeleton.num_keypoints)) and (perm[perm] == np.arange(len(perm))).all()
    for i, name in enumerate(skeleton.keypoints):
        flipped = skeleton.keypoints[perm[i]]
        assert flipped == name.replace("left_", "@").replace("right_", "left_").replace("@", "right_")
    assert all(0 <= a < skeleton.num_keypoints and 0 <= b < skeleton.num_keypoints for a, b in skeleton.limbs)


def test_openpose_has_neck_and_18_points():
    op = get_skeleton("openpose18")
    assert op.num_keypoints == 18 and op.keypoints[1] == "neck"
    with pytest.raises(ValueError, match="unknown skeleton 'coco18'; known: coco17"):
        get_skeleton("coco18")


@pytest.fixture(scope="module")
def poses():
    return featherpose.load("movenet-multipose")(MEDIA / "basketball1.png", min_score=0)


def test_poses_shapes_and_indexing(poses):
    assert poses.keypoints.shape == (6, 17, 3) and poses.boxes.shape == (6, 4) and poses.scores.shape == (6,)
    strong = poses.filter(0.2)
    assert 2 <= len(strong) <= 3 and isinstance(strong[0], Poses) and len(strong[0]) == 1
    assert poses.image_size == (480, 640)
    np.testing.assert_allclose(poses.xyn * [640, 480], poses.xy, rtol=1e-6)


def test_poses_never_modify_input():
    kp = np.random.default_rng(0).uniform(0, 100, (2, 17, 3)).astype(np.float32)
    kp[..., 2] = 0.1
    before = kp.copy()
    p = Poses.create(kp, image_size=(100, 100))
    p.draw(np.zeros((100, 100, 3), np.uint8), min_score=0, min_keypoint_score=0)
    p.summary(min_keypoint_score=0.5)
    np.testing.assert_array_equal(kp, before)


def test_draw_marks_keypoints(poses):
    image = load_image(MEDIA / "basketball1.png")
    drawn = poses.draw(image, boxes=True)
    assert drawn.shape == image.shape and not np.shares_memory(drawn, image)
    best = poses.filter(0.2)[0]
    x, y = best.keypoints[0, best.conf[0].argmax(), :2].astype(int)
    assert np.abs(drawn[y, x].astype(int) - image[y, x]).max() > 50


def test_draw_scales_lines_with_the_person():
    """A person 80 px tall on a 1920-wide frame is drawn with thin lines (a skeleton, not a blob); the same pose
    8x taller gets the frame's line width, so its ink grows faster than its size."""
    base = np.array(list(zip([10, 9, 11, 8, 12, 6, 14, 4, 16, 3, 17, 7, 13, 7, 13, 7, 13],
                             [0, 1, 1, 2, 2, 12, 12, 22, 22, 30, 30, 40, 40, 58, 58, 78, 78], [1.0] * 17)),
                    np.float32)
    canvas = np.zeros((1080, 1920, 3), np.uint8)

    def ink(scale):
        kp = base.copy()
        kp[:, :2] = kp[:, :2] * scale + 100
        drawn = Poses.create(kp[None], image_size=canvas.shape[:2]).draw(canvas, min_score=0)
        return int((drawn.any(axis=2)).sum())

    small, large = ink(1), ink(8)
    assert small < 1400, small  # 905 with 2 px lines; the frame's 7 px lines gave 2042
    assert large > 20 * small / 8, (small, large)  # the large one keeps the frame's line width


def test_json_and_coco(poses):
    data = json.loads(poses.to_json(file_name="b.png"))
    assert data["image_size"] == {"height": 480, "width": 640} and len(data["people"]) == 6
    assert list(data["people"][0]["keypoints"]) == list(COCO17.keypoints)
    coco = poses.to_coco(image_id=7)
    assert len(coco) == 6 and coco[0]["image_id"] == 7 and len(coco[0]["keypoints"]) == 51


def test_to_rgb8_conversions():
    gray16 = np.full((4, 5), 65535, np.uint16)
    assert to_rgb8(gray16).shape == (4, 5, 3) and to_rgb8(gray16).max() == 255
    assert to_rgb8(np.ones((2, 2, 3), np.float32)).max() == 255
    assert to_rgb8(np.zeros((3, 3, 4), np.uint8)).shape == (3, 3, 3)
    with pytest.raises(ImageError, match="expected an HxW"):
        to_rgb8(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ImageError, match="expected an HxW"):
        to_rgb8(np.zeros((0, 3), np.uint8))
    assert np.array_equal(to_rgb8(np.full((2, 2, 3), 200, np.int64)), np.full((2, 2, 3), 200, np.uint8))
    with pytest.raises(ImageError, match="int8 pixels from -56 to 0; expected 0..255"):
        to_rgb8(np.array([[200, 0]], np.uint8).astype(np.int8))  # a uint8 image cast to int8 by mistake
    with pytest.raises(ImageError, match="int32 pixels from 0 to 65535"):
        to_rgb8(np.array([[0, 65535]], np.int32))


def test_image_files_of_every_kind_load_as_viewers_show_them(tmp_path):
    """PNGs with alpha, 16 bits or one channel load as RGB uint8; a JPEG whose EXIF orientation says "rotate 90" (a
    phone held upright) loads turned, as viewers and cv2.imread show it, not as stored; a dataset's image keeps the
    orientation its json's size gives."""
    import cv2
    from PIL import Image

    rgb = load_image(MEDIA / "messi5.jpg")
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
                                                         cv2.COLOR_RGBA2BGRA))
    assert np.array_equal(load_image(tmp_path / "rgba.png"), rgb)
    cv2.imwrite(str(tmp_path / "deep.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    assert np.array_equal(load_image(tmp_path / "deep.png"), rgb)
    cv2.imwrite(str(tmp_path / "gray.png"), rgb[..., 1])
    assert np.array_equal(load_image(tmp_path / "gray.png"), np.repeat(rgb[..., 1:2], 3, 2))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the stored image is turned 90 degrees clockwise for display
    Image.fromarray(rgb).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    shown = load_image(tmp_path / "phone.jpg")
    assert shown.shape == (rgb.shape[1], rgb.shape[0], 3)
    assert np.array_equal(shown, cv2.cvtColor(cv2.imread(str(tmp_path / "phone.jpg")), cv2.COLOR_BGR2RGB))
    assert np.abs(shown.astype(int) - np.rot90(rgb, -1)).mean() < 3  # JPEG's loss only
    # a dataset's json says which its annotations were made on: the size as shown, or as stored
    from featherpose.image import load_dataset_image

    assert np.array_equal(load_dataset_image(tmp_path / "phone.jpg", shown.shape[:2]), shown)
    stored = load_dataset_image(tmp_path / "phone.jpg", rgb.shape[:2])
    assert stored.shape == rgb.shape and np.abs(stored.astype(int) - rgb).mean() < 3


def test_estimator_on_array_and_path_agree():
    est = featherpose.load("movenet-lightning")
    a = est(MEDIA / "messi5.jpg")
    b = est(load_image(MEDIA / "messi5.jpg"))
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
