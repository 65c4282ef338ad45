"""Video and webcam frames in, annotated video out (OpenCV).

FFmpeg's own decoder messages (``[msmpeg4 @ 0x...] ac-tex damaged``) are silenced unless the user sets
``OPENCV_FFMPEG_LOGLEVEL``: a damaged or truncated video is reported by featherpose in one line instead
(see :meth:`VideoReader.ended_early`).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from ..fileio import atomic_path

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
_FOURCC = {".avi": "MJPG", ".mkv": "MJPG"}  # everything else: mp4v
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read by OpenCV at each open


class VideoError(ValueError):
    """A video or camera that cannot be read."""


class VideoReader:
    """Frames of a video file or camera as HxWx3 uint8 RGB.

    Args:
        source: a video path, or an int camera index.
    """

    def __init__(self, source: str | Path | int):
        self.source = source
        is_camera = isinstance(source, int)
        if not is_camera and not Path(source).is_file():
            raise FileNotFoundError(f"video not found: {source}")
        if not is_camera and Path(source).stat().st_size == 0:
            raise VideoError(f"{source}: empty file (0 bytes)")
        self.cap = cv2.VideoCapture(source if is_camera else str(source))
        if not self.cap.isOpened():
            what = f"camera {source}" if is_camera else f"{source}: not a readable video"
            raise VideoError(f"cannot open {what}")
        fps = self.cap.get(cv2.CAP_PROP_FPS)  # 0, NaN or absurd for some containers and cameras
        self.fps = float(fps) if np.isfinite(fps) and 0 < fps <= 1000 else 30.0
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 and not is_camera else None
        self.frames_read = 0
        self.exhausted = False  # True once a read failed (end of file, or a frame that cannot be decoded)

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = self.cap.read()
                if not ok:
                    self.exhausted = True
                    return
                self.frames_read += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            self.cap.release()

    def ended_early(self) -> str | None:
        """After reading to the end: a one-line warning when a video file stopped short of its frame count.

        A container's count can be an estimate (from its duration), so a shortfall of up to 1% (at
        least 2 frames) is not reported. None when the video was complete, is a camera, has no
        count, or the reader was stopped before its end (e.g. by ``--max-frames``).
        """
        if not self.exhausted or self.frame_count is None:
            return None
        if self.frame_count - self.frames_read <= max(2, self.frame_count // 100):
            return None
        return (f"{Path(self.source).name}: video ended early after {self.frames_read} of {self.frame_count} "
                f"frames (truncated or corrupt); the frames read were processed")


def sample_frames(path: str | Path, count: int) -> list[np.ndarray]:
    """``count`` evenly spaced frames of a video file (HxWx3 uint8 RGB; fewer if some cannot be read), read by
    seeking: the video is not decoded whole."""
    cap = cv2.VideoCapture(str(path))
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = []
        for i in np.unique(np.linspace(0, max(total - 1, 0), count).round().astype(int)):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
            ok, bgr = cap.read()
            if ok:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return frames
    finally:
        cap.release()


@contextmanager
def video_writer(path: str | Path, fps: float) -> Iterator[Callable[[np.ndarray], None]]:
    """Context yielding ``write(rgb_frame)``; the file appears (atomically) only when the block completes.

    The frame size is taken from the first frame written.
    """
    path = Path(path)
    fourcc = cv2.VideoWriter_fourcc(*_FOURCC.get(path.suffix.lower(), "mp4v"))
    with atomic_path(path) as tmp:
        writer = None

        def write(rgb: np.ndarray) -> None:
            nonlocal writer
            if writer is None:
                writer = cv2.VideoWriter(str(tmp), fourcc, fps, (rgb.shape[1], rgb.shape[0]))
                if not writer.isOpened():
                    raise VideoError(f"cannot write video {path} (container {path.suffix!r}; use .mp4 or .avi)")
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

        try:
            yield write
        finally:
            if writer is not None:
                writer.release()
        if writer is not None and tmp.stat().st_size == 0:
            raise OSError(f"cannot write video {path}: nothing was written (disk full?); "
                          f"free some space or choose another --save folder")
