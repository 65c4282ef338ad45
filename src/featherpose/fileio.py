"""Atomic file output (write to a temporary file beside the target, rename when complete), and JSON input.

A crash or Ctrl-C mid-write leaves the previous file (or none), never a truncated one. The temporary
is named ``.<target name>.featherpose-tmp-<pid>-<random><suffix>``: recognisably ours, so that
:func:`remove_stale_temporaries` can delete what a killed run left without touching anything else.
Write errors name the user's path (never the temporary) and say what to do.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import struct
import tempfile
import time
import contextlib
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

TMP_MARK = ".featherpose-tmp-"
STALE_AFTER_S = 24 * 3600  # a temporary nobody touched for a day is stale even if its pid is alive again

_REASONS = {
    errno.EACCES: ("permission denied", "choose a writable location"),
    errno.EPERM: ("permission denied", "choose a writable location"),
    errno.EROFS: ("read-only file system", "choose a writable location"),
    errno.ENOSPC: ("no space left on the disk", "free some space or choose another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or choose another disk"),
    errno.ENOTDIR: ("a folder on the way is a file", "choose another location"),
    errno.EISDIR: ("it is a folder", "give a file name"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter path"),
    errno.ENOENT: ("files cannot be created there", "choose a writable location"),
    errno.EFBIG: ("the file is too large for this file system", "choose another disk"),
}


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class WriteError(OSError):
    """A one-line write error of ours: it already names the user's path and the fix (never reworded)."""


def _oserror(code: int | None, message: str) -> WriteError:
    """A :class:`WriteError` whose text is just ``message`` (no ``[Errno N]`` prefix), keeping ``errno``."""
    exc = WriteError(message)
    exc.errno = code
    return exc


def same_file(path: str | Path) -> str:
    """A key that two paths of the same file share (the resolved absolute path), for overwrite checks."""
    return str(Path(path).resolve())


def refuse_overwrite(out: str | Path, inputs: dict[str, str], what: str, fix: str = "choose another path") -> None:
    """Raise a one-line ``ValueError`` when writing ``out`` would replace one of the ``inputs``.

    Args:
        inputs: :func:`same_file` of each input -> how to name it, e.g. ``"the --data file d.json"``;
            built once by the caller, so a folder of many images costs one lookup per output.
        what: how the user named the output, e.g. ``"--results r.json"``.
        fix: what to do instead.
    """
    label = inputs.get(same_file(out))
    if label is not None:
        raise ValueError(f"{what} would overwrite {label}; {fix}")


