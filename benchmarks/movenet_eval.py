"""MoveNet accuracy: OKS AP (pycocotools) and PCK of the three imported MoveNets on the shared data.

Runs :func:`featherpose.evaluation.evaluate` (what ``featherpose eval`` runs):

- every model on ``coco_mini`` val2017 (30 images, 40 people with keypoints) and on
  ``labeled_dev`` COCO-17 (4 images, 12 people);
- ``movenet-multipose`` at larger inputs (256 ... 512) on coco_mini val;
- with ``--lsp``, every model on the LSP test half (1000 people; 12 of its 14 joints are COCO's).

MultiPose runs on whole images (all 6 instances, no threshold); Lightning and Thunder, being
single-person, run top-down on the ground-truth boxes (square crops 1.25 x the box's longer side).
coco_mini is far too small to rank models: the numbers are a smoke test of the pipeline and a
reference for regressions, not accuracy claims. Google's TFLite MultiPose scored AP 0.275 on
coco_mini val at 256x256 with the same protocol (whole image, resize_with_pad, 6 instances).

Usage::

    python benchmarks/movenet_eval.py --out benchmarks/RESULTS-eval.md
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from _common import SHARED, emit, machine_lines

COCO_VAL = SHARED / "data" / "coco_mini" / "person_keypoints_val2017.json"
DEV_COCO = SHARED / "data" / "labeled_dev" / "person_keypoints_coco17.json"
LSP_TEST = SHARED / "data" / "lsp" / "lsp_test.json"
MODELS = ("movenet-lightning", "movenet-thunder", "movenet-multipose")
SIZES = (256, 320, 384, 448, 512)
COLUMNS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "PCK@0.2 (box)", "AUC 0-0.2 (box)")


def row(report, extra: str = "") -> str:
    values = report.metrics()
    cells = ["n/a" if np.isnan(values.get(c, np.nan)) else f"{values[c]:.3f}" for c in COLUMNS]
    size = report.mode.rsplit("input ", 1)[-1]
    mode = "whole image" if report.mode.startswith("multi") else "top-down (GT boxes)"
    return (f"| {report.model} | {size} | {mode} | {report.data.parent.name}/{report.data.name} | "
            f"{report.persons} | {report.detections} | " + " | ".join(cells) + f" | {report.seconds:.1f} |{extra}")


def table(title: str, reports: list) -> list[str]:
    head = "| model | input | mode | data | people | results | " + " | ".join(COLUMNS) + " | s |"
    lines = ["", f"### {title}", "", head, "|" + "---|" * 6 + "---:|" * (len(COLUMNS) + 1)]
    lines += [row(r) for r in reports]
    notes = sorted({n for r in reports for n in r.notes})
    return lines + ([""] + [f"- {n}" for n in notes] if notes else [])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="MultiPose input sides (default 256..512)")
    p.add_argument("--lsp", action="store_true", help="also every model on the LSP test half (1000 people)")
    p.add_argument("--out", type=Path, help="also write the markdown to this file (atomically)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from featherpose.evaluation import evaluate

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    sizes = [int(s) for s in args.sizes.split(",") if s]

    def run(model: str, data: Path, size: int | None = None):
        return evaluate(model, data, input_size=size, threads=args.threads, progress=False)

    out = ["## MoveNet accuracy: OKS AP and PCK (featherpose evaluate)", ""] + machine_lines(args.threads, ("numpy", "torch", "onnxruntime", "pycocotools"))
    out += ["- protocol: pycocotools COCOeval 'keypoints' with the json's oks_sigmas; MultiPose on whole images "
            "(resize_with_pad, all 6 instances, instance score); Lightning / Thunder top-down on ground-truth "
            "boxes (square crop 1.25 x longer side, zero padding; score = mean keypoint score); PCK@0.2 "
            "normalised by the box's longer side, AUC over alpha 0..0.2 (step 0.01). Reference: Google's "
            "TFLite MultiPose, same protocol, AP 0.275 on coco_mini val at 256x256. s: wall time of the whole "
            "evaluation, model loading (ONNX export) included."]
    reports = []
    for data in (COCO_VAL, DEV_COCO):
        for model in MODELS:
            print(f"{model} on {data.name}", file=sys.stderr)
            reports.append(run(model, data))
    out += table("All three models (default inputs)", reports)
    big = []
    for size in sizes:
        print(f"movenet-multipose at {size} on {COCO_VAL.name}", file=sys.stderr)
        big.append(run("movenet-multipose", COCO_VAL, size))
    out += table("MultiPose at larger inputs, coco_mini val2017", big)
    if args.lsp:
        lsp = []
        for model in MODELS:
            print(f"{model} on {LSP_TEST.name}", file=sys.stderr)
            lsp.append(run(model, LSP_TEST))
        out += table("LSP test (1000 people; 12 shared joints)", lsp)
        out += ["", "| model | PCK@0.2 (torso, 12 joints) | AUC 0-0.2 (torso) |", "|---|---:|---:|"]
        out += [f"| {r.model} | {r.pck['torso'].pck.mean:.3f} | {r.pck['torso'].auc.mean:.3f} |" for r in lsp]
    emit("\n".join(out) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
