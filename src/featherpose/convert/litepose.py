"""Import a Lite Pose PyTorch checkpoint (upstream mit-han-lab/litepose's ``LitePose`` state_dict, e.g.
``litepose-auto-m-crowdpose.pth``) into :class:`featherpose.models.litepose.LitePose`.

The file is read with ``torch.load(weights_only=True)`` (tensors only, no code runs). Every upstream tensor name
is mapped to one featherpose name by :func:`featherpose_name` (e.g. ``stage.2.4.depth_conv.1.running_var`` ->
``stages.2.4.depthwise.1.running_var``); a name without a mapping, two names mapping to one, a featherpose
tensor left without weights, or a shape that differs fails the import. Tensors are stored unchanged
(float32; BatchNorm's int64 ``num_batches_tracked`` too).

The network's widths, block counts and kernels are read from the checkpoint's own tensor shapes
(:func:`config_from_state`) and must equal the architecture named by ``--arch`` (default: Auto-M,
upstream's ``mobile_configs/search-M.json``).
"""
from __future__ import annotations

import hashlib
import pickle
import re
import warnings
from pathlib import Path

import torch

from ..families.litepose import default_codec
from ..fileio import check_writable
from ..models.litepose import LitePose, LitePoseConfig, make_divisible, named_config
from ..skeletons import CROWDPOSE14, skeleton_to_json
from ..weights_io import save_weights

NAME = "litepose-m-crowdpose"
#: sha256 of the checkpoint ``shared/weights/litepose/README.md`` describes (a third-party copy, see there).
KNOWN_SHA256 = "cbbdf0c965bae9f4765067d3e00ac3ffd67b3ff880fcb3ea7cf67043e2712b46"
LITEPOSE_LICENSE = ("MIT for upstream's code (mit-han-lab/litepose, 'Copyright (c) 2019 HRNet'); the weights carry "
                    "no licence statement of their own and their source repository (LeeSiHyunn/LitePose) has no "
                    "licence file; see weights/NOTICE")
LITEPOSE_PAPER = ("Wang, Li, Cai, Chen, Han, 'Lite Pose: Efficient Architecture Design for 2D Human Pose "
                  "Estimation' (CVPR 2022, arXiv:2205.01271)")
PROVENANCE = ("LitePose-Auto-M trained on CrowdPose (14 keypoints), MIT Han Lab; a THIRD-PARTY COPY: github "
              "LeeSiHyunn/LitePose @ dd623562952e8aec0e0dcda55f3d10565d9848bd, folder archive/ (upstream's Google "
              "Drive file was not available; byte-identity with MIT Han Lab's official file is not provable; it loads "
              "strictly into upstream's search-M network and its BatchNorm num_batches_tracked are all 0, suggesting "
              "a conversion step)")

#: (upstream pattern, featherpose replacement), tried in order; every upstream name must match exactly one.
_RULES: tuple[tuple[str, str], ...] = (
    (r"first\.0\.([01])\.(.+)", r"stem.conv.\1.\2"),
    (r"first\.1\.([01])\.(.+)", r"stem.depthwise.\1.\2"),
    (r"first\.2\.(weight)", r"stem.project.0.\1"),
    (r"first\.3\.(.+)", r"stem.project.1.\1"),
    (r"stage\.(\d+)\.(\d+)\.inv\.([01])\.(.+)", r"stages.\1.\2.expand.\3.\4"),
    (r"stage\.(\d+)\.(\d+)\.depth_conv\.([01])\.(.+)", r"stages.\1.\2.depthwise.\3.\4"),
    (r"stage\.(\d+)\.(\d+)\.point_conv\.([01])\.(.+)", r"stages.\1.\2.project.\3.\4"),
    (r"deconv_refined\.([0-2])\.(weight)", r"fusion.\1.up_deep.\2"),
    (r"deconv_raw\.([0-2])\.(weight)", r"fusion.\1.up_skip.\2"),
    (r"deconv_bnrelu\.([0-2])\.0\.(.+)", r"fusion.\1.bn.\2"),
    (r"final_refined\.([01])\.conv\.([01])\.(.+)", r"head_deep.\1.depthwise.\2.\3"),
    (r"final_refined\.([01])\.conv\.3\.(weight)", r"head_deep.\1.pointwise.\2"),
    (r"final_raw\.([01])\.conv\.([01])\.(.+)", r"head_skip.\1.depthwise.\2.\3"),
    (r"final_raw\.([01])\.conv\.3\.(weight)", r"head_skip.\1.pointwise.\2"),
)


def featherpose_name(upstream: str) -> str:
    """The featherpose state_dict name of an upstream ``LitePose`` tensor name (ValueError when none)."""
    for pattern, repl in _RULES:
        if re.fullmatch(pattern, upstream):
            return re.sub(pattern, repl, upstream)
    raise ValueError(f"no Lite Pose tensor for the upstream name {upstream!r}")


