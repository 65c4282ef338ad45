"""Tracking (persistent ids) and One-Euro smoothing: synthetic crossings and occlusions, the filter's behaviour, the
JSON Lines of ``featherpose predict VIDEO --track``, and ids on the real vtest.avi."""
from __future__ import annotations

import json

import numpy as np
import pytest

import featherpose
from featherpose import Poses
from featherpose.cli import main
from featherpose.poses import TRACK_COLOURS
from featherpose.video.smooth import OneEuroFilter
from featherpose.video.track import Tracker

from conftest import MEDIA

# a standing person's 17 COCO keypoints, as fractions of the height (x across, y down; nose at the top)
TEMPLATE = np.array([[0, 0], [-.03, -.02], [.03, -.02], [-.06, 0], [.06, 0], [-.12, .15], [.12, .15], [-.15, .3],
                     [.15, .3], [-.16, .45], [.16, .45], [-.08, .5], [.08, .5], [-.09, .72], [.09, .72], [-.09, .95],
                     [.09, .95]])


def person(x: float, y: float, height: float, score: float = 0.9) -> np.ndarray:
    """(17, 3) keypoints of a person whose nose is at (x, y)."""
    return np.concatenate([TEMPLATE * height + [x, y], np.full((17, 1), score)], axis=1)


def frame(*people: np.ndarray) -> Poses:
    return Poses.create(np.stack(people) if people else np.zeros((0, 17, 3)), image_size=(720, 1280))


def jitter(xy: np.ndarray) -> float:
    """Mean magnitude of the second difference (frame-to-frame acceleration) along axis 0."""
    return float(np.linalg.norm(np.diff(xy, n=2, axis=0), axis=-1).mean())


def test_ids_survive_two_people_crossing():
    """A walks right, B walks left, behind and a little smaller; their boxes overlap for the middle frames. The
    people come in a random order each frame; each keeps the id it started with."""
    rng = np.random.default_rng(0)
    tracker, seen = Tracker(), {"A": set(), "B": set()}
    overlapping = 0
    for t in range(60):
        a = person(200 + 10 * t, 200, 300) + rng.normal(0, 1.5, (17, 3)) * [1, 1, 0]
        b = person(980 - 10 * t, 230, 250) + rng.normal(0, 1.5, (17, 3)) * [1, 1, 0]
        order = rng.permutation(2)
        poses = tracker.update(frame(*[(a, b)[i] for i in order]), t / 30)
        for name, i in zip("AB", np.argsort(order)):
            seen[name].add(int(poses.track_ids[i]))
        boxes = poses.boxes
        overlapping += min(boxes[0, 2], boxes[1, 2]) > max(boxes[0, 0], boxes[1, 0])
    assert overlapping >= 8  # the crossing is real: their boxes overlap in many frames
    assert seen == {"A": {0}, "B": {1}} or seen == {"A": {1}, "B": {0}}
    assert tracker.next_id == 2


@pytest.mark.parametrize("gap, max_lost, same_id", [(5, 10, True), (5, 3, False)])
def test_a_lost_person_is_found_again_within_max_lost(gap, max_lost, same_id):
    """C stands still throughout; D is missing for ``gap`` frames (an occlusion) and comes back where it was:
    within ``max_lost`` frames it keeps its id, beyond it gets a new one (ids never reused)."""
    tracker, ids_d = Tracker(max_lost=max_lost), []
    for t in range(10 + gap + 5):
        c, d = person(300, 200, 300), person(800 + t, 220, 280)
        visible = not 10 <= t < 10 + gap
        poses = tracker.update(frame(c, d) if visible else frame(c), t / 25)
        assert poses.track_ids[0] == 0  # C never changes
        if visible:
            ids_d.append(int(poses.track_ids[1]))
    assert set(ids_d[:10]) == {1}
    assert set(ids_d[10:]) == ({1} if same_id else {2})


def test_a_new_track_starts_unfiltered_and_ids_come_in_order():
    tracker = Tracker()
    first = person(100, 100, 200)
    poses = tracker.update(frame(first, person(600, 100, 200)), 0.0)
    assert poses.track_ids.tolist() == [0, 1]
    np.testing.assert_allclose(poses.keypoints, frame(first, person(600, 100, 200)).keypoints)  # raw on first sight
    with pytest.raises(ValueError, match="timestamps must increase"):
        tracker.update(frame(first), 0.0)


def test_a_constant_signal_passes_unchanged():
    f = OneEuroFilter()
    xy = np.array([[[123.5, 456.25], [10.0, 20.0]]])
    for t in range(30):
        out = f(np.array([7]), xy, np.ones((1, 2), bool), t / 30)
        np.testing.assert_allclose(out, xy, atol=1e-4)


def test_a_noisy_signal_is_smoothed_and_follows_the_motion():
    """A joint swaying slowly (0.25 Hz, 30 px: a person shifting their weight) with 3 px noise: the jitter drops
    several-fold and the smoothed path is nearer the true one than the input (the lag costs less than the noise)."""
    rng = np.random.default_rng(1)
    t = np.arange(120) / 30
    true = np.stack([500 + 30 * np.sin(2 * np.pi * 0.25 * t), 300 + 0 * t], -1)
    noisy = true + rng.normal(0, 3, true.shape)
    f = OneEuroFilter()
    out = np.stack([f(np.array([0]), noisy[i][None, None], np.ones((1, 1), bool), t[i])[0, 0] for i in range(len(t))])
    assert jitter(out) < jitter(noisy) / 3
    assert np.abs(out - true)[30:].mean() < np.abs(noisy - true)[30:].mean()  # closer to the truth than the input


