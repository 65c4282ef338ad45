"""Proof of learning for Lite Pose training (issue 13, item 5).

From random init, configs/litepose_memorise.yaml (Lite Pose XS, 384x384, no augmentation; perfect heads reach AP 0.98
there, see the recipe) memorises the first 4 images of coco_mini's train json that have labelled people (7 people,
1-3 per image): reports the loss before and after (target: falls >= 10x) and OKS AP on those same images (target:
>= 0.9). tests/test_memorise_hourglass.py (MEMORISE["litepose"]) is the short variant. Last run (2 cores, 1 thread,
200 steps, ~12 min): loss 31x down, OKS AP 0.919, PASS (800 steps gave AP 0.163 before the heads' final convs
started near 0: the 1/2-resolution heatmap head did not learn; see the recipe).

    python benchmarks/litepose_memorise.py [--epochs N] [--size S] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from _common import emit, machine_lines, memorise_rows

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def people_images(coco: Path, n: int, out: Path) -> Path:
    """The first ``n`` images of the COCO json ``coco`` that have a labelled person (not a crowd), with their
    annotations, image paths made absolute."""
    d = json.loads(Path(coco).read_text())
    has = {a["image_id"] for a in d["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd")}
    d["images"] = [dict(im, file_name=str((Path(coco).parent / im["file_name"]).resolve()))
                   for im in d["images"] if im["id"] in has][:n]
    ids = {im["id"] for im in d["images"]}
    d["annotations"] = [a for a in d["annotations"] if a["image_id"] in ids]
    out.write_text(json.dumps(d))
    return out


def main(argv: list[str] | None = None) -> int:
    from featherpose.train.config import load_config
    from featherpose.train.trainer import train

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, help="override the recipe's epochs (one step each)")
    p.add_argument("--size", type=int, help="override the recipe's input size")
    p.add_argument("--out", help="also write the markdown here")
    args = p.parse_args(argv)
    lines = ["## Lite Pose proof of learning", "", *machine_lines(torch.get_num_threads(), ("torch",)), ""]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(CONFIGS / "litepose_memorise.yaml")
        cfg.data.train = cfg.data.val = str(people_images(Path(cfg.data.train), 4, Path(tmp) / "people4.json"))
        cfg.out = str(Path(tmp) / "memorise")
        cfg.epochs = args.epochs or cfg.epochs
        cfg.eval_every = cfg.epochs
        if args.size:
            cfg.model.input_size = args.size
        mem = train(cfg)
        m = cfg.model
        lines += memorise_rows(f"configs/litepose_memorise.yaml: {m.variant}, {m.input_size}x{m.input_size}, "
                               "coco_mini train's first 4 images with people (7 people)", mem, "OKS AP",
                               mem.metrics["AP"], 0.9)
    emit("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
