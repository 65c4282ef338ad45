"""Training step on the CPU: NCHW against channels-last memory layout, for each family's memorisation recipe.

    python benchmarks/train_layout.py [--steps 5] [--threads 2] [--out FILE]

Each row builds the recipe's network from random init (the test's short settings: its input size, batch 4; the
hourglass 1 stack x 64 at 64, batch 16) and times forward + backward of the sum of its squared outputs, mean of
``--steps`` steps after 2 untimed ones, first in NCHW, then with the network and input in channels-last (what
``train/trainer.py``'s ``place_model`` and ``batch_to`` use on every device since this measurement).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from featherpose.train.config import load_config
from featherpose.train.trainer import build_model

from _common import emit, machine_lines

ROOT = Path(__file__).resolve().parents[1]
#: recipe, keypoints, input size, batch, model settings of the short run
ROWS = [("movenet_memorise.yaml", 17, 192, 4, {}), ("lwop_memorise.yaml", 17, 128, 4, {}),
        ("litepose_memorise.yaml", 17, 128, 4, {}),
        ("hourglass_memorise.yaml", 14, 64, 16, {"stacks": 1, "channels": 64})]


def tensors(out) -> list[torch.Tensor]:
    """The floating-point tensors of a network's output (a tensor, dict or list)."""
    if isinstance(out, dict):
        return [t for v in out.values() for t in tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in tensors(v)]
    return [out] if torch.is_tensor(out) and out.is_floating_point() else []


def step_seconds(net: torch.nn.Module, x: torch.Tensor, steps: int) -> float:
    def step():
        sum(t.float().pow(2).mean() for t in tensors(net(x))).backward()

    step()
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5, help="timed steps per layout (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--out", help="also write the markdown here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines = ["## Training step on the CPU: NCHW vs channels-last", "", *machine_lines(args.threads, ("torch",)), "",
             "| recipe | input | batch | NCHW s / step | channels-last s / step | speed-up |", "|---|---:|---:|---:|---:|---:|"]
    for recipe, keypoints, size, batch, settings in ROWS:
        print(f"{recipe} ...", file=sys.stderr)
        cfg = load_config(ROOT / "configs" / recipe)
        cfg.model.input_size = size
        for field, value in settings.items():
            setattr(cfg.model, field, value)
        torch.manual_seed(0)
        net = build_model(cfg, keypoints).train()
        x = torch.rand(batch, 3, size, size) * 255
        nchw = step_seconds(net, x, args.steps)
        last = step_seconds(net.to(memory_format=torch.channels_last),
                            x.contiguous(memory_format=torch.channels_last), args.steps)
        lines.append(f"| {recipe} | {size} | {batch} | {nchw:.3f} | {last:.3f} | {nchw / last:.2f}x |")
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
