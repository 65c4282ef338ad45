"""Proof of learning for Lightweight OpenPose training (issue 12, item 5).

1. From random init, configs/lwop_memorise.yaml (MobileNetV1 + CPM + 1 refinement stage, 448x448, no
   augmentation; perfect heads reach AP 0.97 there, see the recipe) memorises the 4 labelled COCO images of labeled_dev (12 people, 1-5 per image): reports the loss
   before and after (target: falls >= 10x) and OKS AP on those same images (target: >= 0.9).
2. Fine-tuning the bundled lightweight-openpose (configs/lwop_finetune.yaml, 20 steps) on the same images,
   relabelled as OpenPose-18 (its own keypoints), does not break it: OKS AP on labeled_dev's COCO-17 json before
   and after, both run as ``featherpose eval`` runs them; target within 0.05.
tests/test_memorise_hourglass.py (MEMORISE["lwop"]) and tests/test_lwop_train.py are the short variants.

    python benchmarks/lwop_memorise.py [--epochs N] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from featherpose.codecs.openpose import with_neck
from featherpose.evaluation import evaluate
from featherpose.skeletons import OPENPOSE18
from featherpose.train.config import load_config
from featherpose.train.trainer import train

from _common import emit, machine_lines, memorise_rows, memorise_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def openpose18_json(coco17: Path, out: Path) -> Path:
    """``coco17`` relabelled as OpenPose-18 (neck at the shoulders' midpoint where both are labelled), its images
    named by absolute path."""
    d = json.loads(coco17.read_text())
    for ann in d["annotations"]:
        kp = with_neck(np.asarray(ann["keypoints"], np.float32).reshape(1, 17, 3))[0]
        ann["keypoints"], ann["num_keypoints"] = [float(v) for v in kp.reshape(-1)], int((kp[:, 2] > 0).sum())
    for image in d["images"]:
        image["file_name"] = str(coco17.parent / image["file_name"])
    for cat in d["categories"]:
        cat.update(keypoints=list(OPENPOSE18.keypoints), skeleton=[[a + 1, b + 1] for a, b in OPENPOSE18.limbs])
        cat.pop("oks_sigmas", None)
    out.write_text(json.dumps(d))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, help="override the memorise recipe's epochs (one step each)")
    p.add_argument("--out", help="also write the markdown here")
    args = p.parse_args(argv)
    lines = ["## Lightweight OpenPose proof of learning", "", *machine_lines(torch.get_num_threads(), ("torch",)), ""]
    with tempfile.TemporaryDirectory() as tmp:
        cfg, mem = memorise_run(CONFIGS / "lwop_memorise.yaml", tmp, args.epochs)
        m = cfg.model
        lines += memorise_rows(f"configs/lwop_memorise.yaml: {m.num_refinement_stages} refinement stage, "
                               f"{m.input_size}x{m.input_size}, labeled_dev's 4 COCO images", mem, "OKS AP",
                               mem.metrics["AP"], 0.9)
        ft = load_config(CONFIGS / "lwop_finetune.yaml")
        coco17 = Path(ft.data.val)  # scored as featherpose eval scores it; trained on its OpenPose-18 relabelling
        ft.data.train = ft.data.val = str(openpose18_json(Path(ft.data.train), Path(tmp) / "op18.json"))
        ft.out = str(Path(tmp) / "finetune")
        before = evaluate("lightweight-openpose", coco17, backend="torch", progress=False).coco["AP"]
        tuned = train(ft)
        after = evaluate(Path(ft.out) / "checkpoints" / "last.safetensors", coco17, backend="torch",
                         progress=False).coco["AP"]
        ok = abs(after - before) <= 0.05
        lines += ["| fine-tuning lightweight-openpose (configs/lwop_finetune.yaml) | AP before | AP after | target |",
                  "|---|---:|---:|---|",
                  f"| {tuned.step} steps on labeled_dev as OpenPose-18 ({ft.model.input_size}x{ft.model.input_size} crops) "
                  f"| {before:.3f} | {after:.3f} | within 0.05: {'PASS' if ok else 'MISS'} |", ""]
    emit("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
