"""``featherpose predict``: run a model over an image, a folder, a video or a webcam.

Which model runs when none is named: ``movenet-multipose`` for ``multi=True`` and for videos and
webcams (footage usually shows several people, e.g. the pedestrians of vtest.avi), otherwise
``movenet-lightning`` (the fastest; it finds the most central person). A top-down model (an FPD
hourglass) runs on every person box: from ``boxes`` when given, else from movenet-multipose.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from .fileio import atomic_path, write_text
from .image import IMAGE_SUFFIXES, load_image
from .poses import Poses
from .topdown import TopDown, load_boxes
from .video.io import VIDEO_SUFFIXES, VideoError, VideoReader, video_writer
from .zoo import load

log = logging.getLogger(__name__)


@dataclass
class PredictReport:
    """What a predict run did: counts, files written, and the items that failed (with the reason)."""

    kind: str
    model: str
    processed: int = 0
    people: int = 0
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    poses: list[Poses] = field(default_factory=list)


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
    return "movenet-multipose" if multi or kind in ("video", "webcam") else "movenet-lightning"


def _output_path(save: Path, stem: str, source: Path | str) -> Path:
    """``save/<stem>.jpg``, refusing to overwrite the source image itself."""
    out = save / f"{stem}.jpg"
    if out.resolve() == Path(source).resolve():
        raise ValueError(f"--save would overwrite the input {source}; choose another folder")
    return out


def _save_image(path: Path, rgb) -> Path:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {path}")
    return path


def predict(source: str | Path | int, model: str | None = None, *, multi: bool = False, save: str | Path | None = None,
            json_path: str | Path | None = None, backend: str = "auto", threads: int | None = None,
            input_size: int | None = None, min_score: float = 0.2, max_frames: int | None = None,
            boxes: str | Path | None = None, progress: bool = True) -> PredictReport:
    """Estimate poses in ``source`` and write what was asked for.

    Args:
        source: image path, folder of images, video path, or webcam index (int or digit string).
        model: zoo name or weight file; None picks by source kind (see module docstring).
        multi: prefer the multi-person model when ``model`` is None.
        save: folder for drawn images / the annotated video.
        json_path: keypoints file: one image -> Poses JSON; folder (searched recursively) -> COCO results
            list (``image_id`` = index in sorted order, plus ``file_name`` relative to the folder);
            video -> one entry per frame.
        min_score: people scoring below this are not drawn or written.
        max_frames: stop a video or webcam after this many frames.
        boxes: person boxes for a top-down model (see :mod:`featherpose.topdown`), matched by file name;
            without it a top-down model crops the people movenet-multipose finds.

    Returns:
        A :class:`PredictReport`. Bad items of a folder are reported in ``failed`` and skipped.
    """
    kind = source_kind(source)
    model = model or default_model(kind, multi)
    est = load(model, backend=backend, threads=threads, input_size=input_size)
    if est.top_down:
        if boxes is not None and kind not in ("image", "folder"):
            raise ValueError("--boxes gives boxes per image file; for a video or webcam leave it out "
                             "(movenet-multipose then finds the people)")
        detector = None if boxes is not None else load("movenet-multipose", backend=backend, threads=threads)
        est = TopDown(est, detector, load_boxes(boxes) if boxes is not None else None)
    elif boxes is not None:
        raise ValueError(f"--boxes is for top-down models; {est.name} finds people by itself")
    report = PredictReport(kind, est.name)
    save = Path(save) if save else None
    if kind == "image":
        image = load_image(source)
        poses = _run(est, image, Path(source).name).filter(min_score)
        report.processed, report.people, report.poses = 1, len(poses), [poses]
        if save:
            report.written.append(_save_image(_output_path(save, Path(source).stem, source), poses.draw(image, min_score=0)))
        if json_path:
            report.written.append(write_text(json_path, poses.to_json(file_name=Path(source).name, model=est.name)))
    elif kind == "folder":
        _predict_folder(est, Path(source), save, json_path, min_score, progress, report)
    else:
        _predict_stream(est, int(source) if kind == "webcam" else source, kind, save, json_path, min_score,
                        max_frames, progress, report)
    return report


def _run(est, image, name: str) -> Poses:
    """One image through the estimator; a top-down one also gets the file name (to find given boxes)."""
    return est(image, name) if isinstance(est, TopDown) else est(image)


def _predict_folder(est, folder: Path, save, json_path, min_score, progress, report: PredictReport) -> None:
    """Every image under ``folder`` (recursively); drawn copies keep the sub-folder layout under ``save``."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images in this folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
    results = []
    for image_id, path in enumerate(tqdm(files, desc="predict", unit="img", disable=not progress)):
        rel = path.relative_to(folder)
        try:
            image = load_image(path)
            poses = _run(est, image, path.name).filter(min_score)
            if save:
                report.written.append(_save_image(_output_path(save, rel.with_suffix("").as_posix(), path), poses.draw(image, min_score=0)))
        except (OSError, ValueError) as exc:  # a bad file is reported and skipped
            report.failed.append((str(path), str(exc)))
            log.debug("skipped %s: %s", path, exc)
            continue
        report.processed += 1
        report.people += len(poses)
        results += [{**r, "file_name": rel.as_posix()} for r in poses.to_coco(image_id)]
    if json_path:
        report.written.append(write_text(json_path, json.dumps(results)))


def _predict_stream(est, source, kind, save, json_path, min_score, max_frames, progress, report) -> None:
    reader = VideoReader(source)
    total = reader.frame_count if max_frames is None else min(max_frames, reader.frame_count or max_frames)
    frames_json = []
    name = f"camera{source}" if kind == "webcam" else Path(source).stem
    out_path = save / f"{name}.mp4" if save else None

    def run(write=None):
        bar = tqdm(reader, total=total, desc="predict", unit="frame", disable=not progress)
        try:
            for i, frame in enumerate(bar):
                if max_frames is not None and i >= max_frames:
                    break
                poses = est(frame).filter(min_score)
                report.processed += 1
                report.people += len(poses)
                if write:
                    write(poses.draw(frame, min_score=0))
                if json_path:
                    frames_json.append({"frame": i, "people": poses.summary()})
        except KeyboardInterrupt:
            if kind != "webcam":
                raise
            log.info("stopped by Ctrl-C after %d frames", report.processed)  # a webcam ends this way
        bar.close()
        if report.processed == 0:  # raised inside the writer's block: no empty video is left behind
            raise VideoError(f"{source}: no frames could be read (empty or undecodable video)")

    if out_path:
        with video_writer(out_path, reader.fps) as write:
            run(write)
    else:
        run()
    if out_path:
        report.written.append(out_path)
    if json_path:
        report.written.append(write_text(json_path, json.dumps({"model": est.name, "fps": reader.fps,
                                                                "frames": frames_json})))
