"""``featherpose predict``: run a model over an image, a folder, a video or a webcam.

Which model runs when none is named: ``movenet-multipose`` for ``multi=True`` and for videos and
webcams (footage usually shows several people, e.g. the pedestrians of vtest.avi), otherwise
``movenet-lightning`` (the fastest; it finds the most central person). For a video or webcam with neither a model
nor an input size named, MultiPose runs at :data:`VIDEO_INPUT_SIZE` (512): of the multi-person models and sizes
within real time (25 frames/s at 2 threads) it finds the most walkers of vtest.avi with a visible skeleton, 47 of 65
on the golden frames against 15 at its default 256, for 2.2x its 256 time (19.5 vs 8.9 ms per frame in bf16 here;
``benchmarks/video_people.py``). ``--input-size 256`` gives the faster default back. A top-down model (an FPD
hourglass) runs on every person box: from ``boxes`` when given, else from movenet-multipose.

A webcam shows its frames/s and latency (capture to drawing): in a window when OpenCV has a GUI (``q`` or Esc
ends), else in the progress bar; the reader keeps only the latest frame, so a slow model drops frames instead of
falling behind; ``--save`` records the frames as shown, figures included.

What is written, and the guarantees (see :func:`predict`): a drawing keeps its image's name and
sub-folder (``photos/a/x.png`` -> ``save/a/x.png``; formats that cannot hold an 8-bit colour drawing,
e.g. ``.pgm``, get ``.jpg`` appended: ``x.pgm.jpg``); an annotated video keeps its video's name, with
``.mp4`` appended to any other container (``clip.avi`` -> ``save/clip.avi.mp4``, never another video's
``clip.mp4``); a webcam gives ``save/camera<N>.mp4``. Every output path is planned and checked before
the model runs: one that would replace an input (an image, the video, ``--boxes``, the weight
file), two outputs with the same path, or a location that cannot be written is an error before any
work. A write that still fails late (a full disk) is reported and the other outputs are still written.

Video and webcam keypoints (``json_path``) are JSON Lines: one JSON object per frame and line,
``{"frame": 0, "time": 0.0, "model": ..., "image_size": {...}, "people": [{"track_id": 0, "score": ..., "box": [...],
"keypoints": {...}}, ...]}`` (``time`` in seconds: a video's frame index / fps, a webcam's seconds since its
first frame; ``track_id`` with ``track=True``). The README names such files ``.jsonl``; a ``.json`` name gets
JSON Lines too (one object per line, not one JSON document). Lines are streamed to the file's temporary as the
frames are done (nothing piles up in memory) and the file appears, renamed, when the run ends (a Ctrl-C keeps
the frames done so far).
"""
from __future__ import annotations

import json
import logging
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator
from pathlib import Path

import cv2
from tqdm import tqdm

from .estimator import DEFAULT_MIN_SCORE, NonFiniteOutputError, check_min_score
from .fileio import (WriteError, atomic_path, check_writable, refuse_overwrite, remove_stale_temporaries, same_file,
                     write_text)
from .runtime import check_threads
from .image import IMAGE_SUFFIXES, load_image
from .poses import Poses
from .topdown import TopDown, load_boxes
from .video.crop import SinglePoseCropper
from .video.io import VIDEO_SUFFIXES, VideoError, VideoReader, video_writer
from .video.live import LiveStats, LiveWindow, annotate
from .video.track import Tracker
from .zoo import DEFAULT_IMAGE_MODEL, DEFAULT_MULTI_MODEL, DETECTOR, load

log = logging.getLogger(__name__)

# drawings keep these suffixes (8-bit colour formats OpenCV writes); any other image gets ".jpg" appended
DRAWING_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


