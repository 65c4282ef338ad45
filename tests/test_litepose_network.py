"""Lite Pose's network and preprocessing: configurations (upstream's mobile_configs format, the paper's named
models), shapes at any input multiple of 16, complexity against the shared README's count, and the exact network
input of every golden sample (upstream's warpAffine geometry, normalisation bit for bit)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from featherpose.image import AffineLetterbox, litepose_geometry, litepose_preprocess
from featherpose.image import load_image
from featherpose.models.litepose import (ARCHITECTURES, PAPER_GMACS, FusionLevel, LitePose, LitePoseConfig,
                                         config_from_mobile_config, macs, make_divisible, named_config)

from conftest import SHARED

WEIGHTS = SHARED / "weights" / "litepose"
GOLDEN = SHARED / "golden" / "litepose"
if not (GOLDEN / "manifest.json").is_file():
    pytest.skip(f"the Lite Pose golden data is missing under {GOLDEN}", allow_module_level=True)
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())["samples"]
#: Conv + transposed-conv multiply-accumulates the weights README counts (G), at each model's square input size.
README_GMACS = {"litepose-xs": 0.88, "litepose-s": 3.61, "litepose-m": 5.26, "litepose-l": 9.96}


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


# ----------------------------------------------------------------------------------------- configurations

def test_search_m_json_is_the_named_auto_m_and_the_default():
    arch = json.loads((WEIGHTS / "search-M.json").read_text())
    config = config_from_mobile_config(arch, num_keypoints=14)
    assert config == named_config("litepose-m") == LitePoseConfig()
    assert config.widths() == [16, 24, 48, 72, 120] and config.deconv_widths == [64, 40, 32]
    assert [len(s["blocks"]) for s in config.stages] == [6, 8, 10, 10]
    assert all(b == [6, 7] for s in config.stages for b in s["blocks"]) and config.input_size == 448


def test_config_round_trips_through_json_and_rejects_malformed():
    config = named_config("litepose-l", num_keypoints=17)
    assert LitePoseConfig(**json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="4 stages"):
        LitePoseConfig(stages=config.stages[:3])
    with pytest.raises(ValueError, match="odd kernel"):
        LitePoseConfig(stages=[dict(s, blocks=[[6, 4]]) for s in config.stages])
    with pytest.raises(ValueError, match="strides must be 2, 2, 2, 1"):
        LitePoseConfig(stages=[dict(s, stride=2) for s in config.stages])
    with pytest.raises(ValueError, match="mobile_configs"):
        config_from_mobile_config({"input_channel": 16})
    with pytest.raises(ValueError, match="unknown Lite Pose architecture 'litepose-xl'"):
        named_config("litepose-xl")


def test_make_divisible_is_upstreams_rounding():
    assert [make_divisible(v) for v in (16 * 6, 24 * 6, 20, 12, 4, 35.9)] == [96, 144, 24, 16, 8, 40]  # 32 < 0.9 * 35.9


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_named_models_complexity_matches_the_readme_count(name):
    """MACs of conv and transposed conv at the config's square input size equal the shared README's count, and sit
    at 0.64-0.74 of upstream's published figures (the README's 'about 1.4x' counting gap)."""
    config = named_config(name)
    model = LitePose(config)
    g = macs(model, (config.input_size, config.input_size)) / 1e9
    assert g == pytest.approx(README_GMACS[name], abs=0.005)
    assert 0.64 <= g / PAPER_GMACS[name] <= 0.74


def test_auto_m_parameters_and_macs_at_upstreams_vtest_size():
    model = LitePose()
    assert sum(p.numel() for p in model.parameters()) == 3_533_808  # the weights README's learnable count
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 112
    assert macs(model, (448, 640)) / 1e9 == pytest.approx(7.52, abs=0.005)


@pytest.mark.parametrize("hw", [(64, 96), (96, 64), (48, 160)])
def test_heads_follow_any_input_multiple_of_16(hw):
    model = LitePose(named_config("litepose-xs", num_keypoints=17)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *hw) * 255)
    h, w = hw
    assert list(out) == ["heatmaps_tags", "heatmaps"]
    assert out["heatmaps_tags"].shape == (2, 34, h // 4, w // 4)
    assert out["heatmaps"].shape == (2, 17, h // 2, w // 2)


def test_input_not_a_multiple_of_16_is_refused():
    with pytest.raises(ValueError, match="multiples of 16"):
        LitePose(named_config("litepose-xs"))(torch.zeros(1, 3, 64, 72))


def test_residuals_only_where_stride_1_and_widths_match():
    model = LitePose()
    for s, stage in enumerate(model.stages):
        flags = [b.residual for b in stage]
        assert flags == [False] + [True] * (len(stage) - 1), s  # first blocks: stride 2, or 72 -> 120 (stage 4)


@pytest.mark.parametrize("blocks", [0, 1, 6, 7, 100])  # search-XS's stage 1 has 6 blocks; 100: past the last
def test_split_in_two_is_the_network(blocks):
    """precision bf16 runs Lite Pose's front in float32 and the back in bf16 (families/litepose.py): the two parts
    chained are the network, in torch and as the two ONNX graphs (dynamic sizes, onnxruntime)."""
    import onnxruntime as ort

    from featherpose.runtime.export import export_onnx_split

    torch.manual_seed(0)
    model = LitePose(named_config("litepose-xs")).eval()
    front, back = model.split(blocks)
    image = torch.randint(0, 256, (1, 3, 64, 96)).float()
    with torch.no_grad():
        want = model(image)
        parts = front(image)
        got = back(*parts.values())
    assert len(parts) == 2 + sum(blocks >= n for n in np.cumsum([len(s) for s in model.stages]))
    for head in want:
        assert torch.equal(got[head], want[head])
    front_onnx, back_onnx = export_onnx_split(front, back, (64, 64), dynamic_size=True)  # traced square, run 64x96
    f, b = ort.InferenceSession(front_onnx), ort.InferenceSession(back_onnx)
    parts = f.run(None, {"image": image.permute(0, 2, 3, 1).int().numpy()})
    used = {i.name for i in b.get_inputs()}  # the export drops a part the back does not use (blocks 100)
    feed = {f"part_{i}": p for i, p in enumerate(parts) if f"part_{i}" in used}
    outs = dict(zip([o.name for o in b.get_outputs()], b.run(None, feed)))
    for head in want:
        np.testing.assert_allclose(outs[head], want[head].numpy(), atol=1e-4)


@pytest.mark.parametrize("hw", [(1, 1), (3, 5), (7, 4)])
def test_fusion_level_as_onnxruntime_runs_it_is_the_transposed_convs(hw):
    """FusionLevel.phase_forward (2x2 convs for the four output phases, the batch norm folded, one interleave) is
    forward's ``ReLU(BN(deconv(deep) + deconv(skip)))`` in eval mode, at any input size."""
    torch.manual_seed(0)
    level = FusionLevel(24, 16, 8)
    with torch.no_grad():
        level.bn.running_mean.uniform_(-1, 1)
        level.bn.running_var.uniform_(0.5, 2)
        level.bn.weight.uniform_(0.5, 2)
        level.bn.bias.uniform_(-1, 1)
    level.eval()
    deep, skip = torch.randn(2, 24, *hw), torch.randn(2, 16, *hw)
    with torch.no_grad():
        want = level(deep, skip)
        got = level.phase_forward(deep, skip)
    assert got.shape == want.shape == (2, 8, 2 * hw[0], 2 * hw[1])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_only_the_onnxruntime_export_writes_the_phase_form():
    """The onnxruntime export has no 4x4 ConvTranspose (its kernel for them is slow), only the 2x2 one-hot
    interleaves; OpenVINO's export, which runs the transposed convs faster than that form, keeps them. Both give
    the network's heads."""
    import onnx
    import onnxruntime as ort

    from featherpose.runtime.export import export_onnx

    torch.manual_seed(0)
    model = LitePose(named_config("litepose-xs")).eval()
    image = torch.randint(0, 256, (1, 3, 64, 96))
    with torch.no_grad():
        want = model(image.float())
    kernels = {}
    for runtime in ("onnxruntime", "openvino"):
        data = export_onnx(model, (64, 64), dynamic_size=True, runtime=runtime)
        kernels[runtime] = sorted(next(a.ints[0] for a in n.attribute if a.name == "kernel_shape")
                                  for n in onnx.load_from_string(data).graph.node if n.op_type == "ConvTranspose")
        outs = ort.InferenceSession(data).run(None, {"image": image.permute(0, 2, 3, 1).int().numpy()})
        for name, out in zip(want, outs):
            np.testing.assert_allclose(out, want[name].numpy(), atol=1e-4)
    assert kernels == {"onnxruntime": [2, 2, 2], "openvino": [4] * 6}


