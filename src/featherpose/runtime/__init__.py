"""Inference backends: a backend turns an int32 (1, H, W, 3) RGB batch into raw head arrays.

Every backend is a callable ``backend(x) -> {head name: (C, h, w) float32}`` (batch axis dropped),
or ``{"decoded": ...}`` when the codec's decoder runs in the graph; the codec's ``decode`` takes
either, so the Estimator does not care which one runs. ``onnxruntime`` and ``openvino`` (the optional extra
``featherpose[openvino]``, :mod:`featherpose.runtime.openvino`) and ``litert`` (``featherpose[litert]``,
:mod:`featherpose.runtime.litert`: raw heads only, the codec decodes) are imported only when used.
"""
from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import torch

    from .export import LazyNetwork

log = logging.getLogger(__name__)
BACKENDS = ("onnxruntime", "torch", "openvino", "litert")
#: a model whose input size follows the image gets a static compile for a size met this often (a video: from its
#: second frame on) ...
STATIC_AFTER = 2
#: ... for this many sizes at most (each holds its own buffers: 70-80 MB for Lite Pose at 448 in OpenVINO; images of
#: many sizes keep the dynamic compile)
MAX_STATIC_SIZES = 2
#: input shapes the torch backend keeps a CUDA graph for (each holds its own memory pool); others run eagerly
MAX_CUDA_GRAPHS = 8


def default_backend() -> str:
    """onnxruntime when installed (measured 3-4x faster than eager torch on CPU), else torch."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnxruntime"


class TorchBackend:
    """Eager PyTorch, on the device the model's weights are on (the CPU unless moved, e.g. to score on a GPU).

    On a GPU each input shape is captured once as a CUDA graph and replayed: a batch-1 forward of an eager
    8-stack hourglass is bound by launching its thousands of kernels from Python (about 50 ms per LSP person
    on an H100 when scoring), which a replay skips. If capture fails the backend warns once and stays eager.
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module, threads: int | None = None):
        import torch

        self.model = model.eval()
        if threads:  # process-wide in torch: set once here, not on every call
            torch.set_num_threads(threads)
        self._graphs: dict[tuple, tuple] = {}  # input shape -> (graph, static input, static outputs)
        self._graphs_failed = False

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        device = next(self.model.parameters()).device
        xt = torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float()
        out = self._replay(xt) if device.type == "cuda" and not self._graphs_failed else None
        if out is None:
            with torch.inference_mode():
                out = self.model(xt)
        return {k: v[0].cpu().numpy() for k, v in out.items()}

    def _replay(self, xt: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """The model's outputs by replaying the CUDA graph of this input shape (captured on first use); None
        when capture failed (then eager from here on)."""
        import torch

        key = tuple(xt.shape)
        if key not in self._graphs:
            if len(self._graphs) >= MAX_CUDA_GRAPHS:  # sizes that follow the image: eager past a few
                return None
            try:
                static_in = xt.clone()
                side = torch.cuda.Stream()  # warm-up off the default stream, as torch.cuda.graph requires
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side), torch.no_grad():
                    for _ in range(2):
                        self.model(static_in)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph), torch.no_grad():
                    static_out = self.model(static_in)
                self._graphs[key] = (graph, static_in, static_out)
            except RuntimeError as exc:
                import warnings
                warnings.warn(f"torch backend: CUDA graph capture failed ({exc}); running eagerly", stacklevel=3)
                self._graphs_failed = True
                return None
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(xt)
        graph.replay()
        return static_out


class StaticCompiles:
    """Static compiles of a model whose input size follows the image, one per input shape met :data:`STATIC_AFTER`
    times, :data:`MAX_STATIC_SIZES` at most. Runtimes run a static shape faster than the same shape through the
    dynamic graph: in OpenVINO Lite Pose's bf16 network 34.2 against 35.2 ms at 448x640 (median of 300 interleaved
    calls), Lightweight OpenPose's 12.9 against 13.1 ms, compiling in 0.03-0.2 s once per size; in onnxruntime Lite
    Pose's fp32 network 171.0 against 195.0 ms (medians of 16 alternating rounds on a slow phase of a 2-core Xeon), a
    session in 0.07-0.10 s.

    ``backend="auto"`` times a backend after warming it up on the sample twice (``autoselect.WARMUP``), so the one
    compile for the sample's size happens before the timed calls.

    Args:
        build: input shape -> what to run for it (the backend's compiled model or models, its session).
        runtime: the runtime's name, for the warning when a compile fails.
    """

    def __init__(self, build: Callable[[tuple[int, ...]], object], runtime: str):
        self.build, self.runtime = build, runtime
        self.seen: collections.Counter = collections.Counter()
        self.compiled: dict[tuple[int, ...], object] = {}  # None: that size failed to compile, runs dynamic

    def get(self, shape: tuple[int, ...]):
        """The static compile for ``shape``, or None (met too rarely so far, too many sizes, or it failed)."""
        if shape in self.compiled:
            return self.compiled[shape]
        if len(self.compiled) >= MAX_STATIC_SIZES:
            return None
        self.seen[shape] += 1
        if self.seen[shape] < STATIC_AFTER:
            return None
        try:
            self.compiled[shape] = self.build(shape)
        except Exception as exc:  # noqa: BLE001 - the runtime's errors; the dynamic graph still runs this size
            log.warning("%s: no static compile for input %s (%s); running it dynamic", self.runtime, shape, exc)
            self.compiled[shape] = None
        return self.compiled[shape]


