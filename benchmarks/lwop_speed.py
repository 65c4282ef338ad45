"""Lightweight OpenPose speed: featherpose beside the reference pipeline and Intel's int8 IR, per stage.

Times preprocess, network, decode and total per frame on the first N frames of ``vtest.avi`` (768x576,
input height 256, 256x344), every runtime at the same thread count, for these runners:

    featherpose onnxruntime fp32   ``featherpose.load("lightweight-openpose")``: est.preprocess (after BGR ->
                                   RGB), est.infer, est.postprocess (codec.decode + letterbox undo + Poses)
    featherpose openvino           the same model on featherpose's OpenVINO backend, and Intel's int8 IR loaded
                                   by featherpose (``featherpose.load(<xml>, backend="openvino")``); skipped with
                                   a note where the backend is not committed or openvino is missing
    reference (torch eager)        the reference repository's own code (Daniil-Osokin/lightweight-human-pose-
                                   estimation.pytorch at the pinned commit, exported outside this tree and put
                                   on sys.path at run time): ``demo.infer_fast`` (resize, normalise, pad, network,
                                   x4 cubic upsampling), 18 ``extract_keypoints`` + ``group_keypoints``, keypoints
                                   mapped back to image pixels as ``demo.run_demo`` does (kept float). The
                                   network is featherpose's bundled torch module (Intel's weights, float32) run
                                   eagerly, as the demo calls its net (autograd on); the reference's own class
                                   cannot load Intel's layout (an extra CPM conv, ELU, concat order, /255). A
                                   context row runs the same under ``torch.no_grad`` (a fairer bar).
    OpenVINO int8 + reference      Intel's FP16-INT8 IR compiled by OpenVINO directly (``core.compile_model``,
                                   f32 inference precision, as the golden oracle ran it) inside the same
                                   reference pipeline (``infer_fast`` + ``extract_keypoints`` + ``group_keypoints``).

The reference's ``infer_fast`` hands its net the normalised tensor t = (x - 128) / 256; the adapter feeds the
network x = t * 256 + 128 (exact), the raw BGR pixels both networks take. Its stages are split at the net call:
preprocess = ``infer_fast`` up to the call, network = the call, decode = the rest of ``infer_fast`` (x4
upsampling) + keypoints + grouping + mapping; the adapter's own conversion is in no stage.

Frames are decoded once up front. Every pass (one runner over every frame) warms up, then times each frame with
``time.perf_counter``. Passes run in rounds, the runners back to back, their order reversed every other round;
each runner reports its best round (lowest mean total). Its poses from its first pass are checked against the
reference's on every frame. Then decode alone on tiled golden float maps (1, 5 and 20 people): featherpose's
``codec.decode`` vs the reference's upsample + extract + group, alternating calls.

Usage::

    python benchmarks/lwop_speed.py --threads 2 --out benchmarks/RESULTS-lwop.md
    python benchmarks/lwop_speed.py --frames 20 --rounds 1      # a quick run

The markdown on stdout (progress on stderr) can be pasted into benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from _common import (SHARED, Runner, agreement_line, best_round, compare, emit, find_mirror, machine_lines,
                     read_frames, time_pass, verdict)

VIDEO = SHARED / "media" / "vtest.avi"
GOLDEN = SHARED / "golden" / "lwop"
IR_XML = SHARED / "weights" / "lwop" / "human-pose-estimation-0001.xml"
MODEL = "lightweight-openpose"
#: featherpose's OpenVINO backend: its rows run once it is committed.
OV_BACKEND = "src/featherpose/runtime/openvino.py"
REFERENCE_REPO = "Daniil-Osokin/lightweight-human-pose-estimation.pytorch"
REFERENCE_COMMIT = "d23c284b09acf27a163e1febd511e7482cac25ed"
MIRROR = Path("/work/.mirror/Daniil-Osokin+lightweight-human-pose-estimation.pytorch")
HEIGHT, STRIDE, UPSAMPLE = 256, 8, 4
#: Targets (issue 12): featherpose decode of 20 people at most this (ms); end to end at least this many times
#: the reference's frames/s; and faster than OpenVINO int8 + the reference's grouping.
DECODE_TARGET_MS, SPEEDUP_TARGET = 2.0, 2.0
#: Decode-alone inputs: golden samples' float maps tiled side by side -> people expected.
DECODE_CASES = (("1 person", ("astronaut",)), ("5 people", ("vtest_f030",)), ("20 people", ("vtest_f030",) * 4))
FP_ORT, FP_OV, FP_OV_IR, REF_TORCH, REF_NOGRAD, REF_OV = ("fp-ort", "fp-ov", "fp-ov-ir", "ref-torch", "ref-nograd",
                                                          "ref-ov")
LABELS = {FP_ORT: "featherpose onnxruntime fp32", FP_OV: "featherpose openvino (bundled model)",
          FP_OV_IR: "featherpose openvino, Intel's int8 IR", REF_TORCH: "reference pipeline, torch eager fp32",
          REF_NOGRAD: "(context) reference pipeline, torch eager fp32 under no_grad",
          REF_OV: "OpenVINO int8 IR + reference grouping"}

PEER_SHORT = {REF_TORCH: "reference (as the demo runs it)", REF_NOGRAD: "reference under no_grad",
              REF_OV: "OpenVINO int8 + reference grouping"}


# ------------------------------------------------------------------------------------------- the reference

def reference_tree(folder: Path | None, mirror: Path) -> tuple[Path, list[str]]:
    """A folder holding the reference at :data:`REFERENCE_COMMIT` (exported from ``mirror`` with ``git archive``
    when it lacks ``demo.py``), and notes; the files this benchmark runs are checked against the sha256 the golden
    manifest records.

    Raises:
        SystemExit: no mirror to export from, the folder is inside this repository, or a file's hash differs.
    """
    folder = folder or Path(tempfile.gettempdir()) / f"lwop_ref_{REFERENCE_COMMIT[:8]}"
    folder = folder.resolve()
    repo_root = Path(__file__).resolve().parents[1]
    if folder == repo_root or repo_root in folder.parents:
        raise SystemExit(f"--reference {folder}: the reference must live outside this repository")
    if not (folder / "demo.py").exists():
        git_dir = find_mirror(mirror)
        if git_dir is None:
            raise SystemExit(f"no reference at {folder} and no git mirror at {mirror}; give --reference DIR (an "
                             f"export of {REFERENCE_REPO} @ {REFERENCE_COMMIT}) or --mirror GIT_DIR")
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "--git-dir", str(git_dir), "archive", REFERENCE_COMMIT],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    expected = json.loads((GOLDEN / "manifest.json").read_text())["reference"]["files_sha256"]
    bad = [name for name, sha in expected.items()
           if hashlib.sha256((folder / name).read_bytes()).hexdigest() != sha]
    if bad:
        raise SystemExit(f"{folder}: {', '.join(bad)} differ from {REFERENCE_REPO} @ {REFERENCE_COMMIT[:8]} "
                         f"(sha256 in {GOLDEN / 'manifest.json'}); delete the folder to export it again")
    return folder, [f"- reference: {REFERENCE_REPO} @ {REFERENCE_COMMIT[:8]}, exported to `{folder}` (outside "
                    f"the tree; {', '.join(expected)} match the golden manifest's sha256)."]


def import_reference(folder: Path):
    """The reference's ``demo`` and ``modules.keypoints`` modules (its folder put first on sys.path)."""
    sys.path.insert(0, str(folder))
    import demo  # noqa: E402 (the reference's own demo.py)
    from modules import keypoints  # noqa: E402

    return demo, keypoints


