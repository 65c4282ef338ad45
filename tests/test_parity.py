"""Imported MoveNet reproduces Google's TensorFlow outputs on every golden sample."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import featherpose
from featherpose.image import letterbox_frame, letterbox_tables, load_image, resize_with_pad
from featherpose.runtime.graphs import GraphLetterbox

from conftest import GOLDEN, SAMPLES, SHARED, VARIANT_SIZE, golden_image_path, golden_input

HEAD_FILES = {"heatmap": "kpt_heatmap", "center": "center", "regress": "kpt_regress", "offset": "kpt_offset"}


@pytest.fixture(scope="module")
def estimators():
    return {v: featherpose.load(f"movenet-{v}", backend="torch") for v in VARIANT_SIZE}


@pytest.fixture(scope="module")
def onnx_estimators():
    """onnxruntime runs the single-pose decoder inside the graph, as Google's graph does."""
    return {v: featherpose.load(f"movenet-{v}", backend="onnxruntime") for v in VARIANT_SIZE}


def graph_output(est, x: np.ndarray) -> np.ndarray:
    """Network + decoder on a saved int32 input, in the graph's output layout."""
    return est.codec.decode_graph_layout(est.infer(x))


@pytest.mark.parametrize("sample", SAMPLES)
@pytest.mark.parametrize("variant", list(VARIANT_SIZE))
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_outputs_match_golden(estimators, onnx_estimators, backend, variant, sample):
    est = (estimators if backend == "torch" else onnx_estimators)[variant]
    out = graph_output(est, golden_input(sample, VARIANT_SIZE[variant]))
    ref = np.load(GOLDEN / sample / f"{variant}_output.npy")
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4


