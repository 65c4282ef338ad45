"""The family table: one explicit row per model family, and everything the rest of featherpose asks of one.

A family is a network, its codec, its loss and a recipe's ``model:`` / ``loss:`` sections. The zoo, the
trainer, the data pipeline, distillation and the CLI look a family up in :data:`FAMILIES` (by the
``architecture`` a recipe or weight file names, or by a codec's class) instead of switching on names:

    row = FAMILIES["hourglass"]
    network = row.network(row.network_config(cfg.model, num_keypoints))   # training, from a recipe
    codec = row.training_codec(cfg.model, cfg.loss, num_keypoints)
    network, codec = row.from_weights(weights_file)                      # inference, from a weight file

This package: ``base.py`` what every family shares (the :class:`Family` row, the ``model:`` / ``loss:``
sections every family extends, rebuilding a network from a weight file); ``<family>.py`` one family's recipe
sections, hooks and row (``movenet.py``, ``hourglass.py``, ``lwop.py``,
``litepose.py``); this file the table and its lookups.

Adding a family touches: ``models/<family>.py`` (its network and config), ``codecs/<family>.py`` (its codec,
:class:`~featherpose.codecs.base.Codec`), ``train/losses.py`` (a loss, or a reuse), ``families/<family>.py``
(its recipe sections, hooks and ``<FAMILY> = Family(...)`` row), one entry in :data:`FAMILIES` below,
``zoo.py`` (its zoo entries) and ``configs/<recipe>.yaml`` (a recipe); ``convert/<family>.py`` too if it has
an importer. The tests (tests/test_families.py) cover it from its row.

No module is imported for its side effects here: the table is a dict literal. Training parts (the losses)
and importers are imported only when a hook that needs them runs, so ``import featherpose`` stays light.
"""
from __future__ import annotations

from . import hourglass, litepose, lwop, movenet
from .base import (BAD_FIELD, DEFAULT_ARCHITECTURE, MAX_INPUT_SIZE, WEIGHTS_FIX, Family, LossSection,
                   ModelSection, first_line, input_hw, rebuild_network)

__all__ = ["BAD_FIELD", "DEFAULT_ARCHITECTURE", "FAMILIES", "MAX_INPUT_SIZE", "WEIGHTS_FIX", "Family",
           "LossSection", "ModelSection", "family", "family_of", "first_line", "input_hw", "loss_parts",
           "rebuild_network"]

FAMILIES: dict[str, Family] = {
    "movenet": movenet.MOVENET,
    "hourglass": hourglass.HOURGLASS,
    "lwop": lwop.LWOP,
    "litepose": litepose.LITEPOSE,
}


def family(name: str) -> Family:
    """The row of an architecture; an unknown one is a ValueError naming the known ones."""
    if isinstance(name, str) and name in FAMILIES:
        return FAMILIES[name]
    raise ValueError(f"unknown architecture {name!r}; known: {', '.join(FAMILIES)}")


def family_of(codec) -> Family:
    """The row whose codec class ``codec`` is an instance of."""
    for row in FAMILIES.values():
        if isinstance(codec, row.codec):
            return row
    raise ValueError(f"no family has the codec {type(codec).__name__}; known: {', '.join(FAMILIES)}")


def loss_parts() -> list[str]:
    """Every family's loss parts, in table order, each once (the loss columns of ``metrics.csv``)."""
    return list(dict.fromkeys(p for row in FAMILIES.values() for p in row.loss_parts))
