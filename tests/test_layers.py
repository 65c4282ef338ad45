"""Imports run down the layers, never up (docs/ARCHITECTURE.md, "Layers").

Two checks: a static one over every module's import statements (top level and inside functions,
so a cycle cannot be hidden in a function), and a dynamic one that imports each subpackage in a
fresh interpreter and looks at what got loaded.
"""
from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

import featherpose

PACKAGE = Path(featherpose.__file__).parent

#: Each top-level module or subpackage of featherpose and its layer: a module may import its own and
#: lower layers only. Keep in step with docs/ARCHITECTURE.md.
LAYERS = {
    # 0: no featherpose imports above this line: networks, codecs, keypoint sets, pixels, files
    "skeletons": 0, "image": 0, "image_compiled": 0, "fileio": 0, "collector": 0, "models": 0, "codecs": 0,
    # 1: what runs a model or reads data
    "poses": 1, "weights_io": 1, "runtime": 1, "data": 1, "estimator": 1, "video": 1,
    # 2: named models, families, whole-image top-down, evaluation, training, importers
    "families": 2, "zoo": 2, "topdown": 2, "evaluation": 2, "train": 2, "convert": 2, "nas": 2,
    # 3: what a user calls from the shell
    "predict": 3, "cli": 3, "__main__": 3,
}


def _unit(dotted: str) -> str:
    """featherpose.train.trainer -> 'train'; featherpose -> '' (the package itself)."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    """Dotted featherpose modules a file imports, relative imports resolved."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[:len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {target} if node.module else {f"{target}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("featherpose"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("featherpose")}
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "__init__.py")


def test_every_module_has_a_layer():
    units = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in SOURCES}
    assert units <= LAYERS.keys(), f"give these a layer in LAYERS and docs/ARCHITECTURE.md: {units - LAYERS.keys()}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down_the_layers(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    upward = sorted(t for t in _imports(path) if _unit(t) in LAYERS and LAYERS[_unit(t)] > LAYERS[own])
    assert not upward, f"{path.relative_to(PACKAGE)} (layer {LAYERS[own]}) imports from a higher layer: {upward}"


@functools.cache  # a fresh interpreter takes ~3 s (torch); `featherpose` alone is asked by every test below
def _loaded_by(module: str) -> frozenset[str]:
    code = (f"import sys; import {module}; "
            "print(' '.join(sorted({k.split('.')[1] for k in sys.modules if k.startswith('featherpose.')})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return frozenset(proc.stdout.split())


def test_import_featherpose_loads_no_training_evaluation_or_cli():
    """`import featherpose` (inference) loads neither the trainer, the data pipeline nor the CLI."""
    loaded = _loaded_by("featherpose")
    assert not loaded & {"train", "data", "evaluation", "predict", "cli", "convert", "video"}, sorted(loaded)


def test_import_featherpose_and_its_cli_load_no_torch():
    """Neither `import featherpose` nor the CLI's parser imports torch (2.2 s): a model whose exports are cached runs
    without it (tests/test_load_plans.py)."""
    code = ("import sys, featherpose.cli; featherpose.cli.build_parser(convert=False); print('torch' in sys.modules)\n"
            "import featherpose.models.litepose  # a network's module, later: featherpose.models stays the function\n"
            "print(featherpose.models('movenet-l*'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.split("\n")[:2] == ["False", "['movenet-lightning']"]


@pytest.mark.parametrize("sub", ["codecs", "models", "runtime", "data", "evaluation", "train"])
def test_a_subpackage_loads_nothing_above_it(sub):
    extra = _loaded_by(f"featherpose.{sub}") - _loaded_by("featherpose")
    above = sorted(u for u in extra if LAYERS.get(u, 0) > LAYERS[sub])
    assert not above, f"importing featherpose.{sub} loads {above}"