@dataclass
class PredictReport:
    """What a predict run did: counts, files written, and the items that failed (with the reason).

    ``unwritten``: outputs whose write failed after the work (path, one-line reason); the others were
    still written. ``warnings``: lines for the user (a video that ended early, a Ctrl-C). ``interrupted``:
    Ctrl-C stopped a folder or video early; what was done is written (a webcam ends this way normally).
    ``seconds``: wall time of a folder's or a stream's run once the model is loaded (reading, estimating, drawing,
    writing, the outputs closed); ``first_seconds``: of which until the first item was done (it carries the
    runtime's warm-up and the video writer's start); :attr:`rate` is the pace after it.
    """

    kind: str
    model: str
    backend: str = ""
    processed: int = 0
    people: int = 0
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    poses: list[Poses] = field(default_factory=list)
    unwritten: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    first_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Items (frames or images) a second after the first: ``(processed - 1) / (seconds - first_seconds)``;
        with a single item, ``processed / seconds``; 0 before any, and for a single image (its run is not timed)."""
        if self.processed > 1 and self.seconds > self.first_seconds:
            return (self.processed - 1) / (self.seconds - self.first_seconds)
        return self.processed / self.seconds if self.seconds > 0 else 0.0


def source_kind(source: str | Path | int) -> str:
    """'webcam', 'folder', 'video' or 'image' (raises FileNotFoundError for a missing path)."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit() and not Path(source).exists()):
        return "webcam"
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"source not found: {path}")
    if path.is_dir():
        return "folder"
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


def default_model(kind: str, multi: bool) -> str:
    return DEFAULT_MULTI_MODEL if multi or kind in ("video", "webcam") else DEFAULT_IMAGE_MODEL


#: MultiPose's input side for video and webcam when neither the model nor the size is named (module docstring)
VIDEO_INPUT_SIZE = 512


def default_input_size(kind: str, model: str | None, input_size: int | None) -> int | None:
    """``input_size``, or :data:`VIDEO_INPUT_SIZE` for a video or webcam run on the default model."""
    if input_size is None and model is None and kind in ("video", "webcam"):
        return VIDEO_INPUT_SIZE
    return input_size


def check_max_frames(max_frames: int | None) -> None:
    """Raise a one-line ValueError when ``max_frames`` is given and below 1."""
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1 (got {max_frames}); leave it out to read the whole video")


def drawing_name(rel: Path) -> Path:
    """Where the drawing of image ``rel`` goes, relative to ``save``: the same name, or ``name + '.jpg'``."""
    return rel if rel.suffix.lower() in DRAWING_SUFFIXES else rel.with_name(rel.name + ".jpg")


def video_name(name: str) -> str:
    """The annotated video's file name for a video named ``name``: the same, or ``name + '.mp4'`` (as drawings).

    ``clip.mp4`` -> ``clip.mp4``, ``clip.avi`` -> ``clip.avi.mp4``: never another video's name (``clip.mp4``).
    """
    return name if name.lower().endswith(".mp4") else f"{name}.mp4"


def plan_outputs(kind: str, source, files: list[Path] | None, save: Path | None, json_path: Path | None,
                 other_inputs: list[Path]) -> dict:
    """Check every output before any work; returns {input: its drawing or annotated video} ({} without ``save``).

    The keys are ``files`` for a folder, else ``source`` as given.

    Raises:
        OSError: ``save`` or ``json_path`` cannot be written (a file where a folder should be, no permission).
        ValueError: an output would replace an input, or two outputs share a path.
    """
    if save is not None:
        check_writable(save, "--save folder", folder=True)
    if json_path is not None:
        check_writable(json_path, "--json file")
    inputs = {same_file(p): f"the input {p}" for p in [*(files or []), *other_inputs]}
    if kind in ("video", "image"):
        inputs[same_file(source)] = f"the input {source}"
    outputs: dict[str, str] = {}

    def claim(out: Path, what: str) -> None:
        fix = (f"choose a --save folder outside {source} (drawings keep their image's name)"
               if kind == "folder" and what.startswith("--save") else "choose another path")
        refuse_overwrite(out, inputs, what, fix)
        if out.is_dir():
            raise ValueError(f"{what}: {out} is a folder; rename or remove it, or choose another --save folder")
        key = same_file(out)
        if key in outputs:
            raise ValueError(f"{what} and {outputs[key]} would both write {out}; give them different paths")
        outputs[key] = what

    plan: dict = {}
    if save is not None:
        if kind == "folder":
            plan = {f: save / drawing_name(f.relative_to(source)) for f in files}
        elif kind == "image":
            plan = {source: save / drawing_name(Path(Path(source).name))}
        else:
            plan = {source: save / (f"camera{source}.mp4" if kind == "webcam" else video_name(Path(source).name))}
        for src, out in plan.items():
            claim(out, f"--save drawing of {src}" if kind in ("image", "folder") else f"--save video {out}")
        for folder in {out.parent for out in plan.values()} - {save}:
            check_writable(folder, "--save sub-folder", folder=True)  # e.g. a file named like a sub-folder
    if json_path is not None:
        if save is not None and same_file(json_path) == same_file(save):
            raise ValueError(f"--json {json_path} is the --save folder; give a file name, e.g. {save / 'poses.json'}")
        claim(json_path, f"--json {json_path}")
    remove_stale_temporaries(*plan.values(), *([json_path] if json_path is not None else []))
    return plan