def config_from_state(state: dict[str, torch.Tensor]) -> LitePoseConfig:
    """The :class:`LitePoseConfig` an upstream state_dict's shapes describe (block counts, widths, expansions,
    kernels, fusion widths, keypoints, with stage strides 2, 2, 2, 1 as in every upstream config).

    Raises:
        ValueError: a tensor the description needs is missing, or an expansion is not a whole number.
    """
    try:
        stem = state["first.2.weight"].shape[0]
        stages, cin = [], stem
        for s in range(4):
            blocks, b = [], 0
            while f"stage.{s}.{b}.inv.0.weight" in state:
                hidden = state[f"stage.{s}.{b}.inv.0.weight"].shape[0]
                kernel = state[f"stage.{s}.{b}.depth_conv.0.weight"].shape[-1]
                expansion = next((t for t in range(1, 13) if make_divisible(round(cin * t)) == hidden), None)
                if expansion is None:
                    raise ValueError(f"stage {s} block {b}: hidden width {hidden} is no whole expansion of {cin}")
                blocks.append([expansion, kernel])
                cin = state[f"stage.{s}.{b}.point_conv.0.weight"].shape[0]
                b += 1
            stages.append({"channels": cin, "stride": 1 if s == 3 else 2, "blocks": blocks})
        widths = [state[f"deconv_refined.{i}.weight"].shape[1] for i in range(3)]
        keypoints = state["final_refined.1.conv.3.weight"].shape[0]
    except KeyError as exc:
        raise ValueError(f"tensor {exc.args[0]} is missing") from None
    return LitePoseConfig(keypoints, stem, stages, widths)


def litepose_tensors(state: dict[str, torch.Tensor], model: LitePose) -> dict[str, torch.Tensor]:
    """Map every tensor of an upstream state_dict onto ``model``: the weight file's tensors (unchanged).

    Raises:
        ValueError: an upstream name has no mapping, two map to one, a module tensor gets nothing, or a shape
            differs.
    """
    expected = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = featherpose_name(key)
        if name in tensors:
            raise ValueError(f"{key!r}: a second upstream tensor maps to {name}")
        if name not in expected:
            raise ValueError(f"{key!r} -> {name}: the network has no such tensor")
        if tuple(value.shape) != tuple(expected[name].shape):
            raise ValueError(f"{key!r}: shape {tuple(value.shape)}, {name} is {tuple(expected[name].shape)}")
        tensors[name] = value.detach().clone()
    missing = sorted(expected.keys() - tensors.keys())
    if missing:
        raise ValueError(f"{len(missing)} network tensors get no weights, e.g. {missing[:3]}")
    return tensors


def import_litepose(path: str | Path, arch: str = "litepose-m", num_keypoints: int = 14
                    ) -> tuple[LitePose, dict[str, torch.Tensor]]:
    """Read an upstream checkpoint: (network with its weights, in eval mode; the weight file's tensors).

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file, when it is not a ``LitePose`` state_dict of ``arch`` with ``num_keypoints``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; pass the Lite Pose checkpoint (litepose-auto-m-crowdpose.pth)")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes); pass the Lite Pose checkpoint (litepose-auto-m-crowdpose.pth)")
    if path.suffix == ".safetensors":
        raise ValueError(f"{path} is a .safetensors file, not upstream's PyTorch checkpoint: a featherpose weight file "
                         "runs as it is (featherpose predict --model it)")
    try:
        try:
            with warnings.catch_warnings():  # torch's notes on old pickle protocols: the error below says it all
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError("torch.load(weights_only=True) cannot read it (not a PyTorch file, or it holds code "
                             "objects besides tensors)") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            raise ValueError("a training checkpoint, not a plain state_dict (take its 'state_dict' entry)")
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError("not a state_dict of tensors")
        config = named_config(arch, num_keypoints)
        found = config_from_state(state)
        if found != config:
            raise ValueError(f"its tensors describe {found}, not {arch} with {num_keypoints} keypoints")
        model = LitePose(config)
        tensors = litepose_tensors(state, model)
        model.load_state_dict(tensors)
    except (ValueError, RuntimeError, KeyError, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        why = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0]  # torch's first sentence
        raise ValueError(f"{path}: not a Lite Pose ({arch}, {num_keypoints} keypoints) PyTorch state_dict: {why}; "
                         "pass litepose-auto-m-crowdpose.pth (upstream's LitePose, mobile_configs/search-M.json)"
                         ) from None
    return model.eval(), tensors


def convert_litepose(source: str | Path, out_dir: str | Path) -> list[Path]:
    """Convert ``litepose-auto-m-crowdpose.pth`` (or the folder holding it) into
    ``<out_dir>/litepose-m-crowdpose.safetensors``; returns [that path].

    The file holds the checkpoint's tensors unchanged under featherpose names, the Auto-M config, the CrowdPose-14
    skeleton, the associative-embedding codec's settings (upstream's grouping) and the provenance (the
    checkpoint's sha256, whether it is the copy the shared README describes).
    """
    check_writable(out_dir, "--out folder", folder=True)  # before any work
    source = Path(source)
    if source.is_dir():
        source = source / "litepose-auto-m-crowdpose.pth"
    model, tensors = import_litepose(source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    known = "the copy shared/weights/litepose/README.md describes" if digest == KNOWN_SHA256 else "an UNKNOWN copy"
    provenance = f"{PROVENANCE}; {source.name} sha256 {digest} ({known}); tensors stored unchanged"
    return [save_weights(Path(out_dir) / f"{NAME}.safetensors", tensors, name=NAME, architecture="litepose",
                         config=model.config.to_dict(), codec=default_codec(model.config, CROWDPOSE14.name),
                         skeleton=skeleton_to_json(CROWDPOSE14), source=provenance, license=LITEPOSE_LICENSE)]

