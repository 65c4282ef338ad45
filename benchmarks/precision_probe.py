"""Three ways to a faster accurate network, measured (issues 13 and 14):

1. ``--nncf MODEL ...``: int8 by NNCF for OpenVINO (``nncf.quantize`` on the model's ONNX export read by OpenVINO,
   default settings, calibrated on the bundled calibration frames) against OpenVINO fp32 and bf16;
   ``--nncf-keep-float REGEX ...`` (repeatable) adds an int8 row with the matching nodes left in float32;
2. ``--litert-int8 MODEL ...`` (fixed-size models): int8 by Google's ai-edge-quantizer for LiteRT (static int8,
   per-channel weights; convolutions, additions and resizes; every one, or all but the heads') on the network
   converted by litert-torch, run by LiteRT's interpreter (XNNPACK), against the same conversion in fp32. Calibrated
   on the bundled calibration frames, the first 40 LSP train and the first 20 coco_mini train images (people at the
   scales the evaluation sees; none of the evaluated images);
3. ``--split K ...``: Lite Pose (litepose-m-crowdpose) with the stem and its first K backbone blocks in float32, the
   rest in bf16 (``LitePose.split(K)`` run as ``load(precision="bf16")`` runs it: two compiled models, OpenVINO's
   CPU plugin taking one precision per model); how its ``precision="bf16"`` was chosen (families/litepose.py).

Each row: the network's median ms on 20 preprocessed vtest.avi frames (2 passes, ``--threads``) and OKS AP on
coco_mini val and labeled_dev (COCO-17). NNCF and ai-edge-quantizer are not featherpose dependencies
(``pip install nncf ai-edge-quantizer``; LiteRT: ``featherpose[litert]``).

    python benchmarks/precision_probe.py [--nncf movenet-lightning litepose-m-crowdpose] [--litert-int8
        movenet-lightning] [--split 0 1 6] [--threads 2] [--out FILE]
"""
from __future__ import annotations

import argparse
import itertools
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, emit, machine_lines, median_ms, read_frames  # noqa: E402

import featherpose  # noqa: E402
from featherpose.evaluation import evaluate  # noqa: E402
from featherpose.runtime.export import export_onnx  # noqa: E402
from featherpose.runtime.openvino import (OpenVinoBackend, check_bf16, import_openvino,  # noqa: E402
                                          openvino_backend)
from featherpose.runtime.quantize import calibration_frames  # noqa: E402
from featherpose.families import family_of  # noqa: E402

SETS = {"coco_mini val": SHARED / "data/coco_mini/person_keypoints_val2017.json",
        "labeled_dev": SHARED / "data/labeled_dev/person_keypoints_coco17.json"}


def measure(est, frames: list[np.ndarray], what: str) -> str:
    """A table row: ``what``, the network's median ms on ``frames`` (preprocessed), AP on each set."""
    xs = itertools.cycle([est.preprocess(f)[0] for f in frames])
    ms = median_ms(lambda: est.infer(next(xs)), runs=2 * len(frames))
    aps = [evaluate(est, path, progress=False).coco["AP"] for path in SETS.values()]
    return f"| {what} | {ms:.2f} | " + " | ".join(f"{ap:.4f}" for ap in aps) + " |"


def nncf_rows(name: str, frames, threads: int, keep_float: Sequence[list[str]] = ()) -> list[str]:
    """OpenVINO fp32, bf16 and NNCF int8 rows of ``name``, and one more int8 row per list of node-name patterns in
    ``keep_float`` (regular expressions on the ONNX export's node names, e.g. ``/model/stem/.*``: NNCF's
    ``IgnoredScope``, those nodes stay float32)."""
    import nncf

    logging.getLogger("nncf").setLevel(logging.ERROR)
    ov = import_openvino()
    est = featherpose.load(name, backend="openvino", precision="fp32", threads=threads)
    # heads only: the codec decodes (NNCF would quantise an in-graph decoder too)
    onnx = export_onnx(est.network, est.codec.input_hw, dynamic_size=family_of(est.codec).dynamic_size,
                       runtime="openvino")
    calib = nncf.Dataset([est.network_input(f)[0] for f in calibration_frames(None)])
    rows = []
    try:
        check_bf16()
        bf16 = [("bf16 (whole network)", "bf16", None)]
    except ValueError:  # a CPU without bf16 arithmetic would run the bf16 hint in float32
        bf16 = []
    configs = [("fp32", "fp32", None), *bf16, ("int8 (NNCF)", "fp32", [])]
    configs += [(f"int8 (NNCF), {' '.join(p)} kept float32", "fp32", p) for p in keep_float]
    for what, precision, ignore in configs:
        model = ov.Core().read_model(onnx, b"")
        if ignore is not None:
            model = nncf.quantize(model, calib, ignored_scope=nncf.IgnoredScope(patterns=ignore) if ignore else None)
        est.backend = OpenVinoBackend(model, threads, precision=precision)
        rows.append(measure(est, frames, f"{name}, OpenVINO {what}"))
        print(rows[-1], flush=True)
    return rows


