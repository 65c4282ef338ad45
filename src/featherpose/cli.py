"""Command line: ``featherpose predict | models | convert | export | eval | train``.

Each verb parses its flags and calls the public function of the same name, so the CLI cannot
do anything the Python API cannot. Errors a user can fix are printed as one line
(``featherpose: error: ...``) with exit code 2; nothing prints a traceback for bad input. Ctrl-C
exits 130 (a folder or video keeps and writes what was done); an unexpected exception (a bug) is one
``featherpose: internal error: ...`` line with exit code 3, or its traceback with ``FEATHERPOSE_DEBUG=1``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import resources
from pathlib import Path

from . import __version__
from .estimator import DEFAULT_MIN_SCORE
from .runtime import BACKENDS

BACKEND_HELP = ("inference runtime (default auto: the fastest installed one for this model on this machine, measured "
                "once and cached); openvino needs featherpose[openvino] and also runs Intel's IR as published: "
                "--model human-pose-estimation-0001.xml --backend openvino; litert needs featherpose[litert] "
                "(the network converted once per size by litert-torch, run by Google's LiteRT)")

PRECISIONS = ("auto", "fp32", "int8", "bf16")  # runtime.quantize.PRECISIONS (not imported here: it loads the runtimes)
PRECISION_HELP = ("auto (default: bf16 for the models it keeps within 0.01 AP, on CPUs with bf16 and OpenVINO "
                  "installed; else OpenVINO int8 for the models it keeps within 0.01 AP (Lightweight OpenPose); else "
                  "fp32); fp32; int8: the ONNX export quantised by onnxruntime's static quantiser (backend auto / "
                  "onnxruntime) or by NNCF for OpenVINO (backend openvino), built once and cached; bf16: OpenVINO in "
                  "bfloat16 (backend auto / openvino, CPUs with AVX512-BF16 or AMX). Both approximate: see "
                  "benchmarks/quantize_accuracy.py")


def sample_image() -> Path:
    """The demo photo bundled in the package (messi5.jpg from OpenCV's samples; see assets/LICENSE)."""
    return Path(str(resources.files("featherpose") / "assets" / "messi5.jpg"))


def _cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict

    if args.source is None and not args.sample:
        raise ValueError("give a SOURCE (image, folder, video or webcam index) or --sample")
    if args.source is not None and args.sample:
        raise ValueError(f"give either SOURCE ({args.source}) or --sample, not both")
    source = sample_image() if args.sample else args.source
    report = predict(source, args.model, multi=args.multi, save=args.save, json_path=args.json,
                     backend=args.backend, threads=args.threads, input_size=args.input_size,
                     min_score=args.min_score, max_frames=args.max_frames, boxes=args.boxes, progress=not args.quiet,
                     skeleton=args.skeleton, precision=args.precision, calib=args.calib, crop=not args.no_crop,
                     track=args.track, smooth=not args.no_smooth)
    if report.kind == "image" and not args.quiet:
        for i, person in enumerate(report.poses[0].summary()):
            print(f"person {i}: score {person['score']:.3f}, box {person['box']}")
    noun = {"video": "frames", "webcam": "frames"}.get(report.kind, "images")
    pace = f", {report.rate:.1f} {noun}/s after the first" if report.kind != "image" and report.processed > 1 else ""
    print(f"{report.model} ({report.backend}): {report.processed} {noun}, {report.people} people found{pace}")
    for path, why in report.failed:
        print(f"skipped {path}: {why}", file=sys.stderr)
    for line in report.warnings:
        print(f"featherpose: warning: {line}", file=sys.stderr)
    for path in report.written:
        print(f"wrote {path}")
    for path, why in report.unwritten:
        print(f"featherpose: error: {why}", file=sys.stderr)
    if report.interrupted:
        return 130
    return 0 if report.processed and not report.unwritten else 1


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import complexity
    from .weights_io import load_weights
    from .zoo import accurate_precisions, build_network, load, model_info, models, weights_path

    names = models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    for name in names:
        info = model_info(name)
        people = "multi-person" if info.multi_person else "single-person"
        print(f"{name:<20} {info.input_size[1]}x{info.input_size[0]}  {people:<13} {info.description}")
        if args.detail:
            est = load(name, backend="torch")
            params, flops = complexity(est.network, est.input_hw)
            print(f"    parameters: {params / 1e6:.2f} M   GFLOPs: {flops / 1e9:.2f}   weights: {weights_path(info)}")
            source = load_weights(weights_path(info)).meta.get("source")
            print(f"    licence: {info.license}\n    paper: {info.paper}\n    source: {source}")
            lost = [f"{what} {loss:.4f}" for what, loss in (("bf16", info.bf16_ap_loss),
                                                             ("int8 (OpenVINO, NNCF)", info.int8_ap_loss))
                    if loss is not None]
            if lost:
                auto = accurate_precisions(name)
                print(f"    OKS AP lost against fp32 (the larger of coco_mini val and labeled_dev): {', '.join(lost)}; "
                      f"precision auto here: {' or '.join(auto)}"
                      f"{' (the faster, timed at the first load)' if len(auto) > 1 else ''}")
    if args.detail:
        from .zoo import TRAINABLE  # its networks' configs import torch: only for --detail

        print("\narchitectures without bundled weights (train them with `featherpose train`; configs/):")
        for name, entry in TRAINABLE.items():
            size = entry.config.input_size
            params, flops = complexity(build_network(entry.architecture, entry.config), (size, size))
            print(f"{name:<20} {size}x{size}  parameters: {params / 1e6:.2f} M   GFLOPs: {flops / 1e9:.2f}   "
                  f"{entry.description}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .families import FAMILIES

    for path in FAMILIES[args.family].importer(args.source, args.out):
        print(f"wrote {path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train.trainer import train

    result = train(args.config, resume=args.resume, dry_run=args.dry_run, progress=not args.quiet)
    if args.dry_run:
        print(f"dry run: one batch, loss {result.last_loss:.4f}; nothing written")
        return 0
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 reports (and wrote the files)
        return 0
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
    print(f"trained {result.epochs_done} epochs ({result.step} steps), loss {result.first_loss:.4f} -> "
          f"{result.last_loss:.4f}{'; ' + metrics if metrics else ''}")
    print(f"wrote {result.out / 'checkpoints' / 'last.safetensors'} (featherpose.load / eval / export take it), "
          f"{result.out / 'metrics.csv'}, {result.out / 'curves.png'}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from .nas.search import load_search_config, search

    cfg = load_search_config(args.config)
    if args.out:
        cfg.out = args.out
    if args.supernet_only:
        done = search(cfg, progress=not args.quiet, supernet_only=True)
        loss = done["supernet_loss_first_last"]
        trained = (f"{done['steps']} steps of batch {done['batch_size']} on {done['device']} in "
                   f"{done['train_minutes']:.1f} min ({done['images_per_second']:.1f} images/s), loss "
                   f"{loss[0]:.4g} -> {loss[-1]:.4g}" if done["steps"] else "no training (train.steps: 0)")
        print(f"super-network from {done['started_from']}: {trained}")
        supernet = Path(done["supernet"]).resolve()
        print(f"wrote {done['supernet']} (a search starts from it with supernet: {supernet} and train.steps: 0, "
              "writing into another out)")
        return 0
    report = search(cfg, progress=not args.quiet)
    chosen, out = report["chosen"], Path(cfg.out)
    check = (f"; latency check on {len(report['latency_check'])} random candidates: mean error "
             f"{100 * report['latency_check_mean_error']:.1f} %, max {100 * report['latency_check_max_error']:.1f} % "
             f"(against each pass's own ms, not relative to the reference network: max "
             f"{100 * report['latency_check_raw_max_error']:.1f} %); each measured twice, the two differ by "
             f"{100 * report['latency_check_repeat_error']:.1f} % on average"
             if report["latency_check"] else "")
    print(f"searched {len(report['candidates'])} candidates in {report['minutes']:.1f} min under "
          f"{report['budget_ms']:g} ms: chose {chosen['key']} (input size-stem-stages-kernels-fusion), AP "
          f"{chosen['AP']:.3f}, {chosen['measured_ms']:.1f} ms measured ({chosen['predicted_ms']:.1f} predicted{check})")
    print(f"wrote {chosen['weights']} (featherpose predict / eval / train init take it), {out / 'search.json'}, "
          f"{out / 'search.png'}, {out / 'supernet.safetensors'}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .fileio import check_writable, refuse_overwrite
    from .runtime.export import export_onnx
    from .zoo import load, weight_files

    refuse_overwrite(args.onnx, weight_files(args.model), f"--onnx {args.onnx}", "choose another file name")
    check_writable(args.onnx, "--onnx file", example="model.onnx")
    if args.calib is not None and not args.int8:
        raise ValueError(f"--calib {args.calib} calibrates int8 quantisation; add --int8 or leave --calib out")
    if args.eval is not None and not Path(args.eval).is_file():
        raise ValueError(f"--eval {args.eval}: no such file; give a COCO keypoints json (or leave --eval out)")
    est = load(args.model, backend="torch", input_size=args.input_size)
    if args.int8:
        from .runtime.quantize import quantize_onnx, calibration_frames

        fp32 = export_onnx(est.network, est.input_hw, dynamic_size=est.dynamic_size)
        path = quantize_onnx(fp32, calibration_frames(args.calib), est.preprocess, args.onnx)
    else:
        path = export_onnx(est.network, est.input_hw, args.onnx, dynamic_size=est.dynamic_size)
    size = "H, W" if est.dynamic_size else f"{est.input_hw[0]}, {est.input_hw[1]}"
    note = (f" (H, W: each image's own, as the model's preprocessing sizes it; traced at {est.input_hw[0]}x"
            f"{est.input_hw[1]})" if est.dynamic_size else "")
    kind = "int8 QDQ (onnxruntime's static quantiser), " if args.int8 else ""
    print(f"wrote {path} ({kind}input 'image': int32 [1, {size}, 3] RGB 0..255{note}; "
          f"outputs: raw heads {', '.join(est.codec.head_shapes())})")
    if args.eval:
        from .evaluation import evaluate
        from .runtime import OnnxBackend

        reference = load(args.model, backend="onnxruntime", input_size=args.input_size, precision="fp32")
        ap_fp32 = evaluate(reference, args.eval).coco["AP"]
        est.backend = OnnxBackend(str(path))  # the file just written, through the same preprocess and decode
        ap = evaluate(est, args.eval).coco["AP"]
        print(f"OKS AP on {args.eval}: {ap:.4f} for {path.name} ({'int8' if args.int8 else 'fp32'}), {ap_fp32:.4f} "
              f"for fp32: {ap - ap_fp32:+.4f}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import ResultsNotWrittenError, evaluate

    model, opts = args.model, {"input_size": args.input_size, "backend": args.backend, "threads": args.threads}
    if args.precision != "auto" or args.calib:  # evaluate() takes the estimator built here
        from .zoo import load

        model = load(args.model, **opts, precision=args.precision, calib=args.calib)
        opts = {}
    try:
        report = evaluate(model, args.data, **opts, results_path=args.results, progress=not args.quiet)
    except ResultsNotWrittenError as exc:  # the metrics first, then the one-line error (main prints it)
        _print_eval(exc.report, args.per_joint)
        raise
    _print_eval(report, args.per_joint)
    if report.results_path is not None:
        print(f"wrote {report.results_path}")
    return 0


def _print_eval(report, per_joint: bool) -> None:
    print(report.table())
    if per_joint:
        print(report.joint_table())


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like every other error (the verbs' parsers inherit it)."""

    def error(self, message: str):
        self.exit(2, f"featherpose: error: {message} (see `{self.prog} --help`)\n")


def build_parser(convert: bool = True) -> argparse.ArgumentParser:
    """The command line's parser; ``convert``: with ``convert``'s families and what each takes (the family table
    imports torch, 2 s that a `featherpose predict` of a cached model does without; :func:`main` asks for them only
    for ``convert``)."""
    from .zoo import DEFAULT_IMAGE_MODEL, DEFAULT_MULTI_MODEL, DETECTOR

    parser = _Parser(prog="featherpose", description="Fast 2D human pose estimation on CPUs.")
    parser.add_argument("--version", action="version", version=f"featherpose {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="estimate poses in an image, folder, video or webcam")
    p.add_argument("source", nargs="?", help="image, folder of images, video file, or webcam index (0)")
    p.add_argument("--sample", action="store_true", help="use the demo image bundled with featherpose")
    p.add_argument("--model", help=f"model name or .safetensors file (default: {DEFAULT_IMAGE_MODEL} for images, "
                                   f"{DEFAULT_MULTI_MODEL} with --multi and for video / webcam)")
    p.add_argument("--multi", action="store_true", help=f"several people per image ({DEFAULT_MULTI_MODEL})")
    p.add_argument("--save", metavar="DIR", help="write drawn images / annotated video into DIR")
    p.add_argument("--json", metavar="FILE", help="write keypoints (COCO results layout for folders; JSON Lines, one "
                   "line per frame, for a video or webcam: name it .jsonl)")
    p.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help=BACKEND_HELP)
    p.add_argument("--threads", type=int, help="CPU threads (default: all)")
    p.add_argument("--precision", default="auto", choices=list(PRECISIONS), help=PRECISION_HELP)
    p.add_argument("--calib", metavar="DIR", help="int8: calibrate on this folder of images or video "
                   "(default: the frames bundled with featherpose)")
    p.add_argument("--input-size", type=int, help="network input side, a multiple the model accepts, e.g. 32 for "
                   "MoveNet (multi-person models); lightweight-openpose: the height, a multiple of 8 (default 256), "
                   "the width follows each image")
    p.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE,
                   help=f"drop people scoring below this (default {DEFAULT_MIN_SCORE}, as featherpose.load)")
    p.add_argument("--max-frames", type=int, help="stop a video or webcam after N frames")
    p.add_argument("--no-crop", action="store_true", help="single-person models on video / webcam: run every frame "
                   "whole (default: each frame on the square around the person the previous frame found, as Google "
                   "runs MoveNet)")
    p.add_argument("--track", action="store_true", help="video / webcam: ids that persist across frames (track_id in "
                   "the JSON Lines, one colour per person in the drawing), keypoints One-Euro smoothed per person")
    p.add_argument("--no-smooth", action="store_true", help="with --track: the model's raw keypoints, unsmoothed")
    p.add_argument("--boxes", metavar="FILE", help="person boxes for a top-down model (COCO json or a list of "
                                                  f"{{file_name, bbox}}); default: {DETECTOR} finds them")
    p.add_argument("--skeleton", help="keypoints to write and draw where the model offers several "
                                      "(lightweight-openpose: coco17, the default, or openpose18 with the neck)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-person lines")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("models", help="list bundled models")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'movenet-*'")
    p.add_argument("--detail", action="store_true", help="parameters, licence, paper, source")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("convert", help="import published weights into featherpose .safetensors files")
    if convert:
        from .families import FAMILIES

        importable = {name: row for name, row in FAMILIES.items() if row.importer is not None}
        p.add_argument("family", choices=list(importable))
        p.add_argument("source", help="; ".join(f"{name}: {row.importer_source}" for name, row in importable.items()))
    p.add_argument("--out", default=".", help="output folder (default: current)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("train", help="train a model from a YAML recipe (configs/); DDP under torchrun")
    p.add_argument("config", help="recipe YAML, e.g. configs/movenet_lightning_coco.yaml")
    p.add_argument("--resume", action="store_true", help="continue after the last completed epoch in the run's out/")
    p.add_argument("--dry-run", action="store_true", help="one batch, then stop; writes nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("search", help="Lite Pose architecture search under a latency budget on this machine "
                       "(configs/litepose_search.yaml)")
    p.add_argument("config", help="search YAML, e.g. configs/litepose_search.yaml")
    p.add_argument("--out", help="output folder (default: the config's out)")
    p.add_argument("--supernet-only", action="store_true", help="train the super-network, write "
                   "supernet.safetensors and stop (no latency table, no evolution), e.g. on a GPU for a later CPU "
                   "search's supernet:")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("export", help="export a model to ONNX")
    p.add_argument("model", help="model name or .safetensors file")
    p.add_argument("--onnx", required=True, metavar="FILE", help="output .onnx path")
    p.add_argument("--input-size", type=int, help="input side, a multiple the model accepts, e.g. 32 for MoveNet "
                   "(multi-person models); lightweight-openpose: the height (default 256), the width stays dynamic")
    p.add_argument("--int8", action="store_true", help="quantise to int8 (onnxruntime's static quantiser, QDQ, "
                   "per-channel weights; approximate: see benchmarks/quantize_accuracy.py)")
    p.add_argument("--calib", metavar="DIR", help="with --int8: calibrate on this folder of images or video "
                   "(default: the frames bundled with featherpose)")
    p.add_argument("--eval", metavar="COCO.json", help="score the written model and the fp32 one on this COCO "
                   "keypoints json (OKS AP) and print both: what the export costs in accuracy")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("eval", help="OKS AP and PCK of a model on COCO-keypoints data")
    p.add_argument("--model", required=True, help="model name or .safetensors file")
    p.add_argument("--data", required=True, metavar="COCO.json",
                   help="COCO keypoints json (file_name relative to its folder)")
    p.add_argument("--input-size", type=int, help="network input side, a multiple the model accepts, e.g. 32 for "
                   "MoveNet (multi-person models); lightweight-openpose: the height, a multiple of 8 (default 256), "
                   "the width follows each image")
    p.add_argument("--results", metavar="FILE", help="also write the COCO results json")
    p.add_argument("--per-joint", action="store_true", help="also print PCK and AUC per keypoint")
    p.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help=BACKEND_HELP)
    p.add_argument("--threads", type=int, help="CPU threads (default: all)")
    p.add_argument("--precision", default="auto", choices=list(PRECISIONS), help=PRECISION_HELP)
    p.add_argument("--calib", metavar="DIR", help="int8: calibrate on this folder of images or video "
                   "(default: the frames bundled with featherpose)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(convert=command == "convert").parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, OSError, FloatingPointError) as exc:
        print(f"featherpose: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("featherpose: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line; the traceback on request
        if isinstance(exc, SystemError) and isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            # Ctrl-C while a numba kernel returned: "... returned a result with an exception set"
            print("featherpose: interrupted", file=sys.stderr)
            return 130
        if os.environ.get("FEATHERPOSE_DEBUG"):
            raise
        print(f"featherpose: internal error: {type(exc).__name__}: {exc} (a bug in featherpose: please report it; "
              f"FEATHERPOSE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
