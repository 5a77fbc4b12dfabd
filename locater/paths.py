"""Paths and zip member names built from data content stay inside their root.

Video, expression and frame ids come from data files (an expressions JSON, a meta file, a release's
``videoset.csv``) and end up in paths: frame folders, mask files, ``--save-masks`` output, submission zip members,
converted splits. An id such as ``../../x`` would make a reader open, or a writer write, outside the folder the
user named. Every such path goes through this module: an id must be a plain file name (no separator, no ``..``, no
NUL, no drive), a JHMDB id ``action/video`` is a ``/``-separated run of such names, and an output path is also
checked after resolving symlinks. A refusal raises :class:`~locater.data.frames.UnsafePathError` (a
``DataError``: exit code 2) naming the data file the id came from and the id.
"""

from __future__ import annotations

import re
from pathlib import Path

_DRIVE = re.compile(r"^[A-Za-z]:")


def __getattr__(name: str):
    # ``UnsafePathError`` lives next to ``DataError`` (locater.data.frames); imported on first use, because the
    # readers of locater.data import this module while that package is still being imported.
    if name == "UnsafePathError":
        from locater.data.frames import UnsafePathError

        return UnsafePathError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _unsafe(message: str) -> Exception:
    from locater.data.frames import UnsafePathError

    return UnsafePathError(message)


def _reason(name: object) -> str | None:
    """Why ``name`` is not a plain file name, or ``None`` when it is one."""
    if not isinstance(name, str):
        return f"is not a string ({type(name).__name__})"
    if name == "":
        return "is empty"
    if name in (".", ".."):
        return "is a relative folder ('.' or '..')"
    if "/" in name or "\\" in name:
        return "holds a path separator ('/' or '\\')"
    if "\x00" in name:
        return "holds a NUL character"
    if _DRIVE.match(name):
        return "starts with a drive ('C:')"
    return None


def _describe(source: object) -> str:
    return str(source) if source is not None else "<unknown source>"


def safe_component(name: str, what: str = "id", source: object = None) -> str:
    """``name`` itself when it is a plain file name, else :class:`UnsafePathError`.

    Refused: ``''``, ``'.'``, ``'..'``, anything holding ``/``, ``\\`` or NUL, a drive (``C:``).

    Args:
        name: the value read from a data file.
        what: what it is, for the message ("video id", "expression id").
        source: the data file it came from (and where in it), for the message.
    """
    reason = _reason(name)
    if reason is not None:
        raise _unsafe(
            f"{_describe(source)}: unsafe {what} {name!r}: it {reason}; ids must be plain file names, "
            "they become paths under the output or data folder"
        )
    return name


def id_parts(value: str, what: str = "id", source: object = None) -> list[str]:
    """The ``/``-separated parts of an id, each a :func:`safe_component` (``"action/video"`` -> 2 parts)."""
    if not isinstance(value, str):
        safe_component(value, what, source)  # raises, naming the type
    parts = value.split("/")
    for part in parts:
        reason = _reason(part)
        if reason is not None:
            raise _unsafe(
                f"{_describe(source)}: unsafe {what} {value!r}: its part {part!r} {reason}; ids must be plain "
                "file names (JHMDB: action/video), they become paths under the output or data folder"
            )
    return parts


def contained_path(root: str | Path, *parts: str, source: object = None, what: str = "id") -> Path:
    """``root / part / ...`` after checking every part, and that it resolves inside ``root``.

    Each part may be a ``/``-separated id (:func:`id_parts`). The joined path is resolved (symlinks followed, as far
    as it exists) and must lie inside ``root`` resolved: a symlink inside the output folder pointing elsewhere is
    refused as well.
    """
    pieces = [piece for part in parts for piece in id_parts(part, what, source)]
    root = Path(root)
    path = root.joinpath(*pieces)
    resolved_root = root.resolve()
    resolved = path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise _unsafe(
            f"{_describe(source)}: {what} {'/'.join(parts)!r} leads to {resolved}, outside {resolved_root} "
            "(a symlink inside it?)"
        )
    return path


def safe_archive_name(*parts: str, source: object = None, what: str = "id") -> str:
    """The zip member name ``part/part/...``; every part checked with :func:`id_parts` (no ``..``, no
    absolute name, no backslash), so the member unpacks inside the folder it is extracted into."""
    return "/".join(piece for part in parts for piece in id_parts(part, what, source))
