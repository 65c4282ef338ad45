"""int8 post-training static quantisation of a model's ONNX export, by onnxruntime's quantiser.

Nothing is hand-quantised: :func:`quantize_onnx` hands the fp32 export (:mod:`.export`) to
``onnxruntime.quantization.quantize_static`` (QDQ format, per-channel int8 weights, uint8 activations),
calibrated on unlabelled frames preprocessed exactly as the model's Estimator preprocesses them
(its ``preprocess``: letterbox, or the family's own sizing, so dynamic-size models calibrate at the sizes they
run at; the export keeps its dynamic height and width). Frames: the user's folder of images or video
(``calib``), else those shipped in ``featherpose/assets/calib/`` (8 frames of OpenCV's sample footage, see
``assets/LICENSE``) plus the demo photo.

The options (:data:`DEFAULT_OPTIONS`) were chosen by measurement (MoveNet Lightning, keypoints of messi5 + 15
LSP test images against fp32, median / p90 distance, and the network's ms at 2 threads): weights per channel (per
tensor: 49.7 px median); convolutions only, 2.60 / 7.37 px and no faster than fp32 (14.3 vs 14.5 ms: every
element-wise op between them dequantises and requantises); convolutions only with the first and the head
convolutions kept float 2.20 / 5.52 px; the ops in :data:`OP_TYPES` (convolutions, adds, activations, concat,
resize, pooling), 1.28 / 3.45 px at 9.5 ms vs 14.6 (kept float first and heads: 1.23 / 2.91 px but 12.6 ms). The
in-graph decoders stay float (quantising them fails: a NaN constant has no range). Calibration (AP loss, coco_mini
val / labeled_dev, the larger): Percentile for a fixed input size (MinMax -> Percentile: Lightning 0.039 -> 0.017,
Thunder 0.069 -> 0.030, MultiPose 0.146 -> 0.070; Entropy gave exactly MinMax's numbers), MinMax for a dynamic
size (onnxruntime 1.32's histogram calibrators stack every frame's tensors and fail on differing sizes: Lightweight
OpenPose, Lite Pose). int8 is approximate: the accuracy per model is in
``benchmarks/quantize_accuracy.py``.

:func:`quantized_model` caches the result under ``~/.cache/featherpose/int8/<name>-<hash>.onnx`` (the hash:
the fp32 export, the options and the calibration frames), so a model is quantised once per machine.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..fileio import atomic_path, cache_dir as featherpose_cache_dir
from ..image import IMAGE_SUFFIXES, load_image

#: precisions ``featherpose.load`` takes, and the backends that run each (int8: onnxruntime's QDQ kernels, or
#: OpenVINO's CPU plugin on NNCF's quantisation; bf16: OpenVINO's CPU plugin, see :mod:`.openvino`).
PRECISIONS = ("auto", "fp32", "int8", "bf16")  # auto: see featherpose.zoo.default_precision
INT8_BACKENDS = ("onnxruntime", "openvino")
BF16_BACKENDS = ("openvino",)
#: calibration frames used from a folder or video (evenly spread over it)
MAX_CALIB_FRAMES = 32
#: the quantiser's settings (measured: see the module docstring)
OP_TYPES = ("Conv", "ConvTranspose", "Add", "Mul", "Relu", "Clip", "Concat", "Resize", "MaxPool", "AveragePool",
            "GlobalAveragePool", "Sigmoid")
DEFAULT_OPTIONS = {"per_channel": True, "calibration": "auto", "op_types": OP_TYPES,
                   "exclude_first_conv": False, "exclude_heads": False}
CALIBRATIONS = ("auto", "minmax", "entropy", "percentile")


def check_precision(precision: str, backend) -> None:
    """One-line ValueError unless ``precision`` is known and ``backend`` runs it."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision in ("auto", "fp32"):
        return
    runners = {"int8": INT8_BACKENDS, "bf16": BF16_BACKENDS}[precision]
    if not isinstance(backend, str):
        name = getattr(backend, "name", repr(backend))
        raise ValueError(f"precision {precision!r} builds its own {runners[0]} backend; pass backend='auto' or "
                         f"{runners[0]!r}, not a built {name} backend")
    if backend not in ("auto", *runners):
        raise ValueError(f"precision {precision!r} runs on backend {', '.join(runners)} only (got {backend!r}); "
                         f"use --backend auto or {runners[0]}, or precision fp32 for {backend}")


