"""Quality of motion: ids and jitter of tracked people on real video, with and without One-Euro smoothing (issue 15).

Every clip of ``../shared/media/people/`` (whole, capped at ``--max-frames``) and the first ``--vtest-frames`` of
vtest.avi run through the default video configuration (``zoo.DEFAULT_MULTI_MODEL`` at ``predict.VIDEO_INPUT_SIZE``) at
``--threads``; the model runs once per
frame and its raw poses then go through a :class:`~featherpose.video.track.Tracker` twice, with and without
smoothing (matching uses the raw keypoints, so both give the same ids). Per clip:

- people / frame: the model's people per frame (default ``min_score``).
- ids: distinct track ids over the clip.
- new ids / 100 fr: ids created after the first frame, per 100 frames (people entering, plus tracks broken into
  pieces: on a clip where nobody enters it counts only the breaks).
- id switches / 100 fr: a person found in two consecutive frames whose boxes overlap with IoU > 0.5 (one-to-one,
  the best overlaps first) but whose track id differs, per 100 frames: the same person, another id.
- jitter raw / smoothed: mean magnitude of the frame-to-frame acceleration ``x[t+1] - 2 x[t] + x[t-1]`` of each
  keypoint of a track, in pixels / frame^2, over the keypoints found (score >= the model's keypoint threshold) in 3
  consecutive frames of the same track; real acceleration is included, so it cannot reach 0.
- smoothed - raw: mean distance in pixels between a found keypoint's smoothed and raw position (the price of the
  smoothing: lag on moving joints, plus the noise removed).
- track + smooth ms / frame: the median time of ``Tracker.update`` (matching + smoothing) per frame.

A last row times ``Tracker.update`` on a synthetic frame of 20 people (17 keypoints, moving, with 2 px noise), the
issue's target being <= 0.3 ms.

    python benchmarks/video_quality.py --threads 1 --out /tmp/results_video_quality.md
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, emit, machine_lines  # noqa: E402

from featherpose import Poses  # noqa: E402
from featherpose.video.track import Tracker, box_iou  # noqa: E402


def clips(vtest_frames: int, max_frames: int) -> list[tuple[Path, int]]:
    people = sorted((SHARED / "media" / "people").glob("*.mp4"))
    return [(SHARED / "media" / "vtest.avi", vtest_frames)] + [(p, max_frames) for p in people]


def run_model(est, path: Path, limit: int) -> tuple[list[Poses], list[float], float]:
    """The model's raw poses per frame, the frames' timestamps (s), and the video's frame rate."""
    from featherpose.video.io import VideoReader

    reader = VideoReader(path)
    poses, times = [], []
    total = min(limit, reader.frame_count or limit)
    for i, frame in enumerate(tqdm(reader, total=total, desc=path.name, unit="frame", leave=False)):
        if i >= limit:
            break
        poses.append(est(frame))
        times.append(reader.timestamp)
    return poses, times, reader.fps


def tracked(raw: list[Poses], times: list[float], smooth: bool, threshold: float,
            **options) -> tuple[list[Poses], np.ndarray]:
    """The tracked poses of every frame and the ms each ``Tracker.update`` took."""
    tracker = Tracker(smooth=smooth, min_keypoint_score=threshold, **options)
    out, ms = [], []
    for poses, t in zip(raw, times):
        start = time.perf_counter()
        out.append(tracker.update(poses, t))
        ms.append(1000 * (time.perf_counter() - start))
    return out, np.array(ms)


def jitter(frames: list[Poses], threshold: float) -> float:
    """Mean |x[t+1] - 2 x[t] + x[t-1]| over keypoints of one track found in 3 consecutive frames (px / frame^2)."""
    by_id = [{int(i): kp for i, kp in zip(p.track_ids, p.keypoints)} for p in frames]
    acc = []
    for before, now, after in zip(by_id, by_id[1:], by_id[2:]):
        for track_id in now.keys() & before.keys() & after.keys():
            a, b, c = before[track_id], now[track_id], after[track_id]
            ok = (a[:, 2] >= threshold) & (b[:, 2] >= threshold) & (c[:, 2] >= threshold)
            acc.extend(np.linalg.norm(c[ok, :2] - 2 * b[ok, :2] + a[ok, :2], axis=1))
    return float(np.mean(acc)) if acc else float("nan")


def shift(raw: list[Poses], smooth: list[Poses], threshold: float) -> float:
    """Mean distance (px) between smoothed and raw positions of the keypoints found (``raw``: the same tracks
    unsmoothed)."""
    d = [np.linalg.norm(s.keypoints[k[:, :, 2] >= threshold, :2] - k[k[:, :, 2] >= threshold, :2], axis=-1)
         for s, k in ((s, r.keypoints) for s, r in zip(smooth, raw)) if len(k)]
    return float(np.concatenate(d).mean()) if d else float("nan")


def id_switches(frames: list[Poses]) -> int:
    """Pairs of people in consecutive frames with box IoU > 0.5 (one-to-one, best first) and different ids."""
    switches = 0
    for prev, now in zip(frames, frames[1:]):
        if not len(prev) or not len(now):
            continue
        iou = box_iou(now.boxes, prev.boxes)
        while iou.size and iou.max() > 0.5:
            i, j = np.unravel_index(np.argmax(iou), iou.shape)
            switches += int(now.track_ids[i] != prev.track_ids[j])
            iou[i, :], iou[:, j] = 0, 0
    return switches


