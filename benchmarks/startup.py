"""What a user waits for before the first pose, and the letterbox every MoveNet frame pays (issue 14, item 3).

1. Start-up: ``featherpose predict messi5.jpg --model NAME --save DIR`` as a user runs it, one new process per run,
   wall time; with ``--before TREE`` (an older checkout's ``src``, e.g. ``git worktree add /tmp/old <rev>``) the
   same command on that code too, the two alternating. One untimed run per side and model first, so the timed ones
   find what a user's second run finds (the backend choice, numba's cache and, with this code, the ONNX export).
2. Letterbox: ``resize_with_pad`` compiled (the default) against its NumPy reference (``reference=True``) on vtest.avi
   frames (768x576) and messi5.jpg (548x342) at 192x192 and 256x256, alternating rounds, best round; the two
   must give the same arrays.

    python benchmarks/startup.py [--models movenet-lightning ...] [--runs 3] [--before /tmp/old/src] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, emit, machine_lines, read_frames  # noqa: E402

import featherpose  # noqa: E402
from featherpose.image import resize_with_pad  # noqa: E402

IMAGE = SHARED / "media" / "messi5.jpg"


def predict_seconds(model: str, src: Path | None) -> float:
    """Wall time of one ``featherpose predict`` process (``src``: run that tree's code instead of this one's)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    with tempfile.TemporaryDirectory(prefix="featherpose-startup-") as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "featherpose", "predict", str(IMAGE), "--model", model, "--save", out],
                       env=env, check=True, capture_output=True)
        return time.perf_counter() - start


def startup_table(models: list[str], runs: int, before: Path | None) -> list[str]:
    sides = [("this code", None)] + ([(f"before ({before})", before)] if before else [])
    lines = ["### Start-up: `featherpose predict messi5.jpg --model NAME --save DIR`, seconds per process", "",
             "| model | " + " | ".join(f"{label}: median (min)" for label, _ in sides) + " |",
             "|---|" + "---:|" * len(sides)]
    for model in models:
        times = {label: [] for label, _ in sides}
        for _, src in sides:  # untimed: fills the caches
            predict_seconds(model, src)
        for _ in range(runs):
            for label, src in sides:
                times[label].append(predict_seconds(model, src))
        cells = [f"{np.median(t):.2f} ({min(t):.2f})" for t in times.values()]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return lines


def letterbox_table(frames: list[np.ndarray], rounds: int, repeats: int = 100) -> list[str]:
    messi = cv2.cvtColor(cv2.imread(str(IMAGE)), cv2.COLOR_BGR2RGB)
    inputs = {"vtest.avi": [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames], "messi5.jpg": [messi]}
    lines = ["### Letterbox: `resize_with_pad`, ms per image (best of rounds)", "",
             "| image | input | compiled (default) | NumPy reference | reference / compiled |",
             "|---|---|---:|---:|---:|"]
    for name, images in inputs.items():
        for hw in ((192, 192), (256, 256)):
            for image in images:
                if not np.array_equal(resize_with_pad(image, hw)[0], resize_with_pad(image, hw, reference=True)[0]):
                    raise SystemExit(f"{name} at {hw}: the compiled letterbox differs from the NumPy reference")
            best = {False: np.inf, True: np.inf}
            for _ in range(rounds):
                for reference in (False, True):
                    start = time.perf_counter()
                    for i in range(repeats):
                        resize_with_pad(images[i % len(images)], hw, reference=reference)
                    best[reference] = min(best[reference], (time.perf_counter() - start) / repeats * 1e3)
            lines.append(f"| {name} | {hw[0]}x{hw[1]} | {best[False]:.3f} | {best[True]:.3f} | "
                         f"{best[True] / best[False]:.1f}x |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="*", help="default: every bundled model")
    p.add_argument("--runs", type=int, default=3, help="processes per model and side (default 3)")
    p.add_argument("--before", type=Path, help="an older tree's src folder, run beside this one")
    p.add_argument("--rounds", type=int, default=5, help="letterbox rounds (default 5)")
    p.add_argument("--frames", type=int, default=40, help="vtest.avi frames for the letterbox (default 40)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    lines = ["## Start-up and letterbox (`benchmarks/startup.py`)", "", *machine_lines("runtime default"), ""]
    lines += letterbox_table(read_frames(SHARED / "media" / "vtest.avi", args.frames), args.rounds) + [""]
    print("\n".join(lines), flush=True)
    lines += startup_table(args.models or featherpose.models(), args.runs, args.before)
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
