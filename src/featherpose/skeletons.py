"""Keypoint sets: names, left/right flip pairs, limbs to draw, OKS sigmas.

A new keypoint set is a data change: add a :class:`Skeleton` to ``SKELETONS``. Flip pairs are
derived from the ``left_`` / ``right_`` name prefixes, so they cannot disagree with the names.
Sigmas are the per-keypoint OKS constants (COCO's, and mmpose's dataset configs for the others,
as carried in the ``oks_sigmas`` field of ``shared/data`` jsons); :func:`sigmas_by_name` finds them for
any list of registered keypoint names. ``WHOLEBODY_PARTS`` holds the names and sigmas of the
COCO-WholeBody points stored beside the 17 body points (foot, face, hands).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    """One keypoint set.

    Attributes:
        name: registry key, e.g. ``"coco17"``.
        keypoints: K names in model output order.
        limbs: pairs of keypoint indices (0-based) joined when drawing.
        sigmas: K OKS sigmas.
    """

    name: str
    keypoints: tuple[str, ...]
    limbs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    flip_pairs: tuple[tuple[int, int], ...] = field(init=False)

    def __post_init__(self):
        if len(self.sigmas) != len(self.keypoints):
            raise ValueError(f"skeleton {self.name}: {len(self.sigmas)} sigmas for {len(self.keypoints)} keypoints")
        index = {n: i for i, n in enumerate(self.keypoints)}
        pairs = tuple((i, index["right_" + n[5:]]) for i, n in enumerate(self.keypoints)
                      if n.startswith("left_") and "right_" + n[5:] in index)
        object.__setattr__(self, "flip_pairs", pairs)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def flip_index(self) -> np.ndarray:
        """Permutation that swaps left and right keypoints: ``flipped[:, flip_index()]``."""
        perm = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def index(self, name: str) -> int:
        return self.keypoints.index(name)


def _limbs(names: tuple[str, ...], pairs: list[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    return tuple((names.index(a), names.index(b)) for a, b in pairs)


_SIDES = ("left", "right")
_ARM_LEG = [("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"), ("shoulder", "hip")]


def _side_limbs() -> list[tuple[str, str]]:
    return [(f"{s}_{a}", f"{s}_{b}") for s in _SIDES for a, b in _ARM_LEG] + [
        ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip")]


_COCO_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
               "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
               "left_knee", "right_knee", "left_ankle", "right_ankle")
COCO17 = Skeleton(
    "coco17", _COCO_NAMES,
    _limbs(_COCO_NAMES, _side_limbs() + [("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"),
                                         ("right_eye", "right_ear")]),
    (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
     0.087, 0.087, 0.089, 0.089),
)

_OPENPOSE_NAMES = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
                   "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
                   "right_eye", "left_eye", "right_ear", "left_ear")
_COCO_SIGMA = dict(zip(_COCO_NAMES, COCO17.sigmas))
OPENPOSE18 = Skeleton(
    "openpose18", _OPENPOSE_NAMES,
    _limbs(_OPENPOSE_NAMES, [(f"{s}_{a}", f"{s}_{b}") for s in _SIDES for a, b in _ARM_LEG[:4]]
           + [("neck", f"{s}_{j}") for s in _SIDES for j in ("shoulder", "hip")]
           + [("neck", "nose"), ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"),
              ("right_eye", "right_ear")]),
    # OpenPose's neck (midpoint of the shoulders) has no COCO sigma; we use the shoulders' 0.079.
    tuple(_COCO_SIGMA.get(n, 0.079) for n in _OPENPOSE_NAMES),
)

#: OpenPose-18's 19 part affinity fields (Lightweight OpenPose, Intel's ``human-pose-estimation-0001``), in the
#: order its grouping visits them: keypoint pairs (a, b) as OpenPose-18 indices and the PAF channels (x, y) of
#: each. Parts 17 and 18 (shoulder-ear) only fill in missing keypoints; they are not drawn.
OPENPOSE18_PAF_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 0),
    (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17))
OPENPOSE18_PAF_CHANNELS: tuple[tuple[int, int], ...] = (
    (12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11),
    (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27))
#: COCO-17 index of each OpenPose-18 keypoint (-1: the neck, which COCO does not have).
OPENPOSE18_TO_COCO17: tuple[int, ...] = tuple(-1 if n == "neck" else _COCO_NAMES.index(n) for n in _OPENPOSE_NAMES)

_CROWDPOSE_NAMES = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck")
CROWDPOSE14 = Skeleton(
    "crowdpose14", _CROWDPOSE_NAMES,
    _limbs(_CROWDPOSE_NAMES, _side_limbs() + [("head", "neck"), ("neck", "left_shoulder"), ("neck", "right_shoulder")]),
    (0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079),
)

_MPII_NAMES = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
               "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder",
               "left_elbow", "left_wrist")
_TORSO_LIMBS = [(f"{s}_{a}", f"{s}_{b}") for s in _SIDES for a, b in _ARM_LEG[:4]]
MPII16 = Skeleton(
    "mpii16", _MPII_NAMES,
    _limbs(_MPII_NAMES, _TORSO_LIMBS + [("right_hip", "pelvis"), ("left_hip", "pelvis"), ("pelvis", "thorax"),
                                        ("thorax", "upper_neck"), ("upper_neck", "head_top"),
                                        ("thorax", "right_shoulder"), ("thorax", "left_shoulder")]),
    (0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026, 0.062, 0.072, 0.179, 0.179, 0.072, 0.062),
)

_LSP_NAMES = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
              "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top")
LSP14 = Skeleton(
    "lsp14", _LSP_NAMES,
    _limbs(_LSP_NAMES, _side_limbs() + [("neck", "head_top"), ("neck", "left_shoulder"), ("neck", "right_shoulder")]),
    (0.089, 0.087, 0.107, 0.107, 0.087, 0.089, 0.062, 0.072, 0.079, 0.079, 0.072, 0.062, 0.079, 0.079),
)

SKELETONS: dict[str, Skeleton] = {s.name: s for s in (COCO17, OPENPOSE18, CROWDPOSE14, MPII16, LSP14)}


# COCO-WholeBody v1.0: the parts stored beside the 17 body points, in the order they are appended,
# with their keypoint names (left_/right_ prefixes give the flip pairs) and the OKS sigmas of the
# COCO-WholeBody evaluation (Jin et al., ECCV 2020).
_WB_FOOT = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
_WB_FACE_SIGMAS = (
    0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038, 0.043,
    0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009, 0.007, 0.007,
    0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011,
    0.012, 0.010, 0.034, 0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.010, 0.008, 0.009, 0.009, 0.009, 0.007,
    0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.01, 0.008)
_WB_HAND_SIGMAS = (0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026,
                   0.017, 0.021, 0.021, 0.032, 0.02, 0.019, 0.022, 0.031)
WHOLEBODY_PARTS: tuple[tuple[str, tuple[str, ...], tuple[float, ...]], ...] = (
    ("foot", _WB_FOOT, (0.068, 0.066, 0.066, 0.092, 0.094, 0.094)),
    ("face", tuple(f"face_{i}" for i in range(68)), _WB_FACE_SIGMAS),
    ("lefthand", tuple(f"left_hand_{i}" for i in range(21)), _WB_HAND_SIGMAS),
    ("righthand", tuple(f"right_hand_{i}" for i in range(21)), _WB_HAND_SIGMAS),
)


def _sigma_by_name() -> dict[str, float]:
    """Keypoint name -> OKS sigma, from the first registered skeleton (``SKELETONS`` order) that has the name."""
    known: dict[str, float] = {}
    for skel in SKELETONS.values():
        for n, s in zip(skel.keypoints, skel.sigmas):
            known.setdefault(n, s)
    return known


def sigmas_by_name(names: Sequence[str]) -> list[float] | None:
    """OKS sigmas of a keypoint set given by names: the registered skeleton's when one has exactly these
    names (in this order), else each name's sigma in the first registered skeleton that has it; None when
    some name is in no registered skeleton (:func:`keypoints_without_sigma` lists them)."""
    registered = skeleton_for(names)
    if registered is not None:
        return list(registered.sigmas)
    known = _sigma_by_name()
    return [known[n] for n in names] if all(n in known for n in names) else None


def keypoints_without_sigma(names: Sequence[str]) -> list[str]:
    """The names among ``names`` that no registered skeleton gives an OKS sigma."""
    known = _sigma_by_name()
    return [n for n in names if n not in known]


def get_skeleton(name: str) -> Skeleton:
    """Look up a skeleton by name; the error lists the known ones."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise ValueError(f"unknown skeleton {name!r}; known: {', '.join(SKELETONS)}") from None


def skeleton_to_json(skeleton: Skeleton) -> str:
    """JSON of a skeleton (stored in weight files, so a model trained on any keypoint set reloads with it)."""
    import json

    return json.dumps({"name": skeleton.name, "keypoints": list(skeleton.keypoints),
                       "limbs": [list(l) for l in skeleton.limbs], "sigmas": list(skeleton.sigmas)})


def skeleton_from_json(text: str) -> Skeleton:
    """The skeleton written by :func:`skeleton_to_json` (the registered one when it is identical)."""
    import json

    d = json.loads(text)
    s = Skeleton(d["name"], tuple(d["keypoints"]), tuple(tuple(l) for l in d["limbs"]), tuple(d["sigmas"]))
    return SKELETONS.get(s.name) if SKELETONS.get(s.name) == s else s


def skeleton_for(names: list[str] | tuple[str, ...]) -> Skeleton | None:
    """The registered skeleton with exactly these keypoint names (in this order), if any."""
    names = tuple(names)
    return next((s for s in SKELETONS.values() if s.keypoints == names), None)
