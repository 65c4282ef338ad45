"""Bad input to the inference core: every decoder fuzzed with hostile heads, NaN / inf never reaching
JSON, the API's default score threshold, what ``load_image`` accepts and refuses (issue 9, items 5, 7,
12 and 13)."""
from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import shutil
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

import featherpose
import featherpose.codecs
import featherpose.estimator as estimator_mod
from featherpose import cli
from featherpose.codecs.base import Codec
from featherpose.codecs.heatmap import HeatmapCodec
from featherpose.codecs.associative_embedding import AECodec
from featherpose.codecs.openpose import PafCodec
from featherpose.codecs.movenet import MoveNetCodec
from featherpose.estimator import Estimator
from featherpose.image import ImageError, load_image, resize_with_pad
from featherpose.poses import Poses
from featherpose.skeletons import COCO17, LSP14
from featherpose.topdown import TopDown
from featherpose.zoo import build

from conftest import MEDIA

# Every codec class in featherpose.codecs -> instances covering its decoders. A codec added later fails
# test_every_codec_is_fuzzed until it is listed here, and then joins every fuzz test below.
CODEC_INSTANCES = {
    MoveNetCodec: lambda: {
        "movenet-single": MoveNetCodec((192, 192)),
        "movenet-multipose": MoveNetCodec((256, 320), multi=True),
        "movenet-multipose-no-box-heads": MoveNetCodec((128, 128), multi=True),
        "movenet-single-soft-sigmoid": MoveNetCodec((192, 192), activation="soft_sigmoid"),
    },
    HeatmapCodec: lambda: {"heatmap": HeatmapCodec((256, 192), 14)},
    PafCodec: lambda: {"paf-coco17": PafCodec((256, 456), 17)},  # the 18-point view decodes the same way
    AECodec: lambda: {"ae-crowdpose14": AECodec((128, 192), 14)},
}
CODECS = {name: codec for make in CODEC_INSTANCES.values() for name, codec in make().items()}
SKELETONS = {17: COCO17, 14: LSP14}
FILLS = ["random", "mixed", "zero", "nan", "+inf", "-inf", "1e30", "-1e30"]
FINITE_FILLS = {"random", "zero", "1e30", "-1e30"}


def _codec_classes() -> set[type]:
    found = set()
    for mod in pkgutil.iter_modules(featherpose.codecs.__path__):
        module = importlib.import_module(f"featherpose.codecs.{mod.name}")
        found |= {c for _, c in inspect.getmembers(module, inspect.isclass)
                  if c.__module__ == module.__name__ and callable(getattr(c, "decode", None)) and c is not Codec}
    return found


def _heads(name: str, fill: str) -> dict[str, np.ndarray]:
    codec = CODECS[name]
    shapes = codec.head_shapes(box_heads=False) if name.endswith("no-box-heads") else codec.head_shapes()
    rng = np.random.default_rng(9)
    out = {}
    for head, shape in shapes.items():
        if fill in ("random", "mixed"):
            a = rng.normal(0, 4, shape).astype(np.float32)
            if fill == "mixed":  # a few scattered NaN / +inf / -inf among ordinary values
                flat = a.reshape(-1)
                idx = rng.choice(flat.size, 12, replace=False)
                flat[idx] = np.array([np.nan, np.inf, -np.inf] * 4, np.float32)
            out[head] = a
        else:
            value = {"zero": 0.0, "nan": np.nan, "+inf": np.inf, "-inf": -np.inf, "1e30": 1e30, "-1e30": -1e30}[fill]
            out[head] = np.full(shape, value, np.float32)
    return out


def _estimator(name: str, monkeypatch, outputs: dict[str, np.ndarray]) -> Estimator:
    """A real Estimator around codec ``name`` whose backend returns ``outputs`` (what a broken network gives)."""
    monkeypatch.setattr(estimator_mod, "create_backend", lambda *a, **k: (lambda x: outputs))
    codec = CODECS[name]
    return Estimator(f"fuzz-{name}", None, codec, SKELETONS[codec.num_keypoints], "torch")


