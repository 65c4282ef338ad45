"""video.io.VideoReader: frames decoded in a background thread, the same frames in the same order as a plain
OpenCV read; a camera keeps only the latest frame (simulated on vtest.avi: the reader cannot tell)."""
from __future__ import annotations

import hashlib
import time

import cv2
import numpy as np
import pytest

from featherpose.video.io import VideoError, VideoReader

from conftest import MEDIA

VTEST = MEDIA / "vtest.avi"


def plain_frames(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(VTEST))
    frames = []
    for _ in range(n):
        ok, bgr = cap.read()
        assert ok
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def test_reader_thread_gives_every_frame_in_order():
    want = plain_frames(40)
    reader = VideoReader(VTEST, prefetch=3)
    got = []
    for frame in reader:
        got.append(frame)
        if len(got) == len(want):
            break  # stopping early ends the thread and releases the file
    assert all(np.array_equal(a, b) for a, b in zip(got, want)) and len(got) == len(want)
    assert not reader.cap.isOpened() and reader.dropped == 0
    assert reader.frames_yielded == len(want) and reader.timestamp == (len(want) - 1) / reader.fps  # a file's clock
    assert len(want) <= reader.frames_read <= len(want) + 3 + 1  # read ahead by at most the prefetch (+ one in hand)
    assert reader.ended_early() is None  # stopped by the caller, not by the video


def test_reader_reads_to_the_end_and_counts():
    reader = VideoReader(VTEST)
    n = sum(1 for _ in reader)
    assert n == reader.frames_read == reader.frame_count and reader.exhausted
    assert reader.ended_early() is None


def test_camera_mode_keeps_only_the_latest_frame():
    """A slow consumer of a camera gets the newest frame each time; the ones it was too slow for are dropped."""
    cap, index = cv2.VideoCapture(str(VTEST)), {}
    while True:  # every frame's hash -> its index (a file decodes faster than the consumer below takes frames)
        ok, bgr = cap.read()
        if not ok:
            break
        index[hashlib.sha1(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).tobytes()).hexdigest()] = len(index)
    reader = VideoReader(VTEST)
    reader.is_camera, reader.prefetch = True, 1  # a file read as a camera: what matters is the queue's policy
    seen = []
    for frame in reader:
        seen.append(index[hashlib.sha1(frame.tobytes()).hexdigest()])
        if len(seen) == 6:
            break
        time.sleep(0.01)  # a model slower than the source
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert reader.dropped > 0 and seen[-1] > 6  # frames were skipped, not queued up
    assert reader.dropped + len(seen) <= reader.frames_read
    assert reader.timestamp == reader.captured_at and 0 <= reader.latency() < 5  # a camera's clock: when decoded
    assert 0 < reader.seconds < 5  # counted from its first frame


def test_decoder_error_is_raised_in_the_callers_thread():
    reader = VideoReader(VTEST)

    def broken():
        raise cv2.error("decoder exploded")

    reader.cap = type("Cap", (), {"read": staticmethod(broken), "release": lambda self: None,
                                  "isOpened": lambda self: False})()
    with pytest.raises(cv2.error, match="decoder exploded"):
        next(iter(reader))


def test_empty_file_is_one_line(tmp_path):
    empty = tmp_path / "e.avi"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty file"):
        VideoReader(empty)


def test_sample_frames_reads_through_short_gaps_and_seeks_long_ones(monkeypatch):
    """sample_frames gives the same evenly spaced frames whether it reads through the gaps between them or seeks to
    each (SEEK_GAP: seeking decodes from a keyframe every time); they are the video's own frames at those indices."""
    from featherpose.video import io

    read_through = io.sample_frames(VTEST, 5)
    monkeypatch.setattr(io, "SEEK_GAP", 1)
    seeking = io.sample_frames(VTEST, 5)
    assert len(read_through) == len(seeking) == 5
    for a, b in zip(read_through, seeking):
        np.testing.assert_array_equal(a, b)
    cap = cv2.VideoCapture(str(VTEST))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = set(np.linspace(0, total - 1, 5).round().astype(int).tolist())
    frames = []
    for i in range(total):
        ok, bgr = cap.read()
        if ok and i in wanted:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    for a, b in zip(read_through, frames):
        np.testing.assert_array_equal(a, b)


def test_video_writer_encodes_every_frame_in_order_in_its_thread(tmp_path):
    """video_writer encodes in a background thread: all frames land, in order (MJPG .avi read back: each frame's
    mean level within JPEG's error of the level written), and the file appears only at the end."""
    from featherpose.video.io import video_writer

    path = tmp_path / "levels.avi"
    levels = list(range(10, 250, 12))  # 20 frames, more than the thread's queue holds
    with video_writer(path, 10.0) as write:
        for level in levels:
            write(np.full((64, 96, 3), level, np.uint8))
        assert not path.exists()
    cap = cv2.VideoCapture(str(path))
    read = []
    while (frame := cap.read())[0]:
        read.append(float(frame[1].mean()))
    cap.release()
    assert len(read) == len(levels) and np.abs(np.array(read) - levels).max() < 3


def test_video_writer_error_in_its_thread_reaches_the_caller(tmp_path):
    """An error while encoding (here a frame OpenCV cannot convert) is raised in the caller, and no file is left."""
    from featherpose.video.io import video_writer

    path = tmp_path / "bad.mp4"
    with pytest.raises(cv2.error):
        with video_writer(path, 10.0) as write:
            write(np.zeros((32, 32, 3), np.uint8))
            write(np.zeros((32, 32, 5), np.uint8))  # 5 channels: cvtColor fails in the writer's thread
            for _ in range(20):  # a later write raises it (or the end of the block does)
                write(np.zeros((32, 32, 3), np.uint8))
                time.sleep(0.01)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_video_throughput_script_reports_a_row_per_model(tmp_path):
    """benchmarks/video_throughput.py on 2 frames: the network's time, and predict's frames/s with and without the
    annotated video, as fractions of 1 / network time."""
    from conftest import load_benchmark

    for bench in load_benchmark("video_throughput"):
        out = tmp_path / "throughput.md"
        assert bench.main(["--models", "movenet-lightning", "--frames", "2", "--rounds", "1", "--out", str(out)]) == 0
        row = next(line for line in out.read_text().splitlines() if line.startswith("| movenet-lightning"))
        cells = [float(c) for c in row.split("|")[2:-1]]
        assert len(cells) == 6 and all(c > 0 for c in cells)
