"""Issue 9 review, weight files / importer / image headers: every message fits the user's case.

- A weight file's own input size over the cap is not something --input-size can fix on a fixed-size model.
- HourglassConfig names the one field that is wrong; the TFJS reader names the missing field, not a KeyError.
- A JPEG with 0xFF fill bytes before its markers still has its size checked before it is decoded.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from featherpose import zoo
from featherpose.cli import main
from featherpose.convert.tfjs import read_graph_model
from featherpose.image import ImageError, load_image
from featherpose.models.hourglass import HourglassConfig, StackedHourglass
from featherpose.weights_io import load_weights, save_weights

from conftest import MEDIA


def resave(name: str, out, **config):
    """A bundled weight file re-saved with some config fields replaced."""
    w = load_weights(zoo.weights_path(zoo.model_info(name)))
    return save_weights(out, w.state_dict, name=w.meta["name"], architecture="movenet",
                        config=dict(w.config, **config), codec=w.codec, codec_arrays=w.codec_arrays)


# ------------------------------------------------------------------ finding 2: the input-size cap and its message


def test_fixed_size_weight_file_over_the_cap_is_not_told_to_use_input_size(tmp_path, capsys):
    path = resave("movenet-lightning", tmp_path / "big.safetensors", input_size=2048)
    with pytest.raises(ValueError) as info:
        zoo.build(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: config input_size 2048x2048 is too large: at most {zoo.MAX_INPUT_SIZE} per side")
    assert "fixed at that size (--input-size cannot change it)" in msg and "re-train or re-convert" in msg
    assert "use --input-size" not in msg
    assert main(["predict", str(MEDIA / "messi5.jpg"), "--model", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"featherpose: error: {msg}"]


def test_fixed_size_hourglass_file_over_the_cap_says_it_is_fixed(tmp_path):
    config = HourglassConfig(stacks=1, channels=8, num_keypoints=17, input_size=64, depth=2)
    path = tmp_path / "hg.safetensors"
    save_weights(path, StackedHourglass(config).state_dict(), name="hg", architecture="hourglass",
                 config=dict(config.to_dict(), input_size=2048), codec={})
    with pytest.raises(ValueError, match=r"hg.safetensors: config input_size 2048x2048 is too large.*"
                                         r"fixed at that size \(--input-size cannot change it\)"):
        zoo.build(path)


def test_multi_person_file_over_the_cap_runs_at_a_size_the_user_passes(tmp_path):
    path = resave("movenet-multipose", tmp_path / "mp.safetensors", input_size=2048)
    with pytest.raises(ValueError, match=r"mp.safetensors: config input_size 2048x2048 is too large.*"
                                         r"pass a smaller input size \(--input-size 1024 or less\)"):
        zoo.build(path)
    _, _, codec, _ = zoo.build(path, 256)  # what the message suggests works
    assert codec.input_hw == (256, 256)


def test_the_cap_applies_to_an_input_size_the_user_passes():
    over = zoo.MAX_INPUT_SIZE + 32
    with pytest.raises(ValueError, match=rf"^input size {over}x{over} is too large: at most {zoo.MAX_INPUT_SIZE} "
                                         rf"per side .*; use --input-size {zoo.MAX_INPUT_SIZE} or less$"):
        zoo.build("movenet-multipose", over)
    for bad in (256.0, "256", (256,)):  # not a traceback from tuple(256.0)
        with pytest.raises(ValueError, match=r"input size must be an integer or two \(height, width\)"):
            zoo.build("movenet-multipose", bad)


# ------------------------------------------------------------------ finding 11: messages name the field


@pytest.mark.parametrize("fields, message", [
    ({"stacks": "4"}, "hourglass stacks is '4'; it must be a whole number"),
    ({"channels": 7}, "hourglass channels is 7; it needs an even 2 <= channels <= 8192"),
    ({"depth": 9}, "hourglass depth is 9; it needs 1 <= depth <= 8"),
    ({"num_keypoints": 0}, "hourglass num_keypoints is 0; it needs num_keypoints >= 1"),
    ({"input_size": 96}, "hourglass input_size is 96; it must be a multiple of 64 (4 x 2^depth), e.g. 128"),
])
def test_hourglass_config_names_the_field_not_the_whole_dataclass(fields, message):
    with pytest.raises(ValueError) as info:
        HourglassConfig(**fields)
    assert str(info.value) == message


def test_hourglass_weight_file_with_a_bad_field_names_it(tmp_path):
    config = HourglassConfig(stacks=1, channels=8, num_keypoints=17, input_size=64, depth=2)
    path = tmp_path / "hg.safetensors"
    save_weights(path, StackedHourglass(config).state_dict(), name="hg", architecture="hourglass",
                 config=dict(config.to_dict(), stacks=10 ** 6), codec={})
    with pytest.raises(ValueError) as info:
        zoo.build(path)
    assert "(hourglass stacks is 1000000; it needs 1 <= stacks <= 64)" in str(info.value)
    assert "HourglassConfig(" not in str(info.value)


def _tfjs_without(folder, source_json, drop_weight_field: str):
    """A copy of a TFJS graph (and its shards) whose first weight entry lacks one field."""
    folder.mkdir()
    spec = json.loads(source_json.read_text())
    for group in spec["weightsManifest"]:
        for shard in group["paths"]:
            shutil.copy(source_json.parent / shard, folder / shard)
    del spec["weightsManifest"][0]["weights"][0][drop_weight_field]
    (folder / source_json.name).write_text(json.dumps(spec))
    return folder / source_json.name


def test_tfjs_missing_field_is_named_without_the_exception_type(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "w.bin").write_bytes(np.zeros(8, np.float32).tobytes())
    spec = {"format": "graph-model", "modelTopology": {"node": []},
            "weightsManifest": [{"paths": ["w.bin"], "weights": [{"name": "k", "shape": [8]}]}]}
    (folder / "model.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError) as info:
        read_graph_model(folder / "model.json")
    msg = str(info.value)
    assert msg == (f"{folder / 'model.json'}: malformed TFJS graph model (field 'dtype' is missing); the file or "
                   "its weight shards are damaged, fetch them again")


def test_tfjs_google_graph_missing_a_field_names_it(tmp_path, google_graphs):
    path = _tfjs_without(tmp_path / "g", google_graphs / "movenet-lightning.json", "shape")
    with pytest.raises(ValueError, match=r"malformed TFJS graph model \(field 'shape' is missing\)") as info:
        read_graph_model(path)
    assert "KeyError" not in str(info.value)


# ------------------------------------------------------------------ finding 12: JPEG fill bytes


def _with_fill_bytes(jpeg: bytes, size_wh: tuple[int, int] | None = None) -> bytes:
    """``jpeg`` with 0xFF fill bytes before its first marker and its frame header (optionally with another size)."""
    sof = jpeg.index(b"\xff\xc0")  # messi5.jpg is baseline
    frame = bytearray(jpeg[sof:])
    if size_wh is not None:
        frame[5:9] = size_wh[1].to_bytes(2, "big") + size_wh[0].to_bytes(2, "big")
    return jpeg[:2] + b"\xff" * 5 + jpeg[2:sof] + b"\xff" * 3 + bytes(frame)


def test_jpeg_with_fill_bytes_reads_the_same(tmp_path):
    original = MEDIA / "messi5.jpg"
    path = tmp_path / "fill.jpg"
    path.write_bytes(_with_fill_bytes(original.read_bytes()))
    assert np.array_equal(load_image(path), load_image(original))


def test_jpeg_with_fill_bytes_is_size_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "huge.jpg"
    path.write_bytes(_with_fill_bytes((MEDIA / "messi5.jpg").read_bytes(), size_wh=(20000, 15000)))

    def no_decode(*args):
        raise AssertionError("decoded an image whose header says 300 megapixels")

    monkeypatch.setattr("featherpose.image.cv2.imdecode", no_decode)
    with pytest.raises(ImageError, match=r"huge.jpg: 20000x15000 is 300 megapixels, over the 250-megapixel limit"):
        load_image(path)
