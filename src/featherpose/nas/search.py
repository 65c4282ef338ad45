"""``featherpose search CONFIG``: train the Lite Pose super-network, then search it for the most accurate network
under a latency budget on this machine (Lite Pose section 4; Once-for-All's train-once-then-search).

Steps (each with a progress bar):

1. **Super-network** (:class:`~featherpose.nas.supernet.Supernet`) started from the teacher (the bundled Auto-M,
   :meth:`~featherpose.nas.supernet.Supernet.inherit`), trained by distillation on unlabelled frames (a video or a
   folder of images): every step one input size is drawn from the space, and the largest, the smallest and
   ``train.subnets - 2`` random candidates (the sandwich rule, Yu & Huang 2019) learn the teacher's raw heads
   (heatmaps and tags, mean squared error) on the same batch. ``train.device``: ``auto`` (a GPU when torch sees one),
   ``cpu`` or ``cuda`` (fp32, TF32 allowed: bf16 would round the teacher's targets); ``train.minutes`` > 0 stops after
   the step that spends them (``train.steps`` is then a cap). ``supernet:`` starts from the ``supernet.safetensors``
   of an earlier search instead (its metadata's space and keypoints must match; ``train.steps: 0`` uses it as it is),
   so a GPU trains the super-network (``featherpose search configs/litepose_search_gpu.yaml --supernet-only``: stop
   after writing it) and a CPU searches it.
2. **Latency table** (:class:`~featherpose.nas.latency.LatencyTable`): the parts of candidates (stem, blocks, fusion
   levels) timed inside whole networks by the default backend's profiler, a candidate's prediction the sum of its
   parts, checked against ``latency.check`` fresh random candidates measured whole, twice each, their parts taken
   from other networks (the error and the two passes' spread are reported). Measured before the training,
   which it does not need: where the teacher's widths are over the budget at every input size, a warning says so
   before the training's minutes are spent.
3. **Evolution** (upstream's ``EvolutionFinder``): a population of candidates under the budget (predicted; the
   teacher's widths at each input size, then random ones), each scored by OKS AP on the validation set with the shared evaluator; the best quarter are parents, half the
   children are mutations and half crossovers, for ``evolution.generations`` generations.

BatchNorm: CPU batches (a few images) give useless batch statistics, so by default every BatchNorm keeps the
teacher's statistics while training (``train.batchnorm: frozen``; its scale and shift still learn) and candidates are
scored with the statistics they were trained with. With large batches (``batchnorm: batch``, as upstream trains on
GPUs) shared statistics fit no single candidate: set ``calibration_frames`` to recalibrate each candidate on frames
before scoring (upstream's ``calibrate_test.py``; measured here, 16 vtest frames shift Auto-M's own statistics enough
to lose every person on coco_mini: calibrate on frames like the validation images).
4. **Outputs** in ``out``: ``search.json`` (every candidate scored: AP, predicted ms; the latency check; the choice;
   ``warnings``: one when no candidate found anyone, AP 0, printed too),
   ``search.png`` (latency vs AP of the population), ``supernet.safetensors`` (metadata: space, keypoints, teacher,
   steps, device, minutes, first / last loss; ``--supernet-only`` writes only it) and the chosen candidate with its
   inherited weights, ``searched.safetensors``: ``featherpose predict ... --model out/searched.safetensors`` runs it,
   and a training recipe fine-tunes it (``model: {architecture: litepose, init: out/searched.safetensors}``); with
   ``val_images``, ``val_subset.json`` (the images scored on). Checked before any work (:func:`check_outputs`):
   ``out`` is a writable folder holding no earlier search's outputs, outside every ``frames:`` folder, and no output
   is an input.
   Ctrl-C while the super-network trains writes the steps done to ``supernet.safetensors`` (``supernet:`` resumes).
"""
from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from ..fileio import atomic_path, check_writable
from ..models.litepose import LitePose
from .latency import LatencyTable, resolve_backend
from .space import Arch, SearchSpace, arch_of
from .supernet import Supernet

@dataclass
class SpaceSection:
    width_multipliers: list = field(default_factory=lambda: [1.0, 0.75, 0.5, 0.25])
    sizes: list = field(default_factory=lambda: [256, 320, 384, 448, 512])
    kernels: list = field(default_factory=lambda: [7])


@dataclass
class TrainSection:
    steps: int = 200          # super-network steps (each trains `subnets` candidates on one batch)
    batch_size: int = 4
    lr: float = 1e-4
    subnets: int = 4          # per step: the largest, the smallest and subnets - 2 random candidates
    batchnorm: str = "frozen"  # frozen: every BatchNorm keeps the teacher's statistics (CPU-sized batches);
    #                            batch: batch statistics (large batches), then set calibration_frames
    threads: int = 2
    device: str = "auto"      # auto: cuda when torch sees a GPU, else cpu; cpu; cuda (fp32, TF32 allowed)
    minutes: float = 0.0      # > 0: stop after the step that spends this many minutes (steps is then a cap)


