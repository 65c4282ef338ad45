"""Every CLI verb given bad input: one line on stderr, exit code 2, no traceback, nothing written.

Each case is something a user can type; the expected words are the part of the message that tells
them what is wrong. Cases are built in a temporary folder from the real shared media and data.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from featherpose.cli import main

from conftest import DATA, MEDIA

COCO_MINI = DATA / "coco_mini" / "person_keypoints_val2017.json"


def _junk(tmp, name: str, data: bytes = b"this is not what the name says\n" * 20):
    path = tmp / name
    path.write_bytes(data)
    return str(path)


def _coco_variant(tmp, name: str, edit) -> str:
    """The first image of coco_mini val with its people, one annotation edited (images linked, not copied)."""
    data = json.loads(COCO_MINI.read_text())
    image = data["images"][0]
    data["images"] = [image]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == image["id"]]
    edit(data["annotations"][0])
    if not (tmp / "images").exists():
        (tmp / "images").symlink_to(COCO_MINI.parent / "images")
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(data))
    return str(path)


def _recipe(tmp, name: str, text: str) -> str:
    path = tmp / f"{name}.yaml"
    path.write_text(f"data:\n  train: {DATA / 'lsp' / 'lsp_train.json'}\nout: {tmp / 'run'}\n{text}\n")
    return str(path)


CASES = {
    # predict
    "predict missing file": (lambda t: ["predict", str(t / "nope.jpg")], "not found"),
    "predict corrupt image": (lambda t: ["predict", _junk(t, "x.jpg")], "not a readable image"),
    "predict empty video": (lambda t: ["predict", _junk(t, "v.mp4", b"")], "empty"),
    "predict max-frames 0": (lambda t: ["predict", str(MEDIA / "vtest.avi"), "--max-frames", "0"], "--max-frames"),
    "predict sample and source": (lambda t: ["predict", str(MEDIA / "messi5.jpg"), "--sample"], "--sample"),
    "predict threads -1": (lambda t: ["predict", str(MEDIA / "messi5.jpg"), "--threads", "-1"], "threads"),
    "predict min-score 2": (lambda t: ["predict", str(MEDIA / "messi5.jpg"), "--min-score", "2"], "min_score"),
    "predict input-size 4096": (lambda t: ["predict", str(MEDIA / "messi5.jpg"), "--multi", "--input-size", "4096"],
                                "input size"),
    "predict input-size -32": (lambda t: ["predict", str(MEDIA / "messi5.jpg"), "--multi", "--input-size", "-32"],
                               "input size"),
    "predict junk weights": (lambda t: ["predict", str(MEDIA / "messi5.jpg"), "--model", _junk(t, "w.safetensors")],
                             "w.safetensors"),
    "predict junk boxes": (lambda t: ["predict", str(MEDIA / "messi5.jpg"), "--boxes", _junk(t, "b.json")],
                           "b.json"),
    "predict json under a file": (lambda t: ["predict", str(MEDIA / "messi5.jpg"), "--json",
                                             _junk(t, "f.txt") + "/k.json"], "k.json"),
    # convert
    "convert junk tgz": (lambda t: ["convert", "movenet", _junk(t, "models.tgz"), "--out", str(t / "o")],
                         "models.tgz"),
    "convert junk json": (lambda t: ["convert", "movenet", _junk(t, "movenet-x.json"), "--out", str(t / "o")],
                          "movenet-x.json"),
    "convert empty folder": (lambda t: ["convert", "movenet", str(t), "--out", str(t / "o")], "no MoveNet"),
    # export
    "export unknown model": (lambda t: ["export", "movenet-lightnin", "--onnx", str(t / "m.onnx")], "unknown model"),
    "export huge input": (lambda t: ["export", "movenet-multipose", "--input-size", "100000", "--onnx",
                                     str(t / "m.onnx")], "input size"),
    "export onto a folder": (lambda t: ["export", "movenet-lightning", "--onnx", str(t)], "/model.onnx"),
    # eval
    "eval missing data": (lambda t: ["eval", "--model", "movenet-lightning", "--data", str(t / "d.json")],
                          "not found"),
    "eval junk data": (lambda t: ["eval", "--model", "movenet-lightning", "--data", _junk(t, "d.json")],
                       "d.json"),
    "eval threads 0": (lambda t: ["eval", "--model", "movenet-lightning", "--data", str(DATA / "lsp" / "lsp_test.json"),
                                  "--threads", "0"], "threads must be a whole number >= 1"),
    "eval results onto data": (lambda t: ["eval", "--model", "movenet-lightning", "--data", _junk(t, "d.json"),
                                          "--results", str(t / "d.json")], "would overwrite the annotation file"),
    # train
    "train missing recipe": (lambda t: ["train", str(t / "r.yaml")], "not found"),
    "train augment 5": (lambda t: ["train", _recipe(t, "aug", "augment: 5")], "augment"),
    "train epochs -1": (lambda t: ["train", _recipe(t, "ep", "epochs: -1")], "epochs"),
    "train resume nothing": (lambda t: ["train", _recipe(t, "res", ""), "--resume"], "resume"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line(case, tmp_path, capsys):
    argv, words = CASES[case]
    argv = argv(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main([*argv, "--quiet"] if argv[0] in ("predict", "eval", "train") else argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, f"{case}: exit {code}, stderr {err}"
    assert len(err) == 1 and err[0].startswith("featherpose: error: "), f"{case}: {err}"
    assert words.lower() in err[0].lower(), f"{case}: {err[0]!r} does not mention {words!r}"
    assert "internal error" not in err[0] and "Traceback" not in err[0]
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, f"{case}: files appeared {set(after) - set(before)}"


@pytest.mark.parametrize("edit", [lambda a: a.update(keypoints="1 2 3"), lambda a: a.update(keypoints=a["keypoints"][:48]),
                                  lambda a: a.update(keypoints=[float("nan")] * 51), lambda a: a.update(image_id=-7)],
                         ids=["keypoints as text", "16 keypoints", "NaN keypoints", "unknown image_id"])
def test_eval_reports_the_bad_annotation_by_id(edit, tmp_path, capsys):
    """One bad annotation among good ones is skipped and named (as train does), never a traceback."""
    data = _coco_variant(tmp_path, "bad", edit)
    bad_id = json.loads(open(data).read())["annotations"][0]["id"]
    code = main(["eval", "--model", "movenet-lightning", "--data", data, "--quiet"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert str(bad_id) in out.out and "skipped" in out.out


def test_torch_is_imported_with_the_collector_paused_and_left_as_found():
    """``import featherpose`` and the family table's first import (torch's) turn the cyclic collector off and freeze
    what exists then (featherpose/collector.py); the collector is on again after, or stays off if the caller had
    turned it off, and objects made later are collected as usual."""
    code = ("import gc, sys; off = sys.argv[1] == 'off'\n"
            "gc.disable() if off else None\n"
            "import featherpose\n"
            "before = gc.get_freeze_count()\n"
            "featherpose.zoo.build_network('litepose', featherpose.zoo.TRAINABLE['litepose-xs'].config)\n"
            "frozen = gc.get_freeze_count()\n"
            "featherpose.zoo.build_network('litepose', featherpose.zoo.TRAINABLE['litepose-xs'].config)\n"
            "class Node: pass\n"
            "a, b = Node(), Node(); a.other, b.other = b, a; del a, b\n"
            "print(gc.isenabled(), frozen - before > 100_000, gc.get_freeze_count() == frozen, gc.collect() >= 2)")
    for state, expected in (("on", "True True True True"), ("off", "False True True True")):  # the 2nd build: no freeze
        run = subprocess.run([sys.executable, "-c", code, state], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == expected.split()
