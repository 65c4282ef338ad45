"""Proof of learning for the MoveNet training machinery (issue 4, item 8).

1. MoveNet (random init) memorises the labelled COCO images of labeled_dev: reports the loss
   before and after (target: falls >= 10x) and OKS AP on those same images (target: >= 0.9).
2. Fine-tuning Google's movenet-lightning on them for a few steps does not break it: AP on those
   images (top-down) before and after (target: within 0.05).

    python benchmarks/movenet_memorise.py [--epochs N] [--out FILE]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from featherpose.evaluation import evaluate
from featherpose.train.config import load_config
from featherpose.train.trainer import train

from _common import emit, machine_lines, memorise_rows, memorise_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, help="override the memorise recipe's epochs")
    p.add_argument("--out", help="also write the markdown here")
    args = p.parse_args(argv)
    lines = ["## MoveNet proof of learning", "", *machine_lines(torch.get_num_threads(), ("torch",)), ""]
    with tempfile.TemporaryDirectory() as tmp:
        cfg, mem = memorise_run(CONFIGS / "movenet_memorise.yaml", tmp, args.epochs)
        lines += memorise_rows("configs/movenet_memorise.yaml", mem, "OKS AP", mem.metrics["AP"], 0.9)
        ft = load_config(CONFIGS / "movenet_finetune_lightning.yaml")
        ft.out = str(Path(tmp) / "finetune")
        before = evaluate("movenet-lightning", ft.data.val, backend="torch", progress=False).coco["AP"]
        tuned = train(ft)
        after = evaluate(Path(ft.out) / "checkpoints" / "last.safetensors", ft.data.val, backend="torch",
                         progress=False).coco["AP"]
        ok = abs(after - before) <= 0.05
        lines += ["| fine-tuning movenet-lightning (configs/movenet_finetune_lightning.yaml) | AP before | AP after "
                  "| target |", "|---|---:|---:|---|",
                  f"| {tuned.step} steps, top-down on labeled_dev coco17 | {before:.3f} | {after:.3f} | "
                  f"within 0.05: {'PASS' if ok else 'MISS'} |", ""]
    emit("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
