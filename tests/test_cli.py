"""The CLI as a user runs it: images, folders, videos, models, export, and every kind of bad input."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from featherpose.cli import main

from conftest import DATA, MEDIA


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "featherpose", *args], capture_output=True, text=True, timeout=300)


def write_png(path, array):
    assert cv2.imwrite(str(path), array)
    return path


def test_predict_sample_image_subprocess(tmp_path):
    proc = run_cli("predict", "--sample", "--save", str(tmp_path), "--json", str(tmp_path / "k.json"))
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and (tmp_path / "messi5.jpg").is_file()
    people = json.loads((tmp_path / "k.json").read_text())["people"]
    assert len(people) == 1 and len(people[0]["keypoints"]) == 17
    drawn = cv2.imread(str(tmp_path / "messi5.jpg"))
    original = cv2.imread(str(MEDIA / "messi5.jpg"))
    assert drawn.shape == original.shape and np.abs(drawn.astype(int) - original).max() > 100  # skeleton drawn


def test_unknown_model_is_one_clear_line():
    proc = run_cli("predict", str(MEDIA / "messi5.jpg"), "--model", "movenet-lightnin")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model 'movenet-lightnin'" in lines[0]
    assert "did you mean movenet-lightning" in lines[0] and "movenet-multipose" in lines[0]


def test_missing_path(capsys, tmp_path):
    assert main(["predict", str(tmp_path / "nothing.jpg")]) == 2
    assert "not found" in capsys.readouterr().err


def test_folder_reports_bad_files_and_carries_on(capsys, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a_empty.jpg").write_bytes(b"")
    (folder / "b_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (folder / "c_messi.jpg").write_bytes((MEDIA / "messi5.jpg").read_bytes())
    (folder / "d_players.png").write_bytes((MEDIA / "basketball1.png").read_bytes())
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--save", str(out), "--json", str(out / "res.json"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "2 images" in captured.out
    assert "skipped" in captured.err and "a_empty.jpg: empty file" in captured.err
    assert "b_corrupt.png: not a readable image" in captured.err
    results = json.loads((out / "res.json").read_text())
    assert {r["file_name"] for r in results} == {"c_messi.jpg", "d_players.png"}
    assert all(len(r["keypoints"]) == 51 and {"image_id", "category_id", "score"} <= r.keys() for r in results)
    assert sorted(p.name for p in out.iterdir()) == ["c_messi.jpg", "d_players.png", "res.json"]


def test_video_writes_annotated_video(capsys, tmp_path):
    assert main(["predict", str(MEDIA / "vtest.avi"), "--max-frames", "4", "--save", str(tmp_path),
                 "--json", str(tmp_path / "v.json")]) == 0
    cap = cv2.VideoCapture(str(tmp_path / "vtest.avi.mp4"))  # the video's name, .mp4 appended
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = cap.read()
    assert ok and frames == 4 and frame.shape == (576, 768, 3)
    frames = [json.loads(line) for line in (tmp_path / "v.json").read_text().splitlines()]  # JSON Lines
    assert [f["frame"] for f in frames] == [0, 1, 2, 3]
    assert [f["time"] for f in frames] == [0.0, 0.1, 0.2, 0.3]  # vtest.avi: 10 frames/s
    assert {f["model"] for f in frames} == {"movenet-multipose"}  # the documented default for video
    assert sum(len(f["people"]) for f in frames) >= 4  # vtest shows several pedestrians
    captured = capsys.readouterr()
    assert "predict" in captured.err  # the progress bar
    assert re.search(r": 4 frames, \d+ people found, \d+\.\d frames/s after the first\n", captured.out)


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"RIFF" + bytes(2000), "not a readable video")])
def test_bad_video(capsys, tmp_path, content, message):
    bad = tmp_path / "clip.avi"
    bad.write_bytes(content)
    assert main(["predict", str(bad), "--save", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_video_without_frames(capsys, tmp_path):
    """A container OpenCV opens but that holds no frame: error, and no empty output left behind."""
    path = tmp_path / "noframes.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 64))
    writer.release()
    code = main(["predict", str(path), "--save", str(tmp_path / "out")])
    assert code == 2
    assert "noframes.avi" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.mp4")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit", "1x1", "gray_alpha"])
def test_unusual_images_are_handled(capsys, tmp_path, kind):
    rgb = cv2.imread(str(MEDIA / "messi5.jpg"))
    array = {
        "gray": cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY),
        "rgba": cv2.cvtColor(rgb, cv2.COLOR_BGR2BGRA),
        "16bit": rgb.astype(np.uint16) * 257,
        "1x1": rgb[:1, :1],
        "gray_alpha": None,
    }[kind]
    if kind == "gray_alpha":  # PNG with 2 channels, as written by other tools: OpenCV reads it as BGRA
        array = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGRA)
    path = write_png(tmp_path / f"{kind}.png", array)
    assert main(["predict", str(path), "--json", str(tmp_path / "k.json"), "--quiet", "--min-score", "0"]) == 0
    people = json.loads((tmp_path / "k.json").read_text())["people"]
    assert len(people) == 1
    xy = np.array([v[:2] for v in people[0]["keypoints"].values()])
    h, w = array.shape[:2]
    assert np.isfinite(xy).all() and xy[:, 0].max() <= w + 1 and xy[:, 1].max() <= h + 1
    if kind in ("gray", "rgba", "16bit"):  # same person, same place as in the colour original
        ref = json.loads(subprocess_free_predict(MEDIA / "messi5.jpg"))["people"][0]["keypoints"]
        assert abs(people[0]["keypoints"]["left_hip"][0] - ref["left_hip"][0]) < 15


def subprocess_free_predict(path) -> str:
    import featherpose

    return featherpose.load("movenet-lightning")(path).to_json()


def test_models_lists_bundled(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("movenet-lightning", "movenet-thunder", "movenet-multipose"):
        assert name in out
    assert main(["models", "*thunder", "--detail"]) == 0
    out = capsys.readouterr().out
    assert "movenet-lightning" not in out and "Apache-2.0" in out and "parameters:" in out


def test_export_onnx(capsys, tmp_path):
    assert main(["export", "movenet-lightning", "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 1_000_000
    assert main(["export", "movenet-lightning", "--onnx", str(tmp_path / "x.onnx"), "--input-size", "256"]) == 2
    assert "single-pose model fixed at 192x192" in capsys.readouterr().err


def test_bad_input_size(capsys):
    assert main(["predict", str(MEDIA / "messi5.jpg"), "--model", "movenet-multipose", "--input-size", "100"]) == 2
    assert "multiples of 32, got 100x100; e.g. 96 or 128" in capsys.readouterr().err
    assert main(["predict", str(MEDIA / "messi5.jpg"), "--model", "litepose-m-crowdpose", "--input-size", "0"]) == 2
    assert "e.g. 32 or 64" in capsys.readouterr().err


def test_weight_file_that_is_not_featherpose(capsys, tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"garbage")
    assert main(["predict", str(MEDIA / "messi5.jpg"), "--model", str(bad)]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


def test_labeled_dev_folder(tmp_path, capsys):
    """A real folder of COCO images: one result list, image ids in sorted order."""
    assert main(["predict", str(DATA / "labeled_dev" / "images"), "--multi", "--json", str(tmp_path / "r.json"),
                 "--quiet"]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    root = DATA / "labeled_dev" / "images"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    assert "6 images" in capsys.readouterr().out and len(files) == 6
    assert {r["file_name"] for r in results} == set(files)  # somebody found in every image
    ids = {r["file_name"]: r["image_id"] for r in results}
    assert [ids[f] for f in files] == list(range(6))


def test_empty_folder(capsys, tmp_path):
    assert main(["predict", str(tmp_path)]) == 2
    assert "no images in this folder" in capsys.readouterr().err


def test_missing_webcam(capsys):
    assert main(["predict", "7", "--max-frames", "1"]) == 2
    assert "cannot open camera 7" in capsys.readouterr().err
