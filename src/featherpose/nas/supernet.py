"""The Lite Pose super-network: one set of weights that every :class:`~featherpose.nas.space.Arch` of a
:class:`~featherpose.nas.space.SearchSpace` runs on (weight sharing, Cai et al. 2020 "Once-for-All"; Lite Pose
section 4).

The weights are those of the largest network of the space, a plain :class:`~featherpose.models.litepose.LitePose`.
A smaller candidate takes the leading channels of every tensor (its first ``C`` output and input channels) and the
centre of every depthwise kernel, which is what upstream's ``Super*`` layers do; so a candidate's network is a plain
LitePose whose tensors are slices of the super-network's (:meth:`Supernet.extract` copies them out: the exported
candidate *is* the candidate that was trained and scored). Training runs a candidate with ``torch.func.functional_call``
on a LitePose of its shape built on the meta device, fed the slices: gradients and BatchNorm's running statistics
go to the shared tensors.

:meth:`Supernet.inherit` starts the super-network from a trained Lite Pose of the space (the bundled Auto-M):
its tensors fill the leading slices (in their own order: Auto-M was trained as a candidate of upstream's
super-network, whose leading channels every candidate shares, and measured here its leading channels keep more of
its accuracy than the channels re-sorted by L1 importance, upstream's ``re_organize_weights``: coco_mini val AP at
256 with stage 3 cut from 72 to 48 channels 0.381 as stored vs 0.338 re-sorted, stage 4 from 120 to 80 0.287 vs
0.016; Auto-M itself 0.394) and the input channels it does not have are zeroed in every dense convolution,
so each candidate at least as wide as it computes exactly its function before any training (the extra channels
are computed but read with zero weights until training moves them).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from ..models.litepose import LitePose
from .space import Arch, SearchSpace


def _slice(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The leading part of ``tensor`` of ``shape`` along channels (dims 0, 1), the centre along kernels (dims 2+)."""
    index = []
    for dim, (have, want) in enumerate(zip(tensor.shape, shape)):
        start = (have - want) // 2 if dim >= 2 else 0
        index.append(slice(start, start + want))
    return tensor[tuple(index)]


class Supernet(nn.Module):
    """All candidates of ``space`` for ``num_keypoints`` keypoints, sharing the largest one's tensors.

    ``supernet(image, arch)`` runs one candidate (raw heads, as :class:`LitePose` returns them); each of its
    layers runs in the mode (train / eval) of the shared layer. ``cover``: a network the shared tensors must also hold (the one :meth:`inherit` will
    start from, when the space's largest candidate is narrower somewhere).
    """

    def __init__(self, space: SearchSpace, num_keypoints: int, cover: Arch | None = None):
        super().__init__()
        self.space, self.num_keypoints = space, num_keypoints
        top = space.largest()
        if cover is not None:
            top = Arch(top.input_size, max(top.stem, cover.stem), tuple(map(max, top.stages, cover.stages)),
                       tuple(map(max, top.kernels, cover.kernels)), tuple(map(max, top.deconv, cover.deconv)))
        self.net = LitePose(top.config(num_keypoints))
        self._shapes: dict[str, LitePose] = {}  # arch key -> the candidate's module on the meta device

    def _shape_of(self, arch: Arch) -> LitePose:
        if arch.key not in self._shapes:
            if not self.space.contains(arch):
                raise ValueError(f"candidate {arch.key} is not in the search space")
            with torch.device("meta"):
                self._shapes[arch.key] = LitePose(arch.config(self.num_keypoints))
        return self._shapes[arch.key]

    def tensors(self, arch: Arch) -> dict[str, torch.Tensor]:
        """The candidate's parameters and buffers by name: views of the shared tensors."""
        shared = dict(self.net.named_parameters()) | dict(self.net.named_buffers())
        small = self._shape_of(arch)
        return {name: _slice(shared[name], t.shape) for name, t in
                list(small.named_parameters()) + list(small.named_buffers())}

    def forward(self, image: torch.Tensor, arch: Arch) -> dict[str, torch.Tensor]:
        module = self._shape_of(arch)
        shared = dict(self.net.named_modules())
        for name, m in module.named_modules():  # each layer in its shared layer's mode (e.g. frozen BatchNorm)
            m.training = shared[name].training
        return functional_call(module, self.tensors(arch), (image,), strict=True)

    @torch.no_grad()
    def extract(self, arch: Arch) -> LitePose:
        """The candidate as a standalone LitePose (eval mode) holding copies of its slices."""
        with torch.device("meta"):  # no random init to throw away
            model = LitePose(arch.config(self.num_keypoints))
        tensors = self.tensors(arch)
        model.load_state_dict({k: tensors[k].clone() for k in model.state_dict()}, strict=True, assign=True)
        for name in dict(model.named_buffers()).keys() - model.state_dict().keys():  # input normalisation
            module, _, leaf = name.rpartition(".")
            model.get_submodule(module).register_buffer(leaf, tensors[name].clone(), persistent=False)
        return model.eval()

    @torch.no_grad()
    def inherit(self, model: LitePose) -> None:
        """Start from a trained Lite Pose of the space (see the module docstring)."""
        small_modules = dict(model.named_modules())
        shared = dict(self.net.named_parameters()) | dict(self.net.named_buffers())
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if name not in shared or any(a > b for a, b in zip(t.shape, shared[name].shape)):
                raise ValueError(f"{name} {tuple(t.shape)} does not fit the super-network "
                                 f"({tuple(shared[name].shape) if name in shared else 'absent'})")
            _slice(shared[name], t.shape).copy_(t)
        for name, module in self.net.named_modules():
            small = small_modules.get(name)
            if isinstance(module, nn.ConvTranspose2d):  # weight (in, out, k, k)
                module.weight[small.in_channels:] = 0
            elif isinstance(module, nn.Conv2d) and module.groups == 1:  # weight (out, in, k, k)
                module.weight[:, small.in_channels:] = 0
