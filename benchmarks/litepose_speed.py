"""Lite Pose speed: featherpose's ``litepose-m-crowdpose`` beside upstream's own pipeline, per stage.

Times preprocess, network, decode and total per frame on the first N frames of ``vtest.avi`` (768x576) and on
``messi5.jpg`` (548x342), at input 448 (upstream's size: vtest -> 448x640) and 256, every runtime at the same
thread count, for these runners:

    featherpose <backend>          ``featherpose.load("litepose-m-crowdpose", input_size=S, backend=B,
                                   precision=P)`` (B: ``--backend``, default auto: featherpose's default, the fastest
                                   backend measured here; P: ``--precision``, default auto: featherpose's default,
                                   bf16 with the first layers in float32 on CPUs with bf16, else fp32):
                                   est.preprocess(frame, bgr=True) (BGR -> RGB), est.infer, est.postprocess
                                   (AECodec.decode + the inverse affine + Poses)
    upstream (torch eager)         mit-han-lab/litepose at the pinned commit, exported outside this tree and put on
                                   sys.path at run time: its ``LitePose`` network built from ``search-M.json`` and
                                   ``experiments/crowd_pose/mobilenet/mobile.yaml`` on the same weights
                                   (``shared/weights/litepose``), and ``valid.py``'s per-image loop without flip:
                                   ``resize_align_multi_scale`` + ToTensor / Normalize, ``get_multi_stage_outputs``,
                                   ``aggregate_results``, ``HeatmapParser.parse``, ``get_final_preds``, under
                                   ``torch.no_grad`` as ``valid.py`` runs it.

Shims (in memory, none in upstream's files): ``lib``, ``lib.models``, ``lib.models.layers`` and ``dataset`` are
registered as bare packages so their ``__init__`` (which import every model, the datasets, pycocotools and
crowdposetools) do not run; ``torchvision`` (imported by the training transforms that define ``FLIP_CONFIG``,
unused without flip) is a stub; torchvision's ``ToTensor`` + ``Normalize`` are the same torch ops; ``.cuda()`` and
``DataParallel`` dropped. ``munkres`` and ``yacs`` (upstream's dependencies, not featherpose's) must be importable:
``pip install --target DIR munkres yacs`` and give ``--deps DIR``.

Upstream's stages are split at its model call: preprocess = cvtColor + resize_align_multi_scale + normalise,
network = ``model(x)``, decode = the rest of ``get_multi_stage_outputs`` (bilinear upsampling) +
``aggregate_results`` + ``parse`` + ``get_final_preds``.

Frames are decoded once up front. In each round the runners take turns, a whole input each (their order reversed
every other round), or every ``--chunk`` frames: then the machine's changes of speed, which come within minutes on
these VMs, reach all of them more alike (passes of a whole input, 40-90 s each, moved the end-to-end ratio by up to
1.5 between two runs), but each turn starts after another runtime's (benchmarks/RESULTS.md: upstream ran 1.2-1.3x
slower with turns of 10 frames; whether from the machine or the turns was not settled). Each turn warms up on its
first frames, then times each frame with ``time.perf_counter``. Each runner reports its best round (lowest mean
total). Each featherpose runner's poses (first pass) are checked against upstream's at the same size on every
frame. Then decode alone on golden network outputs (``golden/litepose/<sample>/output_*.npy``): featherpose's
``codec.decode`` vs upstream's upsampling + parse, alternating calls.

Usage::

    python benchmarks/litepose_speed.py --threads 2 --deps /tmp/litepose_deps --out /tmp/litepose_speed.md
    python benchmarks/litepose_speed.py --frames 20 --rounds 1      # a quick run
    python benchmarks/litepose_speed.py --frames 2 --no-reference   # featherpose only

The markdown on stdout (progress on stderr) can be pasted into benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np

from _common import (SHARED, Runner, agreement_line, best_round, compare, emit, export_commit, find_mirror,
                     featherpose_runner, machine_lines, outside_repo, read_frames, time_pass, verdict)

VIDEO = SHARED / "media" / "vtest.avi"
IMAGE = SHARED / "media" / "messi5.jpg"
GOLDEN = SHARED / "golden" / "litepose"
WEIGHTS = SHARED / "weights" / "litepose" / "litepose-auto-m-crowdpose.pth"
MODEL = "litepose-m-crowdpose"
REFERENCE_REPO = "mit-han-lab/litepose"
REFERENCE_COMMIT = "00b702d6b0e2419825502d2a80365113fe0b0335"
MIRROR = Path("/work/.mirror/mit-han-lab+litepose")
#: What this benchmark runs of upstream (the rest of the tree, e.g. its large assets, is not exported).
REFERENCE_PATHS = ("lib", "mobile_configs", "experiments")
YAML = "experiments/crowd_pose/mobilenet/mobile.yaml"
ARCH = "mobile_configs/search-M.json"
SIZES = (448, 256)
#: Targets (issue 13): featherpose decode at 448x640 at most this (ms, mean per vtest frame); end to end at least
#: this many times upstream's frames/s at the same input and weights.
DECODE_TARGET_MS, SPEEDUP_TARGET = 10.0, 5.0
#: Decode-alone inputs: golden samples with stored network outputs.
DECODE_SAMPLES = ("vtest_f000", "messi5")


def fp_key(size: int) -> str:
    return f"fp-{size}"


def up_key(size: int) -> str:
    return f"up-{size}"


#: featherpose's backend per input size, as its Estimator names it (filled by main)
FP_BACKENDS: dict[str, str] = {}


def label(key: str) -> str:
    who, size = key.split("-")
    return (f"featherpose {FP_BACKENDS.get(size, 'onnxruntime fp32')}, {size}" if who == "fp"
            else f"upstream pipeline, torch eager fp32, {size}")


# ------------------------------------------------------------------------------------------- upstream

def reference_tree(folder: Path | None, mirror: Path) -> tuple[Path, list[str]]:
    """A folder holding upstream's ``lib``, ``mobile_configs`` and ``experiments`` at :data:`REFERENCE_COMMIT`
    (exported from ``mirror`` with ``git archive`` when it lacks them), and notes.

    Raises:
        SystemExit: no mirror to export from, or the folder is inside this repository.
    """
    folder = outside_repo(folder or Path(tempfile.gettempdir()) / f"litepose_ref_{REFERENCE_COMMIT[:8]}",
                          "--reference")
    if not (folder / "lib" / "core" / "group.py").exists():
        git_dir = find_mirror(mirror)
        if git_dir is None:
            raise SystemExit(f"no upstream at {folder} and no git mirror at {mirror}; give --reference DIR (an "
                             f"export of {REFERENCE_REPO} @ {REFERENCE_COMMIT}) or --mirror GIT_DIR")
        export_commit(git_dir, REFERENCE_COMMIT, folder, REFERENCE_PATHS)
    return folder, [f"- upstream: {REFERENCE_REPO} @ {REFERENCE_COMMIT[:8]} ({', '.join(REFERENCE_PATHS)}), "
                    f"exported to `{folder}` (outside the tree), run unmodified with in-memory import shims."]


def _bare_package(name: str, path: Path) -> None:
    """Register ``name`` as a package at ``path`` without running its ``__init__.py``."""
    mod = types.ModuleType(name)
    mod.__path__ = [str(path)]
    sys.modules[name] = mod


def import_reference(folder: Path, deps: Path | None) -> types.SimpleNamespace:
    """Upstream's modules: ``config`` (yacs cfg), ``pose_mobilenet``, ``group``, ``inference``, ``transforms``.

    Raises:
        SystemExit: munkres or yacs cannot be imported.
    """
    if deps is not None:
        sys.path.insert(0, str(deps))
    for name in ("munkres", "yacs"):
        try:
            __import__(name)
        except ImportError:
            raise SystemExit(f"upstream needs {name}, which is not importable: `pip install --target DIR munkres "
                             f"yacs` and give --deps DIR (or --no-reference)") from None
    lib = folder / "lib"
    sys.path.insert(0, str(lib))
    sys.path.insert(0, str(folder))
    _bare_package("lib", lib)
    _bare_package("lib.models", lib / "models")
    _bare_package("lib.models.layers", lib / "models" / "layers")
    _bare_package("dataset", lib / "dataset")
    if "torchvision" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except ImportError:  # only the training transforms use it; FLIP_CONFIG is what inference imports
            tv = types.ModuleType("torchvision")
            tv.transforms = types.ModuleType("torchvision.transforms")
            tv.transforms.functional = types.ModuleType("torchvision.transforms.functional")
            sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms,
                                "torchvision.transforms.functional": tv.transforms.functional})
    import importlib

    return types.SimpleNamespace(
        config=importlib.import_module("config"), pose_mobilenet=importlib.import_module("lib.models.pose_mobilenet"),
        group=importlib.import_module("core.group"), inference=importlib.import_module("core.inference"),
        transforms=importlib.import_module("utils.transforms"))


def reference_cfg(ref, folder: Path, size: int):
    """Upstream's config as ``valid.py`` builds it for ``--superconfig search-M.json``, at input ``size``, no
    flip test; and the architecture dict."""
    cfg = ref.config.cfg.clone()
    cfg.defrost()
    cfg.merge_from_file(str(folder / YAML))
    cfg.DATASET.INPUT_SIZE = size
    cfg.DATASET.OUTPUT_SIZE = [size // 4, size // 2]
    cfg.TEST.FLIP_TEST = False
    cfg.freeze()
    return cfg, json.loads((folder / ARCH).read_text())


def reference_model(ref, folder: Path):
    """Upstream's LitePose (search-M) with the shared weights, eval mode."""
    import torch

    cfg, arch = reference_cfg(ref, folder, SIZES[0])
    model = ref.pose_mobilenet.get_pose_net(cfg, is_train=False, cfg_arch=arch)
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def reference_decode(ref, cfg, parser, model, x, center, scale, base_size):
    """``valid.py``'s steps after the input tensor: outputs, aggregate, parse, final preds -> (N, 14, 4)."""
    import torch

    _, heatmaps, tags = ref.inference.get_multi_stage_outputs(cfg, model, x, cfg.TEST.FLIP_TEST,
                                                             cfg.TEST.PROJECT2IMAGE, base_size)
    final_heatmaps, tags_list = ref.inference.aggregate_results(cfg, 1, None, [], heatmaps, tags)
    final_heatmaps = final_heatmaps / float(len(cfg.TEST.SCALE_FACTOR))
    tags = torch.cat(tags_list, dim=4)
    grouped, _ = parser.parse(final_heatmaps, tags, cfg.TEST.ADJUST, cfg.TEST.REFINE)
    final = ref.transforms.get_final_preds(grouped, center, scale, [final_heatmaps.size(3), final_heatmaps.size(2)])
    return np.asarray(final, np.float32).reshape(-1, cfg.DATASET.NUM_JOINTS, 4)