def _strict_json(text: str):
    def reject(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(text, parse_constant=reject)


def test_every_codec_is_fuzzed():
    assert _codec_classes() == set(CODEC_INSTANCES), "list every codec's decoders in CODEC_INSTANCES"


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("name", sorted(CODECS))
def test_decoders_survive_hostile_heads(name, fill, monkeypatch):
    """No decoder raises or warns on any heads; finite heads decode to finite keypoints and scores in
    the documented shapes, and non-finite ones are one FloatingPointError from the Estimator."""
    codec, heads = CODECS[name], _heads(name, fill)
    k = codec.num_keypoints
    slots = getattr(codec, "multipose", None)  # MoveNet MultiPose: a fixed number of slots; PAF grouping: any number
    n = slots.num_instances if slots is not None and codec.multi else (None if codec.multi else 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dec = codec.decode({h: v.copy() for h, v in heads.items()})
    n = len(dec.keypoints) if n is None else n
    assert dec.keypoints.shape == (n, k, 3) and dec.scores.shape == (n,)
    assert dec.boxes is None or dec.boxes.shape == (n, 4)
    est = _estimator(name, monkeypatch, heads)
    image = np.full((120, 90, 3), 100, np.uint8)
    if fill in FINITE_FILLS:
        assert np.isfinite(dec.keypoints).all() and np.isfinite(dec.scores).all()
        assert dec.boxes is None or np.isfinite(dec.boxes).all()
        raw = isinstance(codec, PafCodec)  # its keypoint scores are raw heatmap values, as the reference's
        assert (dec.keypoints[..., 2] >= 0).all() and (raw or (dec.keypoints[..., 2] <= 1).all())
        poses = est(image, min_score=0)
        assert len(poses) == n and np.isfinite(poses.keypoints).all() and np.isfinite(poses.boxes).all()
        _strict_json(poses.to_json())
    else:
        with pytest.raises(FloatingPointError, match=f"^fuzz-{name}: the network output NaN/inf"):
            est(image)


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("name", sorted(n for n, c in CODECS.items() if c.graph_decoder() is not None))
def test_in_graph_decoders_survive_hostile_heads(name, fill, monkeypatch):
    """The torch decoders exported into the ONNX graph: finite heads give finite output; any NaN/inf
    head turns the whole output NaN, which the Estimator reports (the decoding alone could hide it)."""
    codec, heads = CODECS[name], _heads(name, fill)
    with torch.inference_mode():
        out = codec.graph_decoder()({h: torch.from_numpy(v[None]) for h, v in heads.items()}).numpy()
    assert out.shape == (1, 1, codec.num_keypoints, 3)
    est = _estimator(name, monkeypatch, {"decoded": out[0]})
    if fill in FINITE_FILLS:
        assert np.isfinite(out).all()
        assert len(est(np.zeros((64, 64, 3), np.uint8), min_score=0)) == 1
    else:
        assert np.isnan(out).all()
        with pytest.raises(FloatingPointError, match="the network output NaN/inf"):
            est(np.zeros((64, 64, 3), np.uint8))


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_nan_weights_are_reported_not_zero_people(backend):
    name, network, codec, skeleton = build("movenet-lightning")
    with torch.no_grad():
        for p in network.parameters():
            p.fill_(float("nan"))
    est = Estimator(name, network, codec, skeleton, backend)
    with pytest.raises(FloatingPointError, match=r"^movenet-lightning: the network output NaN/inf .*corrupt weights"):
        est(MEDIA / "messi5.jpg")


def test_cli_nan_weight_file_is_one_line_exit_2(tmp_path, capsys):
    src = featherpose.zoo.weights_path(featherpose.model_info("movenet-lightning"))
    with safe_open(str(src), "np") as f:
        meta = f.metadata()
    tensors = {k: np.full_like(v, np.nan) if v.dtype.kind == "f" and not k.startswith("codec") else v
               for k, v in load_file(str(src)).items()}
    bad = tmp_path / "nan.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    image = tmp_path / "messi5.jpg"
    shutil.copy(MEDIA / "messi5.jpg", image)
    rc = cli.main(["predict", str(image), "--model", str(bad), "--backend", "torch",
                   "--json", str(tmp_path / "out.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "NaN" in err and "Traceback" not in err, err
    assert not (tmp_path / "out.json").exists()
    shutil.copy(MEDIA / "basketball1.png", tmp_path)
    # a folder: the weights are broken, not the images: the run stops at the first, with the same one line
    rc = cli.main(["predict", str(tmp_path), "--model", str(bad), "--backend", "torch", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "the network output NaN/inf" in err and "skipped" not in err


def test_poses_exports_are_strict_json_even_with_nan_and_inf():
    kp = np.random.default_rng(0).uniform(0, 100, (2, 17, 3)).astype(np.float32)
    kp[0, 3] = [np.nan, 5, 0.9]
    kp[0, 4] = [np.inf, -np.inf, 0.8]
    kp[1, 5, 2] = np.nan
    poses = Poses.create(kp, scores=[np.nan, np.inf], boxes=[[0, 0, np.nan, 9], [1, 2, 3, 4]], image_size=(100, 100))
    doc = _strict_json(poses.to_json(file_name="x.jpg"))
    person = doc["people"][0]
    assert person["score"] is None and person["box"][2] is None
    assert person["keypoints"]["left_ear"][0] is None and person["keypoints"]["left_ear"][1] == 5.0
    assert "left_shoulder" not in doc["people"][1]["keypoints"]  # NaN score: below any threshold
    _strict_json(json.dumps(poses.summary()))
    coco = _strict_json(json.dumps(poses.to_coco(7)))
    assert coco[0]["keypoints"][9:15] == [0, 0, 0, 0, 0, 0] and coco[0]["score"] == 0 and coco[1]["score"] == 0
    assert coco[0]["keypoints"][15:18] == [round(float(v), 3) for v in kp[0, 5]]  # finite keypoints are kept


def test_draw_skips_nan_and_clamps_far_keypoints():
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, :2] = [50, 40]
    kp[0, :, 2] = 0.9
    kp[0, 0, :2] = np.nan
    kp[0, 1, :2] = [1e30, -1e30]
    kp[0, 9] = [20, 70, 0.9]  # left wrist, away from the rest
    poses = Poses.create(kp, scores=[0.9], boxes=[[np.nan, 0, 10, 10]], image_size=(100, 100))
    drawn = poses.draw(np.zeros((100, 100, 3), np.uint8), boxes=True)
    assert drawn[70, 20].any() and drawn[40, 50].any()


def test_poses_create_wrong_shapes_is_one_clear_line():
    with pytest.raises(ValueError, match=r"keypoints must be \(N, 17, 3\) .* got shape \(2, 16, 3\)"):
        Poses.create(np.zeros((2, 16, 3)))
    with pytest.raises(ValueError, match="2 people but 3 scores"):
        Poses.create(np.zeros((2, 17, 3)), scores=[1, 2, 3])
    with pytest.raises(ValueError, match=r"need boxes of shape \(2, 4\)"):
        Poses.create(np.zeros((2, 17, 3)), boxes=np.zeros((3, 4)))
    assert len(Poses.create(np.zeros(2 * 17 * 3))) == 2 and len(Poses.create(np.zeros((17, 3)))) == 1


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_all_nan_or_inf_image_is_an_error_not_black(value):
    with pytest.raises(ImageError, match="every pixel is NaN or infinite"):
        load_image(np.full((64, 48, 3), value, np.float32))
    partly = np.full((4, 4, 3), 0.5, np.float32)
    partly[0, 0] = np.nan  # a few bad pixels: 0, the rest scaled as usual (0..1 -> 0..255)
    assert load_image(partly)[1, 1, 0] == 128 and load_image(partly)[0, 0, 0] == 0


@pytest.fixture(scope="module")
def lightning():
    return featherpose.load("movenet-lightning", backend="torch")


@pytest.mark.parametrize("model,raw", [("movenet-lightning", 1), ("movenet-thunder", 1), ("movenet-multipose", 6)])
def test_api_filters_like_the_cli(model, raw):
    """A blank image has nobody by default, as in the CLI; ``min_score=0`` is the raw output."""
    est = featherpose.load(model, backend="torch")
    blank = np.zeros((240, 320, 3), np.uint8)
    assert estimator_mod.DEFAULT_MIN_SCORE == 0.2
    assert len(est(blank)) == 0
    everything = est(blank, min_score=0)
    assert len(everything) == raw and everything.scores.max() < estimator_mod.DEFAULT_MIN_SCORE


def test_api_default_keeps_real_people_and_checks_min_score(lightning):
    poses = lightning(MEDIA / "messi5.jpg")
    assert len(poses) == 1 and poses.scores[0] >= estimator_mod.DEFAULT_MIN_SCORE
    assert len(lightning(MEDIA / "messi5.jpg", min_score=0.99)) == 0
    for bad in (-0.1, 1.5, float("nan"), "high"):
        with pytest.raises(ValueError, match="min_score must be a number from 0 to 1"):
            lightning(MEDIA / "messi5.jpg", min_score=bad)


def test_topdown_filters_by_default_and_gives_raw_output_on_request(lightning):
    boxes = {"messi5.jpg": np.array([[180, 40, 200, 300, 1.0], [0, 0, 40, 40, 0.05]], np.float32)}
    td = TopDown(lightning, boxes=boxes)
    everyone = td(MEDIA / "messi5.jpg", min_score=0)
    assert len(everyone) == 2 and everyone.scores[1] < estimator_mod.DEFAULT_MIN_SCORE <= everyone.scores[0]
    assert len(td(MEDIA / "messi5.jpg")) == 1
    wild = TopDown(lightning, boxes={"messi5.jpg": np.array([[0, 0, 1e6, 1e6, 1.0]], np.float32)})
    with pytest.raises(ValueError, match="needs a 1250000x1250000 crop, over the 250-megapixel limit"):
        wild(MEDIA / "messi5.jpg")


def test_pil_images_are_accepted(lightning):
    from PIL import Image

    with Image.open(MEDIA / "messi5.jpg") as im:
        np.testing.assert_array_equal(load_image(im), load_image(MEDIA / "messi5.jpg"))
        np.testing.assert_allclose(lightning(im).keypoints, lightning(MEDIA / "messi5.jpg").keypoints)
        assert load_image(im.convert("P")).shape == (342, 548, 3)  # palette images are expanded to RGB
        assert load_image(im.convert("LA")).shape == (342, 548, 3)


@pytest.mark.parametrize("bad,what", [(None, "NoneType"), ([[0, 1], [2, 3]], "list"), (b"\x89PNG", "bytes"),
                                      (3, "int")])
def test_non_images_are_one_line_type_errors(lightning, bad, what):
    with pytest.raises(TypeError, match=f"expected an image file path .*a PIL image, got {what}") as info:
        lightning(bad)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)  # the CLI's one line too


def test_huge_array_is_refused_before_any_copy():
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (30000, 30000, 3))  # 2.7 GB if it were materialised
    with pytest.raises(ImageError, match="30000x30000 is 900 megapixels, over the 250-megapixel limit"):
        load_image(huge)
    with pytest.raises(ImageError, match="dtype complex"):
        load_image(np.zeros((8, 8, 3), np.complex64))


def test_decompression_bomb_png_is_refused_before_decoding(tmp_path, lightning):
    """A 1 MB PNG of 16400 x 16400 pixels (269 megapixels) would decode to over 1 GB of arrays."""
    side = 16400

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate, row = zlib.compressobj(1), bytes(side + 1)
    data = b"".join([deflate.compress(row) for _ in range(side)] + [deflate.flush()])
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    assert path.stat().st_size < 2e6
    with pytest.raises(ImageError, match=r"bomb.png: 16400x16400 is 269 megapixels, over the 250-megapixel limit"):
        lightning(path)


@pytest.mark.parametrize("hw", [(1, 1), (1, 700), (700, 1), (2, 3)])
def test_tiny_and_thin_images_give_finite_poses(lightning, hw):
    image = np.full((*hw, 3), 90, np.uint8)
    x, box = resize_with_pad(image, (192, 192))
    assert x.shape == (192, 192, 3) and min(box.resized_hw) >= 1
    poses = lightning(image, min_score=0)
    assert len(poses) == 1 and np.isfinite(poses.keypoints).all() and poses.image_size == hw


@pytest.mark.parametrize("threads", [-1, 0, 2.5, "4", True])
def test_bad_thread_counts_are_one_line(threads):
    with pytest.raises(ValueError, match=f"threads must be a whole number >= 1 .*got {threads!r}"):
        featherpose.load("movenet-lightning", backend="torch", threads=threads)


@pytest.mark.parametrize("content,problem", [
    ([5], "entry 0 needs a file_name and a bbox"),
    ([{"file_name": "a.jpg", "bbox": [1, 2, "x", 4]}], "entry 0 needs a file_name and a bbox"),
    ([{"file_name": "a.jpg", "bbox": [1, 2, 3, 4], "score": "high"}], "entry 0 needs .*score: optional, a number"),
    ([{"file_name": 3, "bbox": [1, 2, 3, 4]}], "entry 0 needs a file_name"),
    ({"images": [{"id": 1}], "annotations": []}, r"images\[0\] needs an id and a file_name"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [7]}, "entry 0 needs a file_name"),
    ({"images": 3, "annotations": []}, "expected a COCO json"),
])
def test_bad_boxes_files_are_one_line(tmp_path, content, problem):
    from featherpose.topdown import load_boxes

    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=f"boxes.json: {problem}"):
        load_boxes(path)


def test_draw_takes_a_path_and_names_what_it_cannot_draw_on():
    poses = Poses.create(np.zeros((1, 17, 3)), image_size=(342, 548))
    assert poses.draw(MEDIA / "messi5.jpg").shape == (342, 548, 3)
    with pytest.raises(TypeError, match="got NoneType"):
        poses.draw(None)


def test_bool_mask_is_black_and_white():
    assert load_image(np.array([[True, False]]))[0, :, 0].tolist() == [255, 0]