def cache_dir() -> Path:
    return featherpose_cache_dir("int8")


def bundled_calibration_files() -> list[Path]:
    assets = Path(__file__).resolve().parent.parent / "assets"
    return sorted((assets / "calib").glob("*.jpg")) + [assets / "messi5.jpg"]


def calibration_files(calib: str | Path | None = None) -> list[Path]:
    """The image files of a calibration folder (or the one video file, or the bundled frames when None)."""
    if calib is None:
        return bundled_calibration_files()
    path = Path(calib)
    if not path.exists():
        raise FileNotFoundError(f"--calib {calib}: no such folder or video; give a folder of images or a video file")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--calib {calib}: no images in this folder ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                         "give a folder of images or a video file")
    return files


def calibration_frames(calib: str | Path | None = None, limit: int = MAX_CALIB_FRAMES) -> list[np.ndarray]:
    """HxWx3 uint8 RGB frames: a folder's images or a video's frames (at most ``limit``, evenly spread), else the
    bundled ones."""
    files = calibration_files(calib)
    if len(files) == 1 and files[0].suffix.lower() not in IMAGE_SUFFIXES:  # a video
        from ..video.io import sample_frames

        frames = sample_frames(files[0], limit)
        if not frames:
            raise ValueError(f"--calib {calib}: no frame could be read from this video")
        return frames
    pick = np.unique(np.linspace(0, len(files) - 1, min(limit, len(files))).round().astype(int))
    return [load_image(files[i]) for i in pick]


def head_convs(model) -> list[str]:
    """Names of the convolutions nearest each graph output: walking back from the outputs through non-conv nodes
    (an in-graph decoder's too), the first Conv / ConvTranspose met on each path."""
    producer = {o: n for n in model.graph.node for o in n.output}
    found, seen = [], set()
    todo = [o.name for o in model.graph.output]
    while todo:
        tensor = todo.pop()
        node = producer.get(tensor)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in ("Conv", "ConvTranspose"):
            found.append(node.name)
        else:
            todo.extend(node.input)
    return found


@contextlib.contextmanager
def _quiet():
    """The quantiser logs advice through the root logger, its calibration sessions onnxruntime's warnings, and its
    Percentile calibrator prints its range to stdout, on every call; keep them off the user's terminal."""
    import io

    import onnxruntime as ort

    logging.disable(logging.WARNING)
    ort.set_default_logger_severity(3)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)
        ort.set_default_logger_severity(2)


def after_heads(model) -> list[str]:
    """Names of the nodes downstream of the head convolutions (:func:`head_convs`): an in-graph decoder's (its
    constants are named ``/decoder/...`` by the export, :class:`~featherpose.runtime.export.NHWCInput`). Heads the
    decoder computes at a few cells (MoveNet's regress and offset, ``sparse_heads``) are among them: they run after the
    centre's argmax, so every int8 quantisation leaves them in float32 whatever ``exclude_heads`` or
    ``int8_float_heads`` say (since 2fd3bfc; benchmarks/RESULTS.md, 2026-11-29, gives the AP that moved)."""
    heads = set(head_convs(model))
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    todo = [o for n in model.graph.node if n.name in heads for o in n.output]
    found = set()
    while todo:
        for n in consumers.get(todo.pop(), []):
            if n.name not in found:
                found.add(n.name)
                todo.extend(n.output)
    return sorted(found)


