"""Distillation (Fast Pose Distillation, seed 004) as a mode of the trainer, for any student and teacher.

    loss = alpha * L(student, teacher targets) + (1 - alpha) * L(student, label targets)

The teacher is any featherpose model (a zoo name or a weight file), frozen. Its prediction becomes
targets in the student's space:

- a heatmap teacher whose keypoints and heatmap size equal the student's (an 8x256 hourglass for a
  4x128 one, run live) gives its heatmaps themselves: FPD's loss, MSE between the two maps;
- any other teacher (e.g. MoveNet for an hourglass, or for a slimmer MoveNet) gives its decoded
  keypoints, which the student's own codec encodes like labels (all four heads for MoveNet).
  Keypoints are matched by name across skeletons (a COCO-17 teacher and an LSP-14 student share
  12); the student's keypoints the teacher lacks, and teacher keypoints scoring below
  ``min_confidence``, carry no teacher loss.

Live, the teacher runs on the student's augmented batch in every step. Cached, it runs once per
item on the un-augmented input; its keypoints are kept in source-image pixels and go through each
epoch's augmentation with the labels (:class:`~featherpose.train.data.TrainDataset`).
"""
from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.transforms import apply_affine, letterbox_matrix
from ..families import family_of
from ..fileio import atomic_path
from ..skeletons import Skeleton
from ..zoo import build, resolve_weights

log = logging.getLogger(__name__)
f32 = np.float32


def joint_map(teacher: Skeleton, student: Skeleton) -> np.ndarray:
    """(K_student,) index of each student keypoint in the teacher's, matched by name; -1 where the teacher has none."""
    index = {n: i for i, n in enumerate(teacher.keypoints)}
    found = np.array([index.get(n, -1) for n in student.keypoints], np.intp)
    if (found < 0).all():
        raise ValueError(f"the teacher predicts {teacher.name} keypoints and the student learns {student.name}: "
                         "no keypoint names in common, so the teacher can teach nothing")
    return found


def to_student_keypoints(keypoints: np.ndarray, mapping: np.ndarray, min_confidence: float) -> np.ndarray:
    """Teacher keypoints (N, K_t, 3) x, y, score -> student labels (N, K_s, 3) x, y, v.

    v = 2 where the teacher has the joint and scores it at least ``min_confidence``, else 0.
    """
    kp = np.asarray(keypoints, f32)
    out = np.zeros((kp.shape[0], len(mapping), 3), f32)
    has = mapping >= 0
    out[:, has] = kp[:, mapping[has]]
    out[..., 2] = np.where(has & (out[..., 2] >= min_confidence), 2, 0)
    return out


