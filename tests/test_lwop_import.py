"""Importing Intel's human-pose-estimation-0001 OpenVINO IR: the numpy IR reader, exact storage of the int8
weights, the mapping of all 58 convolutions (and its failures), the bundled file and ``featherpose convert lwop``."""
from __future__ import annotations

import shutil
from fractions import Fraction

import numpy as np
import pytest
import torch

import featherpose
from featherpose import cli
from featherpose.convert.lwop import (NUM_CONVS, import_lwop, lwop_tensors, module_path, quantised_weights)
from featherpose.convert.openvino_ir import float32_exact, read_ir
from featherpose.models.lwop import IR_INPUT_SCALE, LightweightOpenPose, LwopConfig, dequantise
from featherpose.weights_io import load_weights
from featherpose.zoo import model_info, weights_path

from conftest import SHARED

IR_DIR = SHARED / "weights" / "lwop"
IR_XML = IR_DIR / "human-pose-estimation-0001.xml"
LWOP_GOLDEN = SHARED / "golden" / "lwop"
if not IR_XML.is_file():
    pytest.skip(f"Intel's IR is missing under {IR_DIR}", allow_module_level=True)


@pytest.fixture(scope="module")
def graph():
    return read_ir(IR_XML)


@pytest.fixture(scope="module")
def imported():
    """(network, weight-file tensors, graph) straight from the IR."""
    return import_lwop(IR_XML)


def convs(graph):
    return graph.by_type("Convolution", "GroupConvolution")


def exact_weights(graph, conv) -> np.ndarray:
    """``(q - zero_point) * scale`` of an IR convolution, evaluated by the reader (float64, no rounding)."""
    return graph.value(graph.input_of(conv, 1))


# ------------------------------------------------------------------------------------------- the reader

def test_reader_sees_the_layers_the_weights_readme_lists(graph):
    types = [layer.type for layer in graph.layers.values()]
    assert graph.version == 10 and graph.name == "human-pose-estimation-0001"
    assert types.count("Convolution") == 44 and types.count("GroupConvolution") == 14
    assert types.count("FakeQuantize") == 63 and types.count("Result") == 2 and types.count("Elu") == 8
    assert {graph.input_of(r, 0).name.split("/")[0] for r in graph.by_type("Result")} == {
        "Mconv7_stage2_L1", "Mconv7_stage2_L2"}
    data = graph.by_name("data")
    assert data.type == "Parameter" and data.outputs[0].shape == (1, 3, 256, 456)
    mul = graph.by_name("data/scale/Fused_Mul_")
    assert graph.const(graph.input_of(mul, 1)).dtype == np.float16
    assert graph.value(graph.input_of(mul, 1)).item() == IR_INPUT_SCALE == 1028 / 2**18
    conv5 = graph.by_name("conv5_1/dw")
    assert conv5.ints("dilations") == (2, 2) and conv5.ints("pads_begin") == (2, 2)


def test_reader_refuses_what_is_not_an_ir(tmp_path):
    bad = tmp_path / "model.xml"
    bad.write_text("<graph/>")
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="not an OpenVINO IR"):
        read_ir(bad)
    bad.write_text("not xml")
    with pytest.raises(ValueError, match="not an XML file"):
        read_ir(bad)
    (tmp_path / "model.bin").unlink()
    with pytest.raises(FileNotFoundError, match="model.bin"):
        read_ir(bad)


def test_every_weight_is_the_int8_chain(graph):
    """All 58 weights are Const(i8) -> Convert -> Subtract(f16 zero point) -> Multiply(f16 scale) (depthwise ones
    reshaped to groups); zero points are 0 or +-2^-17, as the weights README says."""
    assert len(convs(graph)) == NUM_CONVS
    zero_points = set()
    for conv in convs(graph):
        w = quantised_weights(graph, conv)
        assert w["q"].dtype == np.int8 and w["scale"].dtype == w["zero_point"].dtype == np.float16
        assert (w["scale"] > 0).all()
        zero_points |= set(w["zero_point"].astype(np.float64).ravel())
    assert zero_points == {0.0, 2.0**-17, -(2.0**-17)}


# ------------------------------------------------------------------------------------ exact dequantisation

def test_reader_dequantises_exactly(graph):
    """float64 holds (q - zp) * s exactly (at most 36 significant bits): checked in exact rational arithmetic
    on two whole convolutions, one of them with non-zero zero points."""
    for name in ("conv1", "conv4_3_CPM/dw1"):
        conv = graph.by_name(name)
        w, got = quantised_weights(graph, conv), exact_weights(graph, conv).reshape(-1)
        q = w["q"].reshape(len(w["scale"]), -1)
        assert (w["zero_point"] != 0).any() or name == "conv1"
        want = [(Fraction(int(v)) - Fraction(float(z))) * Fraction(float(s))
                for row, s, z in zip(q, w["scale"].ravel(), w["zero_point"].ravel()) for v in row]
        assert [Fraction(float(v)) for v in got] == want, name


