"""What ``featherpose predict`` (and ``eval --results``) writes: never over an input, never two outputs on one
path, every location checked before the work, the work kept when a write fails late, and one clear line
for every bad flag (issue 9)."""
from __future__ import annotations

import hashlib
import json
import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import featherpose.estimator
import featherpose.evaluation
import featherpose.predict
import featherpose.video.io
import featherpose.zoo
from featherpose import fileio
from featherpose.cli import main

from conftest import DATA, MEDIA

FAST = ["--backend", "torch", "--quiet"]
TMP_MARK = ".featherpose-tmp-"  # how atomic temporaries are named: .<target name>.featherpose-tmp-<pid>-<random>


def small_image(path: Path, source: str = "messi5.jpg", width: int = 160) -> Path:
    """A small copy of a shared photo (fast to run), in the format of ``path``'s suffix (grey for .pgm)."""
    image = cv2.imread(str(MEDIA / source))
    image = cv2.resize(image, (width, round(image.shape[0] * width / image.shape[1])), interpolation=cv2.INTER_AREA)
    if path.suffix == ".pgm":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def small_video(path: Path, frames: int = 3) -> Path:
    """The first frames of vtest.avi, at half size, in ``path``'s container."""
    cap = cv2.VideoCapture(str(MEDIA / "vtest.avi"))
    writer = None
    for _ in range(frames):
        ok, frame = cap.read()
        assert ok
        frame = cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2))
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (frame.shape[1], frame.shape[0]))
        writer.write(frame)
    writer.release()
    return path


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones included) -> sha256 of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if predict() gets as far as loading a model (i.e. starts the work)."""
    def load(*args, **kwargs):
        raise AssertionError("the model was loaded: the error came after the work started")
    monkeypatch.setattr(featherpose.predict, "load", load)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("featherpose: error: "), err
    assert "Traceback" not in err[0] and "[Errno" not in err[0]
    return err[0]


# 1. a video never overwrites itself --------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--save", "--json"])
def test_video_output_never_replaces_the_video(tmp_path, capsys, no_model, flag):
    clip = small_video(tmp_path / "clip.mp4")
    before = digest(tmp_path)
    target = str(tmp_path) if flag == "--save" else str(clip)
    assert main(["predict", str(clip), flag, target, "--max-frames", "2", *FAST]) == 2
    line = one_error_line(capsys)
    assert "would overwrite the input" in line and str(clip) in line
    assert digest(tmp_path) == before


# 2. folder outputs keep names and sub-folders, never collide, never replace an input ------------------------

def test_folder_drawings_keep_name_and_subfolder(tmp_path, capsys):
    photos = tmp_path / "photos"
    small_image(photos / "a.jpg")
    small_image(photos / "a.png", "basketball1.png")
    small_image(photos / "sub" / "a.jpg")
    small_image(photos / "c.pgm")
    out = tmp_path / "out"
    assert main(["predict", str(photos), "--save", str(out), "--json", str(tmp_path / "r.json"), *FAST]) == 0
    stdout = capsys.readouterr().out
    assert sorted(digest(out)) == ["a.jpg", "a.png", "c.pgm.jpg", "sub/a.jpg"]
    wrote = [line for line in stdout.splitlines() if line.startswith("wrote ")]
    assert len(wrote) == len(set(wrote)) == 5
    assert cv2.imread(str(out / "a.png")).shape[:2] == cv2.imread(str(photos / "a.png")).shape[:2]
    assert cv2.imread(str(out / "c.pgm.jpg")).ndim == 3  # a colour drawing, not a grey .pgm
    assert {r["file_name"] for r in json.loads((tmp_path / "r.json").read_text())} >= {"a.jpg", "a.png"}


def test_save_into_the_input_folder_is_refused_before_any_work(tmp_path, capsys, no_model):
    photos = tmp_path / "photos"
    small_image(photos / "a.jpg")
    small_image(photos / "a.png", "basketball1.png")
    before = digest(photos)
    assert main(["predict", str(photos), "--save", str(photos), *FAST]) == 2
    line = one_error_line(capsys)
    assert "would overwrite the input" in line and str(photos / "a.jpg") in line and "--save" in line
    assert main(["predict", str(photos), "--json", str(photos / "a.png"), *FAST]) == 2
    line = one_error_line(capsys)
    assert f"--json {photos / 'a.png'} would overwrite the input {photos / 'a.png'}" in line
    assert main(["predict", str(photos / "a.jpg"), "--save", str(photos), *FAST]) == 2
    assert "would overwrite the input" in one_error_line(capsys)
    assert digest(photos) == before


def test_two_outputs_on_one_path_are_refused(tmp_path, capsys, no_model):
    photos = tmp_path / "photos"
    small_image(photos / "a.jpg")
    out = tmp_path / "out"
    assert main(["predict", str(photos), "--save", str(out), "--json", str(out / "a.jpg"), *FAST]) == 2
    line = one_error_line(capsys)
    assert "would both write" in line and str(out / "a.jpg") in line
    assert main(["predict", "7", "--save", str(out), "--json", str(out / "camera7.mp4"), *FAST]) == 2
    assert "would both write" in one_error_line(capsys)  # the webcam's video and the json
    assert not out.exists()


# 3. every output location is checked before the work; late failures keep the work ---------------------------

@pytest.mark.parametrize("flags, message", [
    (["--json", "{f}/out.json"], "is a file, not a folder"),
    (["--save", "{f}/drawn"], "is a file, not a folder"),
    (["--save", "{f}"], "is a file, not a folder"),
    (["--json", "{d}"], "is a folder; give a file name"),
])
def test_unwritable_outputs_fail_before_the_work(tmp_path, capsys, no_model, flags, message):
    f = tmp_path / "notes.txt"
    f.write_text("a file, where a folder is needed")
    flags = [flag.format(f=f, d=tmp_path) for flag in flags]
    assert main(["predict", str(MEDIA / "vtest.avi"), *flags, *FAST]) == 2
    line = one_error_line(capsys)
    assert message in line and flags[1] in line


def test_a_file_where_a_drawing_sub_folder_goes_is_refused(tmp_path, capsys, no_model):
    small_image(tmp_path / "photos" / "sub" / "a.jpg")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").write_text("a file named like the sub-folder")
    assert main(["predict", str(tmp_path / "photos"), "--save", str(tmp_path / "out"), *FAST]) == 2
    assert f"--save sub-folder {tmp_path / 'out' / 'sub'} is a file, not a folder" in one_error_line(capsys)


def test_an_existing_folder_where_a_drawing_goes_is_refused(tmp_path, capsys, no_model):
    photo = small_image(tmp_path / "in" / "messi5.jpg")
    (tmp_path / "out" / "messi5.jpg").mkdir(parents=True)
    assert main(["predict", str(photo), "--save", str(tmp_path / "out"), *FAST]) == 2
    line = one_error_line(capsys)
    assert f"{tmp_path / 'out' / 'messi5.jpg'} is a folder" in line
    assert ".messi5." not in line and TMP_MARK not in line


def test_drawings_that_cannot_be_written_keep_the_keypoints(tmp_path, capsys, monkeypatch):
    photos = tmp_path / "photos"
    small_image(photos / "a.jpg")
    small_image(photos / "b.png", "basketball1.png")
    monkeypatch.setattr(featherpose.predict.cv2, "imwrite", lambda *args, **kwargs: False)  # e.g. a full disk
    out, res = tmp_path / "out", tmp_path / "r.json"
    assert main(["predict", str(photos), "--save", str(out), "--json", str(res), *FAST]) == 1
    captured = capsys.readouterr()
    assert "2 images" in captured.out and f"wrote {res}" in captured.out
    assert "skipped" not in captured.err
    assert f"featherpose: error: cannot write {out / 'a.jpg'}" in captured.err
    assert {r["file_name"] for r in json.loads(res.read_text())} >= {"a.jpg", "b.png"}
    assert not [p for p in out.rglob("*") if p.is_file()]  # no temporary left behind either


def test_eval_checks_the_results_location_first(tmp_path, capsys, monkeypatch):
    data = DATA / "labeled_dev" / "person_keypoints_coco17.json"
    f = tmp_path / "notes.txt"
    f.write_text("a file")
    monkeypatch.setattr(featherpose.zoo, "load", lambda *a, **k: pytest.fail("the model was loaded first"))
    assert main(["eval", "--model", "movenet-lightning", "--data", str(data), "--results", str(f / "r.json"),
                 "--backend", "torch", "--quiet"]) == 2
    assert "is a file, not a folder" in one_error_line(capsys)


def test_eval_keeps_the_table_when_the_results_write_fails_late(tmp_path, capsys, monkeypatch):
    data = DATA / "labeled_dev" / "person_keypoints_coco17.json"
    real, results = featherpose.evaluation._predict, tmp_path / "r.json"

    def predict_then_block(*args, **kwargs):  # the location breaks while the model runs
        results.mkdir()
        return real(*args, **kwargs)

    monkeypatch.setattr(featherpose.evaluation, "_predict", predict_then_block)
    assert main(["eval", "--model", "movenet-lightning", "--data", str(data), "--results", str(results),
                 "--backend", "torch", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "PCK@0.2 (box)" in captured.out  # the metrics survive the failed write
    [line] = captured.err.strip().splitlines()
    # evaluate() wrote the file (one check, one write): its ResultsNotWrittenError, short, after the table
    assert line.startswith(f"featherpose: error: cannot write {results}: it is a folder")
    assert line.endswith("(the evaluation itself finished: its metrics are kept)")
    assert len(line.replace(str(results), "")) < 150  # short but for the path (pytest-xdist's tmp paths are longer)


def test_eval_and_export_never_write_over_their_inputs(tmp_path, capsys, monkeypatch):
    data = tmp_path / "coco17.json"
    data.write_bytes((DATA / "labeled_dev" / "person_keypoints_coco17.json").read_bytes())
    before = digest(tmp_path)
    monkeypatch.setattr(featherpose.zoo, "load", lambda *a, **k: pytest.fail("the model was loaded first"))
    assert main(["eval", "--model", "movenet-lightning", "--data", str(data), "--results", str(data)]) == 2
    assert f"results file {data} would overwrite the annotation file {data}" in one_error_line(capsys)
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(b"not even read")
    assert main(["eval", "--model", str(weights), "--data", str(data), "--results", str(weights)]) == 2
    assert f"would overwrite the weight file {weights}" in one_error_line(capsys)
    assert main(["export", str(weights), "--onnx", str(weights)]) == 2
    assert "would overwrite the weight file" in one_error_line(capsys)
    assert main(["export", "movenet-lightning", "--onnx", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in one_error_line(capsys)
    assert digest(tmp_path) == {**before, "m.safetensors": hashlib.sha256(b"not even read").hexdigest()}


# 4. atomic temporaries are recognisable; stale ones are removed, nothing else --------------------------------

def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "clip.mp4"
    with fileio.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".clip.mp4{TMP_MARK}") and tmp.suffix == ".mp4"
        tmp.write_bytes(b"half a video")
        live = tmp.name
    assert target.read_bytes() == b"half a video"
    names = {
        f".clip.mp4{TMP_MARK}{dead_pid()}-k3j4h5g6.mp4": True,  # a killed run's: removed
        f".clip.mp4{TMP_MARK}{os.getpid()}-a1b2c3d4.mp4": False,  # a running writer's (this process)
        ".clip.mp4.x7y8z9w0.mp4": False,  # not ours
        f".other.mp4{TMP_MARK}{dead_pid()}-k3j4h5g6.mp4": False,  # another target's
        "clip.mp4.bak": False,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = fileio.remove_stale_temporaries(target, tmp_path / "missing" / "x.json")
    assert [p.name for p in removed] == [n for n, stale in names.items() if stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["clip.mp4", *[n for n, s in names.items() if not s]])
    assert live not in os.listdir(tmp_path)


def test_predict_removes_stale_temporaries_of_its_outputs(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".clip.mp4{TMP_MARK}{dead_pid()}-abcdefgh.mp4"
    stale.write_bytes(b"killed mid-video")
    keep = out / ".clip.mp4.abcdefgh.mp4"
    keep.write_bytes(b"someone else's")
    clip = small_video(tmp_path / "clip.mp4")
    assert main(["predict", str(clip), "--save", str(out), "--max-frames", "2", *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["clip.mp4", keep.name])


# 10. a truncated video says it ended early, without FFmpeg's noise -------------------------------------------

def test_truncated_video_ends_early_with_one_line(tmp_path, capfd):
    data = (MEDIA / "vtest.avi").read_bytes()
    cut = tmp_path / "vtest_cut.avi"
    cut.write_bytes(data[:len(data) // 20])
    res = tmp_path / "v.json"
    assert main(["predict", str(cut), "--model", "movenet-lightning", "--json", str(res), *FAST]) == 0
    err = capfd.readouterr().err
    frames = len([json.loads(line) for line in res.read_text().splitlines()])  # JSON Lines: one line per frame
    assert 5 < frames < 100
    assert f"featherpose: warning: vtest_cut.avi: video ended early after {frames} of 795 frames" in err
    assert "@ 0x" not in err and "error while decoding" not in err  # FFmpeg's decoder noise
    # stopped by --max-frames, or complete: no such line
    assert main(["predict", str(cut), "--model", "movenet-lightning", "--max-frames", "3", *FAST]) == 0
    clip = small_video(tmp_path / "clip.mp4", frames=4)
    assert main(["predict", str(clip), "--model", "movenet-lightning", *FAST]) == 0
    assert "ended early" not in capfd.readouterr().err


# 11. bad flags: one line naming the flag, before any work; messages name the user's paths --------------------

@pytest.mark.parametrize("flag, value, message", [
    ("--max-frames", "0", "--max-frames must be >= 1"),
    ("--max-frames", "-5", "--max-frames must be >= 1"),
    ("--threads", "0", "threads must be a whole number >= 1 (None: the runtime's default), got 0"),
    ("--threads", "-1", "threads must be a whole number >= 1"),
    ("--min-score", "1.5", "min_score must be a number from 0 to 1 (0: every person the model outputs), got 1.5"),
    ("--min-score", "-0.1", "min_score must be a number from 0 to 1"),
    ("--min-score", "nan", "min_score must be a number from 0 to 1"),
])
def test_bad_numbers_are_one_line(capsys, no_model, flag, value, message):
    assert main(["predict", str(MEDIA / "vtest.avi"), flag, value, *FAST]) == 2
    assert message in one_error_line(capsys)


def test_one_check_per_value_so_the_api_and_the_cli_say_the_same(capsys):
    """threads, min_score and the input size are checked once, where the API checks them; the CLI says the same."""
    with pytest.raises(ValueError) as api:
        featherpose.load("movenet-lightning", backend="torch", threads=0)
    assert main(["predict", str(MEDIA / "messi5.jpg"), "--threads", "0", *FAST]) == 2
    assert one_error_line(capsys) == f"featherpose: error: {api.value}"
    with pytest.raises(ValueError) as api:
        featherpose.predict.predict(MEDIA / "messi5.jpg", min_score=1.5)
    assert main(["predict", str(MEDIA / "messi5.jpg"), "--min-score", "1.5", *FAST]) == 2
    assert one_error_line(capsys) == f"featherpose: error: {api.value}" and "min_score" in str(api.value)


@pytest.mark.parametrize("flag, value, message", [("--threads", "0", "threads must be a whole number >= 1"),
                                                  ("--input-size", "-5", "input size must be")])
def test_eval_bad_numbers_are_one_line(capsys, monkeypatch, flag, value, message):
    monkeypatch.setattr(featherpose.evaluation, "_predict", lambda *a, **k: pytest.fail("evaluated anyway"))
    assert main(["eval", "--model", "movenet-lightning", "--data", str(DATA / "lsp" / "lsp_test.json"),
                 flag, value]) == 2
    assert message in one_error_line(capsys)


def test_source_and_sample_together_is_an_error(capsys, no_model):
    assert main(["predict", str(MEDIA / "vtest.avi"), "--sample"]) == 2
    assert "either SOURCE" in one_error_line(capsys)


def test_write_errors_name_the_users_path_not_the_temporary(tmp_path):
    (tmp_path / "x.json").mkdir()
    with pytest.raises(OSError) as err:
        fileio.write_text(tmp_path / "x.json", "{}")
    message = str(err.value)
    assert message.startswith(f"cannot write {tmp_path / 'x.json'}: ") and "/.x." not in message
    assert "Errno" not in message and "it is a folder" in message
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(OSError, match=r"f\.txt is a file, not a folder; choose another location"):
        fileio.write_text(tmp_path / "f.txt" / "x.json", "{}")
    with pytest.raises(OSError, match=r"--results file .* is a file, not a folder"):
        fileio.check_writable(tmp_path / "f.txt" / "x.json", "--results file")
    assert fileio.check_writable(tmp_path / "new" / "deeper" / "x.json") == tmp_path / "new" / "deeper" / "x.json"
    assert not (tmp_path / "new").exists()  # the check creates nothing


def interrupting_load(monkeypatch, after: int):
    """predict() loads a real estimator that raises KeyboardInterrupt (a Ctrl-C) on image number ``after + 1``,
    whether it is called whole or step by step (a single-person video's cropper calls ``infer`` itself)."""
    real, calls = featherpose.predict.load, []

    def tick():
        calls.append(1)
        if len(calls) > after:
            raise KeyboardInterrupt

    class Interrupting:
        def __init__(self, est):
            self.est = est

        def __getattr__(self, name):
            return getattr(self.est, name)

        def __call__(self, *args, **kwargs):
            tick()
            return self.est(*args, **kwargs)

        def infer(self, x):
            tick()
            return self.est.infer(x)

    monkeypatch.setattr(featherpose.predict, "load", lambda *a, **k: Interrupting(real(*a, **k)))


def test_ctrl_c_mid_video_keeps_the_frames_done(tmp_path, capsys, monkeypatch):
    clip = small_video(tmp_path / "clip.mp4", frames=5)
    interrupting_load(monkeypatch, after=3)
    out, res = tmp_path / "out", tmp_path / "v.json"
    assert main(["predict", str(clip), "--model", "movenet-lightning", "--save", str(out), "--json", str(res),
                 *FAST]) == 130
    assert "clip.mp4: stopped by Ctrl-C after 3 frames" in capsys.readouterr().err
    assert [json.loads(line)["frame"] for line in res.read_text().splitlines()] == [0, 1, 2]  # JSON Lines
    assert int(cv2.VideoCapture(str(out / "clip.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 3


def test_a_real_ctrl_c_mid_frame_lets_the_frame_finish(tmp_path, capsys, monkeypatch):
    """Ctrl-C while frame 3 is being estimated: the frame finishes and is written, and the run stops before the
    next one (raised mid-frame, the interrupt could land in a numba kernel and lose everything, or in a queue's lock
    and hang). The Ctrl-C handler is the one before afterwards."""
    import signal

    clip = small_video(tmp_path / "clip.mp4", frames=5)
    real, calls = featherpose.predict.load, []

    class SignalOnThird:
        def __init__(self, est):
            self.est = est

        def __getattr__(self, name):
            return getattr(self.est, name)

        def tick(self):
            calls.append(1)
            if len(calls) == 3:  # what Python runs when SIGINT arrives (a real os.kill crashed xdist workers)
                signal.getsignal(signal.SIGINT)(signal.SIGINT, None)

        def __call__(self, *args, **kwargs):
            self.tick()
            return self.est(*args, **kwargs)

        def infer(self, x):  # a single-person video's cropper calls it itself
            self.tick()
            return self.est.infer(x)

    monkeypatch.setattr(featherpose.predict, "load", lambda *a, **k: SignalOnThird(real(*a, **k)))
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # (a pytest-xdist worker ignores SIGINT)
    try:
        out, res = tmp_path / "out", tmp_path / "v.json"
        assert main(["predict", str(clip), "--model", "movenet-lightning", "--save", str(out), "--json", str(res),
                     *FAST]) == 130
        assert "clip.mp4: stopped by Ctrl-C after 3 frames" in capsys.readouterr().err
        assert [json.loads(line)["frame"] for line in res.read_text().splitlines()] == [0, 1, 2]
        assert int(cv2.VideoCapture(str(out / "clip.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 3
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job: Ctrl-C stays ignored
        with featherpose.predict.ctrl_c_between_items():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_video_that_cannot_be_written_late_keeps_the_keypoints(tmp_path, capsys, monkeypatch):
    clip = small_video(tmp_path / "clip.mp4", frames=3)
    monkeypatch.setattr(featherpose.video.io.cv2, "VideoWriter", NothingWriter)  # e.g. the disk filled up
    out, res = tmp_path / "out", tmp_path / "v.json"
    assert main(["predict", str(clip), "--model", "movenet-lightning", "--save", str(out), "--json", str(res),
                 *FAST]) == 1
    captured = capsys.readouterr()
    assert f"featherpose: error: cannot write video {out / 'clip.mp4'}: nothing was written" in captured.err
    assert len(res.read_text().splitlines()) == 3 and f"wrote {res}" in captured.out  # JSON Lines: 3 frames
    assert list(out.iterdir()) == []  # neither an empty video nor a temporary


class NothingWriter:
    """A cv2.VideoWriter that opens and accepts frames but writes nothing (as on a full disk)."""

    def __init__(self, path, *args):
        Path(path).touch()

    def isOpened(self):
        return True

    def write(self, frame):
        pass

    def release(self):
        pass


def test_json_is_utf8_whatever_the_locale(tmp_path):
    name = "caf\\u00e9/\\u00e9t\\u00e9.jpg"  # escaped: a C locale cannot carry it on the command line
    script = ("import json, sys; from featherpose import fileio; "
              f"fileio.write_text(sys.argv[1], json.dumps({{'file_name': '{name}'}}, ensure_ascii=False)); "
              f"print(fileio.read_json(sys.argv[1])['file_name'] == '{name}')")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "k.json")], capture_output=True, text=True,
                          env=env, encoding="utf-8")
    assert proc.stdout.strip() == "True", proc.stderr
    assert json.loads((tmp_path / "k.json").read_bytes())["file_name"] == "café/été.jpg"


def test_a_video_without_a_usable_frame_rate_writes_valid_json(tmp_path, monkeypatch):
    clip, real = small_video(tmp_path / "clip.mp4", frames=2), cv2.VideoCapture

    class NoRate:  # a wrapper, not a subclass: subclassing OpenCV's class crashes the interpreter at exit
        def __init__(self, *args):
            self.cap = real(*args)

        def get(self, prop):
            return float("nan") if prop == cv2.CAP_PROP_FPS else self.cap.get(prop)

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(featherpose.video.io.cv2, "VideoCapture", NoRate)
    assert main(["predict", str(clip), "--model", "movenet-lightning", "--save", str(tmp_path / "out"), "--json",
                 str(tmp_path / "v.json"), *FAST]) == 0
    frames = [json.loads(line, parse_constant=pytest.fail) for line in (tmp_path / "v.json").read_text().splitlines()]
    assert [f["time"] for f in frames] == [0.0, round(1 / 30, 4)]  # no usable rate: 30 frames/s assumed


def test_a_full_disk_names_the_users_file(tmp_path, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")  # as a write() on a full disk: no file name

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError) as err:
        fileio.write_text(tmp_path / "k.json", "{}")
    assert str(err.value) == f"cannot write {tmp_path / 'k.json'}: no space left on the disk; free some space or " \
                             f"choose another disk"
    assert os.listdir(tmp_path) == []


# Ctrl-C keeps what was done -------------------------------------------------------------------------------------

def test_ctrl_c_mid_folder_writes_the_results_so_far(tmp_path, capsys, monkeypatch):
    photos = tmp_path / "photos"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        small_image(photos / name)
    real, calls = featherpose.predict._run, []

    def run_then_interrupt(est, image, name, min_score):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(est, image, name, min_score)

    monkeypatch.setattr(featherpose.predict, "_run", run_then_interrupt)
    res = tmp_path / "r.json"
    assert main(["predict", str(photos), "--save", str(tmp_path / "out"), "--json", str(res), *FAST]) == 130
    captured = capsys.readouterr()
    assert "stopped by Ctrl-C after 1 of 3 images" in captured.err
    assert {r["file_name"] for r in json.loads(res.read_text())} == {"a.jpg"}
    assert sorted(digest(tmp_path / "out")) == ["a.jpg"]


def test_a_bug_is_one_line_unless_debugging(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(featherpose.predict, "predict", broken)
    monkeypatch.delenv("FEATHERPOSE_DEBUG", raising=False)
    assert main(["predict", str(MEDIA / "messi5.jpg")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["featherpose: internal error: RuntimeError: boom (a bug in featherpose: please report it; "
                   "FEATHERPOSE_DEBUG=1 shows the traceback)"]
    monkeypatch.setenv("FEATHERPOSE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["predict", str(MEDIA / "messi5.jpg")])


@pytest.mark.parametrize("argv, words", [(["predict", "x.jpg", "--threads", "two"], "--threads: invalid int value"),
                                         (["predict", "x.jpg", "--frames", "3"], "unrecognized arguments"),
                                         ([], "required: command")])
def test_usage_errors_are_one_line(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert words in one_error_line(capsys)


# review 4 and 9: durable commits, Windows-safe liveness, our own errors recognised by type -----------------------

def test_atomic_write_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    import featherpose.fileio as fileio
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(fileio.os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(fileio.os, "replace", lambda a, b: events.append(("replace", str(a))) or real_replace(a, b))
    fileio.write_text(tmp_path / "state.json", "{}")
    assert [e[0] for e in events] == ["fsync", "replace"] and events[0][1] == events[1][1]
    assert (tmp_path / "state.json").read_text() == "{}"


def test_windows_never_signals_a_writer_to_test_it(monkeypatch):
    import featherpose.fileio as fileio
    from types import SimpleNamespace
    fail = lambda *a: pytest.fail("os.kill on Windows sends CTRL_C_EVENT")  # noqa: E731
    monkeypatch.setattr(fileio, "os", SimpleNamespace(name="nt", kill=fail))
    assert fileio._alive(dead_pid())  # only the temporary's age marks it stale there


def test_our_write_errors_are_recognised_by_type_not_text(tmp_path):
    import featherpose.fileio as fileio
    ours = fileio._oserror(errno.ENOSPC, "no room for the drawing of a.jpg; free some space")
    with pytest.raises(OSError) as info:
        with fileio.atomic_path(tmp_path / "a.jpg"):
            raise ours
    assert info.value is ours  # already one line naming the user's path: kept as it is
    with pytest.raises(OSError, match=f"cannot write {tmp_path / 'b.jpg'}: no space left on the disk") as info:
        with fileio.atomic_path(tmp_path / "b.jpg"):
            raise OSError(errno.ENOSPC, "cannot write block")  # a library's, not ours: reworded
    assert isinstance(info.value, fileio.WriteError) and not list(tmp_path.iterdir())


# review 5, 6, 10: broken weights stop a folder run; a video's drawing never takes another video's name -------

def test_broken_weights_stop_a_folder_run_with_one_line(tmp_path, capsys, monkeypatch):
    photos, out = tmp_path / "photos", tmp_path / "out"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        small_image(photos / name)
    calls = []

    def nan_heads(self, x):
        calls.append(1)
        return {k: v * np.nan for k, v in real(self, x).items()}
    real = featherpose.estimator.Estimator.infer
    monkeypatch.setattr(featherpose.estimator.Estimator, "infer", nan_heads)
    assert main(["predict", str(photos), "--save", str(out), *FAST]) == 2
    assert "the network output NaN/inf" in one_error_line(capsys)  # not one "skipped" line per image
    assert len(calls) == 1


def test_video_drawing_keeps_its_name_and_never_replaces_another_video(tmp_path, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    clip = small_video(folder / "clip.avi", frames=2)
    other = small_video(folder / "clip.mp4", frames=1)  # an unrelated video of the same stem
    before = digest(folder)
    assert main(["predict", str(clip), "--save", str(folder), "--max-frames", "2", *FAST]) == 0
    assert int(cv2.VideoCapture(str(folder / "clip.avi.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    after = digest(folder)
    assert after.pop("clip.avi.mp4") and after == before  # clip.mp4 and clip.avi untouched
    assert main(["predict", str(other), "--save", str(folder), *FAST]) == 2  # clip.mp4 -> clip.mp4: its input
    assert f"would overwrite the input {other}" in one_error_line(capsys)


def test_plan_outputs_is_always_input_to_output(tmp_path):
    clip = small_video(tmp_path / "clip.avi", frames=1)
    plan = featherpose.predict.plan_outputs("video", str(clip), None, tmp_path / "out", None, [])
    assert plan == {str(clip): tmp_path / "out" / "clip.avi.mp4"}
    assert featherpose.predict.plan_outputs("webcam", "3", None, tmp_path / "out", None, []) == {
        "3": tmp_path / "out" / "camera3.mp4"}
    assert featherpose.predict.plan_outputs("video", str(clip), None, None, tmp_path / "p.json", []) == {}


def test_video_default_runs_multipose_at_the_larger_input():
    """A video with no model named runs MultiPose at VIDEO_INPUT_SIZE: more of vtest's small walkers than at 256
    (benchmarks/video_people.py: 47 vs 15 of 65 on the golden frames)."""
    from featherpose.predict import VIDEO_INPUT_SIZE, default_input_size, predict

    assert default_input_size("video", None, None) == default_input_size("webcam", None, None) == VIDEO_INPUT_SIZE
    assert default_input_size("video", "movenet-multipose", None) is None  # a named model keeps its own default
    assert default_input_size("video", None, 256) == 256 and default_input_size("image", None, None) is None
    video = MEDIA / "vtest.avi"
    large = predict(video, max_frames=10, progress=False, threads=1)
    small = predict(video, max_frames=10, progress=False, threads=1, input_size=256)
    assert large.model == small.model == "movenet-multipose"
    assert large.people > small.people >= 10


def test_webcam_shows_fps_and_latency_on_what_it_records(tmp_path, monkeypatch, capsys):
    """A webcam (vtest.avi read as camera 0): the recorded frames carry the fps / latency box, and the run ends
    cleanly after --max-frames."""
    from featherpose.video import io

    class FakeCamera(io.VideoReader):
        def __init__(self, source, prefetch=4):
            assert source == 0
            super().__init__(MEDIA / "vtest.avi")
            self.is_camera, self.prefetch, self.frame_count = True, 1, None

    monkeypatch.setattr(featherpose.predict, "VideoReader", FakeCamera)
    out = tmp_path / "out"
    assert main(["predict", "0", "--model", "movenet-lightning", "--save", str(out), "--max-frames", "4",
                 *FAST]) == 0
    cap = cv2.VideoCapture(str(out / "camera0.mp4"))
    ok, first = cap.read()
    assert ok and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    corner = first[:20, :60].astype(int)
    assert (corner < 40).mean() > 0.5 and (corner > 200).any()  # the dark box with white text
    assert "4 frames" in capsys.readouterr().out


class _Slowed:
    """An estimator that waits ``first`` seconds on its first call and ``then`` on each later one."""

    def __init__(self, est, first: float, then: float):
        self._est, self._waits = est, iter([first])
        self._then = then

    def __getattr__(self, name):
        return getattr(self._est, name)

    def __call__(self, *args, **kwargs):
        time.sleep(next(self._waits, self._then))
        return self._est(*args, **kwargs)


@pytest.mark.parametrize("kind", ["video", "folder"])
def test_the_pace_leaves_out_the_first_item(tmp_path, monkeypatch, kind):
    """PredictReport.rate (the CLI's "frames/s after the first") is the pace after the first item: a first frame
    that takes 0.5 s more does not lower it, and every later item's time counts."""
    load = featherpose.predict.load
    monkeypatch.setattr(featherpose.predict, "load", lambda *a, **k: _Slowed(load(*a, **k), first=0.5, then=0.05))
    if kind == "video":
        source = small_video(tmp_path / "clip.mp4", frames=4)
    else:
        source = tmp_path / "photos"
        for i in range(4):
            small_image(source / f"{i}.jpg")
    start = time.perf_counter()
    report = featherpose.predict.predict(source, "movenet-lightning", backend="torch", crop=False, progress=False,
                                         json_path=tmp_path / "out.json")
    wall = time.perf_counter() - start
    assert report.processed == 4
    assert 0.5 < report.first_seconds < report.seconds - 3 * 0.05 and report.seconds < wall
    assert 4 / report.seconds < report.rate < 1 / 0.05  # the first item's 0.5 s left out; each later one counted