class Teacher:
    """A frozen featherpose model that makes targets for a student.

    Args:
        model: zoo name or featherpose weight file.
        student_codec: the student's codec (its ``input_hw`` is the canvas the teacher sees).
        student_skeleton: the keypoints the student learns.
        min_confidence: teacher keypoints below this score are not targets.
        device: where the teacher runs.
        bf16: run the teacher in bf16 autocast (as the student's step does); its heads come back as float32.
    """

    def __init__(self, model: str, student_codec, student_skeleton: Skeleton, min_confidence: float = 0.3,
                 device: torch.device | str = "cpu", bf16: bool = False):
        self.name, network, self.codec, self.skeleton = build(model)
        self.network = network.eval().to(device).requires_grad_(False)
        self.device = torch.device(device)
        self.bf16 = bf16
        self.student_codec = student_codec
        self.mapping = joint_map(self.skeleton, student_skeleton)
        self.min_confidence = float(min_confidence)
        # FPD proper: the teacher's raw heads (heatmaps) are the target, where its family says they can be
        self.row = row = family_of(self.codec)
        self.soft = (row.soft_teacher is not None and row.soft_targets is not None and family_of(student_codec) is row
                     and self.skeleton.keypoints == student_skeleton.keypoints
                     and row.soft_teacher(self.codec, student_codec))
        self.fingerprint = hashlib.sha256(resolve_weights(model)[0].read_bytes()).hexdigest()[:16]

    @property
    def shared_joints(self) -> np.ndarray:
        """(K_student,) float 1 where the teacher predicts the student's keypoint, else 0."""
        return (self.mapping >= 0).astype(f32)

    @torch.no_grad()
    def heads(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw teacher heads for a batch of student inputs (B, 3, H, W) 0..255 (uint8 or float), resized to the
        teacher's input."""
        x = images.to(self.device).float()
        if tuple(x.shape[-2:]) != self.codec.input_hw:
            x = F.interpolate(x, size=self.codec.input_hw, mode="bilinear", align_corners=False)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            heads = self.network(x)
        return {k: v.float() for k, v in heads.items()}

    def keypoints(self, images: torch.Tensor) -> list[np.ndarray]:
        """Per image, the teacher's people (N, K_student, 3) x, y, v in student input pixels."""
        heads = {k: v.float().cpu().numpy() for k, v in self.heads(images).items()}
        scale = np.array(self.student_codec.input_hw[::-1], f32) / np.array(self.codec.input_hw[::-1], f32)
        out = []
        for b in range(images.shape[0]):
            dec = self.codec.decode({k: v[b] for k, v in heads.items()})
            kp = dec.keypoints.copy()
            if self.codec.multi:  # a multi-person decoder always returns M slots: keep the people it found
                kp = kp[dec.scores >= self.min_confidence]
            kp[..., :2] *= scale
            out.append(to_student_keypoints(kp, self.mapping, self.min_confidence))
        return out

    def soft_targets(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``teacher_*`` targets from the teacher's raw heads, by its family's ``soft_targets`` (FPD: its heatmaps)."""
        return {f"teacher_{k}": v for k, v in self.row.soft_targets(self.heads(images)).items()}


def live_targets(teacher: Teacher, dataset, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``teacher_*`` targets for a batch of augmented student inputs, made in the step."""
    if teacher.soft:
        return teacher.soft_targets(images)
    per_image = [dataset.encode_teacher(kp) for kp in teacher.keypoints(images)]
    return {k: torch.stack([torch.from_numpy(np.asarray(t[k])) for t in per_image]) for k in per_image[0]}


def cache_teacher_keypoints(teacher: Teacher, dataset, folder: str | Path, batch_size: int = 16,
                            progress: bool = True) -> list[np.ndarray]:
    """The teacher's keypoints for every item of ``dataset``, in source-image pixels, computed once and kept.

    The teacher sees each item un-augmented (the plain letterbox or person crop); its keypoints are
    mapped back through that affine. The file is keyed by the teacher's weights, the data file and
    the canvas, so a changed teacher or dataset is recomputed, never silently reused; a damaged
    file (a truncated copy, another program's file) is computed again, with a warning.
    """
    data = hashlib.sha256(dataset.coco.ann_file.read_bytes()).hexdigest()  # content, not path or time
    parts = [teacher.fingerprint, data, str(dataset.coco.image_root.resolve()), str(dataset.codec.input_hw),
             str(dataset.top_down), str(len(dataset)), f"{teacher.min_confidence:g}"]
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    path = Path(folder) / f"teacher-{teacher.name}-{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                flat, counts = data["keypoints"], data["counts"]
            if len(counts) != len(dataset) or int(counts.sum()) != len(flat):
                raise ValueError(f"{len(counts)} items, the data has {len(dataset)}")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # a damaged cache is recomputed
            log.warning("teacher cache %s is unreadable (%s); computing it again", path, str(exc).splitlines()[0])
        else:
            log.info("teacher keypoints read from %s", path)
            return list(np.split(flat, np.cumsum(counts)[:-1])) if len(counts) else []
    hw = dataset.codec.input_hw
    out: list[np.ndarray] = []
    for start in tqdm(range(0, len(dataset), batch_size), desc=f"caching teacher {teacher.name}", unit="batch",
                      disable=not progress):
        items = [dataset.source(i) for i in range(start, min(start + batch_size, len(dataset)))]
        warped, inverses = [], []
        for sample, matrix in items:
            m = matrix if matrix is not None else letterbox_matrix(sample.image.shape[:2], hw)
            warped.append(cv2.warpAffine(sample.image, m[:2], (hw[1], hw[0]), flags=cv2.INTER_LINEAR))
            inverses.append(np.linalg.inv(m))
        batch = torch.from_numpy(np.stack(warped).transpose(0, 3, 1, 2).copy()).float()
        for kp, inv in zip(teacher.keypoints(batch), inverses):
            kp[..., :2] = apply_affine(kp[..., :2], inv)
            out.append(kp)
    counts = np.array([len(k) for k in out], np.int64)
    flat = np.concatenate(out) if out else np.zeros((0, len(teacher.mapping), 3), f32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, keypoints=flat, counts=counts)
    log.info("teacher keypoints cached in %s", path)
    return out

