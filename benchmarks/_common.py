"""What every benchmark script prints at the top, and how it writes its output."""
from __future__ import annotations

import datetime
import gc
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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


# ------------------------------------------------- speed benchmarks beside a reference pipeline (lwop, litepose)

@dataclass
class Runner:
    """One way of running a model on a frame.

    Attributes:
        key: the runner's key in its script's tables.
        run: HxWx3 uint8 BGR frame -> ((preprocess, network, decode) seconds, poses): poses (N, K, 3) x, y,
            score in image pixels, missing keypoints (0, 0, 0).
    """

    key: str
    run: Callable[[np.ndarray], tuple[tuple[float, float, float], np.ndarray]]


def featherpose_runner(key: str, est) -> Runner:
    """featherpose's Estimator, its three public steps timed apart, given the frame as OpenCV decodes it (BGR;
    ``preprocess(frame, bgr=True)``: converted to RGB in preprocess, or read reversed by a graph's letterbox)."""
    clock = time.perf_counter

    def run(bgr: np.ndarray):
        t0 = clock()
        x, letterbox = est.preprocess(bgr, bgr=True)
        t1 = clock()
        heads = est.infer(x)
        t2 = clock()
        poses = est.postprocess(heads, letterbox)
        t3 = clock()
        return (t1 - t0, t2 - t1, t3 - t2), poses.keypoints

    return Runner(key, run)


def find_mirror(path: Path) -> Path | None:
    """A git directory: ``path`` itself or its ``repo`` folder (as the mirror tool lays them out)."""
    for cand in (path, path / "repo"):
        if (cand / "HEAD").exists() and (cand / "objects").exists():
            return cand
    return None


def export_commit(git_dir: Path, commit: str, folder: Path, paths: tuple[str, ...] = ()) -> None:
    """``git archive commit [paths]`` of ``git_dir`` unpacked into ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "--git-dir", str(git_dir), "archive", commit, *paths],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)


def outside_repo(folder: Path, flag: str) -> Path:
    """``folder`` resolved; SystemExit when it lies inside this repository (references are never vendored)."""
    folder = folder.resolve()
    repo_root = Path(__file__).resolve().parents[1]
    if folder == repo_root or repo_root in folder.parents:
        raise SystemExit(f"{flag} {folder}: the reference must live outside this repository")
    return folder


def time_pass(runner: Runner, frames: list[np.ndarray], warmup: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Warm up on the first frames, then time every frame.

    Returns:
        (N, 3) ms preprocess, network, decode; the N frames' poses (see :class:`Runner`).
    """
    for frame in frames[:warmup]:
        runner.run(frame)
    gc.collect()
    out = np.empty((len(frames), 3))
    poses = []
    for i, frame in enumerate(frames):
        out[i], p = runner.run(frame)
        poses.append(p)
    return out * 1e3, poses


def best_round(rounds: list[np.ndarray]) -> np.ndarray:
    """The round (N, 3) with the lowest mean total."""
    return min(rounds, key=lambda r: r.sum(axis=1).mean())


def compare(ours: list[np.ndarray], theirs: list[np.ndarray]) -> dict:
    """Per-frame pose agreement of two runners: frames whose people count differs, frames with the same count
    but a different set of present keypoints, and over the frames that agree in structure the max |dx|, |dy|
    (image pixels) and the max keypoint score difference (people compared in the order both decoders give)."""
    count = structure = 0
    max_xy = max_score = 0.0
    people = 0
    for a, b in zip(ours, theirs):
        if len(a) != len(b):
            count += 1
            continue
        if not np.array_equal(a[..., 2] > 0, b[..., 2] > 0):
            structure += 1
            continue
        people += len(a)
        if len(a):
            present = a[..., 2] > 0
            max_xy = max(max_xy, float(np.abs(a[..., :2] - b[..., :2])[present].max(initial=0)))
            max_score = max(max_score, float(np.abs(a[..., 2] - b[..., 2])[present].max(initial=0)))
    return {"frames": len(ours), "count": count, "structure": structure, "people": people, "xy": max_xy,
            "score": max_score}


def agreement_line(name: str, r: dict) -> str:
    """A row of the poses-agreement table for :func:`compare`'s result."""
    same = r["frames"] - r["count"] - r["structure"]
    return (f"| {name} | {same} / {r['frames']} | {r['count']} | {r['structure']} | {r['people']} | "
            f"{r['xy']:.2e} | {r['score']:.2e} |")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"