def write_error(path: str | Path, exc: OSError, what: str = "") -> WriteError:
    """One-line ``OSError`` for a failed write of ``path``: the user's path, the reason in words, the fix.

    Args:
        exc: the error the operating system raised (which may name a temporary file).
        what: how the user named the location, e.g. ``"--json file"`` (shown before the path).
    """
    reason, fix = _REASONS.get(exc.errno, ((exc.strerror or str(exc)).lower(), "choose another location"))
    return _oserror(exc.errno, f"cannot write {what + ' ' if what else ''}{path}: {reason}; {fix}")


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}{TMP_MARK}"


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``.

    Args:
        suffix: extension for the temporary file, for writers that infer the format from it
            (OpenCV's VideoWriter, cv2.imwrite); defaults to ``path``'s own suffix.

    The temporary is flushed to the disk (fsync) before the rename, so the renamed file is complete
    even after a power cut.

    Raises:
        WriteError: the folder cannot be created or written, or the rename fails; the message names
            ``path`` (not the temporary) and the fix. Errors of the caller's block that name the
            temporary are reworded the same way.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{_tmp_prefix(path)}{os.getpid()}-", suffix=suffix or path.suffix,
                                   dir=path.parent)
        os.close(fd)
    except FileExistsError as exc:  # a file where a folder should be
        raise _oserror(errno.ENOTDIR, f"cannot write {path}: {exc.filename} is a file, not a folder; "
                                     f"choose another location") from None
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        try:
            yield Path(tmp)
        except OSError as exc:  # about the temporary, or a full disk (which names no file): the user's path
            if exc.filename in (tmp, Path(tmp)) or (exc.filename is None and exc.errno in _FULL
                                                    and not isinstance(exc, WriteError)):
                raise write_error(path, exc) from None
            raise
        try:
            _fsync(tmp)  # on the disk before the rename commits it: a power cut leaves the old file or the new
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as exc:
            raise write_error(path, exc) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync(path: str) -> None:
    """Flush ``path``'s data to the disk (opened for writing: Windows refuses to fsync a read-only handle)."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(*targets: str | Path) -> list[Path]:
    """Delete the temporaries that killed runs left beside ``targets``; returns the paths removed.

    Only files named by :func:`atomic_path` for exactly these targets are candidates, and of those
    only the ones whose writing process no longer runs (or that nobody touched for a day): a
    concurrent writer's temporary and every other file are left alone. Each folder is listed once.
    """
    by_folder: dict[Path, set[str]] = {}
    for target in map(Path, targets):
        by_folder.setdefault(target.parent, set()).add(_tmp_prefix(target))
    removed = []
    for folder, prefixes in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # no folder yet: nothing to clean
            continue
        for entry in entries:
            if not entry.name.startswith(".") or TMP_MARK not in entry.name:
                continue
            prefix = entry.name[:entry.name.index(TMP_MARK) + len(TMP_MARK)]
            pid = entry.name[len(prefix):].split("-", 1)[0]
            if prefix not in prefixes or not pid.isdigit():
                continue
            try:
                info = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode):
                    continue
                if _alive(int(pid)) and time.time() - info.st_mtime < STALE_AFTER_S:
                    continue
                os.unlink(entry.path)
            except OSError:  # gone already, or not ours to delete: leave it
                continue
            removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` may still run. On Windows ``os.kill(pid, 0)`` would send it Ctrl-C, so
    every pid counts as alive there and only the file's age (:data:`STALE_AFTER_S`) marks it stale."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def check_writable(path: str | Path, what: str = "output", folder: bool = False, example: str = "out.json") -> Path:
    """Raise a one-line ``OSError`` now if ``path`` could not be written later; returns ``path``.

    Call it before long work, so an unwritable output fails in a second instead of after the work.
    The nearest existing folder on the way is probed by creating (and deleting) a temporary file,
    so permissions, read-only mounts and a file standing where a folder should be are all caught.
    Nothing is created except that probe.

    Args:
        what: how the user named the location, e.g. ``"--json file"`` or ``"--save folder"``.
        folder: ``path`` is a folder to write into (else a file to write).
        example: a file name to suggest when ``path`` is a folder but a file is wanted.
    """
    path = Path(path)
    label = f"{what} {path}"
    if folder and path.exists() and not path.is_dir():
        raise _oserror(errno.ENOTDIR, f"{label} is a file, not a folder; give a folder")
    if not folder and path.is_dir():
        raise _oserror(errno.EISDIR, f"{label} is a folder; give a file name, e.g. {path / example}")
    base = path if folder else path.parent
    existing = base
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise _oserror(errno.ENOTDIR, f"cannot write {label}: {existing} is a file, not a folder; "
                                     f"choose another location")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".probe{TMP_MARK}{os.getpid()}-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise write_error(path, exc, what) from None
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically, as UTF-8 whatever the locale."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
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
        return json.loads(path.read_bytes())  # UTF-8 (or -16 / -32) whatever the locale, as JSON is
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def cache_dir(name: str) -> Path:
    """``~/.cache/featherpose/<name>`` (``$XDG_CACHE_HOME`` respected): where measurements and converted models are
    kept per machine (backend choice, ONNX exports, load plans, int8 and LiteRT models, the search's latency table)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "featherpose" / name


#: a cache file's last 8 bytes: the CRC-32 of what precedes them, then this mark (7 ms for a 14 MB export)
_CACHE_MARK = b"fpc1"


def _cache_trailer(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data)) + _CACHE_MARK


def read_cached(path: Path) -> bytes | None:
    """What :func:`write_cached` wrote to ``path`` (the file's date set to now: recently used), or None when it
    cannot be read or is damaged (its checksum does not match: then it is removed, to be made again)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    data = raw[:-8]
    if len(raw) < 8 or raw[-8:] != _cache_trailer(data):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    with contextlib.suppress(OSError):
        os.utime(path)
    return data


def write_cached(path: Path, data: bytes, keep: int) -> None:
    """Write a cache file atomically (``data`` and a checksum :func:`read_cached` checks) and keep the ``keep`` most
    recently used files of its folder with its suffix; a cache that cannot be written is left as it is (it only costs
    a later process the work again)."""
    with contextlib.suppress(OSError):
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(data)
            f.write(_cache_trailer(data))
        kept = sorted(path.parent.glob(f"*{path.suffix}"), key=lambda f: f.stat().st_mtime, reverse=True)
        for old in kept[keep:]:
            old.unlink(missing_ok=True)