@dataclass
class LatencySection:
    budget_ms: float = 30.0   # the network's milliseconds per vtest-sized frame, default backend
    backend: str = "auto"
    threads: int = 2
    samples: int = 24         # random candidates whose parts are measured up front (plus the largest and smallest)
    check: int = 10           # fresh random candidates measured to check the predictions
    runs: int = 10            # timed runs per measurement (the fastest counts)
    cache: str = ""           # the latency table's folder (default: ~/.cache/featherpose/latency)


@dataclass
class EvolutionSection:
    population: int = 16
    generations: int = 3
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.2


@dataclass
class SearchConfig:
    teacher: str = "litepose-m-crowdpose"   # a Lite Pose model of the space: the start and the teacher
    frames: list = field(default_factory=list)  # videos, images or folders of them (no labels needed)
    frames_per_video: int = 40
    val: str = ""                           # a COCO keypoints json: candidates are scored on it (OKS AP)
    val_images: int = 0                     # score on the first N images (0: all)
    calibration_frames: int = 0             # > 0: recalibrate each candidate's BatchNorm statistics on this many
    #                                         frames before scoring (for a super-network trained with batch statistics)
    supernet: str = ""                      # a supernet.safetensors of an earlier search (same space and teacher's
    #                                         keypoints): start from it instead of inheriting the teacher
    space: SpaceSection = field(default_factory=SpaceSection)
    train: TrainSection = field(default_factory=TrainSection)
    latency: LatencySection = field(default_factory=LatencySection)
    evolution: EvolutionSection = field(default_factory=EvolutionSection)
    seed: int = 0
    out: str = "runs/search"


