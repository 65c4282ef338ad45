"""Atomic file output (write to a temporary file beside the target, rename when complete), and JSON input.

A crash or Ctrl-C mid-write leaves the previous file (or none), never a truncated one.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``.

    Args:
        suffix: extension for the temporary file, for writers that infer the format from it
            (OpenCV's VideoWriter, cv2.imwrite); defaults to ``path``'s own suffix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_json(path: str | Path, what: str = "file"):
    """The parsed JSON of ``path``; a missing or unparsable file is one clear error naming ``what`` it should be.

    Raises:
        FileNotFoundError: ``{what} not found: path``.
        ValueError: ``path: not valid JSON (reason)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
