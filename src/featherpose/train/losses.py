"""Every family's loss: ``loss(heads, targets) -> (total, {part: float})``.

MoveNet (seed 003): weighted MSE for heatmap and centre, masked L1 for regression and offset; shapes: B images,
K keypoints, grid [h, w]; predictions are the raw heads (logits for heatmap and centre), targets and masks from
:func:`featherpose.codecs.movenet_targets.encode_movenet`, stacked over the batch. The hourglass: heatmap MSE
on every stack (:class:`HeatmapLoss`). Lightweight OpenPose: masked L2 on every stage's heatmaps and PAFs
(:class:`PafLoss`). Lite Pose: masked heatmap MSE at 1/4 and 1/2 + associative-embedding push / pull
(:class:`AELoss`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..codecs.ops import soft_sigmoid_torch as soft_sigmoid  # the seed's ``0.5 * x / (1 + |x|) + 0.5``, range (0, 1)


ACTIVATIONS = {"sigmoid": torch.sigmoid, "soft_sigmoid": soft_sigmoid}

#: What every family's loss is (its row's ``loss`` hook builds one): ``loss(heads, targets) -> (total, parts)``.
LossFn = Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], tuple[torch.Tensor, dict]]


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, k: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``mean((pred - target)^2 * (target * k + 1))``: positives (target 1) count k + 1 times a background cell.

    Args:
        pred, target: (B, C, h, w) probabilities.
        k: extra weight of the peaks.
        weight: optional 0/1 mask of the cells that count, broadcastable to (B, C, h, w): (B, 1, h, w)
            for ignored regions, (B, C, 1, 1) for channels without a target.
    """
    loss = (pred - target) ** 2 * (target * k + 1)
    if weight is not None:
        weight = weight.expand_as(loss)
        return (loss * weight).sum() / weight.sum().clamp(min=1)
    return loss.mean()


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |pred - target| over the cells where ``mask`` is 1 (0 when none is)."""
    return ((pred - target).abs() * mask).sum() / mask.sum().clamp(min=1)


def bone_loss(pred_regress: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
              limbs: list[tuple[int, int]]) -> torch.Tensor:
    """L1 between predicted and true bone vectors (keypoint b - keypoint a) from the regression head.

    Args:
        pred_regress, target, mask: (B, 2K, h, w), (y, x) interleaved per keypoint.
        limbs: (a, b) keypoint index pairs.
    """
    a = torch.tensor([i for l in limbs for i in (2 * l[0], 2 * l[0] + 1)], device=pred_regress.device)
    b = torch.tensor([i for l in limbs for i in (2 * l[1], 2 * l[1] + 1)], device=pred_regress.device)
    bone_mask = mask[:, a] * mask[:, b]
    return masked_l1(pred_regress[:, b] - pred_regress[:, a], target[:, b] - target[:, a], bone_mask)


@dataclass
class MoveNetLoss:
    """The total MoveNet loss.

    Attributes:
        head_weights: heatmap, centre, regression, offset weights. The seed uses 1:1:0.1:1 early
            in training (regression values are in cells, hence larger) and 1:1:1:1 later.
        k: peak weight of the weighted MSE (the seed suggests 5-10).
        activation: ``sigmoid`` or the seed's ``soft_sigmoid`` replacement.
        bone_weight: weight of the optional bone loss (0 = off); needs ``limbs``.
        box_weight: weight of the box-head L1 (box size and centre, in cells) for models with box heads.
        limbs: keypoint pairs for the bone loss (a skeleton's ``limbs``).
    """

    head_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    k: float = 5.0
    activation: str = "sigmoid"
    bone_weight: float = 0.0
    box_weight: float = 0.1
    limbs: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if self.bone_weight and not self.limbs:
            raise ValueError("bone_weight > 0 needs the skeleton's limbs")

    def __call__(self, heads: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """Returns (total loss, {part name: float}) for logging."""
        act = ACTIVATIONS[self.activation]
        weight = targets.get("weight")
        heatmap_weight = weight
        if "keypoint_weight" in targets:  # (B, K): keypoints without a target (a teacher lacking them) do not count
            kw = targets["keypoint_weight"][:, :, None, None]
            heatmap_weight = kw if weight is None else weight * kw
        parts = {
            "heatmap": weighted_mse(act(heads["heatmap"]), targets["heatmap"], self.k, heatmap_weight),
            "center": weighted_mse(act(heads["center"]), targets["center"], self.k, weight),
            "regress": masked_l1(heads["regress"], targets["regress"], targets["regress_mask"]),
            "offset": masked_l1(heads["offset"], targets["offset"], targets["offset_mask"]),
        }
        total = sum(w * parts[n] for w, n in zip(self.head_weights, ("heatmap", "center", "regress", "offset")))
        if "box_scale" in heads and "box_scale" in targets:  # Google's MultiPose box heads
            parts["box"] = (masked_l1(heads["box_scale"], targets["box_scale"], targets["box_mask"])
                            + masked_l1(heads["box_offset"], targets["box_offset"], targets["box_mask"]))
            total = total + self.box_weight * parts["box"]
        if self.bone_weight:
            parts["bone"] = bone_loss(heads["regress"], targets["regress"], targets["regress_mask"], self.limbs)
            total = total + self.bone_weight * parts["bone"]
        return total, {n: float(v.detach()) for n, v in parts.items()}


@dataclass
class HeatmapLoss:
    """Top-down heatmap loss (seed 004, eq. 3): MSE between predicted and target heatmaps, summed over
    every stack's heatmaps (intermediate supervision) and averaged over the keypoints that have a target.

    Targets: ``heatmap`` (B, K, h, w) and ``weight`` (B, K), 0 for keypoints without a target.
    """

    def __call__(self, heads: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        stacks = heads.get("stacks", heads["heatmap"][:, None])  # (B, S, K, h, w)
        weight = targets["weight"][:, None, :, None, None].expand_as(stacks)
        err = (stacks - targets["heatmap"][:, None]) ** 2 * weight
        per_stack = err.sum(dim=(0, 2, 3, 4)) / (weight.sum(dim=(0, 2, 3, 4)).clamp(min=1))
        total = per_stack.sum()
        return total, {"heatmap": float(per_stack[-1].detach())}


@dataclass
class PafLoss:
    """Lightweight OpenPose's loss, as the reference trains (its ``train.py`` + ``modules/loss.py``): for every
    stage (initial + refinements, intermediate supervision) and both heads, ``sum((mask * (pred - target))^2)
    / 2 / B``, the stages' terms summed. The sum runs over every channel and cell (heatmaps: the 18 keypoints
    and the background; PAFs: 38), so it is not a mean: at 368 x 368 one image has 19 x 46 x 46 heatmap cells.

    Heads: ``stages_heatmaps`` (B, S, 19, h, w) and ``stages_pafs`` (B, S, 38, h, w) in training mode, else
    the last stage's ``heatmaps`` (B, 19, h, w) / ``pafs`` (B, 38, h, w) alone (S = 1). Targets (from
    :meth:`~featherpose.codecs.openpose.PafCodec.encode`, stacked): ``heatmaps``, ``pafs`` and ``weight``
    (B, 1, h, w), the fraction of each cell outside crowds and unlabelled people (the reference's mask, applied
    to every channel). Optional ``keypoint_weight`` (B, 19): heatmap channels weighted 0 have no target (a
    teacher's doubted keypoints); their PAFs still count.

    Parts (metrics.csv): ``heatmaps`` and ``pafs``, each summed over the stages (total = their sum).
    """

    def __call__(self, heads: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        batch = targets["heatmaps"].shape[0]
        mask = targets["weight"][:, None]  # (B, 1, 1, h, w): every stage, every channel
        heat_mask = mask
        if "keypoint_weight" in targets:
            heat_mask = mask * targets["keypoint_weight"][:, None, :, None, None]
        parts = {}
        for name, m in (("heatmaps", heat_mask), ("pafs", mask)):
            stages = heads.get(f"stages_{name}", heads[name][:, None])  # (B, S, C, h, w)
            err = (stages - targets[name][:, None]) * m
            parts[name] = (err * err).sum() / 2 / batch
        total = parts["heatmaps"] + parts["pafs"]
        return total, {n: float(v.detach()) for n, v in parts.items()}


@dataclass
class AELoss:
    """Lite Pose's loss, as upstream trains (mit-han-lab/litepose @ 00b702d, ``lib/core/loss.py``:
    ``MultiLossFactory`` with ``HeatmapLoss`` and the batched ``AELoss.batchTagLoss``; ``lib/core/trainer.py`` sums
    the parts). Shapes: B images, K keypoints, M people slots, 1/4 map h x w, 1/2 map 2h x 2w.

    - heatmaps: per resolution, ``mean over (K, cells) of mask * (pred - target)^2`` per image, averaged over the
      batch and times ``heatmap_factors`` (upstream's ``HEATMAPS_LOSS_FACTOR`` [1, 1]); the two summed.
    - tags (1/4 map only, upstream's ``WITH_AE_LOSS`` [True, False]): each labelled keypoint reads its tag at its
      cell (``joints``' flat index into the K x h x w tag maps). Per image, a person's reference tag is the mean of
      its keypoints' tags; ``pull`` = the mean over the image's people of the mean squared deviation of each one's
      tags from its reference; ``push`` (``exp``) = ``0.5 * (sum over person pairs (p, q), p != q, of
      exp(-(ref_p - ref_q)^2)) / (n (n - 1))`` with n people (0 when n < 2). Both averaged over the batch (an image
      without people counts 0) and times ``push_factor`` / ``pull_factor`` (upstream's 0.001 each).
      ``loss_type`` ``max`` takes ``max(0, 1 - |ref_p - ref_q|)`` for the pair term instead.

    Heads: ``heatmaps_tags`` (B, 2K, h, w): K heatmaps then K tag maps; ``heatmaps`` (B, K, 2h, 2w). Targets (from
    :meth:`~featherpose.codecs.associative_embedding.AECodec.encode`, stacked): ``heatmaps_4`` (B, K, h, w),
    ``heatmaps_2`` (B, K, 2h, 2w), ``mask_4`` (B, h, w), ``mask_2`` (B, 2h, 2w) (0 on crowds and unlabelled
    people), ``joints`` (B, M, K, 2) int64 (flat index, 1 if labelled). Optional ``keypoint_weight`` (B, K):
    heatmap channels weighted 0 have no target (a teacher's doubted keypoints).

    Parts (metrics.csv): ``heatmaps`` (both resolutions, factors applied), ``push`` and ``pull`` (factors applied);
    total = their sum (upstream's).
    """

    heatmap_factors: tuple[float, float] = (1.0, 1.0)
    push_factor: float = 0.001
    pull_factor: float = 0.001
    loss_type: str = "exp"

    def __post_init__(self):
        if self.loss_type not in ("exp", "max"):
            raise ValueError(f"unknown AE loss type {self.loss_type!r}; choose exp or max")

    def tag_loss(self, tags: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(push, pull) unscaled, averaged over the batch, of tag maps (B, K, h, w) and ``joints`` (B, M, K, 2)."""
        b, m, k = joints.shape[:3]
        vis = (joints[..., 1] > 0).to(tags.dtype)  # (B, M, K)
        picked = torch.gather(tags.reshape(b, -1), 1, joints[..., 0].reshape(b, -1).long()).reshape(b, m, k) * vis
        count = vis.sum(2)  # (B, M) labelled keypoints per person
        present = (count > 0).to(tags.dtype)
        people = present.sum(1)  # (B,)
        ref = picked.sum(2) / count.clamp(min=1)  # (B, M) each person's reference tag
        pull = (vis * (picked - ref[..., None]) ** 2).sum(2) / count.clamp(min=1)  # (B, M)
        pull = pull.sum(1) / people.clamp(min=1)
        pairs = present[:, :, None] * present[:, None, :]  # (B, M, M)
        diff = ref[:, :, None] - ref[:, None, :]
        near = torch.exp(-diff ** 2) if self.loss_type == "exp" else (1 - diff.abs()).clamp(min=0)
        push = 0.5 * ((near * pairs).sum((1, 2)) - people) / ((people - 1) * people).clamp(min=1)
        push = torch.where(people >= 2, push, torch.zeros_like(push))
        return push.mean(), pull.mean()

    def __call__(self, heads: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        quarter = heads["heatmaps_tags"]
        k = quarter.shape[1] // 2
        heatmaps = 0.0
        for pred, name, factor in ((quarter[:, :k], "4", self.heatmap_factors[0]),
                                   (heads["heatmaps"], "2", self.heatmap_factors[1])):
            mask = targets[f"mask_{name}"][:, None]  # (B, 1, h, w)
            if "keypoint_weight" in targets:
                mask = mask * targets["keypoint_weight"][:, :, None, None]
            err = (pred - targets[f"heatmaps_{name}"]) ** 2 * mask
            heatmaps = heatmaps + factor * err.mean(dim=(1, 2, 3)).mean()
        push, pull = self.tag_loss(quarter[:, k:], targets["joints"])
        parts = {"heatmaps": heatmaps, "push": self.push_factor * push, "pull": self.pull_factor * pull}
        total = parts["heatmaps"] + parts["push"] + parts["pull"]
        return total, {n: float(v.detach()) for n, v in parts.items()}


@dataclass
class DistillationLoss:
    """FPD's ``alpha * L(student, teacher) + (1 - alpha) * L(student, labels)`` around any family's loss.

    The teacher's targets are the ``teacher_*`` entries of ``targets`` (same names as the label targets
    once the prefix is dropped); with ``alpha`` 1 the label targets may be absent.
    """

    base: LossFn  # the student family's loss
    alpha: float = 0.5

    def __call__(self, heads: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        teacher = {k[len("teacher_"):]: v for k, v in targets.items() if k.startswith("teacher_")}
        labels = {k: v for k, v in targets.items() if not k.startswith("teacher_")}
        total, parts = 0.0, {}
        if self.alpha > 0:
            loss, teacher_parts = self.base(heads, teacher)
            total = self.alpha * loss
            parts["distill"] = float(loss.detach())
            parts.update(teacher_parts if self.alpha == 1 else {})
        if self.alpha < 1:
            loss, label_parts = self.base(heads, labels)
            total = total + (1 - self.alpha) * loss
            parts.update(label_parts)
        return total, parts