def reference_poses(final: np.ndarray) -> np.ndarray:
    """Upstream's (N, 14, 4) x, y, score, tag -> (N, 14, 3) with featherpose's convention: missing (score <= 0)
    keypoints (0, 0, 0)."""
    kp = final[..., :3].copy()
    kp[kp[..., 2] <= 0] = 0
    return kp


def reference_runner(key: str, ref, folder: Path, model, size: int) -> Runner:
    """Upstream's per-image loop of ``valid.py`` (no flip) at input ``size``, timed around its model call."""
    import torch

    cfg, _ = reference_cfg(ref, folder, size)
    parser = ref.group.HeatmapParser(cfg)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    clock = time.perf_counter
    marks = {}

    class Timed(torch.nn.Module):
        def forward(self, x):
            marks["b"] = clock()
            out = model(x)
            marks["c"] = clock()
            return out

    timed = Timed()

    def run(bgr: np.ndarray):
        with torch.no_grad():
            t0 = clock()
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            base_size, center, scale = ref.transforms.get_multi_scale_size(image, size, 1.0, 1.0)
            resized, center, scale = ref.transforms.resize_align_multi_scale(image, size, 1.0, 1.0)
            x = torch.from_numpy(resized).permute(2, 0, 1).contiguous().float().div(255)  # ToTensor
            x = x.sub(mean).div(std).unsqueeze(0)  # Normalize
            final = reference_decode(ref, cfg, parser, timed, x, center, scale, base_size)
            t3 = clock()
        return (marks["b"] - t0, marks["c"] - marks["b"], t3 - marks["c"]), reference_poses(final)

    return Runner(key, run)