# ------------------------------------------------------------------------------------------ preprocessing

@pytest.fixture(scope="module")
def network():
    return LitePose().eval()


@pytest.mark.parametrize("sample", list(MANIFEST))
def test_preprocessing_reproduces_the_golden_input_exactly(network, sample):
    """Decoded RGB, upstream's geometry (both affine matrices to the last bit), the warped uint8 image and the
    normalised float32 input: sha256-equal to the manifest's on every sample, and array-equal to input.npy where
    it is stored."""
    entry = MANIFEST[sample]
    image = load_image(GOLDEN / entry["image"])
    assert sha256(image) == entry["decoded_rgb_sha256"]
    geo = litepose_geometry(image.shape[:2], 448)
    assert list(geo.input_hw[::-1]) == entry["geometry"]["resized_wh"]
    assert list(geo.center) == entry["geometry"]["center"] and list(geo.scale) == entry["geometry"]["scale"]
    assert np.array_equal(geo.to_input, entry["geometry"]["affine_image_to_input"])
    assert np.array_equal(geo.to_image, entry["geometry"]["affine_input_to_image"])
    x, box = litepose_preprocess(image, (448, 448))
    assert x.dtype == np.int32 and x.shape == (*geo.input_hw, 3)
    assert sha256(x.astype(np.uint8)) == entry["warped_uint8"]["sha256"]
    inp = network.normalise(torch.from_numpy(x).permute(2, 0, 1)[None]).numpy()
    assert sha256(inp) == entry["input"]["sha256"]
    if entry["full_tensors"]:
        assert np.array_equal(inp, np.load(GOLDEN / sample / "input.npy"))
    assert isinstance(box, AffineLetterbox) and box.image_hw == image.shape[:2]


