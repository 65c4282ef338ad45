"""Imports that make many long-lived objects, with Python's cyclic collector paused.

Importing torch makes about 264 000 long-lived objects (modules, classes, functions). The cyclic collector's passes over
them, while they are made and in every full collection after (loading a model runs several), took 0.8-1.6 s of a
`featherpose predict` start (benchmarks/RESULTS.md, "Start-up ... the collector"). :func:`paused` turns the collector
off for such an import; then one collection frees what is garbage already (the caller's included) and what survives is
frozen (``gc.freeze``: left out of later collections, so a cycle among those objects that becomes garbage later is not
freed). ``import featherpose`` runs under it, and so does the first import of the family table, which imports torch
(:mod:`featherpose.zoo`).
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """The collector off inside the block; after it, one collection, a freeze, and the collector on again if it was."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        if collecting:
            gc.enable()
