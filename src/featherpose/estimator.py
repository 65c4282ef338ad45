"""Estimator: preprocess -> backend -> codec.decode -> Poses. The one place a model meets its codec."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from .codecs.base import Codec
from .image import Letterbox, LetterboxedFrame, letterbox_frame, load_frame, load_image, resize_with_pad
from .poses import Poses
from .runtime import create_backend
from .runtime.export import LazyNetwork, graph_decoder
from .skeletons import Skeleton

if TYPE_CHECKING:
    from torch import nn

#: The instance score below which ``est(image)`` leaves a person out: the same default as the CLI's
#: ``--min-score``. A blank image scores under 0.07 with every bundled model. ``min_score=0`` gives
#: the model's raw output (single-pose: always one person; movenet-multipose: always six).
DEFAULT_MIN_SCORE = 0.2


class NonFiniteOutputError(FloatingPointError, ValueError):
    """The network produced NaN or infinite values (corrupt weights: inputs are always uint8 pixels).

    A FloatingPointError and a ValueError (one line in the CLI). The weights are to blame, not the
    image, so a folder run stops at the first one instead of reporting every image the same way."""


def check_min_score(min_score) -> float:
    """``min_score`` as a float in [0, 1], or a one-line ValueError."""
    try:
        value = float(min_score)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"min_score must be a number from 0 to 1 (0: every person the model outputs), "
                         f"got {min_score!r}")
    return value


class Estimator:
    """Runs one pose model on images.

    ``est(image)`` accepts a path, an HxW(x3/4) array (RGB) or a PIL image and returns :class:`Poses`
    in the image's pixels: the people scoring at least ``min_score`` (default
    :data:`DEFAULT_MIN_SCORE`, as the CLI; ``est(image, min_score=0)`` is the raw output). The three
    steps are public so benchmarks can time them apart.

    Args:
        name: model name.
        network: the torch module (also the source of the ONNX export), or a
            :class:`~featherpose.runtime.export.LazyNetwork` (:func:`featherpose.load`'s): built when a backend
            needs it or :attr:`network` is read, so that a process whose exports are cached never imports torch.
        codec: decodes raw heads (a :class:`~featherpose.codecs.base.Codec`); its kind says whether the model
            sees one person, several, or one person crop (top-down), and its optional in-graph decoder runs
            inside the ONNX graph.
        skeleton: the keypoint set the model predicts.
        backend: ``auto`` (the fastest installed backend for this model on this machine, measured once and cached:
            :mod:`featherpose.runtime.autoselect`), ``onnxruntime``, ``torch``, ``openvino``, or a built backend
            (OpenVINO running an IR).
        threads: CPU threads (None: runtime default).
        preprocess: (HxWx3 uint8 RGB image, ``codec.input_hw``) -> ((Hi, Wi, 3) int32 RGB network input,
            :class:`~featherpose.image.Letterbox`), the family's (its row's ``preprocess``); None: TF's letterbox
            to ``codec.input_hw`` (:func:`~featherpose.image.resize_with_pad`, MoveNet's).
        dynamic_size: the input size follows each image (``preprocess`` chooses it); the ONNX graph then has
            dynamic height and width axes.
    """

    def __init__(self, name: str, network: nn.Module | LazyNetwork, codec: Codec, skeleton: Skeleton,
                 backend: str = "auto", threads: int | None = None, *,
                 preprocess: Callable[[np.ndarray, tuple[int, int]], tuple[np.ndarray, Letterbox]] | None = None,
                 dynamic_size: bool = False):
        self.name = name
        self._network = network
        self.codec = codec
        self.skeleton = skeleton
        self.input_hw = codec.input_hw
        self.kind = codec.kind
        self.multi_person = codec.multi
        self.top_down = codec.top_down  # one person per input, needs person boxes on whole images
        self.keypoint_threshold = codec.keypoint_threshold  # drawings leave out keypoints scoring under it
        self._preprocess = preprocess or resize_with_pad
        self.dynamic_size = dynamic_size
        decoder = graph_decoder(codec, network)

        def build(name):
            return create_backend(network, self.input_hw, name, threads, decoder, dynamic_size=dynamic_size,
                                  letterbox=preprocess is None)

        if isinstance(backend, str) and backend == "auto":  # measured once per machine and model, then cached
            # a model whose size follows the image is keyed by its input size too (input_size=256 or 448 of Lite
            # Pose): the runtimes' ranking can change with the size
            size = f"{self.input_hw[0]}x{self.input_hw[1]}" + (" (dynamic)" if dynamic_size else "")
            params = (network.parameter_count if isinstance(network, LazyNetwork) else
                      sum(p.numel() for p in network.parameters()))
            # "timed with preprocessing": entries cached before auto timed whole frames are measured again
            key = (f"{name} ({params} parameters), input {size}, threads {threads or 'default'}, "
                   "timed with preprocessing")
            self.backend = self.fastest_backend(key, build)
        else:
            self.backend = build(backend)

    def fastest_backend(self, key: str, build: Callable[[str], Callable], **options):
        """:func:`~featherpose.runtime.autoselect.fastest_backend` for this model: each backend timed on a 768x576
        street frame (as video users run; read only when measuring) with the preprocessing it takes, then the
        network. ``options``: that function's ``candidates`` and ``env``."""
        from .runtime.autoselect import fastest_backend
        from .runtime.quantize import bundled_calibration_files

        sample = functools.cache(lambda: load_image(bundled_calibration_files()[0]))

        def frame(backend):  # what a frame costs with that backend: its preprocessing, then the network
            return backend(self._backend_input(sample(), backend)[0])

        return fastest_backend(key, build, frame, **options)

    @property
    def network(self) -> nn.Module:
        """The torch network (built now from its weight file if it was not: torch is imported then)."""
        if isinstance(self._network, LazyNetwork):
            return self._network.module
        return self._network

    def __repr__(self) -> str:
        size = "each image's own" if self.dynamic_size else f"{self.input_hw[1]}x{self.input_hw[0]}"
        return f"Estimator({self.name!r}, input {size}, backend {self.backend.name})"

    def __call__(self, image: str | Path | np.ndarray, min_score: float = DEFAULT_MIN_SCORE, *,
                 name: str | None = None, bgr: bool = False) -> Poses:
        """Poses of the people scoring at least ``min_score`` (0: all the model outputs). ``name`` (the image's
        file name) is ignored: it is there so that a :class:`~featherpose.topdown.TopDown` and an Estimator are
        called alike. ``bgr``: the array's channels are in OpenCV's order (``cv2.imread``, ``VideoCapture.read``);
        see :meth:`preprocess`.

        Raises:
            FileNotFoundError, ImageError: see :func:`~featherpose.image.load_image`.
            ValueError: ``bgr`` with a file or PIL image (read as RGB).
            NonFiniteOutputError: the network output NaN/inf (a FloatingPointError and a ValueError).
        """
        min_score = check_min_score(min_score)
        x, letterbox = self.preprocess(load_frame(image, bgr), bgr=bgr)
        poses = self.postprocess(self.infer(x), letterbox)
        return poses.filter(min_score) if min_score > 0 else poses

    def preprocess(self, image: np.ndarray, bgr: bool = False) -> tuple[np.ndarray | LetterboxedFrame, Letterbox]:
        """HxWx3 uint8 RGB (``bgr``: BGR, OpenCV's order) -> (what the backend takes, letterbox geometry): the network
        input (see :meth:`network_input`), or, for a backend that letterboxes in its graph (``backend.letterboxes``:
        OpenVINO on a model with TF's letterbox), the frame and its tables, a
        :class:`~featherpose.image.LetterboxedFrame`. A BGR frame is converted to RGB first, but where the graph
        letterboxes: its tables read the channels reversed (a 768x576 frame's conversion took 0.043 ms, 3 % of
        Lightning's call)."""
        return self._backend_input(image, self.backend, bgr)

    def _backend_input(self, image: np.ndarray, backend, bgr: bool = False
                       ) -> tuple[np.ndarray | LetterboxedFrame, Letterbox]:
        """:meth:`preprocess` for ``backend``."""
        if self._preprocess is resize_with_pad and getattr(backend, "letterboxes", False):  # never a family's own
            return letterbox_frame(image, self.input_hw, bgr)
        return self.network_input(cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else image)

    def network_input(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """HxWx3 uint8 RGB -> ((1, Hi, Wi, 3) int32 network input, letterbox geometry); (Hi, Wi) is
        :attr:`input_hw` unless :attr:`dynamic_size` (then the preprocessing sizes it for the image)."""
        x, letterbox = self._preprocess(image, self.input_hw)
        return x[None], letterbox

    def infer(self, x: np.ndarray | LetterboxedFrame) -> dict[str, np.ndarray]:
        """What :meth:`preprocess` (or :meth:`network_input`) gives -> raw heads (batch axis dropped)."""
        return self.backend(x)

    def check_finite(self, heads: dict[str, np.ndarray]) -> None:
        """Raise :class:`NonFiniteOutputError` when any head (or the in-graph decoder's output) holds NaN/inf.

        One pass over the raw outputs per call; the decoders themselves never raise on such values.
        """
        bad = [k for k, v in heads.items() if not np.isfinite(v).all()]
        if bad:
            where = "" if bad == ["decoded"] else f" in {', '.join(bad)}"  # "decoded": the in-graph decoder's output
            raise NonFiniteOutputError(f"{self.name}: the network output NaN/inf{where} (corrupt weights?); "
                                       "re-create or re-train the weight file")

    def postprocess(self, heads: dict[str, np.ndarray], letterbox: Letterbox) -> Poses:
        """Raw heads -> Poses in image pixels (all the model outputs, unfiltered); a keypoint the codec reports
        missing, (0, 0, 0), stays (0, 0, 0).

        Raises:
            NonFiniteOutputError: the heads hold NaN/inf.
        """
        self.check_finite(heads)
        with np.errstate(over="ignore", invalid="ignore"):  # huge but finite heads overflow harmlessly to inf distances
            dec = self.codec.decode(heads)
        kpts = dec.keypoints.copy()
        missing = (kpts == 0).all(axis=-1, keepdims=True)  # a codec's missing keypoint (0, 0, 0) stays (0, 0, 0)
        kpts[..., :2] = np.where(missing, kpts[..., :2], letterbox.to_image(kpts[..., :2]))
        boxes = None
        if dec.boxes is not None:  # person boxes
            boxes = letterbox.to_image(dec.boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        return Poses.create(kpts, dec.scores, boxes, letterbox.image_hw, self.skeleton)