def coco17_from_reference(poses18: np.ndarray) -> np.ndarray:
    """(N, 18, 3) OpenPose-18 with (-1, -1, -1) missing -> (N, 17, 3) COCO-17 with (0, 0, 0) missing."""
    from featherpose.codecs.openpose import to_coco17

    out = to_coco17(np.asarray(poses18, np.float32).reshape(-1, 18, 3))
    return np.where(out[..., 2:] == -1, np.float32(0), out)


def reference_grouping(keypoints_mod, heatmaps: np.ndarray, pafs: np.ndarray):
    """The reference's 18 ``extract_keypoints`` + ``group_keypoints`` on upsampled (h, w, C) maps, as
    ``demo.run_demo`` calls them (``heatmaps`` is changed in place, as there)."""
    found, by_type = 0, []
    for k in range(18):
        found += keypoints_mod.extract_keypoints(heatmaps[:, :, k], by_type, found)
    return keypoints_mod.group_keypoints(by_type, pafs)


def reference_poses(pose_entries, all_keypoints: np.ndarray, scale: float, pad) -> np.ndarray:
    """The demo's mapping back to image pixels, ``x = (x_up * stride / upsample - pad_left) / scale`` (y with
    pad_top), kept float (the demo truncates to int only to draw) -> (N, 18, 3) x, y, heatmap value, (-1, -1, -1)
    where missing."""
    kp = np.asarray(all_keypoints, np.float64).reshape(-1, 4)
    xy = (kp[:, :2] * STRIDE / UPSAMPLE - np.array([pad[1], pad[0]])) / scale
    table = np.concatenate([np.column_stack([xy, kp[:, 2]]), -np.ones((1, 3))])
    entries = np.asarray(pose_entries, np.float64).reshape(-1, 20)
    ids = entries[:, :18].astype(np.int64)  # -1 picks the last row, (-1, -1, -1)
    return table[ids]