def test_float32_alone_would_lose_bits(graph):
    """Why the file stores int8: float32 cannot hold (q - zp) * s wherever zp != 0 (1,076,839 of 4,086,848
    weights); where zp == 0 it can (8 x 11 significant bits)."""
    lossy = total = 0
    for conv in convs(graph):
        w, exact = quantised_weights(graph, conv), exact_weights(graph, conv)
        zero = (w["zero_point"] == 0).reshape(-1)
        per_channel = exact.reshape(len(zero), -1)
        assert float32_exact(per_channel[zero])
        lossy += int((per_channel.astype(np.float32) != per_channel).sum())
        total += exact.size
    assert (lossy, total) == (1_076_839, 4_086_848)


def test_stored_tensors_are_the_ir_bits(graph, imported):
    """The weight file's tensors are the IR's int8, scale, zero point and bias values unchanged."""
    _, tensors, _ = imported
    for conv in convs(graph):
        path, w = module_path(conv.name), quantised_weights(graph, conv)
        np.testing.assert_array_equal(tensors[f"{path}.weight_int8"].numpy().ravel(), w["q"].ravel())
        assert tensors[f"{path}.weight_int8"].dtype == torch.int8
        for key in ("scale", "zero_point"):
            stored = tensors[f"{path}.weight_{key}"].numpy()
            assert np.array_equal(stored.astype(np.float16).astype(np.float32), stored)  # still f16 values
            np.testing.assert_array_equal(stored.ravel(), w[key].astype(np.float32).ravel())


def test_network_weights_are_the_exact_values_rounded_once(graph, imported):
    """Every float32 weight is the exact (q - zp) * s rounded once, bit for bit, and equals OpenVINO's float
    build (``(float32(q) - float32(zp)) * float32(scale)``, golden README)."""
    model, _, _ = imported
    state = model.state_dict()
    for conv in convs(graph):
        path, w = module_path(conv.name), quantised_weights(graph, conv)
        got = state[f"{path}.weight"].numpy().reshape(w["q"].shape)
        np.testing.assert_array_equal(got, exact_weights(graph, conv).reshape(w["q"].shape).astype(np.float32))
        oracle = (w["q"].astype(np.float32) - w["zero_point"].astype(np.float32)) * w["scale"].astype(np.float32)
        np.testing.assert_array_equal(got, oracle)


# -------------------------------------------------------------------------------------------- mapping

def test_module_path_names_every_conv_once(graph):
    paths = [module_path(c.name) for c in convs(graph)]
    assert len(set(paths)) == NUM_CONVS
    assert module_path("conv4_3_CPM/red/WithoutBiases") == "cpm.red.0"
    assert module_path("Mconv3_stage2_L1/3x3/2/WithoutBiases") == "refinement.0.blocks.2.trunk.1.0"
    assert module_path("Mconv7_stage2_L2/WithoutBiases") == "refinement.0.heatmaps.1.0"
    with pytest.raises(ValueError, match="no Lightweight OpenPose module"):
        module_path("conv6_1/dw")


def test_model_without_a_conv_the_ir_has_fails(graph):
    """A network lacking the IR's ``red`` conv cannot take the IR; the reference class fails on its ReLU align."""
    model = LightweightOpenPose()
    model.cpm.red = torch.nn.Identity()
    with pytest.raises(ValueError, match="conv4_3_CPM/red/WithoutBiases.*cpm.red.0"):
        lwop_tensors(graph, model)
    with pytest.raises(ValueError, match="conv4_3_CPM/al.*ELU.*ReLU"):
        lwop_tensors(graph, LightweightOpenPose(variant="reference"))


def test_model_with_a_conv_the_ir_lacks_fails(graph):
    with pytest.raises(ValueError, match="modules without weights.*refinement.1"):
        lwop_tensors(graph, LightweightOpenPose(num_refinement_stages=2))