def _save_image(path: Path, rgb) -> Path:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise WriteError(f"cannot write {path}: OpenCV could not write the drawing (a full disk, or an image too "
                          f"large for {path.suffix}); free some space or choose another --save folder")
    return path


def _write(report: PredictReport, path: Path, write) -> None:
    """Run ``write()`` (which writes ``path``); a failure is recorded in ``report.unwritten``, not raised."""
    try:
        report.written.append(write())
    except OSError as exc:
        report.unwritten.append((path, str(exc)))


def predict(source: str | Path | int, model: str | None = None, *, multi: bool = False, save: str | Path | None = None,
            json_path: str | Path | None = None, backend: str = "auto", threads: int | None = None,
            input_size: int | None = None, min_score: float = DEFAULT_MIN_SCORE, max_frames: int | None = None,
            boxes: str | Path | None = None, progress: bool = True, skeleton: str | None = None,
            precision: str = "auto", calib: str | Path | None = None, crop: bool = True, track: bool = False,
            smooth: bool = True) -> PredictReport:
    """Estimate poses in ``source`` and write what was asked for.

    Args:
        source: image path, folder of images, video path, or webcam index (int or digit string).
        model: zoo name or weight file; None picks by source kind (see module docstring).
        multi: prefer the multi-person model when ``model`` is None.
        save: folder for drawn images / the annotated video. A drawing keeps its image's file name and
            sub-folder (``a.jpg`` -> ``save/a.jpg``, ``a.png`` -> ``save/a.png``, ``sub/b.jpg`` ->
            ``save/sub/b.jpg``; a format that cannot hold a colour drawing gets ``.jpg`` appended:
            ``c.pgm`` -> ``save/c.pgm.jpg``); a video gives ``save/<name>`` (``.mp4`` appended to any other
            container: ``clip.avi`` -> ``save/clip.avi.mp4``), a webcam ``save/camera<N>.mp4``.
        json_path: keypoints file: one image -> Poses JSON; folder (searched recursively) -> COCO results
            list (``image_id`` = index in sorted order, plus ``file_name`` relative to the folder);
            video or webcam -> JSON Lines, one object per frame (see the module docstring), whatever the suffix.
        threads: CPU threads (>= 1; None: every core).
        min_score: people scoring below this are not drawn or written (0 to 1).
        max_frames: stop a video or webcam after this many frames (>= 1).
        boxes: person boxes for a top-down model (see :mod:`featherpose.topdown`), matched by file name;
            without it a top-down model crops the people movenet-multipose finds.
        skeleton: the keypoint set written and drawn, where the model offers several (lightweight-openpose:
            ``openpose18``; None: the model's default, see :func:`featherpose.load`).
        precision, calib: as :func:`featherpose.load` (``auto``: bf16 where it is accurate and the CPU has it, else
            fp32); a top-down model takes ``auto`` or ``fp32`` only.
        crop: a single-person model (movenet-lightning / -thunder) on a video or webcam runs each frame on the
            square the previous frame's keypoints give, as Google runs MoveNet
            (:class:`~featherpose.video.crop.SinglePoseCropper`); False: every frame whole. Images: always whole.
        track: a video or webcam: give the people ids that persist across frames (``track_id`` in the JSON, one
            colour per id in the drawing; :class:`featherpose.video.track.Tracker`).
        smooth: with ``track``, One-Euro smoothing of the keypoints of each track over the frames' timestamps
            (:mod:`featherpose.video.smooth`); ``False`` writes the model's raw keypoints.

    Returns:
        A :class:`PredictReport`. Bad items of a folder are reported in ``failed`` and skipped; an
        output whose write fails after the work is reported in ``unwritten`` (the others are written);
        a video that ends before its frame count, and a Ctrl-C in a folder or video (which keeps and
        writes what was done), are reported in ``warnings``.

    Raises:
        ValueError: a number out of range, or an output that would replace an input or another output.
        OSError: ``save`` or ``json_path`` cannot be written. Both are checked before the model is loaded.
        NonFiniteOutputError: the network output NaN/inf (broken weights): the run stops, even in a folder;
            what was already written stays.
    """
    check_max_frames(max_frames)
    check_min_score(min_score)  # the estimator's own checks, before any work (the input size: when loading)
    check_threads(threads)
    kind = source_kind(source)
    if track and kind not in ("video", "webcam"):
        raise ValueError(f"--track follows people across the frames of a video or webcam; {source} is an {kind} "
                         "(leave --track out)")
    save = Path(save) if save else None
    json_path = Path(json_path) if json_path else None
    files = _folder_images(Path(source)) if kind == "folder" else None
    other_inputs = [Path(p) for p in (boxes, model) if p is not None and Path(p).is_file()]
    plan = plan_outputs(kind, source, files, save, json_path, other_inputs)
    input_size = default_input_size(kind, model, input_size)
    model = model or default_model(kind, multi)
    est = load(model, backend=backend, threads=threads, input_size=input_size, skeleton=skeleton,
               precision=precision, calib=calib)
    if est.top_down and precision not in ("auto", "fp32"):
        raise ValueError(f"--precision {precision} is for models that find people themselves; {est.name} is "
                         "top-down (its detector would share the session): use --precision fp32")
    if est.top_down:
        if boxes is not None and kind not in ("image", "folder"):
            raise ValueError("--boxes gives boxes per image file; for a video or webcam leave it out "
                             f"({DETECTOR} then finds the people)")
        detector = None if boxes is not None else load(DETECTOR, backend=backend, threads=threads, precision=precision)
        est = TopDown(est, detector, load_boxes(boxes) if boxes is not None else None)
    elif boxes is not None:
        raise ValueError(f"--boxes {boxes}: boxes are for top-down models; {est.name} finds people by itself "
                         f"(leave --boxes out)")
    report = PredictReport(kind, est.name, est.backend.name)
    if kind == "image":
        image = load_image(source)
        poses = _run(est, image, Path(source).name, min_score)
        report.processed, report.people, report.poses = 1, len(poses), [poses]
        if source in plan:
            out = plan[source]
            _write(report, out, lambda: _save_image(out, _drawn(est, poses, image)))
        if json_path:
            text = poses.to_json(file_name=Path(source).name, model=est.name)
            _write(report, json_path, lambda: write_text(json_path, text))
    elif kind == "folder":
        _predict_folder(est, Path(source), files, plan, json_path, min_score, progress, report)
    else:
        if crop and SinglePoseCropper.supports(est):  # single-person video: the crop follows the person
            est = SinglePoseCropper(est)
        tracker = Tracker(smooth=smooth, min_keypoint_score=est.keypoint_threshold) if track else None
        _predict_stream(est, int(source) if kind == "webcam" else source, kind, plan.get(source), json_path, min_score,
                        max_frames, progress, report, tracker)
    return report