def reference_runner(key: str, demo, keypoints_mod, network: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
                     ) -> Runner:
    """The reference pipeline (``demo.infer_fast`` + grouping) around ``network``: (1, 3, H, W) float32 raw BGR
    -> (heatmaps (1, 19, h, w), pafs (1, 38, h, w)) float32 arrays."""
    import torch

    clock = time.perf_counter
    marks = {}

    class Net:
        """What ``infer_fast`` calls as its net: takes the reference's normalised tensor, returns its stages list."""

        def __call__(self, t: torch.Tensor):
            marks["a"] = clock()
            x = (t * 256 + 128).numpy()  # exact: t = (x - 128) / 256 with integer x
            marks["b"] = clock()
            heatmaps, pafs = network(x)
            marks["c"] = clock()
            return [torch.from_numpy(heatmaps), torch.from_numpy(pafs)]

    net = Net()

    def run(bgr: np.ndarray):
        t0 = clock()
        heatmaps, pafs, scale, pad = demo.infer_fast(net, bgr, HEIGHT, STRIDE, UPSAMPLE, True)
        entries, all_kp = reference_grouping(keypoints_mod, heatmaps, pafs)
        poses = reference_poses(entries, all_kp, scale, pad)
        t3 = clock()
        return (marks["a"] - t0, marks["c"] - marks["b"], t3 - marks["c"]), coco17_from_reference(poses)

    return Runner(key, run)


def torch_network(est, no_grad: bool = False) -> Callable:
    """featherpose's bundled torch module taking BGR (as the reference's net), called eagerly as the demo calls
    its net (autograd on: neither ``demo.py`` nor ``val.py`` disables it), or under ``torch.no_grad``."""
    from featherpose.models.lwop import LightweightOpenPose, LwopConfig

    cfg = LwopConfig(**{**est.network.config.to_dict(), "rgb_input": False})
    net = LightweightOpenPose(cfg)
    net.load_state_dict(est.network.state_dict())
    net.eval()
    import torch

    def run(x: np.ndarray):
        with torch.set_grad_enabled(not no_grad):
            out = net(torch.from_numpy(x))
        return out["heatmaps"].data.numpy(), out["pafs"].data.numpy()

    return run