def float_nodes(model, heads: bool = False) -> list[str]:
    """Names of the nodes an int8 quantisation by NNCF leaves in float32: an in-graph letterbox (every node upstream
    of the graph's :data:`~featherpose.runtime.export.LETTERBOXED` output), an in-graph decoder (:func:`after_heads`
    of a graph with a ``decoded`` output) and, with ``heads``, the heads' own branches (from each of
    :func:`head_convs` back to where its branch leaves the features the heads share). Keeping its heads float held
    MoveNet Lightning's AP within 0.01, where quantising them lost 0.018; Lite Pose lost more with any node kept
    float (benchmarks/RESULTS.md, "OpenVINO int8 with the heads float")."""
    from .export import LETTERBOXED

    nodes = {n.name: n for n in model.graph.node}
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1

    def upstream(names: list[str], stop) -> set[str]:
        """These nodes and their producers, walked back through every input tensor but those ``stop`` names."""
        found, todo = set(), list(names)
        while todo:
            node = nodes[todo.pop()]
            if node.name in found:
                continue
            found.add(node.name)
            todo += [producer[i].name for i in node.input
                     if i in producer and producer[i].op_type != "Constant" and not stop(i)]
        return found

    outputs = {o.name for o in model.graph.output}
    found = set(after_heads(model)) if "decoded" in outputs else set()  # the export names a decoder's output so
    letterboxed = [producer[LETTERBOXED].name] if LETTERBOXED in outputs and LETTERBOXED in producer else []
    found |= upstream(letterboxed, lambda tensor: False)
    if heads:  # a branch ends where a tensor feeds more than its own head
        found |= upstream(head_convs(model), lambda tensor: consumers.get(tensor, 0) != 1)
    return sorted(found)


class FrameReader:
    """onnxruntime ``CalibrationDataReader``: each frame through ``preprocess`` (the Estimator's), fed as ``image``."""

    def __init__(self, frames: Iterable[np.ndarray], preprocess: Callable[[np.ndarray], tuple[np.ndarray, object]]):
        self._inputs = iter([{"image": preprocess(f)[0]} for f in frames])

    def get_next(self):
        return next(self._inputs, None)

    def rewind(self):  # not needed by the calibrators used; present for the protocol
        pass