@pytest.mark.parametrize("old, new, match", [
    ('name="conv4_3_CPM/inc/WithoutBiases"', 'name="conv4_3_CPM/dw3/1x1/WithoutBiases"', "no Lightweight OpenPose"),
    ('name="conv4_3_CPM/inc/WithoutBiases"', 'name="conv4_3_CPM/dw2/1x1/WithoutBiases"', "a second IR convolution"),
    ('name="relu4_3_CPM/al" type="Elu"', 'name="relu4_3_CPM/al" type="ReLU"', "conv4_3_CPM/al.*ReLU"),
    ('<data auto_pad="explicit" dilations="2,2" pads_begin="2,2" pads_end="2,2" strides="1,1"/>',
     '<data auto_pad="explicit" dilations="1,1" pads_begin="2,2" pads_end="2,2" strides="1,1"/>', "dilation"),
])
def test_edited_ir_fails_naming_the_conv(tmp_path, old, new, match):
    text = IR_XML.read_text()
    assert old in text
    xml = tmp_path / IR_XML.name
    xml.write_text(text.replace(old, new, 1))
    (tmp_path / IR_XML.with_suffix(".bin").name).symlink_to(IR_XML.with_suffix(".bin"))
    with pytest.raises(ValueError, match=f"{xml}: not Intel's human-pose-estimation-0001.*{match}"):
        import_lwop(xml)


# ------------------------------------------------------------------------------- the file and the CLI

def test_convert_cli_writes_the_bundled_file(tmp_path, capsys, imported):
    assert cli.main(["convert", "lwop", str(IR_XML), "--out", str(tmp_path)]) == 0
    written = tmp_path / "lightweight-openpose.safetensors"
    assert f"wrote {written}" in capsys.readouterr().out
    new, bundled = load_weights(written), load_weights(weights_path(model_info("lightweight-openpose")))
    assert new.meta == {**bundled.meta}
    assert new.state_dict.keys() == bundled.state_dict.keys() == imported[1].keys()
    for key, value in imported[1].items():
        assert torch.equal(new.state_dict[key], value.float()), key
        assert torch.equal(bundled.state_dict[key], value.float()), key
    assert "(equal to the FP16-INT8 entries of Open Model Zoo 2021.4 model.yml)" in bundled.meta["source"]
    assert bundled.meta["license"].startswith("Apache-2.0")


def test_convert_cli_fails_in_one_line(tmp_path, capsys):
    (tmp_path / "human-pose-estimation-0001.xml").write_text("<net version='9'/>")
    (tmp_path / "human-pose-estimation-0001.bin").write_bytes(b"")
    assert cli.main(["convert", "lwop", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an OpenVINO IR v10/v11" in err


def test_bundled_model_is_the_ir_taking_rgb(imported, one_thread):
    """The zoo's network has the imported float32 weights bit for bit and takes RGB: on the golden input flipped
    to RGB it gives exactly what the IR-layout (BGR) network gives on input.npy."""
    est = featherpose.load("lightweight-openpose", backend="torch", skeleton="openpose18")
    assert est.network.config == LwopConfig(rgb_input=True)
    assert est.input_hw == (256, 456) and est.skeleton.name == "openpose18"
    state = imported[0].state_dict()
    assert all(torch.equal(v, state[k]) for k, v in est.network.state_dict().items())
    x = np.load(LWOP_GOLDEN / "basketball1" / "input.npy")
    with torch.no_grad():
        bgr = imported[0](torch.from_numpy(x))
        rgb = est.network(torch.from_numpy(np.ascontiguousarray(x[:, ::-1])))
    assert all(torch.equal(bgr[k], rgb[k]) for k in ("heatmaps", "pafs"))


def test_dequantise_leaves_float_state_dicts_alone():
    state = LightweightOpenPose().state_dict()
    out = dequantise(state)
    assert out.keys() == state.keys() and all(out[k] is state[k] for k in state)


def test_family_rebuilds_any_size_and_float_files(tmp_path, imported):
    """The row runs the model at any multiple of 8 (default 256 x 456, the IR's shape) and reads weight files
    holding float32 weights (e.g. fine-tuned ones) as well as the int8-stored bundled one."""
    from featherpose.families import FAMILIES
    from featherpose.weights_io import save_weights

    row = FAMILIES["lwop"]
    bundled = load_weights(weights_path(model_info("lightweight-openpose")))
    net, codec = row.from_weights(bundled, (368, 496))
    assert codec.input_hw == (368, 496) and codec.head_shapes()["pafs"] == (38, 46, 62)
    assert row.from_weights(bundled)[1].input_hw == (256, 456)
    with pytest.raises(ValueError, match="multiples of 8"):
        row.from_weights(bundled, (250, 456))
    path = save_weights(tmp_path / "float.safetensors", net.state_dict(), name="float", architecture="lwop",
                        config=net.config.to_dict(), codec=codec)
    again, _ = row.from_weights(load_weights(path))
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in again.state_dict().items())