@pytest.mark.parametrize("sample", SAMPLES)
def test_lightning_heads_match_golden(estimators, sample):
    net = estimators["lightning"].network
    x = torch.from_numpy(golden_input(sample, 192)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        heads = net(x)
        feats = net.features(x)
    for name, file in HEAD_FILES.items():
        ref = np.load(GOLDEN / sample / f"lightning_{file}.npy")
        got = heads[name].permute(0, 2, 3, 1).numpy()
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max(), name
    fpn = GOLDEN / sample / "lightning_fpn_features.npy"
    if fpn.exists():  # saved for the still photos only
        ref = np.load(fpn)
        assert np.abs(feats.permute(0, 2, 3, 1).numpy() - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("sample", SAMPLES)
def test_preprocessing_reproduces_saved_inputs(sample):
    image = load_image(golden_image_path(sample))
    for size in (192, 256):
        x, _ = resize_with_pad(image, (size, size))
        np.testing.assert_array_equal(x[None], golden_input(sample, size))


def graph_letterbox(image: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """The letterbox as the backends' graph computes it (runtime/graphs.py's GraphLetterbox, in torch)."""
    frame, _ = letterbox_frame(image, input_hw)
    with torch.no_grad():
        return GraphLetterbox()(torch.from_numpy(frame.frame), *(torch.from_numpy(t.copy()) for t in frame.tables)).numpy()


@pytest.mark.parametrize("sample", SAMPLES)
def test_graph_letterbox_reproduces_saved_inputs(sample):
    """The letterbox as a graph (what OpenVINO compiles for the MoveNets) gives TensorFlow's saved inputs too."""
    image = load_image(golden_image_path(sample))
    for size in (192, 256):
        np.testing.assert_array_equal(graph_letterbox(image, (size, size)), golden_input(sample, size))


@pytest.mark.parametrize("hw", [(576, 768), (1000, 301), (256, 256), (1, 1), (1, 999), (97, 61)])
def test_graph_letterbox_is_resize_with_pad_on_any_shape(hw):
    """Wide, tall, the input size itself (the identity), one pixel, a line, upscaling: random pixels make fractional
    lerps everywhere, and every value equals the numpy letterbox's."""
    image = np.random.default_rng(sum(hw)).integers(0, 256, (*hw, 3), dtype=np.uint8)
    np.testing.assert_array_equal(graph_letterbox(image, (256, 256)), resize_with_pad(image, (256, 256))[0][None])
    if hw == (256, 256):
        tables = letterbox_tables(hw, (256, 256))
        assert set(np.unique(tables.row_weights)) <= {0, 1} and set(np.unique(tables.element_weights)) <= {0, 1}


@pytest.mark.parametrize("hw", [(576, 768), (1, 1), (97, 61)])
def test_graph_letterbox_reads_a_bgr_frame_as_rgb(hw):
    """With ``bgr`` the tables read each pixel's channels reversed: a BGR frame, not converted, gives the RGB
    frame's network input exactly."""
    rgb = np.random.default_rng(sum(hw)).integers(0, 256, (*hw, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    frame, _ = letterbox_frame(bgr, (192, 192), bgr=True)
    assert np.shares_memory(frame.frame, bgr)
    with torch.no_grad():
        got = GraphLetterbox()(torch.from_numpy(frame.frame), *(torch.from_numpy(t.copy()) for t in frame.tables))
    np.testing.assert_array_equal(got.numpy(), graph_letterbox(rgb, (192, 192)))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_estimators_take_bgr_frames(backend):
    """``est(frame, bgr=True)`` on OpenCV's frame gives the poses of the RGB image: the letterbox in OpenVINO's graph
    reads the frame as it is; onnxruntime's input is converted. A file with ``bgr`` is refused in one line."""
    pytest.importorskip(backend)
    import cv2

    est = featherpose.load("movenet-lightning", backend=backend, threads=1)
    bgr = cv2.imread(str(SHARED / "media" / "messi5.jpg"))
    if backend == "openvino":
        assert np.shares_memory(est.preprocess(bgr, bgr=True)[0].frame, bgr)
    np.testing.assert_array_equal(est(bgr, min_score=0, bgr=True).keypoints,
                                  est(bgr[:, :, ::-1].copy(), min_score=0).keypoints)
    assert not np.array_equal(est(bgr, min_score=0).keypoints, est(bgr, min_score=0, bgr=True).keypoints)
    with pytest.raises(ValueError, match="bgr=True describes an array"):
        est(SHARED / "media" / "messi5.jpg", bgr=True)


@pytest.mark.parametrize("hw", [(576, 768), (1000, 301), (256, 256), (1, 1), (1, 999), (97, 61)])
@pytest.mark.parametrize("input_hw", [(192, 192), (256, 256), (35, 200)])
def test_compiled_letterbox_equals_numpy_reference(hw, input_hw):
    """resize_with_pad's compiled loop (the default) against its NumPy steps: the same int32 array on random pixels,
    for wide, tall, one-pixel, upscaled images and a non-square input; a non-contiguous view (every other column of
    a wider image) too."""
    rng = np.random.default_rng(sum(hw) + sum(input_hw))
    image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    compiled, box = resize_with_pad(image, input_hw)
    reference, reference_box = resize_with_pad(image, input_hw, reference=True)
    assert compiled.dtype == reference.dtype == np.int32 and box == reference_box
    np.testing.assert_array_equal(compiled, reference)
    view = rng.integers(0, 256, (hw[0], 2 * hw[1], 3), dtype=np.uint8)[:, ::2]
    np.testing.assert_array_equal(resize_with_pad(view, input_hw)[0],
                                  resize_with_pad(view, input_hw, reference=True)[0])


@pytest.fixture
def startup_bench():
    from conftest import load_benchmark

    yield from load_benchmark("startup")


def test_startup_script_times_the_letterboxes_and_a_user_run(startup_bench):
    """benchmarks/startup.py's parts: a letterbox row per image and size, both implementations timed (it stops when
    they differ); one `featherpose predict` process timed."""
    frames = startup_bench.read_frames(SHARED / "media" / "vtest.avi", 2)
    rows = [line.split("|")[1:-1] for line in startup_bench.letterbox_table(frames, rounds=1, repeats=2)[4:]]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [(name, size) for name in ("vtest.avi", "messi5.jpg")
                                                            for size in ("192x192", "256x256")]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)
    assert 0 < startup_bench.predict_seconds("movenet-lightning", None) < 120


@pytest.mark.parametrize("variant", ["lightning", "thunder"])
def test_in_graph_decoder_matches_numpy(estimators, variant):
    """The torch decoder exported into the ONNX graph equals the NumPy codec on every golden sample, given the
    heads as maps or (as the export does) regress and offset as functions of cells."""
    from featherpose.codecs.movenet_graph import SPARSE_HEADS, decode_single_pose_torch

    est = estimators[variant]
    codec = est.codec
    for sample in SAMPLES:
        x = torch.from_numpy(golden_input(sample, VARIANT_SIZE[variant])).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            heads = est.network(x)
            ref = codec.decode_graph_layout({k: v[0].numpy() for k, v in heads.items()})
            for given in (heads, est.network(x, sparse=SPARSE_HEADS)):
                got = decode_single_pose_torch(given, torch.from_numpy(codec.prior), float(codec.distance_bias),
                                               torch.from_numpy(codec.grid_scale)).numpy()
                assert np.abs(got - ref).max() <= 1e-6, sample


def movenet_variant(estimators, variant: str):
    """Lightning with Google's weights, or a randomly initialised ShuffleNetV2 MoveNet / one with BatchNorm (its
    statistics randomised too), in eval mode."""
    from featherpose.models.movenet import MoveNet

    if variant == "lightning":
        return estimators["lightning"].network
    torch.manual_seed(0)
    net = MoveNet(backbone="shufflenetv2", batch_norm=True) if variant == "shufflenet" else MoveNet(batch_norm=True)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("variant", ["lightning", "shufflenet", "batch_norm"])
def test_a_head_at_cells_equals_its_map_there(estimators, variant):
    """``Head.at`` (a head at a few cells, its 3x3 neighbourhood zero-padded) equals the full map at those cells,
    the corners and edges included, for every head, on a real image; in training mode it refuses."""
    net = movenet_variant(estimators, variant)
    x = torch.from_numpy(golden_input("messi5", 192)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        feats = net.features(x)
        h, w = feats.shape[2:]
        ys = torch.tensor([0, 0, h - 1, h - 1, 0, h // 2, h - 1, 7, 30])
        xs = torch.tensor([0, w - 1, 0, w - 1, w // 3, 0, w // 2, w - 1, 11])
        for name, head in net.heads.items():
            dense = head(feats)[0][:, ys, xs].T
            assert torch.allclose(head.at(feats, ys, xs), dense, atol=1e-5, rtol=1e-5), name
    with pytest.raises(ValueError, match="eval mode"):
        net.heads["offset"].train().at(feats, ys, xs)
    net.eval()


def test_sparse_heads_carry_nan_features_into_the_output(estimators):
    """A NaN in the features reaches the decoded output through the heads read at cells too (the Estimator's one
    ``isfinite`` check then reports it): at the centre's own cell, which only the sparse regress head reads there."""
    from featherpose.codecs.movenet_graph import SPARSE_HEADS, decode_single_pose_torch

    net, codec = estimators["lightning"].network, estimators["lightning"].codec
    x = torch.from_numpy(golden_input("messi5", 192)).permute(0, 3, 1, 2).float()
    args = torch.from_numpy(codec.prior), float(codec.distance_bias), torch.from_numpy(codec.grid_scale)
    with torch.no_grad():
        feats = net.features(x)
        bad = feats.clone()
        heads = net(x, sparse=SPARSE_HEADS)
        assert torch.isfinite(decode_single_pose_torch(heads, *args)).all()
        w = heads["center"].shape[-1]
        c = int(torch.argmax(torch.sigmoid(heads["center"][0, 0]) * args[0]))  # the centre's cell (no tie here)
        bad[0, 3, c // w, c % w] = float("nan")  # the heatmap and centre maps stay those of the clean features
        heads.update({name: functools.partial(net.heads[name].at, bad) for name in SPARSE_HEADS})
        assert torch.isnan(decode_single_pose_torch(heads, *args)).all()


def test_a_network_without_sparse_heads_exports_with_whole_maps(estimators):
    """A network whose ``forward`` does not take ``sparse`` (a wrapper, a custom student) still exports with the
    single-pose decoder: its heads come whole, and the graph decodes them to the same keypoints."""
    import onnxruntime as ort

    from featherpose.runtime.export import export_onnx

    est = estimators["lightning"]

    class Wrapped(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, image):
            return self.net(image)

    x = golden_input("messi5", 192)
    outs = []
    for net in (est.network, Wrapped(est.network)):
        session = ort.InferenceSession(export_onnx(net, est.input_hw, decoder=est.codec.graph_decoder(), cache=False))
        outs.append(session.run(None, {"image": x})[0])
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)


def test_in_graph_decoder_reads_regress_and_offset_at_its_cells_only():
    """The single-pose export computes the regress and offset heads at the K + 1 cells the decoder reads (inside the
    decoder, on 3x3 patches), not as maps: no convolution of theirs on the whole feature map (0.1 ms of Lightning's
    1.3 ms in OpenVINO bf16, benchmarks/RESULTS.md)."""
    import onnx

    from featherpose.runtime.export import export_onnx

    est = featherpose.load("movenet-lightning", backend="torch")
    graph = onnx.load_from_string(export_onnx(est.network, est.input_hw, decoder=est.codec.graph_decoder()))
    convs = [n.name for n in graph.graph.node if n.op_type == "Conv"]
    for head in ("regress", "offset"):
        assert not [n for n in convs if n.startswith(f"/model/{head}/")]
    assert len([n for n in convs if n.startswith("/decoder/")]) == 6  # each: depthwise, pointwise, output
    assert len([n for n in convs if n.startswith("/model/heatmap/")]) == 3


def test_first_argmax_is_torch_argmax_without_argmax_ops():
    """The in-graph decoder's argmax: torch.argmax's index (the first maximum, ties included) on both axes, and
    no ArgMax / TopK in the exported graph (OpenVINO ran those as a TopK taking 30 % of Lightning's network)."""
    import onnx

    from featherpose.codecs.movenet_graph import first_argmax
    from featherpose.runtime.export import export_onnx

    x = torch.randint(0, 4, (17, 2304)).float()  # few values: many ties
    for dim in (0, 1, -1):
        assert torch.equal(first_argmax(x, dim), torch.argmax(x, dim))
    est = featherpose.load("movenet-lightning", backend="torch")
    graph = onnx.load_from_string(export_onnx(est.network, est.input_hw, decoder=est.codec.graph_decoder()))
    ops = {node.op_type for node in graph.graph.node}
    assert "ReduceMin" in ops and not ops & {"ArgMax", "TopK"}


def test_perturbed_weight_breaks_parity():
    est = featherpose.load("movenet-lightning", backend="torch")
    x = golden_input("messi5", 192)
    ref = np.load(GOLDEN / "messi5" / "lightning_output.npy")
    assert np.abs(graph_output(est, x) - ref).max() <= 1e-4
    with torch.no_grad():  # one weight of one early pointwise conv, nudged by 1 %
        w = est.network.backbone.blocks[3].expand.conv.weight
        w[0, 0, 0, 0] *= 1.01
    assert np.abs(graph_output(est, x) - ref).max() > 1e-4


def test_keypoints_map_back_to_image_pixels(estimators):
    """The Estimator's pixel output is the graph's normalised output undone through the letterbox."""
    est = estimators["lightning"]
    image = load_image(golden_image_path("messi5"))
    poses = est(image)
    ref = np.load(GOLDEN / "messi5" / "lightning_output.npy")[0, 0]  # (17, 3) y, x, score
    h, w = image.shape[:2]
    _, box = resize_with_pad(image, (192, 192))
    x = (ref[:, 1] * 192 - box.left) * w / box.resized_hw[1]
    y = (ref[:, 0] * 192 - box.top) * h / box.resized_hw[0]
    np.testing.assert_allclose(poses.keypoints[0, :, 0], x, atol=1e-3)
    np.testing.assert_allclose(poses.keypoints[0, :, 1], y, atol=1e-3)
    np.testing.assert_allclose(poses.keypoints[0, :, 2], ref[:, 2], atol=1e-5)
