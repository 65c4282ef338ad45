"""Video and webcam frames in, annotated video out (OpenCV).

:class:`VideoReader` decodes in a background thread (OpenCV releases the GIL while it decodes), so the next frame
is being decoded while the network runs on the current one. A video file queues a few frames ahead and loses
none; a camera keeps only the latest frame, dropping those the caller was too slow to take (counted in
``dropped``), so a slow model never builds latency.

FFmpeg's own decoder messages (``[msmpeg4 @ 0x...] ac-tex damaged``) are silenced unless the user sets
``OPENCV_FFMPEG_LOGLEVEL``: a damaged or truncated video is reported by featherpose in one line instead
(see :meth:`VideoReader.ended_early`).
"""
from __future__ import annotations

import os
import queue
import threading
import time
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
    """Frames of a video file or camera as HxWx3 uint8 RGB, decoded in a background thread.

    Args:
        source: a video path, or an int camera index.
        prefetch: frames a video file decodes ahead of the caller (a camera always keeps just the latest one).
    """

    def __init__(self, source: str | Path | int, prefetch: int = 4):
        self.source = source
        self.is_camera = is_camera = isinstance(source, int)
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
        self.prefetch = 1 if is_camera else max(1, int(prefetch))
        self.frames_read = 0  # decoded from the source (a file's reader runs up to ``prefetch`` ahead of the caller)
        self.dropped = 0  # camera frames replaced by a newer one before the caller took them
        self.frames_yielded = 0
        self.captured_at = float("nan")  # time.monotonic() when the frame last yielded was decoded
        self._first_captured_at = float("nan")
        self.exhausted = False  # True once a read failed (end of file, or a frame that cannot be decoded)

    def __iter__(self) -> Iterator[np.ndarray]:
        frames: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        end = object()  # marks the decoder's last item: (end, None), or (end, the exception it raised)

        def offer(item) -> bool:
            """Queue ``item``, waiting while the queue is full; False once the caller has stopped."""
            while not stop.is_set():
                try:
                    frames.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def decode() -> None:
            try:
                while not stop.is_set():
                    ok, bgr = self.cap.read()
                    if not ok:
                        self.exhausted = True
                        break
                    self.frames_read += 1
                    item = (cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic())
                    if self.is_camera:  # only this thread puts, so after taking the stale frame there is room
                        try:
                            frames.get_nowait()
                            self.dropped += 1
                        except queue.Empty:
                            pass
                        frames.put_nowait(item)
                    elif not offer(item):
                        return
                offer((end, None))
            except Exception as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
                offer((end, exc))

        worker = threading.Thread(target=decode, name="featherpose-video-reader", daemon=True)
        worker.start()
        try:
            while True:
                item = frames.get()
                if item[0] is end:  # (end, None) at the end of the source, (end, exception) on an error
                    if item[1] is not None:
                        raise item[1]
                    return
                frame, self.captured_at = item
                if self.frames_yielded == 0:
                    self._first_captured_at = self.captured_at
                self.frames_yielded += 1
                yield frame
        finally:
            stop.set()
            worker.join(timeout=2.0)  # a stalled camera's read can block for its driver's timeout
            if not worker.is_alive():  # else the daemon thread still holds the capture: leave it to the process
                self.cap.release()

    @property
    def timestamp(self) -> float:
        """Seconds of the frame last yielded: its place in a video file (index / fps), or for a camera the
        ``time.monotonic()`` at which it was decoded (so a camera's frames are spaced as they really came)."""
        return self.captured_at if self.is_camera else (self.frames_yielded - 1) / self.fps

    @property
    def seconds(self) -> float:
        """Seconds of the frame last yielded since the first: :attr:`timestamp` for a file, a camera's decode time
        counted from its first frame (the clock smoothing and the JSON's ``time`` use)."""
        return self.timestamp - self._first_captured_at if self.is_camera else self.timestamp

    def latency(self) -> float:
        """Seconds since the frame last yielded was decoded (a camera's capture-to-now delay, decoding included)."""
        return time.monotonic() - self.captured_at

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


#: :func:`sample_frames` seeks to a frame this many frames or more ahead, and reads through shorter gaps: a seek
#: decodes from the keyframe before it every time (24 frames of each people clip: ~10x slower by seeking)
SEEK_GAP = 300


def sample_frames(path: str | Path, count: int) -> list[np.ndarray]:
    """``count`` evenly spaced frames of a video file (HxWx3 uint8 RGB; fewer if some cannot be read): read through
    where they are close (:data:`SEEK_GAP`), seeking past long gaps, so a long video is not decoded whole."""
    cap = cv2.VideoCapture(str(path))
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = []
        at = 0  # the frame the next grab gives
        for i in np.unique(np.linspace(0, max(total - 1, 0), count).round().astype(int)).tolist():
            if i - at >= SEEK_GAP:
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                at = i
            while at < i and cap.grab():
                at += 1
            ok, bgr = cap.read() if at == i else (False, None)
            at += 1
            if ok:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return frames
    finally:
        cap.release()


#: frames a video writer's thread may hold before ``write`` waits for it
WRITE_QUEUE = 4


@contextmanager
def video_writer(path: str | Path, fps: float) -> Iterator[Callable[[np.ndarray], None]]:
    """Context yielding ``write(rgb_frame)``; the file appears (atomically) only when the block completes.

    The frame size is taken from the first frame written. Frames are converted and encoded in a background thread
    (OpenCV releases the GIL), so encoding overlaps the caller's next frame: 5.7 ms a 768x576 frame in mp4v here.
    ``write`` returns once the frame is queued (at most :data:`WRITE_QUEUE` wait), so the caller must not change a
    frame it has written; an error of the thread is raised by the next ``write`` or when the block ends.
    """
    path = Path(path)
    fourcc = cv2.VideoWriter_fourcc(*_FOURCC.get(path.suffix.lower(), "mp4v"))
    with atomic_path(path) as tmp:
        writer = None
        frames: queue.Queue = queue.Queue(WRITE_QUEUE)
        failed: list[BaseException] = []

        def encode() -> None:
            while (rgb := frames.get()) is not None:
                if not failed:
                    try:
                        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                    except BaseException as exc:  # raised in the caller's thread by the next write or the end
                        failed.append(exc)

        thread = threading.Thread(target=encode, name="featherpose-video-writer", daemon=True)

        def write(rgb: np.ndarray) -> None:
            nonlocal writer
            if failed:
                raise failed[0]
            if writer is None:
                writer = cv2.VideoWriter(str(tmp), fourcc, fps, (rgb.shape[1], rgb.shape[0]))
                if not writer.isOpened():
                    raise VideoError(f"cannot write video {path} (container {path.suffix!r}; use .mp4 or .avi)")
                thread.start()
            frames.put(rgb)

        try:
            yield write
        finally:
            if writer is not None:
                frames.put(None)
                thread.join()
                writer.release()
        if failed:
            raise failed[0]
        if writer is not None and tmp.stat().st_size == 0:
            raise OSError(f"cannot write video {path}: nothing was written (disk full?); "
                          f"free some space or choose another --save folder")