def test_letterbox_maps_like_upstreams_final_preds():
    """Input points go back through upstream's inverse matrix in float64 (grouped_refined -> poses, x and y)."""
    sample = "messi5"
    entry = MANIFEST[sample]
    image = load_image(GOLDEN / entry["image"])
    _, box = litepose_preprocess(image, (448, 448))
    refined, poses = (np.load(GOLDEN / sample / f) for f in ("grouped_refined.npy", "poses.npy"))
    assert len(poses) > 0
    assert np.array_equal(box.to_image(refined[..., :2]), poses[..., :2])
    back = box.to_input(box.to_image(refined[..., :2]))
    assert np.abs(back - refined[..., :2]).max() < 1e-3
    assert np.allclose(box.matrix[:2], entry["geometry"]["affine_image_to_input"])


def test_portrait_image_gets_the_short_side_as_width():
    g = litepose_geometry((600, 300), 448)
    assert g.input_hw == (896, 448)  # 448 * 600 / 300 = 896, already a multiple of 64
    g = litepose_geometry((500, 320), 256)
    assert g.input_hw == (448, 256)  # 400 rounded up to 448
    x, box = litepose_preprocess(np.full((500, 320, 3), 200, np.uint8), (256, 256))
    assert x.shape == (448, 256, 3) and x[224, 128, 0] == 200 and x[0, 128, 0] == 0  # black bands top and bottom


# ------------------------------------------------------------------------------------------ the family row

def test_row_ideal_heads_decode_back_to_the_encoded_people():
    """Three random people (one keypoint unlabelled) -> the row's training codec encodes them -> its ideal heads
    (targets + nearest-person tags) -> decode finds the same three people, every labelled keypoint within 1.5 px
    (the 1/2-resolution cell and the quarter-pixel rule)."""
    from featherpose.families import FAMILIES, family_of
    from featherpose.families.litepose import LitePoseLossSection, LitePoseModelSection

    row = FAMILIES["litepose"]
    codec = row.training_codec(LitePoseModelSection(input_size=256), LitePoseLossSection(), 14)
    assert family_of(codec) is row and row.network_config(LitePoseModelSection(), 14) == LitePoseConfig()
    rng = np.random.default_rng(0)
    kp = np.zeros((3, 14, 3))
    kp[..., :2] = rng.uniform(10, 246, (3, 14, 2))
    kp[..., 2] = 2
    kp[1, 3, 2] = 0
    decoded = codec.decode(row.ideal_heads(codec, codec.encode(kp)))
    assert len(decoded.keypoints) == 3
    for person in kp:
        labelled = person[:, 2] > 0
        err = np.abs(decoded.keypoints[:, :, :2] - person[None, :, :2]).max(-1)[:, labelled].max(1)  # per person
        assert err.min() <= 1.5
