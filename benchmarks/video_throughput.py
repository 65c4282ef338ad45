"""Video throughput: `featherpose predict vtest.avi` frames/s against 1 / network time (issue 14, item 4).

For each model, on vtest.avi (768x576), in one process:

    network        est.infer on the first N frames, preprocessed up front: the median ms a frame; 1000 / it is the
                   frames/s a video run could reach if everything else overlapped or took no time; measured again
                   before each predict run
    predict json   featherpose.predict.predict(vtest.avi, model, json_path=..., max_frames=...) as a user runs it
                   (the video decoded by VideoReader's background thread, a single-person model on the previous
                   frame's crop): its frames/s after the first frame (PredictReport.rate: the model's load and
                   the first frame's warm-up left out)
    predict save   the same writing the annotated video as well (drawing and encoding)

Each cell is the median over --rounds; "of 1 / network" is a predict run's frames/s times the network time measured
just before it (the machine's speed changes over minutes), median over the rounds.

    python benchmarks/video_throughput.py [--models movenet-lightning ...] [--frames 100] [--rounds 3] [--out FILE]
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, emit, machine_lines, median_ms, read_frames  # noqa: E402

import featherpose  # noqa: E402
from featherpose.predict import predict  # noqa: E402

VIDEO = SHARED / "media" / "vtest.avi"


def predict_rate(model: str, frames: int, threads: int, save: bool) -> float:
    """``featherpose.predict`` on the first ``frames`` frames of vtest.avi, writing JSON Lines (and the annotated
    video with ``save``): its frames/s after the first frame (:attr:`PredictReport.rate`)."""
    with tempfile.TemporaryDirectory(prefix="featherpose-throughput-") as out:
        report = predict(VIDEO, model, json_path=Path(out) / "poses.jsonl", save=Path(out) if save else None,
                         max_frames=frames, threads=threads, progress=False)
    return report.rate


def row(model: str, frames: list[np.ndarray], threads: int, rounds: int) -> str:
    """The table's row for ``model``: medians over ``rounds``; each ratio is taken in its round, against the network
    time measured just before (this machine changes speed over minutes)."""
    est = featherpose.load(model, threads=threads)
    xs = [est.preprocess(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))[0] for f in frames]
    it = itertools.cycle(xs)
    network, rates = [], {False: [], True: []}
    for _ in range(rounds):
        for save in (False, True):
            network.append(median_ms(lambda: est.infer(next(it)), runs=len(xs)))
            rates[save].append((predict_rate(model, len(frames), threads, save), network[-1]))
    cells = [f"{np.median(network):.2f}", f"{1000 / np.median(network):.1f}"]
    for save in (False, True):
        cells += [f"{np.median([fps for fps, _ in rates[save]]):.1f}",
                  f"{np.median([fps * ms / 1000 for fps, ms in rates[save]]):.2f}"]
    return f"| {model} ({est.backend.name}) | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="*", help="default: every bundled model")
    p.add_argument("--frames", type=int, default=100, help="vtest.avi frames timed (default 100)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported (default 3)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    frames = read_frames(VIDEO, args.frames)
    lines = ["## Video throughput: `featherpose predict vtest.avi` against 1 / network time", "",
             *machine_lines(args.threads), f"- frames: the first {args.frames} of vtest.avi (768x576)", "",
             "| model (backend) | network ms / frame | 1 / network (frames/s) | predict --json (frames/s) | "
             "of 1 / network | predict --json --save (frames/s) | of 1 / network |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for model in args.models or featherpose.models():
        lines.append(row(model, frames, args.threads, args.rounds))
        print(lines[-1], flush=True)
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