def litert_int8_rows(name: str, frames, threads: int, folder: Path) -> list[str]:
    """Rows for ``name`` (a fixed-size model) as the LiteRT backend converts it: fp32, then int8 by ai-edge-quantizer
    (written into ``folder``) with every convolution / addition / resize quantised, then with the heads' layers
    float."""
    if family_of(featherpose.load(name, backend="torch").codec).dynamic_size:  # before any conversion
        raise SystemExit(f"--litert-int8 {name}: its input size follows the image; this probe takes fixed-size models")
    est = featherpose.load(name, backend="litert", threads=threads, precision="fp32")  # converts it (cached)
    from ai_edge_quantizer import quantizer, recipe

    from featherpose.fileio import read_json
    from featherpose.image import load_image
    from featherpose.runtime.quantize import bundled_calibration_files

    backend, hw = est.backend, est.codec.input_hw
    fp32 = backend.model_file(hw)
    data = SHARED / "data"
    paths = [*bundled_calibration_files(),
             *(data / "lsp" / im["file_name"] for im in read_json(data / "lsp" / "lsp_train.json")["images"][:40]),
             *(data / "coco_mini" / im["file_name"]
               for im in read_json(data / "coco_mini" / "person_keypoints_train2017.json")["images"][:20])]
    calibration = [est.network_input(load_image(p))[0] for p in paths]
    signature, io = next(iter(backend.interpreter_class(model_path=str(fp32)).get_signature_list().items()))
    rows = []
    for what, op_regex in (("fp32", None), ("int8 (ai-edge-quantizer, every conv / add / resize)", ".*"),
                           ("int8 (ai-edge-quantizer, the heads' layers float)", "^(?!.*Head_).*")):
        path = fp32
        if op_regex:
            q = quantizer.Quantizer(str(fp32))
            static = recipe.static_wi8_ai8()[0]
            q.load_quantization_recipe([dict(static, regex=op_regex, operation=op) for op in
                                        ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "RESIZE_BILINEAR")])
            path = folder / f"{name}-int8-{len(rows)}.tflite"
            q.quantize(q.calibrate({signature: [{io["inputs"][0]: x} for x in calibration]}, num_threads=threads)
                       ).export_model(str(path))
        backend.load_file(path, hw)
        rows.append(measure(est, frames, f"{name}, LiteRT {what}"))
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
    ap.add_argument("--nncf-keep-float", nargs="+", action="append", default=[], metavar="REGEX",
                    help="with --nncf: one more int8 row with these ONNX node-name patterns kept float32 (repeatable)")
    ap.add_argument("--litert-int8", nargs="*", default=[], metavar="MODEL")
    ap.add_argument("--split", nargs="*", type=int, default=[], metavar="K")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    frames = [np.ascontiguousarray(f[:, :, ::-1]) for f in read_frames(SHARED / "media/vtest.avi", 20)]  # RGB
    rows = [row for name in args.nncf for row in nncf_rows(name, frames, args.threads, args.nncf_keep_float)]
    with tempfile.TemporaryDirectory() as folder:
        rows += [row for name in args.litert_int8 for row in litert_int8_rows(name, frames, args.threads, Path(folder))]
    if args.split:
        rows += split_rows(args.split, frames, args.threads)
    lines = ["## Precision probe: NNCF int8 for OpenVINO; ai-edge-quantizer int8 for LiteRT; Lite Pose in float32 + bf16",
             "", *machine_lines(args.threads, ("numpy", "torch", "openvino", "nncf", "ai-edge-litert",
                                                "ai-edge-quantizer")), "",
             "| configuration | network ms / vtest frame (median) | " + " | ".join(f"{s} AP" for s in SETS) + " |",
             "|---|---:|" + "---:|" * len(SETS), *rows]
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
