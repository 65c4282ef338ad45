"""Two ways to a faster accurate network, measured (issues 13 and 14):

1. ``--nncf MODEL ...``: int8 by NNCF for OpenVINO (``nncf.quantize`` on the model's ONNX export read by OpenVINO,
   default settings, calibrated on the bundled calibration frames) against OpenVINO fp32 and bf16;
2. ``--split K ...``: Lite Pose (litepose-m-crowdpose) with the stem and its first K backbone blocks in float32, the
   rest in bf16 (``LitePose.split(K)`` run as ``load(precision="bf16")`` runs it: two compiled models, OpenVINO's
   CPU plugin taking one precision per model); how its ``precision="bf16"`` was chosen (families/litepose.py).

Each row: the network's median ms on 20 preprocessed vtest.avi frames (2 passes, ``--threads``) and OKS AP on
coco_mini val and labeled_dev (COCO-17). NNCF is not a featherpose dependency (``pip install nncf``).

    python benchmarks/precision_probe.py [--nncf movenet-lightning litepose-m-crowdpose] [--split 0 1 6]
        [--threads 2] [--out FILE]
"""
from __future__ import annotations

import argparse
import itertools
import logging
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, emit, machine_lines, median_ms, read_frames  # noqa: E402

import featherpose  # noqa: E402
from featherpose.evaluation import evaluate  # noqa: E402
from featherpose.runtime.export import export_onnx  # noqa: E402
from featherpose.runtime.openvino import OpenVinoBackend, import_openvino, openvino_backend  # noqa: E402
from featherpose.runtime.quantize import calibration_frames  # noqa: E402
from featherpose.zoo import family_of  # noqa: E402

SETS = {"coco_mini val": SHARED / "data/coco_mini/person_keypoints_val2017.json",
        "labeled_dev": SHARED / "data/labeled_dev/person_keypoints_coco17.json"}


def measure(est, frames: list[np.ndarray], what: str) -> str:
    """A table row: ``what``, the network's median ms on ``frames`` (preprocessed), AP on each set."""
    xs = itertools.cycle([est.preprocess(f)[0] for f in frames])
    ms = median_ms(lambda: est.infer(next(xs)), runs=2 * len(frames))
    aps = [evaluate(est, path, progress=False).coco["AP"] for path in SETS.values()]
    return f"| {what} | {ms:.2f} | " + " | ".join(f"{ap:.4f}" for ap in aps) + " |"


def nncf_rows(name: str, frames, threads: int) -> list[str]:
    import nncf

    logging.getLogger("nncf").setLevel(logging.ERROR)
    ov = import_openvino()
    est = featherpose.load(name, backend="openvino", precision="fp32", threads=threads)
    # heads only: the codec decodes (NNCF would quantise an in-graph decoder too)
    onnx = export_onnx(est.network, est.codec.input_hw, dynamic_size=family_of(est.codec).dynamic_size)
    calib = nncf.Dataset([est.preprocess(f)[0] for f in calibration_frames(None)])
    rows = []
    for what, precision, quantize in (("fp32", "fp32", False), ("bf16 (whole network)", "bf16", False),
                                      ("int8 (NNCF)", "fp32", True)):
        model = ov.Core().read_model(onnx, b"")
        est.backend = OpenVinoBackend(nncf.quantize(model, calib) if quantize else model, threads, precision=precision)
        rows.append(measure(est, frames, f"{name}, OpenVINO {what}"))
        print(rows[-1], flush=True)
    return rows


def split_rows(ks: list[int], frames, threads: int) -> list[str]:
    est = featherpose.load("litepose-m-crowdpose", backend="openvino", precision="fp32", threads=threads)
    rows = [measure(est, frames, "litepose-m-crowdpose, OpenVINO fp32")]
    print(rows[-1], flush=True)
    for k in ks:
        est.backend = openvino_backend(est.network, est.codec.input_hw, threads, dynamic_size=True, precision="bf16",
                                       bf16_split=est.network.split(k))
        rows.append(measure(est, frames, f"litepose-m-crowdpose, OpenVINO: stem + {k} backbone blocks fp32, "
                                         "the rest bf16"))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nncf", nargs="*", default=[], metavar="MODEL")
    ap.add_argument("--split", nargs="*", type=int, default=[], metavar="K")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    frames = [np.ascontiguousarray(f[:, :, ::-1]) for f in read_frames(SHARED / "media/vtest.avi", 20)]  # RGB
    rows = [row for name in args.nncf for row in nncf_rows(name, frames, args.threads)]
    if args.split:
        rows += split_rows(args.split, frames, args.threads)
    lines = ["## Precision probe: NNCF int8 for OpenVINO; Lite Pose in float32 + bf16", "",
             *machine_lines(args.threads, ("numpy", "torch", "openvino", "nncf")), "",
             "| configuration | network ms / vtest frame (median) | " + " | ".join(f"{s} AP" for s in SETS) + " |",
             "|---|---:|" + "---:|" * len(SETS), *rows]
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
