"""video.live: the webcam's fps / latency display (a window where OpenCV has a GUI, the progress bar otherwise)."""
from __future__ import annotations

import numpy as np

from featherpose.video import live


def test_stats_measure_rate_and_latency(monkeypatch):
    clock = iter(np.arange(0, 1, 0.02))  # a frame every 20 ms: 50 frames/s
    monkeypatch.setattr(live.time, "perf_counter", lambda: float(next(clock)))
    stats = live.LiveStats(smoothing=0.5)
    for _ in range(6):
        stats.update(latency_s=0.025)
    assert abs(stats.fps - 50) < 1e-6
    assert stats.latency_ms == 25.0
    assert "fps" in stats.text() and set(stats.postfix()) == {"fps", "latency_ms"}


def test_annotate_writes_the_text_in_the_corner_only():
    frame = np.full((240, 320, 3), 128, np.uint8)
    out = live.annotate(frame.copy(), "12.3 fps, latency 40 ms")
    changed = np.any(out != 128, axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 100 and ys.max() < 60 and xs.min() == 0  # a box of text at the top left


def test_window_without_gui_is_a_no_op(monkeypatch):
    monkeypatch.setattr(live, "has_gui", lambda: False)
    window = live.LiveWindow()
    assert not window.enabled and window.show(np.zeros((4, 4, 3), np.uint8)) is True
    window.close()


def test_headless_opencv_has_no_gui():
    """featherpose installs opencv-python-headless: no window there (the progress bar shows fps instead)."""
    import importlib.metadata

    try:
        importlib.metadata.version("opencv-python")
    except importlib.metadata.PackageNotFoundError:
        assert live.has_gui() is False
