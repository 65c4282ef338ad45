"""OpenVINO backend: a featherpose network exported to ONNX, or an OpenVINO IR as published (Intel's int8
``human-pose-estimation-0001``), compiled for the CPU.

Either way the backend takes what every backend takes, the (1, H, W, 3) int32 RGB batch the preprocessing
makes, and returns ``{head name: (C, h, w) float32}`` (batch axis dropped). An IR's own input convention
(Intel's: raw BGR 0..255, float NCHW, /255 inside the graph) is met by OpenVINO's preprocessing steps compiled
into the model (int32 -> float32, NHWC -> NCHW, RGB -> BGR), and its outputs are renamed to the codec's heads.
Each compiled model runs through its own infer request, fed directly (:class:`Request`): without OpenVINO's per-call
input dispatch Lightning's bf16 network call took 1.53 against 1.65 ms, Lite Pose's split 34.5 against 35.8 ms (best
of 6 / 4 alternating passes over 100 vtest frames; the split's back reads the front's outputs in place), and copying
out only the heads (not the letterboxed input) took Lightning's to 1.34 against 1.44 ms for OpenVINO's own call.

The CPU plugin runs at ``INFERENCE_PRECISION_HINT=f32`` with the latency hint: on CPUs with bf16 (AVX512-BF16,
AMX) its default is bf16, which moves Lightweight OpenPose's float outputs by up to 0.06 (golden/lwop README).
``precision="bf16"`` asks for bf16 arithmetic (``featherpose.load(..., precision="bf16")``): 1.2-2x faster
networks on this project's AVX512-BF16 CPU (benchmarks/RESULTS.md, "bf16"), approximate like int8. A CPU without
bf16 instructions would run it in float32 under OpenVINO's hint, so :func:`check_bf16` refuses it there instead, in
one line. A family whose first layers lose accuracy in bf16 (Lite Pose) splits the network in two, its front kept
in float32 (:class:`SplitOpenVinoBackend`). An int8 IR still runs its convolutions as int8 kernels. A model whose
input size follows the image (Lightweight OpenPose, Lite Pose, an IR) also gets a static compile for each size it
meets again, a video's frames for one (:class:`~featherpose.runtime.StaticCompiles`). A fixed-size model with TF's letterbox (the
MoveNets) is compiled with the letterbox in front (``letterbox=True``, ``export_onnx(..., letterbox=True)``): the
backend takes the frame itself, a :class:`~featherpose.image.LetterboxedFrame`, and the Estimator hands it that (the
backend's ``letterboxes`` says so); the letterbox then runs on OpenVINO's threads where the numpy one runs on one
(Thunder's from a vtest frame: 0.3 against 0.7 ms), in the same compiled model as the network (a letterbox compiled
apart cost more than it saved: each compiled model wakes its own threads). The letterboxed input is also an output of
the graph, which keeps the letterbox in float32 in a bf16 compile (OpenVINO's CPU plugin leaves float32 the nodes
between an output and the convolutions before it; bf16 would round the pixels). Its values are TF's but where
OpenVINO's fused multiply-adds round a lerp the other way across an integer: 1 off, on 2 of 983040 values of five
random-pixel frames, none on 101 natural frames (tests/test_openvino.py). ``openvino`` is imported only when this backend
is built. Every compile goes through OpenVINO's model cache in ``~/.cache/featherpose/openvino`` (:func:`compile_cpu`).
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from ..fileio import cache_dir
from ..image import LetterboxedFrame, letterbox_tables
from . import StaticCompiles
from .export import LETTERBOXED

log = logging.getLogger(__name__)
#: What a missing OpenVINO tells the user.
INSTALL_HINT = "backend='openvino' needs OpenVINO: pip install featherpose[openvino] (or: pip install openvino)"
#: Intel's ``human-pose-estimation-0001`` IR outputs -> the Lightweight OpenPose codec's heads (weights README).
LWOP_IR_HEADS = {"Mconv7_stage2_L2": "heatmaps", "Mconv7_stage2_L1": "pafs"}
#: compiled models kept in OpenVINO's model cache, ``~/.cache/featherpose/openvino`` (the most recently used; a
#: blob holds the weights: 4.8-25 MB for the bundled models)
CACHED_COMPILES = 8


class OpenVinoMissingError(ImportError, ValueError):
    """``backend="openvino"`` without OpenVINO installed: an ImportError, and a ValueError so that the CLI prints
    it as one line (exit code 2) like any other fixable input."""


def import_openvino():
    """The ``openvino`` module, or :class:`OpenVinoMissingError` (one line: :data:`INSTALL_HINT`)."""
    try:
        import openvino
    except ImportError:
        raise OpenVinoMissingError(INSTALL_HINT) from None
    return openvino


def cpu_config(threads: int | None, precision: str = "fp32") -> dict[str, str | int]:
    """The CPU plugin's properties: latency hint, float32 (or ``precision="bf16"``: bfloat16) arithmetic,
    ``threads`` (None: the plugin's default)."""
    hint = {"fp32": "f32", "bf16": "bf16"}[precision]
    config: dict[str, str | int] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def compile_cpu(core, model, config: dict):
    """``core.compile_model(model, "CPU", config)`` through OpenVINO's model cache in ``~/.cache/featherpose/openvino``:
    a model this machine compiled before is read back (Lightning: 0.17-0.18 against 0.33-0.42 s a start here). OpenVINO
    compiles again over a blob it cannot read (a truncated or foreign file); a cache that cannot be written only
    costs the compile. The :data:`CACHED_COMPILES` most recently used blobs are kept: a blob's last use is its write or
    its last read (the file's access time, which OpenVINO's read renews where the file system keeps it: Linux's
    default ``relatime`` does at least once a day; where it does not, its write)."""
    folder = cache_dir("openvino")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # no cache folder: the plain compile (a compile error is the model's, and raises)
        log.debug("OpenVINO's model cache in %s unusable (%s); compiling without it", folder, exc)
        return core.compile_model(model, "CPU", config)
    # a blob is read into memory, not mapped: another process may rewrite it (a compile that missed at the same
    # time), and a mapped file cut short under a running model would crash it (reading took as long: 0.18 s)
    core.set_property({"ENABLE_MMAP": False})
    compiled = core.compile_model(model, "CPU", {**config, "CACHE_DIR": str(folder)})
    dated = []
    for blob in folder.glob("*.blob"):
        with contextlib.suppress(OSError):  # one that another process removed meanwhile
            st = blob.stat()
            dated.append((max(st.st_mtime, st.st_atime), blob))
    for _, old in sorted(dated, reverse=True)[CACHED_COMPILES:]:
        with contextlib.suppress(OSError):  # removed or held open by another process: the next prune
            old.unlink(missing_ok=True)
    return compiled


def check_bf16() -> None:
    """One-line ValueError unless OpenVINO's CPU plugin has bf16 arithmetic on this CPU (AVX512-BF16 or AMX)."""
    caps = import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" not in caps:
        raise ValueError("precision 'bf16': this CPU has no bf16 arithmetic (AVX512-BF16 or AMX; OpenVINO reports "
                         f"{', '.join(caps)}), where it would run float32; use precision fp32 (or int8)")


def reshaped(model, shapes: dict) -> object:
    """A copy of the ``openvino.Model`` with its inputs fixed to ``shapes`` (input index or name -> shape)."""
    ov = import_openvino()
    copy = model.clone()
    copy.reshape({key: ov.PartialShape([int(d) for d in shape]) for key, shape in shapes.items()})
    return copy


class Request:
    """A compiled model's own infer request, fed and read directly: ``request(*arrays)`` sets the inputs (numpy
    arrays, in order: zero-copy where C-contiguous, writable and of the input's type, else a converted copy) and
    returns the outputs (copies). An
    input that is the same object as at the call before and was shared or is read-only (a letterbox's cached tables)
    is not set again. OpenVINO's ``compiled(inputs)`` builds every input tensor as a Python object and dispatches on
    its types at each call."""

    def __init__(self, compiled):
        self.ov = import_openvino()
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.fed: list = [None] * len(compiled.inputs)  # per input: the array last given, the memory its tensor reads
        self.dtypes = [i.get_element_type().to_dtype() for i in compiled.inputs]

    def feed(self, *arrays: np.ndarray) -> None:
        """Set the inputs to ``arrays`` (in order)."""
        for i, a in enumerate(arrays):
            shared = a.flags.c_contiguous and a.flags.writeable and a.dtype == self.dtypes[i]
            if self.fed[i] is not None and a is self.fed[i][0] and (shared or not a.flags.writeable):
                continue
            data = a if shared else np.array(a, self.dtypes[i], order="C")  # the tensor reads this memory: kept
            self.request.set_input_tensor(i, self.ov.Tensor(data, shared_memory=True))
            self.fed[i] = a, data

    def outputs(self, indices=None) -> list[np.ndarray]:
        """The last inference's outputs (those at ``indices``; None: all), copied."""
        indices = range(len(self.compiled.outputs)) if indices is None else indices
        return [self.request.get_output_tensor(i).data.copy() for i in indices]

    def __call__(self, *arrays: np.ndarray, outputs=None) -> list[np.ndarray]:
        """Run on ``arrays``; the outputs at indices ``outputs`` (None: all), copied."""
        self.feed(*arrays)
        self.request.infer()
        return self.outputs(outputs)


def _is_dynamic(model) -> bool:
    """Whether any input of the ``openvino.Model`` has a dynamic dimension (its size follows the image)."""
    return any(i.get_partial_shape().is_dynamic for i in model.inputs)


class OpenVinoBackend:
    """An OpenVINO model compiled for the CPU; ``backend(x)`` maps (1, H, W, 3) int32 RGB to the raw heads.

    Build it with :meth:`from_onnx` (a featherpose network's ONNX export), :meth:`from_file` (an IR written from one)
    or :meth:`from_ir` (Intel's IR of Lightweight OpenPose).

    Args:
        model: an ``openvino.Model`` whose one input is (1, H, W, 3) int32 RGB (H, W may be dynamic).
        threads: CPU threads (the plugin's ``INFERENCE_NUM_THREADS``; None: its default).
        heads: output tensor name -> head name, the outputs returned; None: every output under its own name.
        precision: ``fp32`` or ``bf16`` (checked with :func:`check_bf16`); the name says which (``openvino-bf16``).
        letterbox: ``model`` is an export with ``letterbox=True``: the backend takes a
            :class:`~featherpose.image.LetterboxedFrame`, or a network input of 0..255 values (letterboxed already: run
            with the identity tables).
    """

    name = "openvino"

    def __init__(self, model, threads: int | None = None, heads: dict[str, str] | None = None,
                 precision: str = "fp32", letterbox: bool = False):
        ov = import_openvino()
        if precision == "bf16":
            check_bf16()
            self.name = "openvino-bf16"
        core, config = ov.Core(), cpu_config(threads, precision)
        self.compiled = compile_cpu(core, model, config)
        self.run = Request(self.compiled)
        names = [out.get_any_name() for out in self.compiled.outputs]
        self.heads = [(i, heads[n] if heads else n) for i, n in enumerate(names)
                      if (not heads or n in heads) and n != LETTERBOXED]
        self.wanted = [i for i, _ in self.heads]  # the outputs copied out (not the letterboxed input)
        self.letterboxes = letterbox
        self.static = (StaticCompiles(lambda shape: Request(compile_cpu(core, reshaped(model, {0: shape}), config)),
                                      "OpenVINO") if _is_dynamic(model) and not letterbox else None)

    @classmethod
    def from_onnx(cls, onnx_model: bytes, threads: int | None = None, precision: str = "fp32",
                  letterbox: bool = False) -> "OpenVinoBackend":
        """From ONNX bytes as :func:`featherpose.runtime.export.export_onnx` writes them (int32 NHWC input, or with
        ``letterbox`` the frame and its tables)."""
        ov = import_openvino()
        return cls(ov.Core().read_model(onnx_model, b""), threads, precision=precision, letterbox=letterbox)

    @classmethod
    def from_file(cls, xml_path: str | Path, threads: int | None = None, letterbox: bool = False
                  ) -> "OpenVinoBackend":
        """From an IR written from a featherpose export (e.g. its int8 quantisation by NNCF: same inputs and
        outputs; ``letterbox``: exported with it, see :meth:`from_onnx`)."""
        return cls(import_openvino().Core().read_model(str(xml_path)), threads, letterbox=letterbox)

    @classmethod
    def from_ir(cls, xml_path: str | Path, threads: int | None = None,
                heads: dict[str, str] | None = None) -> "OpenVinoBackend":
        """From an IR (``.xml``, its ``.bin`` beside it) that takes raw BGR 0..255 as float (1, 3, H, W).

        The input gets a dynamic height and width (any multiple of the network's stride) and preprocessing
        steps in front: int32 -> float32 (exact for 0..255), NHWC -> NCHW, RGB -> BGR. ``heads`` (default
        :data:`LWOP_IR_HEADS`) names the outputs kept, in the codec's names; each must exist.

        Raises:
            ValueError: naming the file, when its input is not (1, 3, H, W) or an output in ``heads`` is missing.
        """
        ov = import_openvino()
        from openvino.preprocess import PrePostProcessor

        heads = LWOP_IR_HEADS if heads is None else heads
        model = ov.Core().read_model(str(xml_path))
        shape = model.inputs[0].get_partial_shape() if len(model.inputs) == 1 else None
        if shape is None or shape.rank.get_length() != 4 or shape[1] != 3:
            raise ValueError(f"{xml_path}: expected one input of shape (1, 3, H, W), found "
                             f"{[str(i.get_partial_shape()) for i in model.inputs]}")
        names = {n for out in model.outputs for n in out.get_names()}
        missing = sorted(set(heads) - names)
        if missing:
            raise ValueError(f"{xml_path}: no output {missing[0]!r} (outputs: {', '.join(sorted(names))}); "
                             "pass Intel's human-pose-estimation-0001.xml")
        model.reshape({model.inputs[0]: ov.PartialShape([1, 3, -1, -1])})
        steps = PrePostProcessor(model)
        steps.input().tensor().set_element_type(ov.Type.i32).set_layout(ov.Layout("NHWC"))
        steps.input().model().set_layout(ov.Layout("NCHW"))
        steps.input().preprocess().convert_element_type(ov.Type.f32).reverse_channels()
        return cls(steps.build(), threads, heads)

    def __call__(self, x: np.ndarray | LetterboxedFrame) -> dict[str, np.ndarray]:
        if self.letterboxes:
            if not isinstance(x, LetterboxedFrame):  # letterboxed already (0..255): the identity tables
                x = LetterboxedFrame(x.astype(np.uint8), letterbox_tables(x.shape[1:3], x.shape[1:3]))
            outs = self.run(x.frame, *x.tables, outputs=self.wanted)  # the frame is read in place
        else:
            static = self.static.get(x.shape) if self.static is not None else None
            outs = (self.run if static is None else static)(x, outputs=self.wanted)
        return {head: out[0] for (_, head), out in zip(self.heads, outs)}


def _nhwc(model, side: str):
    """``model`` with its inputs or outputs (``side``) NHWC where the graph has them NCHW: the tensors a split hands
    over. The CPU plugin's convolutions keep these features channels-last; an NCHW hand-over cost a reorder out of the
    front and another into the back (Lite Pose's stem features at 448x640: 1.2 and 0.4 ms). In one process, alternating
    8 passes: the split's network call 33.0 -> 31.6 ms on 30 vtest frames, 42.3 -> 39.1 on messi5 (best passes)."""
    ov = import_openvino()
    from openvino.preprocess import PrePostProcessor

    steps = PrePostProcessor(model)
    for i in range(len(getattr(model, f"{side}s"))):
        tensor = getattr(steps, side)(i)
        tensor.tensor().set_layout(ov.Layout("NHWC"))
        tensor.model().set_layout(ov.Layout("NCHW"))
    return steps.build()


class SplitOpenVinoBackend:
    """A network's bf16 run with its first layers in float32: two compiled models, chained.

    OpenVINO's CPU plugin takes one inference precision per compiled model (per-node float32 marks were not honoured
    for these convolutions in bf16: benchmarks/RESULTS.md, "Lite Pose speed"), so the network comes as two ONNX
    graphs (:func:`~featherpose.runtime.export.export_onnx_split`): the front, compiled in float32, and the back,
    compiled in bf16, which takes the front's outputs in order, channels-last (:func:`_nhwc`).
    Called like :class:`OpenVinoBackend`; named ``openvino-bf16`` (it is the model's bf16)."""

    name = "openvino-bf16"

    def __init__(self, front_onnx: bytes, back_onnx: bytes, threads: int | None = None):
        ov = import_openvino()
        check_bf16()
        core = ov.Core()
        front_model = _nhwc(core.read_model(front_onnx, b""), "output")
        back_model = _nhwc(core.read_model(back_onnx, b""), "input")
        front_config, back_config = cpu_config(threads, "fp32"), cpu_config(threads, "bf16")
        self.front = compile_cpu(core, front_model, front_config)
        self.back = compile_cpu(core, back_model, back_config)
        self.run = Request(self.front), Request(self.back)
        self.heads = [out.get_any_name() for out in self.back.outputs]
        back_inputs = [i.get_any_name() for i in self.back.inputs]  # the export drops a part the back does not use
        # (front output index, back input index): the back reads the front's output tensors in place
        self.links = [(i, back_inputs.index(f"part_{i}")) for i in range(len(self.front.outputs))
                      if f"part_{i}" in back_inputs]

        def static(shape):  # the front at this input shape; the back at the shapes of the front's outputs
            front = compile_cpu(core, reshaped(front_model, {0: shape}), front_config)
            parts = {f"part_{i}": front.outputs[i].get_shape() for i, _ in self.links}
            return Request(front), Request(compile_cpu(core, reshaped(back_model, parts), back_config))

        self.static = StaticCompiles(static, "OpenVINO") if _is_dynamic(front_model) else None

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        static = self.static.get(x.shape) if self.static is not None else None
        front, back = self.run if static is None else static
        front.feed(x)
        front.request.infer()
        for i, j in self.links:
            back.request.set_input_tensor(j, front.request.get_output_tensor(i))
        back.request.infer()
        return {head: out[0] for head, out in zip(self.heads, back.outputs())}


def openvino_backend(model, input_hw: tuple[int, int], threads: int | None = None, decoder=None, *,
                     dynamic_size: bool = False, precision: str = "fp32", bf16_split: tuple | None = None,
                     letterbox: bool = False) -> OpenVinoBackend | SplitOpenVinoBackend:
    """``model`` (a torch network) exported to ONNX for OpenVINO (the onnxruntime backend's input, heads and
    in-graph decoder; dynamic height and width axes when ``dynamic_size``), compiled by OpenVINO for the CPU at
    ``precision`` (``fp32`` or ``bf16``). ``bf16_split``: for bf16, the network as ``(front, back)`` (a family's
    ``bf16_split``), run as :class:`SplitOpenVinoBackend` with the front in float32 (``model`` then only describes
    the network; a split takes no in-graph decoder). ``letterbox``: the model's preprocessing is TF's letterbox
    (:func:`~featherpose.image.resize_with_pad`) to the fixed ``input_hw``: OpenVINO runs it too (see
    :class:`OpenVinoBackend`; not with ``dynamic_size`` or a split).

    Raises:
        OpenVinoMissingError: OpenVINO is not installed (an ImportError; one line: :data:`INSTALL_HINT`), raised
            before any export work.
    """
    import_openvino()
    if precision == "bf16":
        check_bf16()  # before the export work
    from .export import export_onnx, export_onnx_split

    if precision == "bf16" and bf16_split is not None:
        if decoder is not None:
            raise ValueError("a split network (bf16_split) runs without an in-graph decoder; pass decoder=None")
        return SplitOpenVinoBackend(*export_onnx_split(*bf16_split, input_hw, dynamic_size), threads)
    letterbox = letterbox and not dynamic_size
    return OpenVinoBackend.from_onnx(export_onnx(model, input_hw, decoder=decoder, dynamic_size=dynamic_size,
                                                 letterbox=letterbox, runtime="openvino"),
                                     threads, precision, letterbox)
