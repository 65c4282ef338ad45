"""Single-person video with and without MoveNet's crop from the previous frame (issue 15, item 3).

Every clip of ``../shared/media/people/`` (the first ``--max-frames`` frames; eight 1080x1920 portrait pose2sim clips
at 60 fps, four of one person and four of several, and the 1768x994 sports2d demo at 30 fps) through each
single-person model twice per frame, interleaved so both runs share the machine's load: on the whole frame, and
through :class:`featherpose.video.crop.SinglePoseCropper` (the square around the person the previous frame found,
Google's tutorial rule). Per model and mode:

- mean keypoint score, and the fraction of frames with the person found (mean keypoint score >= 0.3);
- jitter: the mean frame-to-frame acceleration ``|p[t+1] - 2 p[t] + p[t-1]|`` of keypoints scoring >= 0.3 in all
  three frames, px / frame^2 (frames at the clip's own rate; real motion included, so only the difference between
  the modes on the same frames means something);
- distance to a reference: no clip is labelled, so the reference is the most accurate run available,
  ``--reference`` (default movenet-thunder) with cropping; per frame, the median distance of the keypoints the
  reference scores >= 0.3 as a percentage of the reference person's height (their box), then the median over
  frames. The reference's own row reads 0 by construction. A run that locks onto another person than the
  reference's counts as far off: sports2d shows two people (a man jumping on a box, a woman walking past), and
  cropped Lightning follows the walker where cropped Thunder follows the jumper (seen on the frames);
- ms per frame: mean wall time of the call (crop + preprocess + network + decode; decoding the video excluded);
- cropped: the fraction of frames run on a crop rather than the whole frame.

    python benchmarks/video_crop.py --threads 1 --out /tmp/results_video_crop.md
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, emit, machine_lines  # noqa: E402

FOUND_SCORE = 0.3  # a person (mean keypoint score) or a keypoint counts as found at this score; MoveNet's model
#                    card recommends 0.3 as the keypoint confidence threshold


def read_clip(path: Path, n: int):
    """Yield up to ``n`` RGB frames of a video."""
    cap = cv2.VideoCapture(str(path))
    try:
        for _ in range(n):
            ok, bgr = cap.read()
            if not ok:
                break
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def jitter(kp: np.ndarray) -> tuple[float, int]:
    """(sum of accelerations in px / frame^2, their count) of the keypoints scoring >= FOUND_SCORE in three
    consecutive frames of ``kp`` (T, K, 3)."""
    if len(kp) < 3:
        return 0.0, 0
    acc = np.linalg.norm(kp[2:, :, :2] - 2 * kp[1:-1, :, :2] + kp[:-2, :, :2], axis=-1)
    ok = (kp[2:, :, 2] >= FOUND_SCORE) & (kp[1:-1, :, 2] >= FOUND_SCORE) & (kp[:-2, :, 2] >= FOUND_SCORE)
    return float(acc[ok].sum()), int(ok.sum())


def distance_to(kp: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per frame: the median distance of the keypoints ``ref`` scores >= FOUND_SCORE, as % of the height of their
    box (NaN for frames where the reference found fewer than 4 keypoints)."""
    out = np.full(len(kp), np.nan)
    for t, (a, r) in enumerate(zip(kp, ref)):
        sure = r[:, 2] >= FOUND_SCORE
        if sure.sum() < 4:
            continue
        height = np.ptp(r[sure, 1]) or 1.0
        out[t] = 100 * np.median(np.linalg.norm(a[sure, :2] - r[sure, :2], axis=1)) / height
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["movenet-lightning", "movenet-thunder"])
    p.add_argument("--reference", default="movenet-thunder", help="the cropped run others are compared with")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backend", default="auto")
    p.add_argument("--max-frames", type=int, default=150, help="frames per clip (from the start)")
    p.add_argument("--clips", type=Path, default=SHARED / "media" / "people")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    import logging

    import featherpose
    from featherpose.video.crop import SinglePoseCropper

    logging.disable(logging.WARNING)
    clips = sorted(args.clips.glob("*.mp4"))
    if not clips:
        raise SystemExit(f"{args.clips}: no .mp4 clips")
    names = list(dict.fromkeys([*args.models, args.reference]))
    ests = {m: featherpose.load(m, backend=args.backend, threads=args.threads) for m in names}
    runs = [(m, mode) for m in names for mode in ("whole", "crop")]
    # per clip and run: keypoints (T, K, 3), call times (T,), cropped flags (T,)
    results: dict[str, dict] = {}
    for clip in clips:
        croppers = {m: SinglePoseCropper(est) for m, est in ests.items()}
        kps = {r: [] for r in runs}
        ms = {r: [] for r in runs}
        cropped = {m: [] for m in names}
        for frame in tqdm(read_clip(clip, args.max_frames), desc=clip.stem, total=args.max_frames, unit="frame"):
            for m in names:
                for mode, run in (("whole", ests[m]), ("crop", croppers[m])):
                    t0 = time.perf_counter()
                    poses = run(frame, min_score=0)
                    ms[m, mode].append(1000 * (time.perf_counter() - t0))
                    kps[m, mode].append(poses.keypoints[0])
                cropped[m].append(not croppers[m].region.whole)
        results[clip.stem] = {"kp": {r: np.stack(v) for r, v in kps.items()},
                              "ms": {r: np.array(v) for r, v in ms.items()},
                              "cropped": {m: np.array(v) for m, v in cropped.items()}}

    def row(r, clip_names):
        """Metrics of run ``r`` over the clips named (frames pooled)."""
        kp = [results[c]["kp"][r] for c in clip_names]
        ref = [results[c]["kp"][args.reference, "crop"] for c in clip_names]
        scores = np.concatenate([k[..., 2].mean(axis=1) for k in kp])
        jit = np.array([jitter(k) for k in kp])
        dist = np.concatenate([distance_to(k, f) for k, f in zip(kp, ref)])
        crop = np.concatenate([results[c]["cropped"][r[0]] for c in clip_names]) if r[1] == "crop" else None
        return {"frames": len(scores), "score": scores.mean(), "found": (scores >= FOUND_SCORE).mean(),
                "jitter": jit[:, 0].sum() / max(jit[:, 1].sum(), 1), "dist": np.nanmedian(dist),
                "ms": np.concatenate([results[c]["ms"][r] for c in clip_names]).mean(),
                "cropped": "-" if crop is None else f"{crop.mean():.0%}"}

    backend = ", ".join(f"{m}: {e.backend.name}" for m, e in ests.items())
    frames = sum(len(results[c]["ms"][runs[0]]) for c in results)
    out = ["## Single-person video: MoveNet with and without the crop from the previous frame (issue 15, item 3)", ""]
    out += machine_lines(args.threads, ("numpy", "onnxruntime", "openvino"))
    out += [f"- clips: {len(clips)} in {args.clips.name}/ (the first {args.max_frames} frames of each, {frames} in "
            f"all); backends {backend}; reference: {args.reference} cropped",
            f"- found: mean keypoint score >= {FOUND_SCORE}; jitter: mean acceleration of keypoints scoring >= "
            f"{FOUND_SCORE}, px/frame^2; to ref.: median keypoint distance to the reference, % of its person's height",
            "", "### All clips", "",
            "| model | mode | mean keypoint score | frames found | jitter (px/frame^2) | to ref. (% height) | "
            "ms per frame | cropped |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    groups = {"single-person clips": [c for c in results if "single" in c],
              "several-people clips": [c for c in results if "multi" in c],
              "sports2d": [c for c in results if "sports2d" in c]}
    for r in runs:
        s = row(r, list(results))
        out.append(f"| {r[0]} | {r[1]} | {s['score']:.3f} | {s['found']:.0%} | {s['jitter']:.2f} | {s['dist']:.1f} | "
                   f"{s['ms']:.1f} | {s['cropped']} |")
    for m in args.models:
        out += ["", f"### {m} per clip group", "",
                "| clips | frames | mode | mean keypoint score | frames found | jitter (px/frame^2) | "
                "to ref. (% height) | ms per frame | cropped |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
        for group, members in groups.items():
            if not members:
                continue
            for mode in ("whole", "crop"):
                s = row((m, mode), members)
                out.append(f"| {group} | {s['frames']} | {mode} | {s['score']:.3f} | {s['found']:.0%} | "
                           f"{s['jitter']:.2f} | {s['dist']:.1f} | {s['ms']:.1f} | {s['cropped']} |")
    emit("\n".join(out) + "\n", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
