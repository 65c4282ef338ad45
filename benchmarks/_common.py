"""What every benchmark script prints at the top, and how it writes its output."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from featherpose.fileio import write_text

SHARED = Path(os.environ.get("FEATHERPOSE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_lines(threads: int | str, packages: tuple[str, ...] = ("numpy", "torch", "onnxruntime")) -> list[str]:
    """Markdown bullets: date, command line, machine and load, versions (featherpose with its git revision)."""
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        rev = "?"
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    versions = ", ".join(f"{p} {_version(p)}" for p in packages)
    return [
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- command: `{shlex.join(['python'] + sys.argv)}`",
        f"- machine: {cpu_name()}, {os.cpu_count()} cores; threads: {threads}; load average at start: {load}",
        f"- versions: Python {platform.python_version()}, featherpose {_version('featherpose')} ({rev}), {versions}",
    ]


def emit(text: str, out: str | Path | None) -> None:
    """Print the markdown, and write it (atomically) to ``out`` when given."""
    print(text, end="" if text.endswith("\n") else "\n")
    if out:
        write_text(out, text)


def read_frames(path: Path, n: int) -> list[np.ndarray]:
    """The first ``n`` frames of a video, BGR uint8."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"could not read frames from {path}")
    return frames


def median_ms(run, runs: int, warmup: int = 5) -> float:
    """Median wall time of ``run()`` in milliseconds over ``runs`` calls, after ``warmup`` untimed ones."""
    import time

    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    times.sort()
    return 1000 * times[len(times) // 2]


def memorise_run(recipe: Path, tmp: str | Path, epochs: int | None, data: str | None = None):
    """Train a proof-of-learning recipe into ``tmp/memorise``, scored on its own data after the last epoch.

    Args:
        epochs: overrides the recipe's (None: keep them). data: train and score on this json instead.

    Returns:
        (the recipe as run, its :class:`~featherpose.train.trainer.TrainResult`).
    """
    from featherpose.train.config import load_config
    from featherpose.train.trainer import train

    cfg = load_config(recipe)
    if data is not None:
        cfg.data.train = cfg.data.val = str(data)
    cfg.out = str(Path(tmp) / "memorise")
    cfg.epochs = epochs or cfg.epochs
    cfg.eval_every = cfg.epochs
    return cfg, train(cfg)


def memorise_rows(title: str, result, metric: str, value: float, bar: float) -> list[str]:
    """The proof-of-learning table of a memorisation run: the loss falls >= 10x and ``metric`` reaches ``bar``.

    Args:
        result: the :class:`~featherpose.train.trainer.TrainResult` of the run.
    """
    ratio = result.first_loss / result.last_loss

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    return [f"| memorisation ({title}) | value | target | |", "|---|---:|---:|---|",
            f"| loss first step -> last step | {result.first_loss:.3g} -> {result.last_loss:.3g} ({ratio:.1f}x) "
            f"| >= 10x | {verdict(ratio >= 10)} |",
            f"| {metric} on the memorised set, {result.step} steps | {value:.3f} | >= {bar:g} | {verdict(value >= bar)} |",
            ""]
