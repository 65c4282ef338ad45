"""Proof of learning for the stacked hourglass (issue 11, item 1).

From random init, configs/hourglass_memorise.yaml (2 stacks x 64 channels, 128x128, no augmentation)
memorises the 16 people of the first 16 LSP train images: reports the loss before and after (target:
falls >= 10x) and PCK@0.2 (torso) on those same people (target: >= 0.95).
tests/test_memorise_hourglass.py is its short variant.

    python benchmarks/hourglass_memorise.py [--epochs N] [--out FILE]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from featherpose.data.coco import first_images
from featherpose.train.config import load_config

from _common import emit, machine_lines, memorise_rows, memorise_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, help="override the memorise recipe's epochs (one step each)")
    p.add_argument("--out", help="also write the markdown here")
    args = p.parse_args(argv)
    lines = ["## Stacked hourglass proof of learning", "", *machine_lines(torch.get_num_threads(), ("torch",)), ""]
    with tempfile.TemporaryDirectory() as tmp:
        recipe = CONFIGS / "hourglass_memorise.yaml"
        first16 = first_images(Path(load_config(recipe).data.train), 16, Path(tmp) / "first16.json")
        cfg, mem = memorise_run(recipe, tmp, args.epochs, first16)
    m = cfg.model
    lines += memorise_rows(f"configs/hourglass_memorise.yaml: {m.stacks}x{m.channels}, {m.input_size}x{m.input_size}, "
                           "16 LSP people", mem, "PCK@0.2 (torso)", mem.metrics["PCK@0.2 (torso)"], 0.95)
    emit("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