def onnx_session(onnx_model: bytes | str, threads: int | None = None, sizes: dict[str, int] | None = None,
                 profile: str | None = None, spinning: bool = True):
    """An onnxruntime CPU session on ``onnx_model`` with every graph optimisation, ``threads`` intra-op threads
    (None: onnxruntime's default) and one inter-op thread; ``sizes`` fixes named dynamic dimensions (name ->
    size); ``profile``: onnxruntime's profiler on, its JSON written under this path prefix (``end_profiling()``).
    ``spinning=False``: its threads sleep as soon as a call ends instead of spinning on, where another session runs
    next (the latency table's timing: see :mod:`featherpose.nas.latency`)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if profile:
        opts.enable_profiling, opts.profile_file_prefix = True, profile
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    for name, size in (sizes or {}).items():
        opts.add_free_dimension_override_by_name(name, size)
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(onnx_model, opts, providers=["CPUExecutionProvider"])


class OnnxBackend:
    """onnxruntime's CPU execution provider on the model exported to ONNX (int32 NHWC input). A graph whose input
    size is dynamic also gets a session with that size fixed for each size it meets again (:class:`StaticCompiles`)."""

    name = "onnxruntime"

    def __init__(self, onnx_model: bytes | str, threads: int | None = None):
        self.session = onnx_session(onnx_model, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        dims = self.session.get_inputs()[0].shape  # a dynamic dimension is named (a str), a fixed one an int

        def static(shape):
            return onnx_session(onnx_model, threads, {d: n for d, n in zip(dims, shape) if isinstance(d, str)})

        self.static = StaticCompiles(static, "onnxruntime") if any(isinstance(d, str) for d in dims) else None

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        static = self.static.get(x.shape) if self.static is not None else None
        outs = (self.session if static is None else static).run(self.output_names, {self.input_name: x})
        return {k: v[0] for k, v in zip(self.output_names, outs)}


def check_threads(threads) -> None:
    """Raise a one-line ValueError unless ``threads`` is None or a whole number >= 1."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1):
        raise ValueError(f"threads must be a whole number >= 1 (None: the runtime's default), got {threads!r}")


def create_backend(model: torch.nn.Module | LazyNetwork, input_hw: tuple[int, int], backend="auto",
                   threads: int | None = None, decoder: torch.nn.Module | LazyNetwork | None = None, *,
                   dynamic_size: bool = False, letterbox: bool = False):
    """Build the named backend for ``model`` at ``input_hw`` (``auto`` here = :func:`default_backend`, the first
    installed; :class:`~featherpose.estimator.Estimator` resolves ``auto`` by measurement first, see
    :mod:`.autoselect`).

    Args:
        backend: ``auto``, a name in :data:`BACKENDS`, or a backend already built (an object with a ``name``
            that is called like one, e.g. :meth:`~featherpose.runtime.openvino.OpenVinoBackend.from_ir` of an IR
            file), returned as it is; ``model`` then only describes the network.
        model, decoder: torch modules, or :class:`~featherpose.runtime.export.LazyNetwork` s, built only if the
            backend needs them (torch, litert) or their export is not cached (onnxruntime, openvino).
        threads: CPU threads, a whole number >= 1 (None: the runtime's default); see :func:`check_threads`.
        decoder: an in-graph decoder (a codec's ``graph_decoder()``); onnxruntime and openvino run it inside the
            graph (as Google's graphs do) and returns ``{"decoded": ...}`` instead of the heads.
        dynamic_size: the ONNX graph takes any input size (``input_hw`` is the one it is traced at).
        letterbox: the model's preprocessing is TF's letterbox to ``input_hw``; openvino then letterboxes in its graph
            and also takes the frame itself (``backend.letterboxes``; see :mod:`.openvino`).
    """
    if not isinstance(backend, str) and callable(backend) and hasattr(backend, "name"):
        return backend
    check_threads(threads)
    threads = int(threads) if threads else None
    backend = default_backend() if backend == "auto" else backend
    if backend == "torch":
        from .export import module_of

        return TorchBackend(module_of(model), threads)
    if backend == "onnxruntime":
        from .export import export_onnx

        return OnnxBackend(export_onnx(model, input_hw, decoder=decoder, dynamic_size=dynamic_size), threads)
    if backend == "openvino":  # the same ONNX export, compiled by OpenVINO for the CPU
        from .openvino import openvino_backend

        return openvino_backend(model, input_hw, threads, decoder, dynamic_size=dynamic_size, letterbox=letterbox)
    if backend == "litert":  # the network converted by litert-torch; heads only (the codec decodes)
        from .export import module_of
        from .litert import LiteRTBackend

        return LiteRTBackend(module_of(model), input_hw, threads)
    raise ValueError(f"unknown backend {backend!r}; choose one of: auto, {', '.join(BACKENDS)}")