# ------------------------------------------------------------------------------------------------ tables

def stage_table(title: str, results: dict[str, list[np.ndarray]], keys: list[str]) -> list[str]:
    """Markdown tables (mean, median ms per frame of each runner's best round) with the frames/s ratio to
    upstream at the same size."""
    lines = []
    for stat_name, stat in (("mean", np.mean), ("median", np.median)):
        lines += ["", f"### {title}: {stat_name} ms per frame, best of rounds", "",
                  "| runner | preprocess | network | decode | total | frames/s | this / upstream frames/s (same size) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for key in keys:
            best = best_round(results[key])
            stages = [stat(best[:, i]) for i in range(3)]
            total = stat(best.sum(axis=1))
            peer = up_key(int(key.split("-")[1]))
            ratio = f"{stat(best_round(results[peer]).sum(axis=1)) / total:.2f}" if peer in results else "-"
            cells = " | ".join(f"{v:.2f}" for v in (*stages, total))
            lines.append(f"| {label(key)} | {cells} | {1000 / total:.1f} | {ratio} |")
    return lines


def decode_alone(codec, ref, folder: Path, calls: int) -> list[str]:
    """featherpose ``codec.decode`` vs upstream's upsampling + aggregate + parse on golden network outputs,
    alternating calls (input-pixel poses: no inverse affine on either side)."""
    import torch

    clock = time.perf_counter
    lines = ["", f"### Decode alone at 448: ms per call (median / mean of {calls} alternating calls)", "",
             "Golden network outputs (`golden/litepose/<sample>/output_*.npy`, upstream's torch at 448). featherpose "
             "= `AECodec.decode` (its compiled steps); NumPy reference = the same with `parse(reference=True)`; "
             "upstream = `get_multi_stage_outputs` minus the network + `aggregate_results` + `HeatmapParser.parse`.",
             "",
             "| sample (input) | people: featherpose / upstream | featherpose | featherpose NumPy reference | "
             "upstream | upstream / featherpose |",
             "|---|---|---:|---:|---:|---:|"]
    cfg, _ = reference_cfg(ref, folder, SIZES[0]) if ref is not None else (None, None)
    parser = ref.group.HeatmapParser(cfg) if ref is not None else None
    for sample in DECODE_SAMPLES:
        o0, o1 = (np.load(GOLDEN / sample / f"output_{i}.npy") for i in (0, 1))
        heads = {"heatmaps_tags": o0[0], "heatmaps": o1[0]}
        h, w = 2 * o1.shape[2], 2 * o1.shape[3]

        def fp():
            return len(codec.decode(heads).keypoints)

        def numpy_reference():
            return len(codec.parse(heads, reference=True)["refined"])

        def up():
            outputs = [torch.from_numpy(o0), torch.from_numpy(o1)]
            with torch.no_grad():
                _, heatmaps, tags = ref.inference.get_multi_stage_outputs(cfg, lambda x: outputs, None, False,
                                                                         True, (w, h))
                final_heatmaps, tags_list = ref.inference.aggregate_results(cfg, 1, None, [], heatmaps, tags)
                grouped, _ = parser.parse(final_heatmaps, torch.cat(tags_list, dim=4), True, True)
            return len(grouped[0])

        runs = (fp, numpy_reference, up) if ref is not None else (fp, numpy_reference)
        people = [r() for r in runs]
        if people[1] != people[0]:
            raise SystemExit(f"{sample}: the compiled decode found {people[0]} people, the NumPy reference {people[1]}")
        del people[1]
        for _ in range(2):
            for r in runs:
                r()
        times = [[] for _ in runs]
        for _ in range(calls):
            for r, t in zip(runs, times):
                start = clock()
                r()
                t.append(clock() - start)
        ms = [1e3 * np.array(t) for t in times]
        cells = [f"{np.median(m):.2f} / {m.mean():.2f}" for m in ms]
        if ref is None:
            cells.append("-")
        ratio = f"{np.median(ms[2]) / np.median(ms[0]):.1f}x" if ref is not None else "-"
        lines.append(f"| {sample} ({h}x{w}) | {' / '.join(map(str, people))}{' / -' if ref is None else ''} | "
                     f"{cells[0]} | {cells[1]} | {cells[2]} | {ratio} |")
    return lines


# ------------------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=200, help="frames of vtest.avi (default 200)")
    p.add_argument("--image-repeats", type=int, default=10, help="timed runs on messi5.jpg per pass (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of passes; best round reported (default 3)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before a runner's first chunk of an input "
                   "(default 3; 1 before each later chunk)")
    p.add_argument("--chunk", type=int, default=0, help="frames a runner runs before the next takes its turn "
                   "(default 0: a whole input; see the module docstring)")
    p.add_argument("--threads", type=int, default=2, help="threads for every runtime (default 2)")
    p.add_argument("--backend", default="auto", help="featherpose's backend (default auto: the fastest measured "
                   "here, featherpose's default)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="featherpose's precision "
                   "(default auto: featherpose's default, bf16 with the first layers in float32 where the CPU has bf16)")
    p.add_argument("--decode-calls", type=int, default=20, help="timed calls per decode-alone sample (default 20)")
    p.add_argument("--reference", type=Path, help="folder with upstream's tree at the pinned commit (default: a "
                   "temporary folder, exported from --mirror when empty)")
    p.add_argument("--mirror", type=Path, default=MIRROR, help=f"git mirror of {REFERENCE_REPO} (default {MIRROR})")
    p.add_argument("--deps", type=Path, help="folder holding munkres and yacs for upstream (pip install --target)")
    p.add_argument("--no-reference", action="store_true", help="time featherpose only (no upstream rows)")
    p.add_argument("--out", type=Path, help="also write the markdown to this file (atomically)")
    args = p.parse_args(argv)
    if min(args.frames, args.rounds, args.decode_calls, args.threads, args.image_repeats) < 1 \
            or min(args.warmup, args.chunk) < 0:
        p.error("--frames, --image-repeats, --rounds, --decode-calls and --threads must be positive, "
                "--warmup and --chunk >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    import torch

    import featherpose

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    out = ["## Lite Pose speed: featherpose vs upstream's pipeline (litepose-m-crowdpose, same weights)", ""]
    out += machine_lines(args.threads, ("numpy", "opencv-python-headless", "torch", "onnxruntime", "openvino", "scipy"))
    notes, ref, folder = [], None, None
    if args.no_reference:
        notes.append("- upstream: not run (--no-reference).")
    else:
        folder, notes = reference_tree(args.reference, args.mirror)
        ref = import_reference(folder, args.deps)

    inputs = {"vtest.avi": read_frames(VIDEO, args.frames)}
    image = cv2.imread(str(IMAGE), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"could not read {IMAGE}")
    inputs["messi5.jpg"] = [image] * args.image_repeats
    runners, codec448 = [], None
    for size in SIZES:
        est = featherpose.load(MODEL, backend=args.backend, threads=args.threads, input_size=size,
                               precision=args.precision)
        name = est.backend.name
        FP_BACKENDS[str(size)] = name if name.endswith("bf16") else f"{name} fp32"
        codec448 = codec448 or est.codec
        runners.append(featherpose_runner(fp_key(size), est))
    if ref is not None:
        model = reference_model(ref, folder)
        runners += [reference_runner(up_key(size), ref, folder, model, size) for size in SIZES]

    results: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in inputs}
    poses: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in inputs}
    chunks = {name: [range(i, min(i + (args.chunk or len(frames)), len(frames)))
                     for i in range(0, len(frames), args.chunk or len(frames))] for name, frames in inputs.items()}
    with tqdm(total=args.rounds * len(runners) * sum(map(len, chunks.values())), unit="chunk", file=sys.stderr,
              dynamic_ncols=True) as bar:
        for rnd in range(args.rounds):
            order = runners if rnd % 2 == 0 else runners[::-1]
            for name, frames in inputs.items():
                # the runners take turns every chunk of frames, so that a change of the machine's speed (minutes
                # here) reaches all of them alike; each turn starts with untimed warm-up frames
                ms = {runner.key: np.full((len(frames), 3), np.nan) for runner in runners}  # NaN: a frame not timed
                found: dict[str, list] = {runner.key: [None] * len(frames) for runner in runners}
                for c, idx in enumerate(chunks[name]):
                    for runner in order:
                        bar.set_postfix_str(f"round {rnd + 1} {name} frames {idx.start}-{idx.stop - 1}")
                        part, got = time_pass(runner, frames[idx.start:idx.stop], args.warmup if c == 0 else 1)
                        ms[runner.key][idx.start:idx.stop] = part
                        found[runner.key][idx.start:idx.stop] = got
                        bar.update()
                for runner in runners:
                    results[name].setdefault(runner.key, []).append(ms[runner.key])
                    poses[name].setdefault(runner.key, found[runner.key])

    print("decode alone ...", file=sys.stderr)
    decode_lines = decode_alone(codec448, ref, folder, args.decode_calls)

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    vtest = inputs["vtest.avi"][0]
    out += [f"- load average at end: {load}",
            f"- inputs: first {len(inputs['vtest.avi'])} frames of vtest.avi ({vtest.shape[1]}x{vtest.shape[0]}: "
            f"448x640 at 448, 256x384 at 256), and messi5.jpg ({image.shape[1]}x{image.shape[0]}: 448x768 / "
            f"256x448) timed {args.image_repeats} times per pass",
            f"- method: frames decoded up front; {args.rounds} rounds; in each, the runners take turns "
            f"{f'every {args.chunk} frames' if args.chunk else 'a whole input each'} (order reversed in alternate "
            f"rounds), each turn after untimed warm-up calls on its first frames ({args.warmup} at an input's first "
            f"turn, else 1); each runner's best round (lowest mean total). featherpose: est.preprocess (the BGR "
            f"frame, converted) / est.infer / est.postprocess. Upstream: "
            f"`valid.py`'s loop without flip, split at its model call (decode = upsampling + aggregate + "
            f"`HeatmapParser.parse` + `get_final_preds`), network = upstream's `LitePose` on the same weights, "
            f"torch eager under no_grad."]
    out += notes
    keys = [r.key for r in runners]
    for name in inputs:
        out += stage_table(name, results[name], keys)
    out += decode_lines

    if ref is not None:
        out += ["", "### Poses: featherpose vs upstream on every frame (same input size)", "",
                "People in the order both give; CrowdPose-14 keypoints in image pixels; missing = score <= 0.", "",
                "| featherpose vs upstream | frames identical in structure | count differs | keypoints present "
                "differ | people compared | max keypoint xy diff (px) | max keypoint score diff |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for name in inputs:
            for size in SIZES:
                out.append(agreement_line(f"{name}, {size}", compare(poses[name][fp_key(size)],
                                                                      poses[name][up_key(size)])))

    def mean_stage(name: str, key: str, stage: int | None = None) -> float:
        best = best_round(results[name][key])
        return float((best.sum(axis=1) if stage is None else best[:, stage]).mean())

    out += ["", "### Targets (issue 13; means of the best rounds)", "", "| target | value | result |",
            "|---|---:|---|"]
    ms = mean_stage("vtest.avi", fp_key(448), 2)
    out.append(f"| featherpose decode at 448x640 (vtest, mean ms per frame) <= {DECODE_TARGET_MS:g} ms | {ms:.2f} | "
               f"{verdict(ms <= DECODE_TARGET_MS)} |")
    if ref is not None:
        for name in inputs:
            for size in SIZES:
                speedup = mean_stage(name, up_key(size)) / mean_stage(name, fp_key(size))
                out.append(f"| featherpose frames/s / upstream's, {name} at {size} >= {SPEEDUP_TARGET:g} | "
                           f"{speedup:.2f} | {verdict(speedup >= SPEEDUP_TARGET)} |")
    emit("\n".join(out) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