@contextmanager
def ctrl_c_between_items() -> Iterator[Callable[[], None]]:
    """Ctrl-C while the block runs takes effect between items: the block calls the function it is given at the start
    of each item, which raises KeyboardInterrupt once Ctrl-C was pressed. Raised mid-item, the interrupt could land in
    a compiled kernel (numba then raises SystemError, and the work done was lost) or inside a queue's lock, leaving it
    held (a video run hung). A second Ctrl-C raises at once. Outside the main thread, or where SIGINT is ignored,
    nothing changes."""
    pressed: list[bool] = []

    def check() -> None:
        if pressed:
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) in (
            signal.SIG_IGN, None):  # no signal handlers there; or Ctrl-C ignored (a background job): left so
        yield check
        return

    def handler(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(est, image, name: str, min_score: float) -> Poses:
    """One image through the estimator, with its file name (a top-down one finds given boxes by it)."""
    return est(image, min_score=min_score, name=name)


def _folder_images(folder: Path) -> list[Path]:
    """Every image under ``folder`` (recursively), sorted; ValueError when there is none."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images in this folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _predict_folder(est, folder: Path, files: list[Path], plan: dict[Path, Path], json_path, min_score,
                    progress, report: PredictReport) -> None:
    """Every image of ``files``: drawn to ``plan[image]``; one COCO results list. Ctrl-C keeps what was done."""
    start = time.perf_counter()
    results = []
    try:
        with ctrl_c_between_items() as stop_if_pressed:
            for image_id, path in enumerate(tqdm(files, desc="predict", unit="img", disable=not progress)):
                stop_if_pressed()
                try:
                    image = load_image(path)
                    poses = _run(est, image, path.name, min_score)
                except NonFiniteOutputError:  # the weights are broken, not the image: every image would fail the same
                    raise
                except (OSError, ValueError, FloatingPointError) as exc:  # a bad file is reported and skipped
                    report.failed.append((str(path), str(exc)))
                    log.debug("skipped %s: %s", path, exc)
                    continue
                report.processed += 1
                report.people += len(poses)
                results += [{**r, "file_name": path.relative_to(folder).as_posix()} for r in poses.to_coco(image_id)]
                if plan:  # a drawing that cannot be written loses only itself: the keypoints are kept
                    _write(report, plan[path], lambda: _save_image(plan[path], _drawn(est, poses, image)))
                if report.processed == 1:
                    report.first_seconds = time.perf_counter() - start
    except KeyboardInterrupt:
        report.interrupted = True
        report.warnings.append(f"stopped by Ctrl-C after {report.processed + len(report.failed)} of {len(files)} "
                               f"images; the results so far are written")
    if json_path:
        _write(report, json_path, lambda: write_text(json_path, json.dumps(results)))
    report.seconds = time.perf_counter() - start


def _drawn(est, poses, image):
    """``image`` with the people ``est`` found (already filtered by score) and the keypoints it counts as found."""
    return poses.draw(image, min_score=0, min_keypoint_score=est.keypoint_threshold)


def _predict_stream(est, source, kind, out_path: Path | None, json_path, min_score, max_frames, progress,
                    report, tracker: Tracker | None = None) -> None:
    """A video or webcam: annotated video to ``out_path``, JSON Lines to ``json_path`` (streamed: one line per frame
    into the atomic temporary, renamed at the end), ids from ``tracker``. Ctrl-C keeps what was done."""
    start = time.perf_counter()
    reader = VideoReader(source)
    total = reader.frame_count if max_frames is None else min(max_frames, reader.frame_count or max_frames)
    lines = None  # the open JSON Lines temporary
    live = LiveWindow() if kind == "webcam" else None
    stats = LiveStats()

    def run(write=None):
        bar = tqdm(reader, total=total, desc="predict", unit="frame", disable=not progress)
        try:
            with ctrl_c_between_items() as stop_if_pressed:
                for i, frame in enumerate(bar):
                    stop_if_pressed()
                    if max_frames is not None and i >= max_frames:
                        break
                    poses = est(frame, min_score=min_score)
                    seconds = reader.seconds
                    if tracker is not None:
                        poses = tracker.update(poses, seconds)
                    report.processed += 1
                    report.people += len(poses)
                    if live is not None:  # a webcam: figures on the frame shown / recorded, and in the bar
                        stats.update(reader.latency())
                        bar.set_postfix(stats.postfix(), refresh=False)
                        if write or live.enabled:
                            shown = annotate(_drawn(est, poses, frame), stats.text())
                            if write:
                                write(shown)
                            if not live.show(shown):  # q, Esc or the window closed
                                break
                    elif write:
                        write(_drawn(est, poses, frame))
                    if lines is not None:
                        size = {"height": poses.image_size[0], "width": poses.image_size[1]}
                        lines.write(json.dumps({"frame": i, "time": round(seconds, 4), "model": est.name,
                                                "image_size": size, "people": poses.summary()}, allow_nan=False)
                                    + "\n")
                    if report.processed == 1:
                        report.first_seconds = time.perf_counter() - start
        except KeyboardInterrupt:  # a webcam ends this way; a video keeps the frames done so far
            log.info("stopped by Ctrl-C after %d frames", report.processed)
            if report.processed == 0:
                raise
            if kind != "webcam":
                report.interrupted = True
                report.warnings.append(f"{Path(source).name}: stopped by Ctrl-C after {report.processed} frames; "
                                       f"the frames so far are written")
        finally:
            bar.close()
            if live is not None:
                live.close()
        if report.processed == 0:  # raised inside the writer's block: no empty video is left behind
            raise VideoError(f"{source}: no frames could be read (empty or undecodable video)")

    def run_video():
        if out_path:
            try:
                with video_writer(out_path, reader.fps) as write:
                    run(write)
                report.written.append(out_path)
            except OSError as exc:  # e.g. the disk filled up: the keypoints so far are still written
                report.unwritten.append((out_path, str(exc)))
        else:
            run()

    if json_path:
        def stream() -> Path:
            nonlocal lines
            with atomic_path(json_path) as tmp, open(tmp, "w", encoding="utf-8") as lines:
                run_video()
            return json_path
        try:
            _write(report, json_path, stream)
        finally:
            lines = None
    else:
        run_video()
    if (early := reader.ended_early()) is not None:
        report.warnings.append(early)
    report.seconds = time.perf_counter() - start


def track(source: str | Path | int, model: str | None = None, *, smooth: bool = True, max_frames: int | None = None,
          min_score: float = DEFAULT_MIN_SCORE, backend: str = "auto", threads: int | None = None,
          input_size: int | None = None, precision: str = "auto", **tracker_options) -> Iterator[Poses]:
    """Tracked people of a video or webcam, one :class:`Poses` per frame (with ``track_ids``; smoothed keypoints
    unless ``smooth=False``), as they are computed.

        for poses in featherpose.track("walk.mp4"):
            print(poses.track_ids, poses.keypoints[:, 0])   # the ids and noses of this frame

    Args:
        source: a video path or a webcam index.
        model: a multi-person zoo name or weight file (default: the video default, ``movenet-multipose``).
        smooth: One-Euro smoothing per track (:mod:`featherpose.video.smooth`), over the frames' timestamps.
        max_frames: stop after this many frames.
        min_score, backend, threads, input_size, precision: as :func:`featherpose.load` / :func:`predict`.
        tracker_options: :class:`featherpose.video.track.Tracker`'s (``max_lost``, ``min_similarity``,
            ``min_cutoff``, ``beta``, ...).
    """
    check_max_frames(max_frames)
    check_min_score(min_score)
    kind = source_kind(source)
    if kind not in ("video", "webcam"):
        raise ValueError(f"featherpose.track: {source} is an {kind}; give a video file or a webcam index "
                         "(featherpose.load(...)(image) for images)")
    est = load(model or default_model(kind, True), backend=backend, threads=threads,
               input_size=default_input_size(kind, model, input_size), precision=precision)
    if est.top_down:
        raise ValueError(f"featherpose.track: {est.name} is top-down; give a multi-person model, e.g. "
                         f"{DEFAULT_MULTI_MODEL}")
    tracker_options.setdefault("min_keypoint_score", est.keypoint_threshold)
    tracker = Tracker(smooth=smooth, **tracker_options)
    reader = VideoReader(int(source) if kind == "webcam" else source)
    for i, frame in enumerate(reader):
        if max_frames is not None and i >= max_frames:
            break
        poses = est(frame, min_score=min_score)
        yield tracker.update(poses, reader.seconds)
