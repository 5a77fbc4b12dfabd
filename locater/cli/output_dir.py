"""An output folder that holds one run's files: new or empty, or cleared of a previous run's outputs on request.

A tool that writes several files into a folder (the demo, the evaluator) refuses a folder that already holds
something, so that its files never mix with an earlier run's (stale masks beside a new summary). With
``overwrite`` it removes the outputs it would write itself (its own file and folder names) and still refuses a
folder holding anything else: those files are not the tool's to delete.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from locater.errors import LocaterError


class OutputFolderError(LocaterError):
    """The output folder holds files of another run (and ``--overwrite`` was not given), or is not a folder."""


def prepare_output_dir(
    out: str | Path,
    owned: Iterable[str],
    *,
    overwrite: bool,
    flag: str = "--output-dir",
    last: str | None = None,
) -> Path:
    """Make ``out`` ready for one run and return it (created when missing).

    Args:
        out: the folder.
        owned: the names (files or folders) this tool writes directly inside ``out``.
        overwrite: remove those names when present instead of refusing.
        flag: the command-line flag that named the folder, for the messages.
        last: the file that marks a finished run (its summary): removed first, so an interruption while clearing
            never leaves a summary beside missing outputs.

    Raises:
        OutputFolderError: ``out`` is a file; it holds anything without ``overwrite``; it holds names the tool does
            not write (with ``overwrite``).
    """
    out = Path(out)
    owned = set(owned)
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"{flag} {out}: exists and is not a folder")
    if out.is_dir():
        present = sorted(entry.name for entry in out.iterdir())
        if present and not overwrite:
            shown = ", ".join(present[:5]) + (" ..." if len(present) > 5 else "")
            raise OutputFolderError(
                f"{flag} {out}: not empty ({shown}); choose a new folder, or pass --overwrite to replace an "
                "earlier run's outputs"
            )
        foreign = [name for name in present if name not in owned]
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise OutputFolderError(
                f"{flag} {out}: holds files this tool does not write ({shown}); --overwrite only replaces "
                f"{', '.join(sorted(owned))}: choose a new folder"
            )
        order = sorted(present, key=lambda name: name != last)
        for name in order:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out
