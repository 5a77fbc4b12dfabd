"""Files written whole or not at all, and the one ``torch.load``.

Every writer here writes a temporary file in the target's folder (``.<name>.tmp<pid>``), flushes it to disk and
renames it over the target (``os.replace``, atomic on POSIX and Windows), so a reader never sees a half-written
file and a crash leaves the previous version in place. A failed write removes its temporary file and raises
:class:`~locater.errors.OutputError` naming the file and the system's reason (ENOSPC, EACCES, ...).

:func:`publish_dir` and :func:`swap_dir` move a finished folder into place the same way.

:func:`load_torch` is the only ``torch.load`` of the package; what it may unpickle (``weights_only``) is the
caller's choice, stated at each call.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from locater.errors import LocaterError, write_failure


def temporary_path(path: str | Path) -> Path:
    """The temporary name a write of ``path`` goes through: hidden, in the same folder, this process's own."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_directory(directory: str | Path) -> None:
    """Flush a folder's entries (the renames into it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yields the temporary path to write; on a normal exit it is synced and renamed over ``path``, on an
    exception it is removed (``path`` is untouched either way until the rename).

    Raises:
        OutputError: the write, the sync or the rename failed with an :class:`OSError` or a ``RuntimeError``
            (torch's ``PytorchStreamWriter failed writing file`` wraps the system's ENOSPC in one); the message
            names ``path`` and the system's reason. Any other exception of the body passes through unchanged.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except LocaterError:
        raise  # already named (a nested atomic write, or a named error of the body)
    except (OSError, RuntimeError) as error:
        _release_frames(error)
        raise write_failure(path, error) from error
    finally:
        tmp.unlink(missing_ok=True)


def _release_frames(error: BaseException) -> None:
    """Drop the local variables of the finished frames in ``error``'s tracebacks (and its chain's).

    A failed ``torch.save`` leaves its file writer, and with it the open temporary file, in those frames: the
    file would be unlinked but keep its disk space for as long as the error lives (in a notebook, until the next
    error). The tracebacks still print; frames still running are left alone."""
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return path


def write_json_atomic(path: str | Path, data: Any, indent: int = 1) -> Path:
    """Write ``data`` as JSON to ``path`` atomically; returns ``path``."""
    return write_text_atomic(path, json.dumps(data, indent=indent))


def save_torch_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (the parent folder is created); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)
    sync_directory(path.parent)
    return path


def link_atomic(source: str | Path, target: str | Path) -> None:
    """Point ``target`` at ``source``'s content (a hard link, else a copy), replacing ``target`` atomically."""
    with atomic_output(target) as tmp:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def replace_file(tmp: str | Path, path: str | Path) -> Path:
    """Rename a temporary file written elsewhere (e.g. a zip built entry by entry) over ``path``."""
    os.replace(tmp, path)
    return Path(path)


def publish_dir(staging: str | Path, final: str | Path) -> None:
    """Move a finished temporary folder into place (a leftover of an interrupted run is removed first)."""
    final = Path(final)
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, final)


def swap_dir(new: str | Path, final: str | Path) -> None:
    """Move the folder ``new`` into place, replacing ``final`` only once ``new`` is there: the old folder is
    renamed aside (``<final>.old``) first and deleted last, so an interruption never loses both."""
    final = Path(final)
    old = final.with_name(final.name + ".old")
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(new, final)
    if old.exists():
        shutil.rmtree(old)


def load_torch(path: str | Path, *, weights_only: bool, map_location: Any = None) -> Any:
    """``torch.load`` of a file (the package's only one). Errors propagate: each caller names its file kind."""
    return torch.load(path, map_location=map_location, weights_only=weights_only)