def synthetic_ms(people: int = 20, frames: int = 300) -> float:
    """Median ms of ``Tracker.update`` (with smoothing) on ``people`` moving, noisy people per frame."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1500, (people, 1, 2)) + rng.uniform(-40, 40, (people, 17, 2))
    tracker, ms = Tracker(), []
    for f in range(frames):
        xy = base + 3 * f + rng.normal(0, 2, base.shape)
        poses = Poses.create(np.concatenate([xy, np.full((people, 17, 1), 0.9)], -1), image_size=(1080, 1920))
        start = time.perf_counter()
        tracker.update(poses, f / 30)
        ms.append(1000 * (time.perf_counter() - start))
    return float(np.median(ms[10:]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--vtest-frames", type=int, default=200, help="frames of vtest.avi (default 200)")
    p.add_argument("--max-frames", type=int, default=300, help="cap on the frames of each people clip (default 300)")
    p.add_argument("--out", type=Path, help="also write the markdown here (e.g. /tmp/results_video_quality.md)")
    args = p.parse_args(argv)
    import featherpose
    from featherpose.predict import VIDEO_INPUT_SIZE
    from featherpose.zoo import DEFAULT_MULTI_MODEL

    logging.disable(logging.WARNING)
    est = featherpose.load(DEFAULT_MULTI_MODEL, threads=args.threads, input_size=VIDEO_INPUT_SIZE)
    threshold = est.keypoint_threshold
    out = ["## Quality of motion: tracking and One-Euro smoothing on real video (issue 15, item 6)", ""]
    out += machine_lines(args.threads, ("numpy", "scipy", "onnxruntime", "openvino"))
    out += [f"- model: {est.name} at {est.input_hw[1]}x{est.input_hw[0]} ({est.backend.name}), the default for video; keypoints found: score >= "
            f"{threshold:g}; tracker and filter defaults (max_lost 30, min_similarity 0.1, velocity_smoothing 0.5, One-Euro min_cutoff 1 Hz, "
            "beta 0.01 s/px, d_cutoff 1 Hz); definitions in benchmarks/video_quality.py", "",
            "| clip | size | fps | frames | people / frame | ids | new ids / 100 fr | id switches / 100 fr | "
            "jitter raw (px/fr^2) | jitter smoothed | smoothed - raw (px) | track + smooth ms / frame |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    totals = {"frames": 0, "switches": 0, "new": 0}
    runs = []
    for path, limit in clips(args.vtest_frames, args.max_frames):
        raw, times, fps = run_model(est, path, limit)
        runs.append((raw, times))
        plain, _ = tracked(raw, times, False, threshold)
        smooth, ms = tracked(raw, times, True, threshold)
        n = len(raw)
        ids = {int(i) for p in plain for i in p.track_ids}
        first = set(plain[0].track_ids.tolist()) if n else set()
        new, switches = len(ids - first), id_switches(plain)
        totals["frames"] += n
        totals["switches"] += switches
        totals["new"] += new
        h, w = raw[0].image_size
        out.append(f"| {path.name} | {w}x{h} | {fps:g} | {n} | {np.mean([len(p) for p in raw]):.2f} | {len(ids)} | "
                   f"{100 * new / n:.1f} | {100 * switches / n:.2f} | {jitter(plain, threshold):.2f} | "
                   f"{jitter(smooth, threshold):.2f} | {shift(plain, smooth, threshold):.2f} | {np.median(ms):.3f} |")
    out.append(f"| all clips | | | {totals['frames']} | | | {100 * totals['new'] / totals['frames']:.1f} | "
               f"{100 * totals['switches'] / totals['frames']:.2f} | | | | |")
    out += ["", "One-Euro parameters (the same tracks, every clip): jitter smoothed / raw (mean over clips) against "
            "the mean shift of the keypoints from their raw positions (lag on moving joints plus the noise removed):",
            "", "| min_cutoff (Hz) | beta (s/px) | jitter smoothed / raw | smoothed - raw (px) |", "|---:|---:|---:|---:|"]
    for min_cutoff, beta in ((0.5, 0.01), (1.0, 0.003), (1.0, 0.01), (1.0, 0.03), (2.0, 0.01), (4.0, 0.03)):
        ratios, shifts = [], []
        for raw, times in runs:
            plain, _ = tracked(raw, times, False, threshold)
            smooth, _ = tracked(raw, times, True, threshold, min_cutoff=min_cutoff, beta=beta)
            ratios.append(jitter(smooth, threshold) / jitter(plain, threshold))
            shifts.append(shift(plain, smooth, threshold))
        out.append(f"| {min_cutoff:g} | {beta:g} | {np.nanmean(ratios):.2f} | {np.nanmean(shifts):.2f} |")
    out += ["", f"Synthetic: 20 people x 17 keypoints per frame, `Tracker.update` (matching + smoothing): "
            f"{synthetic_ms():.3f} ms per frame (median of 290 frames; target <= 0.3 ms).", ""]
    emit("\n".join(out), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