def quantize_onnx(fp32_onnx: bytes, frames: list[np.ndarray], preprocess, out: str | Path,
                  options: dict | None = None) -> Path:
    """Quantise ``fp32_onnx`` (bytes of an :func:`~featherpose.runtime.export.export_onnx` graph) to int8 QDQ
    with onnxruntime's ``quantize_static``, calibrated on ``frames`` through ``preprocess``; written atomically
    to ``out``.

    ``options``: :data:`DEFAULT_OPTIONS` keys: ``per_channel`` (bool), ``calibration`` (one of
    :data:`CALIBRATIONS`; ``auto``: Percentile for a fixed input size, MinMax for a dynamic one), ``op_types`` (ONNX op types quantised; None: the quantiser's default set),
    ``exclude_first_conv`` (the convolution on the image stays float), ``exclude_heads`` (the last convolutions
    before each output, :func:`head_convs`, stay float)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    opts = {**DEFAULT_OPTIONS, **(options or {})}
    if opts["calibration"] not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {opts['calibration']!r}; choose one of: {', '.join(CALIBRATIONS)}")
    model = onnx.load_from_string(fp32_onnx)
    calibration = opts["calibration"]
    if calibration == "auto":  # the histogram calibrators stack every frame's tensors: one input size only
        dims = model.graph.input[0].type.tensor_type.shape.dim
        calibration = "minmax" if any(d.dim_param for d in dims[1:3]) else "percentile"
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibration]
    exclude = []
    if opts["exclude_first_conv"]:
        exclude = [next(n.name for n in model.graph.node if n.op_type == "Conv")]
    if opts["exclude_heads"]:
        exclude += head_convs(model)
    if set(opts["op_types"] or ()) != {"Conv", "ConvTranspose"}:  # more ops: none past the heads (decoders)
        exclude += after_heads(model) + [n.name for n in model.graph.node if n.name.startswith("/decoder/")]

    class _Reader(FrameReader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory(prefix="featherpose-int8-") as tmp, _quiet():
        src = Path(tmp) / "fp32.onnx"
        src.write_bytes(fp32_onnx)
        dst = Path(tmp) / "int8.onnx"
        quantize_static(str(src), str(dst), _Reader(frames, preprocess), quant_format=QuantFormat.QDQ,
                        per_channel=bool(opts["per_channel"]), activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=method,
                        op_types_to_quantize=list(opts["op_types"]) if opts["op_types"] else None,
                        nodes_to_exclude=exclude,
                        extra_options={"CalibTensorRangeSymmetric": False, "CalibMovingAverage": False})
        with atomic_path(out) as tmp_out:
            Path(tmp_out).write_bytes(dst.read_bytes())
    return Path(out)


def _cached(name: str, fp32_onnx: bytes, settings: dict, calib, cache, suffix: str) -> Path:
    """``<cache>/<name>-<hash><suffix>``, the hash of the fp32 export, the quantiser's settings and the calibration
    frames (their paths, sizes and times)."""
    h = hashlib.sha256(fp32_onnx)
    h.update(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in sorted(settings.items())}).encode())
    for f in calibration_files(calib):
        st = f.stat()
        h.update(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return (Path(cache) if cache else cache_dir()) / f"{safe}-{h.hexdigest()[:16]}{suffix}"


def quantized_model(name: str, fp32_onnx: bytes, preprocess, calib: str | Path | None = None,
                    options: dict | None = None, cache: str | Path | None = None) -> Path:
    """The cached int8 model of ``fp32_onnx`` (built now if missing): ``<cache>/<name>-<hash>.onnx``."""
    opts = {**DEFAULT_OPTIONS, **(options or {})}
    path = _cached(name, fp32_onnx, opts, calib, cache, ".onnx")
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    return quantize_onnx(fp32_onnx, calibration_frames(calib), preprocess, path, opts)


#: NNCF's settings for OpenVINO int8 (:func:`openvino_int8_model`): the MIXED preset (symmetric weights,
#: asymmetric activations) lost less than PERFORMANCE on Lightweight OpenPose (coco_mini val AP 0.3119 fp32 ->
#: 0.3039 mixed / 0.2998 performance), at the same speed.
NNCF_SETTINGS = {"tool": "nncf", "preset": "mixed"}
NNCF_INSTALL_HINT = "pip install 'featherpose[openvino]' (precision int8 on OpenVINO is quantised by NNCF)"


def openvino_int8_model(name: str, fp32_onnx: bytes, preprocess, calib: str | Path | None = None,
                        cache: str | Path | None = None, float_heads: bool = False) -> Path:
    """The cached OpenVINO int8 IR of ``fp32_onnx`` (built now if missing): ``<cache>/<name>-<hash>.xml`` and its
    ``.bin``. Quantised by NNCF (``nncf.quantize``, :data:`NNCF_SETTINGS`: per-channel int8 weights, int8
    activations where OpenVINO's CPU plugin runs them in int8; :func:`float_nodes` left in float32, the heads'
    branches too with ``float_heads``) on OpenVINO's reading of the export, calibrated on the same frames as
    :func:`quantized_model`, each made into the export's inputs by ``preprocess`` (image -> (the input array, or a
    list of them in the graph's order; anything)).

    Raises:
        ImportError: NNCF is not installed (one line: :data:`NNCF_INSTALL_HINT`).
    """
    xml = _cached(name, fp32_onnx, dict(NNCF_SETTINGS, float_heads=float_heads), calib, cache, ".xml")
    if xml.is_file():  # the .xml is written after its .bin
        return xml
    try:
        import nncf
    except ImportError:
        raise ImportError(NNCF_INSTALL_HINT) from None
    from .openvino import import_openvino

    ov = import_openvino()
    frames = calibration_frames(calib)
    logging.getLogger("nncf").setLevel(logging.ERROR)  # its advice; its progress bar stays
    import re

    import onnx

    graph = onnx.load_from_string(fp32_onnx)
    names = float_nodes(graph, float_heads)
    producer = {o: n.name for n in graph.graph.node for o in n.output}
    outputs = [o.name for o in graph.graph.output if producer.get(o.name) in names]
    # OpenVINO names its ops after the ONNX nodes, with suffixes (a Conv's convolution is ".../Conv/WithoutBiases",
    # ".../Conv" its bias), and a graph output's producer after the output
    keep = nncf.IgnoredScope(patterns=[f"^{re.escape(n)}(/.*)?$" for n in names] +
                             [f"^{re.escape(o)}$" for o in outputs], validate=False) if names else None
    model = nncf.quantize(ov.Core().read_model(fp32_onnx, b""), nncf.Dataset([preprocess(f)[0] for f in frames]),
                          preset=getattr(nncf.QuantizationPreset, NNCF_SETTINGS["preset"].upper()),
                          subset_size=len(frames), ignored_scope=keep)
    xml.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=xml.parent) as tmp:
        ov.save_model(model, str(Path(tmp) / "model.xml"), compress_to_fp16=False)
        for suffix in (".bin", ".xml"):
            with atomic_path(xml.with_suffix(suffix)) as out:
                Path(out).write_bytes((Path(tmp) / "model").with_suffix(suffix).read_bytes())
    return xml
