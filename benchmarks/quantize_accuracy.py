"""int8 and bf16 vs fp32 for every bundled model: accuracy (the shared evaluator) and the network's speed on vtest.

For each model in ``featherpose models``: OKS AP on coco_mini val and labeled_dev (COCO-17), PCK@0.2 on LSP test
(single-person models; ``--lsp N``: its first N images), fp32 (the fastest fp32 backend) vs int8
(``load(..., precision="int8", backend="onnxruntime")``: onnxruntime's static quantiser,
:mod:`featherpose.runtime.quantize`) vs int8-openvino (``backend="openvino"``: NNCF's quantisation for OpenVINO) vs
bf16 (OpenVINO in bfloat16, where the CPU has it); then ms per vtest.avi frame of the network alone (``est.infer``
on preprocessed frames), the precisions
alternating in the same run, ``--threads`` threads.
The issue's rule: a precision that loses more than 0.01 AP (on either COCO set) against fp32 does not pass.

    python benchmarks/quantize_accuracy.py [--models NAME ...] [--precisions fp32 int8 int8-openvino bf16] [--lsp 200]
        [--frames 30] [--options JSON] [--out FILE]
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, emit, machine_lines, read_frames  # noqa: E402

import featherpose  # noqa: E402
from featherpose.data.coco import first_images  # noqa: E402
from featherpose.evaluation import evaluate  # noqa: E402

AP_LOSS = 0.01
#: what each --precisions entry loads
CONFIGS = {"fp32": {"precision": "fp32"}, "int8": {"precision": "int8", "backend": "onnxruntime"},
           "int8-openvino": {"precision": "int8", "backend": "openvino"}, "bf16": {"precision": "bf16"}}


def pck02(report) -> float:
    for result in report.pck.values():  # the torso-normalised PCK@0.2 where the data has it, else the first
        if "torso" in result.name:
            return result.pck.mean
    return next(iter(report.pck.values())).pck.mean


def network_ms(ests: dict, frames: list[np.ndarray], rounds: int = 3) -> dict[str, float]:
    """Median ms of ``est.infer`` per frame for each estimator, interleaved round by round (same load)."""
    inputs = {k: [e.preprocess(f[:, :, ::-1].copy())[0] for f in frames] for k, e in ests.items()}
    times = {k: [] for k in ests}
    for k, e in ests.items():  # warm-up
        e.infer(inputs[k][0])
    for _ in range(rounds):
        for k, e in ests.items():
            for x in inputs[k]:
                t = time.perf_counter()
                e.infer(x)
                times[k].append(time.perf_counter() - t)
    return {k: 1000 * float(np.median(v)) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", help="default: every bundled model")
    ap.add_argument("--lsp", type=int, default=200, help="first N images of LSP test (0: skip LSP)")
    ap.add_argument("--frames", type=int, default=30, help="vtest.avi frames timed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8", "bf16"], choices=list(CONFIGS),
                    help="fp32 is always measured (the reference); bf16 is left out where the CPU lacks it")
    ap.add_argument("--options", help="quantiser options as JSON over runtime.quantize.DEFAULT_OPTIONS, e.g. "
                    "'{\"calibration\": \"percentile\"}' (to measure a variant; cached apart)")
    ap.add_argument("--out", help="also write the markdown here")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    if args.options:
        import json

        from featherpose.runtime import quantize

        quantize.DEFAULT_OPTIONS.update(json.loads(args.options))
    models = args.models or featherpose.models()
    data = SHARED / "data"
    sets = {"coco_mini val AP": data / "coco_mini" / "person_keypoints_val2017.json",
            "labeled_dev AP": data / "labeled_dev" / "person_keypoints_coco17.json"}
    frames = read_frames(SHARED / "media" / "vtest.avi", args.frames)
    from featherpose.runtime.quantize import DEFAULT_OPTIONS, NNCF_SETTINGS

    precisions = ["fp32", *[p for p in dict.fromkeys(args.precisions) if p != "fp32"]]
    if "bf16" in precisions:
        try:
            from featherpose.runtime.openvino import check_bf16

            check_bf16()
        except (ImportError, ValueError) as exc:
            print(f"bf16 left out: {exc}", file=sys.stderr)
            precisions.remove("bf16")
    lines = [f"## {' and '.join(precisions[1:])} vs fp32", "", f"- int8 quantiser options: {DEFAULT_OPTIONS}",
             f"- int8-openvino: NNCF for OpenVINO, {NNCF_SETTINGS}; float32: an in-graph letterbox and decoder, "
             "and the heads' own layers where the model's ZOO row says int8_float_heads",
             "- bf16: OpenVINO's CPU plugin, INFERENCE_PRECISION_HINT=bf16 (a family's bf16_split front in f32: "
             "Lite Pose)", *machine_lines(args.threads), "",
             f"| model | precision | {' | '.join(sets)} | LSP test PCK@0.2 ({args.lsp} images) | network ms / vtest "
             f"frame ({args.threads} threads) | passes (AP loss <= {AP_LOSS}) |",
             "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        lsp = first_images(data / "lsp" / "lsp_test.json", args.lsp, Path(tmp) / "lsp.json") if args.lsp else None
        for name in models:
            ests = {p: featherpose.load(name, threads=args.threads, **CONFIGS[p]) for p in precisions}
            row = {}
            for p, est in ests.items():
                cells = []
                for label, path in sets.items():
                    cells.append(evaluate(est, path, progress=False).coco["AP"])
                single = not est.multi_person and not est.top_down
                cells.append(pck02(evaluate(est, lsp, progress=False)) if lsp and single else float("nan"))
                row[p] = cells
                print(name, p, cells, flush=True)
            ms = network_ms(ests, frames)
            for p in precisions:
                loss = max(row["fp32"][i] - row[p][i] for i in range(len(sets)))
                cells = " | ".join("n/a" if np.isnan(v) else f"{v:.4f}" for v in row[p])
                verdict = "" if p == "fp32" else f"{'yes' if loss <= AP_LOSS else 'no'} (loss {loss:+.4f})"
                lines.append(f"| {name} | {p} | {cells} | {ms[p]:.2f} | {verdict} |")
            print(*lines[-len(precisions):], sep="\n", flush=True)
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
