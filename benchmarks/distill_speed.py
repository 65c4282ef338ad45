"""Distillation speed (issue 5): training-step throughput with the teacher live vs cached, and student vs
teacher per-person inference latency.

- Step throughput (images/s, torch, this CPU's threads): a few distillation steps of
  (a) the FPD hourglass student 4x128 taught by the 8x256 teacher, and (b) a Lightning-sized MoveNet
  taught by movenet-thunder, each with the teacher run live in the step and with its keypoints cached
  (the cache is built before timing, over the people trained on; its one-off cost per person is
  reported beside).
- Per-person latency (ms, onnxruntime, 2 threads, one 256x256 LSP crop, median of 100 runs): the
  hourglasses (random weights: speed does not depend on them) and the MoveNets.

    python benchmarks/distill_speed.py [--steps N] [--out FILE]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

import featherpose
from featherpose.codecs.heatmap import HeatmapCodec
from featherpose.data.coco import first_images
from featherpose.estimator import Estimator
from featherpose.models.hourglass import HourglassConfig, StackedHourglass
from featherpose.skeletons import LSP14, skeleton_to_json
from featherpose.train.trainer import train
from featherpose.weights_io import save_weights

from _common import SHARED, emit, machine_lines, median_ms

LSP_TRAIN = SHARED / "data" / "lsp" / "lsp_train.json"
CROP = SHARED / "data" / "lsp" / "images" / "im1001.jpg"


def hourglass_weights(folder: Path, stacks: int, channels: int) -> Path:
    """A randomly initialised LSP hourglass saved as a featherpose weight file (a stand-in teacher for timing)."""
    net = StackedHourglass(HourglassConfig(stacks, channels, 14, 256))
    return save_weights(folder / f"hourglass-{stacks}x{channels}.safetensors", net.state_dict(),
                        name=f"hourglass-{stacks}x{channels}", architecture="hourglass", config=net.config.to_dict(),
                        codec=HeatmapCodec((256, 256), 14).to_dict(), skeleton=skeleton_to_json(LSP14),
                        source="random initialisation (timing only)", license="n/a")


def lsp_subset(tmp: Path, n: int) -> Path:
    """The first ``n`` LSP train people as a json of their own (absolute image paths)."""
    return first_images(LSP_TRAIN, n, tmp / f"lsp_train_{n}.json")


def step_rate(tmp: Path, name: str, model: dict, teacher: dict, steps: int, batch: int) -> tuple[float, float]:
    """(images/s over ``steps`` timed steps, seconds spent before the first step: teacher caching included)."""
    data = lsp_subset(tmp, batch * (steps + 1))
    recipe = {"model": model, "data": {"train": str(data), "workers": 0},
              "augment": [{"RandomAffine": {"rotation": 30, "translate": 0}}, {"RandomFlip": {}}],
              "teacher": teacher, "epochs": 1, "batch_size": batch, "max_steps_per_epoch": steps + 1,
              "eval_every": 100, "out": str(tmp / name)}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    start = time.perf_counter()
    train(path, progress=False)
    total = time.perf_counter() - start
    rows = (tmp / name / "metrics.csv").read_text().splitlines()[1:]
    rates = [float(r.split(",")[11]) for r in rows if r.split(",")[3]]
    step_seconds = sum(batch / r for r in rates)
    return float(np.median(rates[1:])), total - step_seconds


def latency_ms(est: Estimator) -> float:
    crop = cv2.cvtColor(cv2.imread(str(CROP)), cv2.COLOR_BGR2RGB)
    return median_ms(lambda: est(crop, min_score=0), 100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4, help="timed steps per mode")
    p.add_argument("--out", help="also write the markdown here")
    args = p.parse_args(argv)
    lines = ["## Distillation speed", "", *machine_lines(torch.get_num_threads(), ("torch", "onnxruntime")), "",
             f"Training step, {args.steps} steps after one warm-up, torch, {torch.get_num_threads()} threads:", "",
             "| student <- teacher | batch | live: images/s | cached: images/s | time before the first step, mostly caching (s per image) |",
             "|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        teacher_file = hourglass_weights(tmp, 8, 256)
        cases = (("hourglass 4x128 @256 <- hourglass 8x256", 4,
                  {"architecture": "hourglass", "stacks": 4, "channels": 128, "input_size": 256},
                  {"model": str(teacher_file), "alpha": 0.5}),
                 ("MoveNet 1.0 @192 <- movenet-thunder", 16,
                  {"architecture": "movenet", "input_size": 192},
                  {"model": "movenet-thunder", "alpha": 1.0}))
        for label, batch, model, teacher in cases:
            live, _ = step_rate(tmp, "live", model, teacher, args.steps, batch)
            cached, setup = step_rate(tmp, "cached", model, {**teacher, "cache": str(tmp / "cache")}, args.steps,
                                      batch)
            lines.append(f"| {label} | {batch} | {live:.2f} | {cached:.2f} | {setup / (batch * (args.steps + 1)):.2f} |")
        lines += ["", "Per-person inference, onnxruntime, 2 threads (one 256x256 crop; median of 100):", "",
                  "| model | input | ms per person |", "|---|---|---:|"]
        for stacks, channels in ((8, 256), (4, 128)):
            net = StackedHourglass(HourglassConfig(stacks, channels, 14, 256)).eval()
            est = Estimator(f"hourglass-{stacks}x{channels}", net, HeatmapCodec((256, 256), 14), LSP14,
                            backend="onnxruntime", threads=2)
            lines.append(f"| hourglass {stacks}x{channels} | 256x256 | {latency_ms(est):.1f} |")
        for name in ("movenet-thunder", "movenet-lightning"):
            est = featherpose.load(name, backend="onnxruntime", threads=2)
            lines.append(f"| {name} | {est.input_hw[1]}x{est.input_hw[0]} | {latency_ms(est):.1f} |")
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
