"""Live display for a webcam (or a video shown as it runs): the drawn frame in a window with its frames/s and
latency, ``q`` or Esc to end.

The window needs an OpenCV built with a GUI (``opencv-python``); featherpose depends on ``opencv-python-headless``,
which has none, so there the display is the progress bar's fps / latency figures instead (:meth:`LiveStats.postfix`)
and :class:`LiveWindow` says so once. Frames/s is an exponential moving average of the processing rate; latency is
from the moment the reader decoded the frame (see :meth:`featherpose.video.io.VideoReader.latency`) to the moment it
is drawn, which for a camera is about what the viewer sees behind reality (plus the camera's own delay).
"""
from __future__ import annotations

import logging
import time

import cv2
import numpy as np

log = logging.getLogger(__name__)

WINDOW = "featherpose (q: quit)"


def has_gui() -> bool:
    """Whether this OpenCV can open windows (``opencv-python``, not ``-headless``)."""
    info = cv2.getBuildInformation()
    line = next((ln for ln in info.splitlines() if ln.strip().startswith("GUI:")), "GUI: NONE")
    return "NONE" not in line.split(":", 1)[1].upper()


class LiveStats:
    """Frames/s (moving average over about ``1 / smoothing`` frames) and the last frame's latency in ms."""

    def __init__(self, smoothing: float = 0.1):
        self.smoothing = smoothing
        self.fps = float("nan")
        self.latency_ms = float("nan")
        self._last = None

    def update(self, latency_s: float) -> None:
        now = time.perf_counter()
        if self._last is not None:
            rate = 1.0 / max(now - self._last, 1e-6)
            self.fps = rate if np.isnan(self.fps) else self.fps + self.smoothing * (rate - self.fps)
        self._last = now
        self.latency_ms = 1000 * latency_s

    def text(self) -> str:
        return f"{self.fps:.1f} fps, latency {self.latency_ms:.0f} ms"

    def postfix(self) -> dict[str, str]:
        """For a tqdm bar's ``set_postfix``."""
        return {"fps": f"{self.fps:.1f}", "latency_ms": f"{self.latency_ms:.0f}"}


def annotate(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` with ``text`` in its top-left corner (white on a dark box, scaled to the frame), in place."""
    scale = max(0.4, rgb.shape[1] / 1280)
    thickness = max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(rgb, (0, 0), (w + 12, h + base + 12), (0, 0, 0), -1)
    cv2.putText(rgb, text, (6, h + 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return rgb


class LiveWindow:
    """``show(rgb) -> False`` once the user pressed ``q`` / Esc or closed the window; a no-op without a GUI."""

    def __init__(self):
        self.enabled = has_gui()
        if not self.enabled:
            log.warning("no window: this OpenCV has no GUI (opencv-python-headless); fps and latency are shown in "
                        "the progress bar (pip install opencv-python for a window)")

    def show(self, rgb: np.ndarray) -> bool:
        if not self.enabled:
            return True
        try:
            cv2.imshow(WINDOW, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        except cv2.error as exc:  # a GUI build without a display (ssh, a container): the progress bar instead
            self.enabled = False
            log.warning("no window (%s); fps and latency are shown in the progress bar",
                        str(exc).strip().splitlines()[-1][:120])
            return True
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        return cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        if self.enabled:
            cv2.destroyWindow(WINDOW)