def load_search_config(path: str | Path) -> SearchConfig:
    """Read a search recipe (YAML); relative paths are relative to its folder."""
    from ..train.config import build_dataclass

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"search config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    cfg = build_dataclass(SearchConfig, raw, path.name)
    base = path.parent
    resolve = lambda p: str(p if Path(p).is_absolute() else (base / p).resolve())  # noqa: E731
    cfg.frames = [resolve(p) for p in cfg.frames]
    cfg.val = resolve(cfg.val) if cfg.val else ""
    if cfg.teacher.endswith(".safetensors"):
        cfg.teacher = resolve(cfg.teacher)
    cfg.supernet = resolve(cfg.supernet) if cfg.supernet else ""
    if cfg.supernet and not Path(cfg.supernet).is_file():
        raise FileNotFoundError(f"supernet {cfg.supernet} does not exist; give the supernet.safetensors an earlier "
                                f"search wrote (relative to {path.name}'s folder) or remove supernet:")
    if not cfg.frames:
        raise ValueError(f"{path.name}: frames is required (videos, images or folders of them: no labels needed)")
    if not cfg.teacher:
        raise ValueError(f"{path.name}: teacher is empty; give a Lite Pose model: litepose-m-crowdpose or a Lite Pose "
                         ".safetensors")
    evo = cfg.evolution
    ratios = {"evolution.parent_ratio": evo.parent_ratio, "evolution.mutation_ratio": evo.mutation_ratio,
              "evolution.mutate_prob": evo.mutate_prob}
    outside = [f"{k} = {v}" for k, v in ratios.items() if not 0 <= v <= 1]
    if outside:
        raise ValueError(f"{path.name}: {', '.join(outside)} must be between 0 and 1")
    for p in cfg.frames + ([cfg.val] if cfg.val else []):
        if not Path(p).exists():
            raise FileNotFoundError(f"{p} does not exist; fix the path in {path.name} (relative to its folder)")
    if not cfg.val:
        raise ValueError(f"{path.name}: val (a COCO keypoints json) is required: candidates are scored on it")
    if cfg.train.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"{path.name}: train.device {cfg.train.device!r} is not one of auto, cpu, cuda")
    if not cfg.train.minutes >= 0:
        raise ValueError(f"{path.name}: train.minutes = {cfg.train.minutes} must be >= 0 (0: no time limit)")
    if cfg.train.steps == 0 and not cfg.supernet:
        raise ValueError(f"{path.name}: train.steps = 0 needs supernet: (the supernet.safetensors of an earlier "
                         "search, used as it is); without it give train.steps > 0")
    positive = {"train.batch_size": cfg.train.batch_size, "evolution.population": cfg.evolution.population,
                "latency.budget_ms": cfg.latency.budget_ms, "frames_per_video": cfg.frames_per_video}
    if cfg.train.steps != 0:  # 0 with supernet: (checked above)
        positive = {"train.steps": cfg.train.steps, **positive}
    positive.update({"train.lr": cfg.train.lr, "train.threads": cfg.train.threads,
                     "latency.threads": cfg.latency.threads})
    bad = [f"{k} = {v}" for k, v in positive.items() if not v > 0]
    if cfg.train.batchnorm not in ("frozen", "batch"):
        raise ValueError(f"{path.name}: train.batchnorm must be frozen or batch, got {cfg.train.batchnorm!r}")
    negative = [f"{k} = {v}" for k, v in {"calibration_frames": cfg.calibration_frames, "val_images": cfg.val_images,
                "latency.samples": cfg.latency.samples, "latency.check": cfg.latency.check,
                "evolution.generations": cfg.evolution.generations}.items() if v < 0]
    if negative or cfg.latency.runs < 1:
        raise ValueError(f"{path.name}: {', '.join(negative) or f'latency.runs = {cfg.latency.runs}'} must be "
                         ">= 0 (latency.runs >= 1)")
    if bad:
        raise ValueError(f"{path.name}: {', '.join(bad)} must be positive")
    if cfg.train.subnets < 2:
        raise ValueError(f"{path.name}: train.subnets = {cfg.train.subnets} must be >= 2 (each step trains the "
                         "largest and the smallest candidate)")
    space = cfg.space
    for key, values in (("width_multipliers", space.width_multipliers), ("sizes", space.sizes),
                        ("kernels", space.kernels)):
        whole = key != "width_multipliers"
        if not all(isinstance(v, int if whole else (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{path.name}: space.{key} must be a list of {'whole ' if whole else ''}numbers, got "
                             f"{values}")
    try:
        SearchSpace(tuple(space.width_multipliers), tuple(space.sizes), tuple(space.kernels))
    except ValueError as exc:
        raise ValueError(f"{path.name}: space.{exc}") from None
    return cfg


# --------------------------------------------------------------------------------------------- frames

def read_frames(sources: list[str], per_video: int, max_side: int = 640, progress: bool = False) -> list[np.ndarray]:
    """RGB uint8 frames: ``per_video`` evenly spaced frames of each video, every image (folders searched
    recursively), each shrunk so that its long side is at most ``max_side``; ``progress``: a bar over the files."""
    from tqdm import tqdm

    from ..image import IMAGE_SUFFIXES, load_image
    from ..video.io import VIDEO_SUFFIXES, sample_frames

    files = []
    for src in map(Path, sources):
        files += sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES) \
            if src.is_dir() else [src]

    def shrunk(frame: np.ndarray) -> np.ndarray:  # each as it is read: full-size frames are not kept
        scale = max_side / max(frame.shape[:2])
        return cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame

    frames = []
    for f in tqdm(files, desc="frames", unit="file", disable=not progress or len(files) < 2):
        if f.suffix.lower() in VIDEO_SUFFIXES:
            sampled = sample_frames(f, per_video)
            if not sampled:
                print(f"featherpose: skipped {f}: no readable frame", file=sys.stderr)
            frames += map(shrunk, sampled)
        else:
            try:
                frames.append(shrunk(load_image(f)))
            except (ValueError, OSError) as exc:  # one bad file is reported, the others are used
                print(f"featherpose: skipped {f}: {exc}", file=sys.stderr)
    if not frames:
        raise ValueError(f"no readable frames in {', '.join(sources)}; give videos or images")
    return frames


def random_batch(frames: list[np.ndarray], size: int, count: int, rng: random.Random,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """(count, 3, size, size) float 0..255 on ``device``: random square crops (60-100 % of the short side), random
    flips (uint8 crosses to a GPU, asynchronously from pinned memory, and becomes float there)."""
    out = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        f = rng.choice(frames)
        h, w = f.shape[:2]
        side = int(min(h, w) * rng.uniform(0.6, 1.0))
        y, x = rng.randrange(h - side + 1), rng.randrange(w - side + 1)
        crop = cv2.resize(f[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
        out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
    batch = torch.from_numpy(out)
    if torch.device(device).type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    return batch.permute(0, 3, 1, 2).float()


# ------------------------------------------------------------------------------------- the search

def resolve_device(name: str) -> torch.device:
    """``train.device``: auto (cuda when torch sees a GPU, else cpu), cpu or cuda (one clear error without a GPU)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device: cuda was asked for but torch {torch.__version__} sees no GPU; "
                         "use auto or cpu")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train_supernet`: ``losses`` of the steps it completed (the super-network holds them)."""

    def __init__(self, losses: list[float]):
        super().__init__()
        self.losses = losses


def train_supernet(supernet: Supernet, teacher: torch.nn.Module, frames: list[np.ndarray], cfg: TrainSection,
                   rng: random.Random, progress: bool = True, device: torch.device | str = "cpu") -> list[float]:
    """Sandwich-rule distillation of the teacher's raw heads into the super-network; the loss per step (as many as
    ran: ``cfg.steps``, or fewer when ``cfg.minutes`` is spent first). Both networks must already be on ``device``;
    fp32 there (on a GPU TF32 matmuls and convolutions are allowed). Ctrl-C raises :class:`TrainingInterrupted`
    with the completed steps' losses."""
    from tqdm import tqdm

    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    space = supernet.space
    optimizer = torch.optim.AdamW(supernet.parameters(), lr=cfg.lr, weight_decay=0)
    supernet.train()
    if cfg.batchnorm == "frozen":  # normalise with the stored statistics; the affine weights still learn
        for m in supernet.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    teacher.eval()
    losses: list[float] = []
    pending: list[torch.Tensor] = []  # the last step's losses, read after the next batch is made (a GPU runs on)

    def flush():
        if pending:
            losses.append(sum(float(x) for x in pending) / len(pending))
            pending.clear()
            bar.set_postfix(loss=f"{losses[-1]:.2e}", refresh=False)

    started = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="super-network", unit="step", disable=not progress,
               mininterval=0.1 if sys.stderr.isatty() else 10)
    steps = 0  # completed: the optimizer stepped
    try:
        for _ in bar:
            size = rng.choice(space.slots["input_size"])
            images = random_batch(frames, size, cfg.batch_size, rng, device)
            flush()
            with torch.no_grad():
                target = teacher(images)
            optimizer.zero_grad(set_to_none=True)
            for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(cfg.subnets - 2)]:
                arch = dataclasses.replace(arch, input_size=size)
                out = supernet(images, arch)
                loss = sum(torch.nn.functional.mse_loss(out[k], target[k]) for k in target)
                loss.backward()
                pending.append(loss.detach())
            optimizer.step()
            steps += 1
            if cfg.minutes and time.perf_counter() - started >= 60 * cfg.minutes:
                break
    except KeyboardInterrupt:
        if steps > len(losses):  # the last completed step's losses are pending; else pending is a step cut short
            flush()
        bar.close()
        supernet.eval()
        raise TrainingInterrupted(losses) from None
    flush()
    bar.close()
    supernet.eval()
    return losses


@torch.no_grad()
def recalibrate(model: torch.nn.Module, frames: list[np.ndarray], size: int) -> None:
    """Re-estimate every BatchNorm's running statistics on ``frames`` as inference feeds them (cumulative
    average), then eval mode."""
    from ..image import litepose_preprocess

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for f in frames:
        x, _ = litepose_preprocess(f, (size, size))
        model(torch.from_numpy(x).permute(2, 0, 1)[None].float())
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


#: what a search writes in its ``out`` folder (``--supernet-only``: the supernet alone; the val subset with val_images)
OUTPUTS = ("search.json", "search.png", "searched.safetensors", "supernet.safetensors")
VAL_SUBSET = "val_subset.json"


def check_outputs(cfg: SearchConfig, supernet_only: bool = False) -> Path:
    """``cfg.out`` checked before any work: writable (one-line OSError), holding no earlier search's outputs, not
    inside a folder of frames (a later search would read its outputs as frames), and no output the same file as an
    input (one-line ValueError). Creates nothing; returns the folder."""
    from ..fileio import refuse_overwrite, same_file

    out = Path(cfg.out)
    check_writable(out, "search out folder", folder=True)
    names = ("supernet.safetensors",) if supernet_only else OUTPUTS + ((VAL_SUBSET,) if cfg.val_images else ())
    earlier = [n for n in names if (out / n).exists()]
    inputs = {same_file(p): f"the {key} file {p}" for key, p in
              (("supernet:", cfg.supernet), ("teacher:", cfg.teacher if cfg.teacher.endswith(".safetensors") else ""),
               ("val:", cfg.val), *(("frames:", f) for f in cfg.frames)) if p}
    for name in names:
        refuse_overwrite(out / name, inputs, f"search output {out / name}", "choose another out")
    if earlier:
        raise ValueError(f"{out} holds an earlier search's {', '.join(earlier)}; choose another out, or delete "
                         "them first")
    for folder in (Path(f).resolve() for f in cfg.frames if Path(f).is_dir()):
        if folder == out.resolve() or folder in out.resolve().parents:
            raise ValueError(f"out {out} is inside the frames: folder {folder}: a later search would read its "
                             "outputs as frames; choose an out outside it")
    for name in names:
        check_writable(out / name, "search output")
    return out


def val_subset(val: str, val_images: int, quiet: bool = False) -> dict:
    """The validation json's first ``val_images`` images (0: all) and their people, file names made absolute;
    checked before any long work: a missing or malformed json, or no image found, is a one-line error (missing
    images among others are reported unless ``quiet``, and the evaluator leaves them out)."""
    from ..evaluation.coco import load_coco

    data = load_coco(val)
    images = [im for im in data["images"] if isinstance(im, dict)]
    if val_images:
        images = images[:val_images]
    keep = {im.get("id") for im in images}
    data = dict(data, images=images, annotations=[a for a in data["annotations"]
                                                   if isinstance(a, dict) and a.get("image_id") in keep])
    root = Path(val).parent
    missing = []
    for im in images:
        if isinstance(im.get("file_name"), str):
            im["file_name"] = str((root / im["file_name"]).resolve())
            if not Path(im["file_name"]).is_file():
                missing.append(im["file_name"])
    if images and len(missing) == len(images):
        raise FileNotFoundError(f"{val}: none of the {len(images)} images scored on was found (e.g. {missing[0]}); "
                                "file_name is relative to the json's folder: give the json where its images are")
    if missing and not quiet:
        _warn(f"{val}: {len(missing)} of {len(images)} images not found (e.g. {missing[0]}); candidates are scored "
              "without them")
    return data


class Scorer:
    """OKS AP of candidates on the validation set (the shared evaluator), cached by candidate."""

    def __init__(self, supernet: Supernet, codec, skeleton, frames: list[np.ndarray], val: str, val_images: int,
                 threads: int, work: Path, backend: str = "auto"):
        self.supernet, self.codec, self.skeleton, self.frames, self.threads = supernet, codec, skeleton, frames, threads
        # a named backend: "auto" would time every runtime on each new candidate (a minute of torch per candidate on
        # the 2-core Xeon) and keep an entry per candidate in its cache; the default (onnxruntime) runs these 7x7
        # depthwise networks ~10x faster than eager torch
        self.backend = resolve_backend(backend)
        self.val = val
        if val_images:  # the first N images of the json (and their people)
            self.val = str(work / VAL_SUBSET)
            with atomic_path(self.val) as tmp:
                tmp.write_text(json.dumps(val_subset(val, val_images, quiet=True)))  # said by search()
        self.scores: dict[str, float] = {}

    def model(self, arch: Arch):
        """The candidate's network with recalibrated BatchNorm statistics, and its codec."""
        model = self.supernet.extract(arch)
        if self.frames:
            recalibrate(model, self.frames, arch.input_size)
        size = (arch.input_size, arch.input_size)
        codec = type(self.codec).from_dict(self.codec.to_dict(), size, self.codec.num_keypoints, self.codec.arrays())
        return model, codec

    def __call__(self, arch: Arch) -> float:
        if arch.key not in self.scores:
            from ..estimator import Estimator
            from ..evaluation import evaluate
            from ..families import family_of

            model, codec = self.model(arch)
            row = family_of(codec)
            est = Estimator(arch.key, model, codec, self.skeleton, self.backend, self.threads,
                            preprocess=row.preprocess, dynamic_size=row.dynamic_size)
            self.scores[arch.key] = evaluate(est, self.val, progress=False).metrics()["AP"]
        return self.scores[arch.key]


def no_candidate_under(budget: float, smallest_ms: float) -> str:
    """The error when even the smallest candidate is predicted over the budget."""
    return (f"no candidate found under the latency budget of {budget:g} ms (the smallest candidate is predicted at "
            f"{smallest_ms:.1f} ms); raise latency.budget_ms or add smaller sizes / widths to the space")


def evolve(space: SearchSpace, score, latency, budget: float, cfg: EvolutionSection, rng: random.Random,
           progress: bool = True, seeds: list[Arch] = ()) -> list[tuple[float, Arch]]:
    """Upstream's regularised evolution under ``latency(arch) <= budget``; every (AP, arch) scored, best first.
    ``seeds``: candidates that start the first population (those under the budget), the rest are random."""
    from tqdm import tqdm

    def under_budget(propose):
        for _ in range(10000):
            arch = propose()
            if latency(arch) <= budget:
                return arch
        raise ValueError(no_candidate_under(budget, latency(space.smallest())))

    pop_size = cfg.population
    parents_n = max(1, round(cfg.parent_ratio * pop_size))
    mutants_n = round(cfg.mutation_ratio * pop_size)
    bar = tqdm(total=pop_size * (cfg.generations + 1), desc="search", unit="net", disable=not progress)

    def scored(archs):
        out = []
        for a in archs:
            out.append((score(a), a))
            bar.update()
            bar.set_postfix(best_AP=f"{max([s for s, _ in out] + [best[0]]):.3f}")
        return out

    best = (-1.0, None)
    with bar:  # closed before an error or Ctrl-C is printed
        first = [a for a in dict.fromkeys(seeds) if latency(a) <= budget][:pop_size]
        population = scored(first + [under_budget(lambda: space.sample(rng)) for _ in range(pop_size - len(first))])
        seen = list(population)
        for _ in range(cfg.generations):
            parents = sorted(population, key=lambda t: -t[0])[:parents_n]
            best = max(best, parents[0], key=lambda t: t[0])
            children = [under_budget(lambda: space.mutate(rng.choice(parents)[1], rng, cfg.mutate_prob))
                        for _ in range(mutants_n)]
            children += [under_budget(lambda: space.crossover(rng.choice(parents)[1], rng.choice(parents)[1], rng))
                         for _ in range(pop_size - mutants_n)]
            population = parents + scored(children)
            seen += population[len(parents):]
    unique = {a.key: (s, a) for s, a in seen}
    return sorted(unique.values(), key=lambda t: (-t[0], t[1].key))


def plot_population(rows: list[dict], budget: float, path: Path) -> None:
    """Latency vs AP of every scored candidate; the choice ringed; the budget as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    ms, ap = [r["predicted_ms"] for r in rows], [r["AP"] for r in rows]
    sizes = sorted({r["arch"]["input_size"] for r in rows})
    for s in sizes:
        sel = [i for i, r in enumerate(rows) if r["arch"]["input_size"] == s]
        ax.scatter([ms[i] for i in sel], [ap[i] for i in sel], s=18, label=f"input {s}")
    ax.scatter([ms[0]], [ap[0]], s=140, facecolors="none", edgecolors="k", label="chosen")
    ax.axvline(budget, color="grey", linestyle="--", label=f"budget {budget:g} ms")
    ax.set_xlabel("predicted network latency (ms per vtest frame)")
    ax.set_ylabel("OKS AP (validation)")
    ax.set_title("Lite Pose search: the candidates scored")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def load_supernet(supernet: Supernet, path: str, space: SpaceSection) -> dict[str, str]:
    """Fill ``supernet`` with the tensors of an earlier search's ``supernet.safetensors`` (checked: same space, same
    keypoints as this search's teacher); its metadata."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(path)
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"supernet {path} is not a readable .safetensors file ({exc}); give the "
                         "supernet.safetensors an earlier search wrote") from None
    if "space" not in meta or "num_keypoints" not in meta:
        raise ValueError(f"supernet {path} has no space / num_keypoints metadata: not a supernet.safetensors that "
                         "featherpose search wrote")
    theirs, ours = json.loads(meta["space"]), dataclasses.asdict(space)
    # the input sizes shape no tensor: a search may score sizes the super-network was not trained at (said below)
    trained = theirs.get("sizes", [])
    untrained = sorted(set(ours.get("sizes", ())) - set(trained))
    theirs, ours = ({k: v for k, v in d.items() if k != "sizes"} for d in (theirs, ours))
    k = supernet.num_keypoints
    if theirs != ours or int(meta["num_keypoints"]) != k:
        what = (f"space {theirs}, this config's space {ours}" if theirs != ours else
                f"{meta['num_keypoints']} keypoints, this config's teacher has {k}")
        raise ValueError(f"supernet {path} does not match this search: it was trained with {what}; set space: "
                         "(and teacher:) as the search that wrote it had them, or remove supernet:")
    try:
        supernet.net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:  # same space but another teacher's widths (cover)
        first = str(exc).replace("\n", " ")[:300]
        raise ValueError(f"supernet {path} does not fit this search's super-network ({first}); use the teacher "
                         "of the search that wrote it, or remove supernet:") from None
    if untrained:
        _warn(f"the super-network {path} was not trained at input sizes {untrained} (it was at "
              f"{trained}): candidates of those sizes use its weights as they are "
              "(train.steps > 0 trains them too)")
    return meta


def _warn(message: str) -> None:
    print(f"featherpose search: warning: {message}", file=sys.stderr, flush=True)


def search(cfg: SearchConfig, progress: bool = True, supernet_only: bool = False) -> dict:
    """Run the whole search (see the module docstring); returns what ``search.json`` holds. ``supernet_only``: stop
    after writing ``supernet.safetensors``; returns the training's summary (steps, minutes, losses, device)."""
    from safetensors.torch import save_file

    from .. import zoo
    from ..skeletons import skeleton_to_json
    from ..weights_io import save_weights

    out = check_outputs(cfg, supernet_only)
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    torch.set_num_threads(cfg.train.threads)
    started = time.perf_counter()

    name, teacher, codec, skeleton = zoo.build(cfg.teacher)
    if not isinstance(teacher, LitePose):
        raise ValueError(f"teacher {cfg.teacher} is not a Lite Pose model; the search space is Lite Pose's: give "
                         "litepose-m-crowdpose or a Lite Pose .safetensors")
    if not supernet_only:  # the validation set, before any long work
        val_subset(cfg.val, cfg.val_images)
    out.mkdir(parents=True, exist_ok=True)
    space = SearchSpace(tuple(cfg.space.width_multipliers), tuple(cfg.space.sizes), tuple(cfg.space.kernels))
    k = teacher.config.num_keypoints
    start_arch = arch_of(teacher.config)
    supernet = Supernet(space, k, cover=start_arch)
    if cfg.supernet:
        earlier = load_supernet(supernet, cfg.supernet, cfg.space)
    else:
        earlier = {}
        supernet.inherit(teacher)
    needs_frames = cfg.train.steps > 0 or (cfg.calibration_frames and not supernet_only)
    frames = read_frames(cfg.frames, cfg.frames_per_video, progress=progress) if needs_frames else []
    calibration = frames[:: max(1, len(frames) // cfg.calibration_frames)][: cfg.calibration_frames] \
        if cfg.calibration_frames else []

    if not supernet_only:  # the latency table first (it needs no training): a budget out of reach is said now
        table = LatencyTable(k, cfg.latency.backend, cfg.latency.threads, cfg.latency.cache or None, cfg.latency.runs)
        table.prefill(space, cfg.latency.samples, rng, progress)
        try:
            check = table.check(space, cfg.latency.check, rng, progress)
        except ValueError as exc:  # a small space whose networks the table has all measured: nothing fresh to check
            _warn(f"{exc}; the search goes on without the check")
            check = []
        # not cached: a candidate with parts missing from the table is profiled, which can lower the reference's time
        # that every prediction is scaled by; called afresh, all predictions are on the same scale
        latency = table.predict

        # the teacher's widths at every input size start the population: after a short CPU training of the
        # super-network most random candidates are still far from any good network
        seeds = [dataclasses.replace(start_arch, input_size=s) for s in space.slots["input_size"]
                 if space.contains(dataclasses.replace(start_arch, input_size=s))]
        fastest_seed = min(seeds, key=latency, default=None)
        if latency(space.smallest()) > cfg.latency.budget_ms:  # before the training: no candidate can be under it
            raise ValueError(no_candidate_under(cfg.latency.budget_ms, latency(space.smallest())))
        if fastest_seed is not None and latency(fastest_seed) > cfg.latency.budget_ms:
            _warn(f"the teacher's widths are predicted at {latency(fastest_seed):.1f} ms here (input "
                  f"{fastest_seed.input_size}), over the budget of {cfg.latency.budget_ms:g} ms: only narrower "
                  "candidates will be searched, and a short super-network training leaves them far from the teacher "
                  "(raise latency.budget_ms, or train longer: train.steps)")

    teacher.to(device)
    supernet.to(device)
    trained = time.perf_counter()
    interrupted = None
    try:
        losses = train_supernet(supernet, teacher, frames, cfg.train, rng, progress, device) if cfg.train.steps else []
    except TrainingInterrupted as exc:  # the steps done are kept: written below, then the interruption goes on
        losses, interrupted = exc.losses, exc
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_minutes = (time.perf_counter() - trained) / 60
    supernet.to("cpu")
    teacher.to("cpu")
    summary = {
        "supernet": str(out / "supernet.safetensors"), "device": str(device), "steps": len(losses),
        "batch_size": cfg.train.batch_size, "train_minutes": train_minutes,
        "images_per_second": len(losses) * cfg.train.batch_size / (60 * train_minutes) if losses else 0.0,
        "supernet_loss_first_last": [losses[0], losses[-1]] if losses else [],
        "started_from": cfg.supernet or name,
        "total_steps": len(losses) + int(earlier.get("total_steps", 0)),
    }
    # the input sizes it has trained at: an earlier run's, and this run's if it trained
    trained = set(json.loads(earlier["space"]).get("sizes", [])) if earlier else set(cfg.space.sizes)
    if losses:
        trained |= set(cfg.space.sizes)
    space_meta = dict(dataclasses.asdict(cfg.space), sizes=sorted(trained))
    meta = {"space": json.dumps(space_meta), "num_keypoints": str(k), "teacher": name,
            "steps": str(summary["steps"]), "total_steps": str(summary["total_steps"]),
            "batch_size": str(cfg.train.batch_size), "device": str(device), "train_minutes": f"{train_minutes:.2f}",
            "loss_first_last": json.dumps(summary["supernet_loss_first_last"]),
            "started_from": Path(cfg.supernet).name if cfg.supernet else name}
    with atomic_path(out / "supernet.safetensors") as tmp:
        save_file({key: t.contiguous() for key, t in supernet.net.state_dict().items()}, str(tmp), metadata=meta)
    if interrupted is not None:
        written = out / "supernet.safetensors"
        print(f"featherpose search: interrupted after {len(losses)} training steps: wrote {written} (a search starts "
              f"from it with supernet: {written.resolve()}, writing into another out)", file=sys.stderr, flush=True)
        raise interrupted
    if supernet_only:
        return summary

    repeat = [(max(c.passes_ms) - min(c.passes_ms)) / min(c.passes_ms) for c in check]  # the machine's own noise
    scorer = Scorer(supernet, codec, skeleton, calibration, cfg.val, cfg.val_images, cfg.train.threads, out,
                    cfg.latency.backend)
    ranked = evolve(space, scorer, latency, cfg.latency.budget_ms, cfg.evolution, rng, progress, seeds)
    best_ap, best = ranked[0]
    warnings = []
    if best_ap <= 0:
        fits = fastest_seed is not None and latency(fastest_seed) <= cfg.latency.budget_ms
        fix = "train the super-network longer (train.steps)" if fits else \
            "raise latency.budget_ms" + ("" if fastest_seed is None else f" (the teacher's widths at input "
                                          f"{fastest_seed.input_size}: {latency(fastest_seed):.1f} ms here)") + \
            ", or train the super-network longer (train.steps)"
        warnings.append(f"no candidate under the budget of {cfg.latency.budget_ms:g} ms found anyone (AP 0 for all "
                        f"{len(ranked)} scored): searched.safetensors is not a useful network; {fix}")
        _warn(warnings[-1])
    measured = table.ms(best)
    if measured > 1.1 * cfg.latency.budget_ms:  # over the budget by more than the 10 % a prediction may miss
        warnings.append(f"the chosen network measured {measured:.1f} ms, over the budget of {cfg.latency.budget_ms:g} "
                        f"ms (predicted {latency(best):.1f}): the table mispredicts it here, or this machine's speed "
                        "changed since the table was measured (see the latency check); time it with "
                        "benchmarks/speed.py, or lower latency.budget_ms")
        _warn(warnings[-1])
    model, best_codec = scorer.model(best)
    config = best.config(k)
    save_weights(out / "searched.safetensors", model.state_dict(), name="litepose-searched", architecture="litepose",
                 config=config.to_dict(), codec=best_codec, skeleton=skeleton_to_json(skeleton),
                 source=f"featherpose search from {name}: super-network distilled on unlabelled frames, "
                        f"candidate {best.key} (inherited weights"
                        f"{', BatchNorm recalibrated' if calibration else ''})",
                 license=f"derived from {name}: its licence and provenance apply")
    rows = [{"arch": a.to_dict(), "key": a.key, "AP": s, "predicted_ms": latency(a)} for s, a in ranked]
    report = {
        "teacher": name, "start": start_arch.key, "budget_ms": cfg.latency.budget_ms, "machine": table.key,
        "supernet_loss_first_last": [losses[0], losses[-1]] if losses else [],
        "supernet_steps": len(losses), "supernet_device": str(device), "supernet_started_from": summary["started_from"],
        # latencies at the reference network's fastest (latency.py); passes_ms: each pass's own milliseconds
        "latency_reference_ms": table.reference_ms,
        "latency_check": [c._asdict() for c in check],
        "latency_check_max_error": max(c.error for c in check) if check else None,
        "latency_check_mean_error": float(np.mean([c.error for c in check])) if check else None,
        "latency_check_raw_max_error": max(c.raw_error for c in check) if check else None,
        "latency_check_repeat_error": float(np.mean(repeat)) if repeat else None,
        "chosen": {"key": best.key, "AP": best_ap, "predicted_ms": latency(best), "measured_ms": measured,
                   "weights": str(out / "searched.safetensors")},
        "candidates": rows, "minutes": (time.perf_counter() - started) / 60, "warnings": warnings,
    }
    plot_population(rows, cfg.latency.budget_ms, out / "search.png")
    with atomic_path(out / "search.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    return report
