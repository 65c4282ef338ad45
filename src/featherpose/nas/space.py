"""Lite Pose's search space: widths per stage and input size (and, optionally, the depthwise kernel per stage).

A candidate network is an :class:`Arch`: the input's short side, the stem width, one width and one depthwise kernel
per backbone stage, and the widths of the three fusion levels. The space is upstream's (mit-han-lab/litepose
``arch_manager.py``, the space LitePose-Auto-S/M/L were searched in, Wang et al. 2022 section 4): every width is one of
``make_divisible(max_width * m)`` for ``m`` in (1, 0.75, 0.5, 0.25) of the super-network's widths (stem 24, stages 32,
64, 96, 160 with 6, 8, 10, 10 blocks, fusion levels 64, 48, 32), the input side one of 256, 320, 384, 448, 512,
expansion 6 and 7x7 depthwise kernels. Upstream's supernet can also shrink kernels to 5 or 3; here a space may list
``kernels`` to search them per stage (its arch manager keeps 7). LitePose-Auto-M is a point of this space.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import asdict, dataclass, field

from ..models.layers import make_divisible
from ..models.litepose import LitePoseConfig

#: The widths of the super-network (upstream's ``pose_supermobilenet``) and its blocks per stage.
MAX_STEM, MAX_STAGES, MAX_DECONV = 24, (32, 64, 96, 160), (64, 48, 32)
BLOCKS = (6, 8, 10, 10)
EXPANSION = 6


@dataclass(frozen=True)
class Arch:
    """One candidate: ``input_size`` (short side, px), ``stem``, ``stages`` (4 widths), ``kernels`` (4 depthwise
    kernels, one per stage), ``deconv`` (3 fusion-level widths)."""

    input_size: int
    stem: int
    stages: tuple[int, int, int, int]
    kernels: tuple[int, int, int, int]
    deconv: tuple[int, int, int]

    @property
    def key(self) -> str:
        """A short unique name, e.g. ``448-16-24.48.72.120-k7.7.7.7-64.40.32``."""
        dot = lambda xs: ".".join(map(str, xs))  # noqa: E731
        return f"{self.input_size}-{self.stem}-{dot(self.stages)}-k{dot(self.kernels)}-{dot(self.deconv)}"

    def config(self, num_keypoints: int) -> LitePoseConfig:
        """The :class:`~featherpose.models.litepose.LitePoseConfig` of this candidate (a plain Lite Pose network)."""
        stages = [{"channels": c, "stride": 1 if i == 3 else 2, "blocks": [[EXPANSION, k]] * n}
                  for i, (c, k, n) in enumerate(zip(self.stages, self.kernels, BLOCKS))]
        return LitePoseConfig(num_keypoints, self.stem, stages, list(self.deconv), self.input_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Arch":
        return cls(int(d["input_size"]), int(d["stem"]), tuple(d["stages"]), tuple(d["kernels"]), tuple(d["deconv"]))


def _choices(width: int, multipliers) -> tuple[int, ...]:
    return tuple(sorted({make_divisible(width * m) for m in multipliers}))


@dataclass
class SearchSpace:
    """The choices per slot. ``width_multipliers`` scale the super-network's widths; ``sizes`` are input sides;
    ``kernels`` the depthwise kernels a stage may take (odd, the largest is the super-network's)."""

    width_multipliers: tuple = (1.0, 0.75, 0.5, 0.25)
    sizes: tuple = (256, 320, 384, 448, 512)
    kernels: tuple = (7,)
    slots: dict = field(init=False, repr=False)

    def __post_init__(self):
        if not self.width_multipliers or any(not 0 < m <= 1 for m in self.width_multipliers):
            raise ValueError(f"width_multipliers must be in (0, 1], got {list(self.width_multipliers)}")
        if not self.sizes or any(s % 32 or s < 64 for s in self.sizes):
            raise ValueError(f"sizes must be multiples of 32 (>= 64), got {list(self.sizes)}")
        if not self.kernels or any(k % 2 == 0 or k < 1 for k in self.kernels):
            raise ValueError(f"kernels must be odd, got {list(self.kernels)}")
        m = self.width_multipliers
        self.slots = {"input_size": tuple(sorted(self.sizes)), "stem": _choices(MAX_STEM, m),
                      "stages": [_choices(c, m) for c in MAX_STAGES], "kernels": [tuple(sorted(self.kernels))] * 4,
                      "deconv": [_choices(c, m) for c in MAX_DECONV]}

    @property
    def max_kernel(self) -> int:
        return max(self.kernels)

    def _pick(self, how) -> Arch:
        s = self.slots
        return Arch(how(s["input_size"]), how(s["stem"]), tuple(how(c) for c in s["stages"]),
                    tuple(how(c) for c in s["kernels"]), tuple(how(c) for c in s["deconv"]))

    def largest(self) -> Arch:
        return self._pick(max)

    def smallest(self) -> Arch:
        return self._pick(min)

    def sample(self, rng: random.Random) -> Arch:
        return self._pick(rng.choice)

    def mutate(self, arch: Arch, rng: random.Random, p: float) -> Arch:
        """Each slot re-drawn with probability ``p`` (upstream's ``mutate_sample``)."""
        redraw = lambda current, choices: rng.choice(choices) if rng.random() < p else current  # noqa: E731
        s = self.slots
        return Arch(redraw(arch.input_size, s["input_size"]), redraw(arch.stem, s["stem"]),
                    tuple(redraw(a, c) for a, c in zip(arch.stages, s["stages"])),
                    tuple(redraw(a, c) for a, c in zip(arch.kernels, s["kernels"])),
                    tuple(redraw(a, c) for a, c in zip(arch.deconv, s["deconv"])))

    @staticmethod
    def crossover(a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Every slot from one parent or the other (upstream's ``crossover_sample``)."""
        pick = lambda x, y: rng.choice((x, y))  # noqa: E731
        return Arch(pick(a.input_size, b.input_size), pick(a.stem, b.stem),
                    tuple(map(pick, a.stages, b.stages)), tuple(map(pick, a.kernels, b.kernels)),
                    tuple(map(pick, a.deconv, b.deconv)))

    def donors(self, arch: Arch, rng: random.Random) -> list[Arch]:
        """Two other candidates that together hold every part of ``arch`` (:func:`~featherpose.nas.latency.parts`),
        for checking a latency table on networks it did not time. A part depends on the input size and the widths
        next to it: the stem, stage 1's and stage 2's blocks on the stem's and those stages' widths; stage 3's and
        4's blocks and the first fusion level on stages 2-4 and fusion width 1; the other two fusion levels with
        their heads on the stem, stages 1-2 and the fusion widths. So one donor takes other widths for stages 3 and 4
        only (it holds the stem, stages 1-2 and fusion levels 2-3), the other for the stem, stage 1 and fusion levels
        2-3 (it holds stages 3-4 and fusion level 1); the same width where a slot has no other choice."""
        s = self.slots
        other = lambda current, choices: rng.choice([c for c in choices if c != current] or [current])  # noqa: E731
        (c0, c1, c2, c3), (d0, d1, d2) = arch.stages, arch.deconv
        return [
            dataclasses.replace(arch, stages=(c0, c1, other(c2, s["stages"][2]), other(c3, s["stages"][3]))),
            dataclasses.replace(arch, stem=other(arch.stem, s["stem"]), stages=(other(c0, s["stages"][0]), c1, c2, c3),
                                deconv=(d0, other(d1, s["deconv"][1]), other(d2, s["deconv"][2]))),
        ]

    def contains(self, arch: Arch) -> bool:
        s = self.slots
        return (arch.input_size in s["input_size"] and arch.stem in s["stem"]
                and all(a in c for a, c in zip(arch.stages, s["stages"]))
                and all(a in c for a, c in zip(arch.kernels, s["kernels"]))
                and all(a in c for a, c in zip(arch.deconv, s["deconv"])))


def arch_of(config: LitePoseConfig) -> Arch:
    """The :class:`Arch` of a Lite Pose config whose blocks all have expansion 6, one kernel per stage and 6, 8, 10,
    10 blocks (upstream's searched models, e.g. Auto-M); ValueError for any other."""
    kernels = []
    for i, (stage, n) in enumerate(zip(config.stages, BLOCKS)):
        ks = {k for _, k in stage["blocks"]}
        if len(stage["blocks"]) != n or {t for t, _ in stage["blocks"]} != {EXPANSION} or len(ks) != 1:
            raise ValueError(f"stage {i} is not in the search space (it needs {n} blocks of expansion {EXPANSION} "
                             f"and one kernel): {stage}")
        kernels.append(ks.pop())
    return Arch(config.input_size, config.stem_channels, tuple(s["channels"] for s in config.stages),
                tuple(kernels), tuple(config.deconv_widths))