def test_timestamps_set_the_cutoff():
    """The same samples at 10 frames/s (dt = 0.1 s) are smoothed less than at 60 frames/s (dt = 1/60 s): the
    filter's cutoff is in Hz, so at a lower rate each sample weighs more."""
    rng = np.random.default_rng(2)
    samples = 100 + rng.normal(0, 5, (60, 1, 1, 2))
    lag = {}
    for fps in (10, 60):
        f = OneEuroFilter(beta=0.0)
        out = np.stack([f(np.array([0]), s, np.ones((1, 1), bool), i / fps) for i, s in enumerate(samples)])
        lag[fps] = float(np.abs(out - samples).mean())
    assert lag[10] < 0.8 * lag[60]


def test_a_missing_keypoint_is_not_filtered_into_the_track():
    """Keypoint 1 is not found in the middle frame (0, 0, score 0): it passes through as given, and the next frame
    continues from where it was (not dragged towards 0)."""
    f = OneEuroFilter()
    xy = np.array([[[50.0, 60.0], [200.0, 300.0]]])
    for t in range(5):
        f(np.array([0]), xy, np.ones((1, 2), bool), t / 30)
    gap = xy.copy()
    gap[0, 1] = 0
    out = f(np.array([0]), gap, np.array([[True, False]]), 5 / 30)
    np.testing.assert_allclose(out[0, 1], [0, 0])
    out = f(np.array([0]), xy, np.ones((1, 2), bool), 6 / 30)
    np.testing.assert_allclose(out, xy, atol=1e-4)


def test_tracked_people_are_drawn_in_their_ids_colour():
    poses = Poses.create(person(100, 40, 150)[None], image_size=(200, 200))
    import dataclasses
    tracked = dataclasses.replace(poses, track_ids=np.array([3]))
    canvas = tracked.draw(np.zeros((200, 200, 3), np.uint8), min_score=0)
    colours = {tuple(c) for c in canvas.reshape(-1, 3)}
    assert TRACK_COLOURS[3] in colours and TRACK_COLOURS[0] not in colours
    assert tracked[[0]].track_ids.tolist() == [3] and tracked.filter(0.5).track_ids.tolist() == [3]
    assert tracked.summary()[0]["track_id"] == 3 and "track_id" not in poses.summary()[0]


def test_predict_track_writes_json_lines_with_ids(tmp_path):
    out = tmp_path / "x.jsonl"
    assert main(["predict", str(MEDIA / "vtest.avi"), "--max-frames", "5", "--track", "--json", str(out),
                 "--threads", "1", "--quiet"]) == 0
    frames = [json.loads(line) for line in out.read_text().splitlines()]
    assert [f["frame"] for f in frames] == [0, 1, 2, 3, 4]
    assert [f["time"] for f in frames] == [0.0, 0.1, 0.2, 0.3, 0.4]  # vtest.avi: 10 frames/s
    people = [p for f in frames for p in f["people"]]
    assert len(people) >= 5 and all(isinstance(p["track_id"], int) for p in people)
    assert all(len(set(ids := [p["track_id"] for p in f["people"]])) == len(ids) for f in frames)  # unique per frame
    assert not list(tmp_path.glob(".*"))  # no temporary left


def test_ids_on_vtest_stay_mostly_stable():
    """The first 30 frames of vtest.avi: the default video model finds 47 people in all (1-4 per frame; it misses
    many of the ~7 walkers in some frames). Without tracking every detection is a stranger; the tracker links them
    into at most 10 ids (the ~7 walkers visible, plus some slack for detections that come and go for longer
    than ``max_lost``), while a tracker that can never match (``min_similarity=1``) gives every detection its
    own id: the test can fail."""
    def ids(**options) -> tuple[int, int]:
        found, total = set(), 0
        for poses in featherpose.track(MEDIA / "vtest.avi", threads=1, max_frames=30, **options):
            found |= set(poses.track_ids.tolist())
            total += len(poses)
        return len(found), total

    tracked, total = ids()
    assert total >= 30 and tracked <= 10, (tracked, total)
    assert ids(min_similarity=1.0, smooth=False)[0] == total


def test_a_person_found_twice_keeps_one_id():
    """MultiPose sometimes returns the same person twice (pose2sim_single_cam04 frame 66): the copy is left out
    instead of starting a track that takes the person's id over when the original is missed next frame."""
    tracker = Tracker()
    ids = []
    for t in range(6):
        p = person(400 + 5 * t, 200, 300)
        copy = p + [4, 3, -0.1]  # a few pixels off, scoring lower
        poses = tracker.update(frame(p, copy) if t == 3 else frame(copy) if t == 4 else frame(p), t / 30)
        assert len(poses) == 1
        ids.append(int(poses.track_ids[0]))
    assert ids == [0] * 6
    assert len(Tracker(duplicate_oks=1.0).update(frame(person(400, 200, 300), person(404, 203, 300)), 0.0)) == 2