def openvino_network(threads: int, width: int) -> Callable:
    """Intel's FP16-INT8 IR compiled by OpenVINO for (1, 3, 256, ``width``) (recompiled if a frame's width
    differs), f32 inference precision (as the golden int8 oracle), ``threads`` threads."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(IR_XML))
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    state = {}

    def compile_for(shape):
        model.reshape({model.inputs[0].any_name: list(shape)})
        compiled = core.compile_model(model, "CPU", config)
        state.update(shape=tuple(shape), request=compiled.create_infer_request(),
                     hm=compiled.output("Mconv7_stage2_L2"), paf=compiled.output("Mconv7_stage2_L1"))

    compile_for((1, 3, HEIGHT, width))

    def run(x: np.ndarray):
        if x.shape != state["shape"]:
            compile_for(x.shape)
        res = state["request"].infer({0: x})
        return np.array(res[state["hm"]]), np.array(res[state["paf"]])

    return run


def git_state(path: str) -> str:
    """``committed``, ``modified`` (tracked, changed in the working tree), ``untracked`` (absent or never
    committed) or ``unknown`` (no git) for a path relative to the repository root."""
    root = Path(__file__).resolve().parents[1]
    try:
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", path], cwd=root, capture_output=True,
                                 timeout=10).returncode == 0
        if not tracked:
            return "untracked"
        clean = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", path], cwd=root, capture_output=True,
                               timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return "committed" if clean else "modified"


# ------------------------------------------------------------------------------------------------ timing

def stage_table(results: dict[str, list[np.ndarray]], keys: list[str]) -> list[str]:
    """Markdown tables (mean, median ms per frame of each runner's best round) with frames/s ratios to the
    reference pipeline (as the demo runs it, and under no_grad) and to OpenVINO int8 + the reference's grouping."""
    lines = []
    peers = [k for k in (REF_TORCH, REF_NOGRAD, REF_OV) if k in results]
    for stat_name, stat in (("mean", np.mean), ("median", np.median)):
        lines += ["", f"### vtest.avi: {stat_name} ms per frame, best of rounds", "",
                  "| runner | preprocess | network | decode | total | frames/s | "
                  + " | ".join(f"this / {PEER_SHORT[k]} frames/s" for k in peers) + " |",
                  "|---|" + "---:|" * (5 + len(peers))]
        peer_totals = [stat(best_round(results[k]).sum(axis=1)) for k in peers]
        for key in keys:
            best = best_round(results[key])
            stages = [stat(best[:, i]) for i in range(3)]
            total = stat(best.sum(axis=1))
            cells = " | ".join(f"{v:.2f}" for v in (*stages, total))
            ratios = " | ".join(f"{p / total:.2f}" for p in peer_totals)
            lines.append(f"| {LABELS[key]} | {cells} | {1000 / total:.1f} | {ratios} |")
    return lines


# ------------------------------------------------------------------------------------------ decode alone

def tiled_maps(samples: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Golden float heatmaps (19, h, W) and PAFs (38, h, W): the samples' maps side by side (width axis)."""
    hm = np.concatenate([np.load(GOLDEN / s / "float_heatmaps.npy")[0] for s in samples], axis=-1)
    pafs = np.concatenate([np.load(GOLDEN / s / "float_pafs.npy")[0] for s in samples], axis=-1)
    return hm, pafs


def decode_alone(codec, keypoints_mod, calls: int) -> tuple[list[str], list[tuple[str, float]]]:
    """featherpose ``codec.decode`` vs the reference's x4 cubic upsampling (``infer_fast``'s) + extract + group,
    alternating calls on the same maps. Returns the table lines and (case, featherpose median ms)."""
    clock = time.perf_counter
    lines = ["", f"### Decode alone: ms per call (median / mean of {calls} alternating calls)", "",
             "Maps: golden float maps (`golden/lwop/<sample>/float_*.npy`, the float32 build of Intel's weights) "
             "tiled side by side: 1 person = astronaut (32x32 cells), 5 = vtest_f030 (32x43), 20 = vtest_f030 x4 "
             "(32x172). featherpose = `PafCodec.decode` (x4 upsampling of the windows that matter + peaks + "
             "grouping + COCO-17 view); reference = `cv2.resize` x4 cubic of both maps (as `infer_fast`) + 18 "
             "`extract_keypoints` + `group_keypoints`.", "",
             "| maps | people: featherpose / reference | featherpose | reference (upsample + group) | "
             "of which upsample | reference / featherpose |",
             "|---|---|---:|---:|---:|---:|"]
    medians = []
    for case, samples in DECODE_CASES:
        hm, pafs = tiled_maps(samples)
        heads = {"heatmaps": hm, "pafs": pafs}

        def reference(hm=hm, pafs=pafs):
            up_h = cv2.resize(hm.transpose(1, 2, 0), (0, 0), fx=UPSAMPLE, fy=UPSAMPLE, interpolation=cv2.INTER_CUBIC)
            up_p = cv2.resize(pafs.transpose(1, 2, 0), (0, 0), fx=UPSAMPLE, fy=UPSAMPLE, interpolation=cv2.INTER_CUBIC)
            t = clock()
            entries, _ = reference_grouping(keypoints_mod, up_h, up_p)
            return entries, clock() - t

        n_fp = len(codec.decode(heads).keypoints)
        n_ref = len(reference()[0])
        for _ in range(3):
            codec.decode(heads), reference()
        fp, ref, up = [], [], []
        for _ in range(calls):
            t = clock()
            codec.decode(heads)
            fp.append(clock() - t)
            t = clock()
            grouping = reference()[1]
            ref.append(clock() - t)
            up.append(ref[-1] - grouping)
        fp, ref, up = (1e3 * np.array(v) for v in (fp, ref, up))
        medians.append((case, float(np.median(fp))))
        lines.append(f"| {case} ({hm.shape[1]}x{hm.shape[2]} cells) | {n_fp} / {n_ref} | "
                     f"{np.median(fp):.2f} / {fp.mean():.2f} | {np.median(ref):.2f} / {ref.mean():.2f} | "
                     f"{np.median(up):.2f} / {up.mean():.2f} | {np.median(ref) / np.median(fp):.1f}x |")
    return lines, medians


# -------------------------------------------------------------------------------------------- agreement

# ------------------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=200, help="frames of vtest.avi (default 200)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of passes; best round reported (default 3)")
    p.add_argument("--warmup", type=int, default=10, help="untimed frames before each pass (default 10)")
    p.add_argument("--threads", type=int, default=2, help="threads for every runtime (default 2)")
    p.add_argument("--decode-calls", type=int, default=50, help="timed calls per decode-alone case (default 50)")
    p.add_argument("--reference", type=Path, help="folder with the reference's tree at the pinned commit "
                   "(default: a temporary folder, exported from --mirror when empty)")
    p.add_argument("--mirror", type=Path, default=MIRROR, help=f"git mirror of {REFERENCE_REPO} (default {MIRROR})")
    p.add_argument("--out", type=Path, help="also write the markdown to this file (atomically)")
    args = p.parse_args(argv)
    if args.frames < 1 or args.rounds < 1 or args.decode_calls < 1 or args.threads < 1:
        p.error("--frames, --rounds, --decode-calls and --threads must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    import torch

    import featherpose

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    out = ["## Lightweight OpenPose speed: featherpose vs the reference pipeline and OpenVINO int8", ""]
    out += machine_lines(args.threads, ("numpy", "opencv-python-headless", "torch", "onnxruntime", "openvino"))
    folder, notes = reference_tree(args.reference, args.mirror)
    demo, keypoints_mod = import_reference(folder)

    frames = read_frames(VIDEO, args.frames)
    est = featherpose.load(MODEL, backend="onnxruntime", threads=args.threads)
    width = est.preprocess(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB))[0].shape[2]
    runners = [featherpose_runner(FP_ORT, est)]
    ov_state = git_state(OV_BACKEND)
    if ov_state == "modified":
        notes.append(f"- featherpose's OpenVINO backend (`{OV_BACKEND}`) has uncommitted changes: its rows time "
                     f"the working tree.")
    for key, source in ((FP_OV, MODEL), (FP_OV_IR, str(IR_XML))):
        if ov_state == "untracked":
            notes.append(f"- {LABELS[key]}: skipped (`{OV_BACKEND}` is not committed yet).")
            continue
        try:
            runners.append(featherpose_runner(key, featherpose.load(source, backend="openvino", threads=args.threads)))
        except Exception as exc:  # noqa: BLE001 (the backend may not exist yet, or openvino is absent)
            notes.append(f"- {LABELS[key]}: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}).")
    runners.append(reference_runner(REF_TORCH, demo, keypoints_mod, torch_network(est)))
    runners.append(reference_runner(REF_NOGRAD, demo, keypoints_mod, torch_network(est, no_grad=True)))
    try:
        runners.append(reference_runner(REF_OV, demo, keypoints_mod, openvino_network(args.threads, width)))
    except ImportError:
        notes.append(f"- {LABELS[REF_OV]}: skipped (openvino is not installed: `pip install openvino`).")

    results: dict[str, list[np.ndarray]] = {}
    poses: dict[str, list[np.ndarray]] = {}  # each runner's poses on every frame (its first pass)
    with tqdm(total=args.rounds * len(runners), unit="pass", file=sys.stderr, dynamic_ncols=True) as bar:
        for rnd in range(args.rounds):
            for runner in runners if rnd % 2 == 0 else runners[::-1]:
                bar.set_postfix_str(f"round {rnd + 1} {runner.key}")
                ms, found = time_pass(runner, frames, args.warmup)
                results.setdefault(runner.key, []).append(ms)
                poses.setdefault(runner.key, found)
                bar.update()

    print("decode alone ...", file=sys.stderr)
    decode_lines, decode_medians = decode_alone(est.codec, keypoints_mod, args.decode_calls)

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    out += [f"- load average at end: {load}",
            f"- input: first {len(frames)} frames of vtest.avi ({frames[0].shape[1]}x{frames[0].shape[0]}), height "
            f"{HEIGHT} -> network input {HEIGHT}x{width}",
            f"- method: frames decoded up front; {args.warmup} warm-up frames per pass; {args.rounds} rounds, the "
            f"runners back to back (order reversed in alternate rounds); each runner's best round (lowest mean "
            f"total). featherpose: est.preprocess (the BGR frame, converted) / est.infer / est.postprocess. Reference "
            f"runners: the reference's unmodified `demo.infer_fast` split at its net call (decode = its x4 cubic "
            f"upsampling + 18 `extract_keypoints` + `group_keypoints` + the demo's mapping to image pixels). Its "
            f"torch network is featherpose's bundled module with Intel's weights in float32, called eagerly as "
            f"the demo calls its net (autograd on): the reference class cannot load Intel's IR layout. OpenVINO "
            f"int8: Intel's IR compiled by `core.compile_model`, INFERENCE_PRECISION_HINT=f32, "
            f"INFERENCE_NUM_THREADS={args.threads}."]
    out += notes
    keys = [r.key for r in runners]
    out += stage_table(results, keys)

    out += decode_lines
    out += ["", "### Poses: featherpose vs the reference on every frame", "",
            "People in the order both give; COCO-17 keypoints in image pixels (the reference's kept float).", "",
            "| featherpose vs | frames identical in structure | count differs | keypoints present differ | "
            "people compared | max keypoint xy diff (px) | max keypoint score diff |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    out.append(agreement_line(f"{LABELS[FP_ORT]} vs {LABELS[REF_TORCH]}", compare(poses[FP_ORT], poses[REF_TORCH])))
    for key, ref in ((FP_OV, REF_TORCH), (FP_OV_IR, REF_OV)):
        if key in poses and ref in poses:
            out.append(agreement_line(f"{LABELS[key]} vs {LABELS[ref]}", compare(poses[key], poses[ref])))
    if REF_OV in poses:
        out.append(agreement_line(f"(context) {LABELS[REF_TORCH]} vs {LABELS[REF_OV]}",
                                  compare(poses[REF_TORCH], poses[REF_OV])))

    def mean_total(key: str) -> float:
        return float(best_round(results[key]).sum(axis=1).mean())

    out += ["", "### Targets (issue 12; mean totals of the best rounds)", "", "| target | value | result |",
            "|---|---:|---|"]
    case, ms = decode_medians[-1]
    out.append(f"| featherpose decode, {case} (median ms per call) <= {DECODE_TARGET_MS:g} ms | {ms:.2f} | "
               f"{verdict(ms <= DECODE_TARGET_MS)} |")
    for key in (FP_ORT, FP_OV, FP_OV_IR):
        if key not in results:
            continue
        for ref in (REF_TORCH, REF_NOGRAD):
            speedup = mean_total(ref) / mean_total(key)
            out.append(f"| {LABELS[key]}: frames/s / {PEER_SHORT[ref]}'s >= {SPEEDUP_TARGET:g} | {speedup:.2f} | "
                       f"{verdict(speedup >= SPEEDUP_TARGET)} |")
        if REF_OV in results:
            vs = mean_total(REF_OV) / mean_total(key)
            out.append(f"| {LABELS[key]}: frames/s / {PEER_SHORT[REF_OV]}'s > 1 | {vs:.2f} | {verdict(vs > 1)} |")
    emit("\n".join(out) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
