"""Named failures and the exit codes of every command.

Every command (``tools/*.py``, ``locater-*``) ends with one of these codes; ``docs/exit-codes.md`` is the table
users read. A failure the project can name raises a :class:`LocaterError` subclass whose message is one line
naming the file and the cause; :func:`locater.cli.entry.command` turns it into that line on stderr and the
error's ``exit_code``. Nothing else prints a traceback unless ``--debug`` or ``LOCATER_DEBUG=1`` asks for it.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

EXIT_OK = 0
EXIT_NON_FINITE = 1  # training (or a recipe stage) stopped on a non-finite loss
EXIT_BAD_INPUT = 2  # bad command line, config, data, checkpoint, or a refused output folder / rerun
EXIT_NOT_FINISHED = 3  # a recipe stage stopped before its step count (time guard): a rerun resumes it
EXIT_OUTPUT = 4  # a write or read the system refused: disk full, permission, read-only or failing disk
EXIT_INTERNAL = 70  # an unexpected error, i.e. a bug: rerun with --debug for the traceback and report it
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT) or SIGTERM

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_NON_FINITE: "training stopped on a non-finite loss",
    EXIT_BAD_INPUT: "bad input: command line, config, data, checkpoint, or an output folder refused",
    EXIT_NOT_FINISHED: "a recipe stage stopped before its step count; rerun the same command to resume",
    EXIT_OUTPUT: "the system refused a write or read: disk full, permission denied, read-only file system",
    EXIT_INTERNAL: "unexpected error (a bug): rerun with --debug and report the traceback",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C or SIGTERM)",
}


class LocaterError(Exception):
    """A failure the project can name. The message is one line naming the file and the cause."""

    exit_code = EXIT_BAD_INPUT


class OutputError(LocaterError):
    """Writing (or reading) a file failed for a reason outside the project: disk full, permission, I/O."""

    exit_code = EXIT_OUTPUT


class InterruptedRun(LocaterError):
    """The user interrupted a command; the message says what was kept and how to go on."""

    exit_code = EXIT_INTERRUPTED


def os_error_cause(error: BaseException) -> OSError | None:
    """The :class:`OSError` behind ``error``: itself, or one in its ``__cause__``/``__context__`` chain (torch's
    serialization wraps a failed write in a ``RuntimeError``)."""
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe_os_error(error: OSError, path: str | Path | None = None) -> str:
    """One line: the file and the system's reason, e.g. ``runs/x/last.pt: no space left on device (ENOSPC)``."""
    name = path if path is not None else (error.filename if error.filename is not None else None)
    code = errno.errorcode.get(error.errno, "") if error.errno is not None else ""
    reason = (error.strerror or str(error) or type(error).__name__).strip()
    reason = reason[0].lower() + reason[1:] if reason else reason
    text = f"{reason} ({code})" if code else reason
    return f"{name}: {text}" if name is not None else text


def write_failure(path: str | Path, error: BaseException) -> OutputError:
    """The :class:`OutputError` for a failed write of ``path``.

    Finds the system's reason in ``error``'s chain; where a library hid it (torch's ``PytorchStreamWriter failed
    writing file``), a nearly full disk is named from the folder's free space.
    """
    cause = os_error_cause(error)
    if cause is not None and cause.errno is not None:
        return OutputError(f"cannot write {describe_os_error(cause, path)}")
    folder = Path(path).parent
    try:
        free = shutil.disk_usage(folder if folder.exists() else Path.cwd()).free
    except OSError:
        free = None
    if free is not None and free < (1 << 20):
        return OutputError(f"cannot write {path}: no space left on device (ENOSPC, {free} bytes free)")
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return OutputError(f"cannot write {path}: {type(error).__name__}: {first_line}")


def debug_enabled() -> bool:
    """Whether tracebacks are wanted (``LOCATER_DEBUG`` set to anything but ``''``/``0``)."""
    return os.environ.get("LOCATER_DEBUG", "") not in ("", "0")
