"""The one wrapper around every command's ``main``: named failures become one line and an exit code.

``@command`` turns

- a :class:`~locater.errors.LocaterError` into ``error: <message>`` and the error's ``exit_code``;
- a ``ValueError`` (the library's way of refusing a value the user gave: a config entry, a flag) into its
  message and exit 2;
- an :class:`OSError` into ``error: <file>: <reason> (ENOSPC)``: exit 2 for a missing file or folder
  (ENOENT, ENOTDIR, EISDIR), exit 4 for what the system refused (disk full, permission, read-only, I/O);
- Ctrl-C (``KeyboardInterrupt``) and SIGTERM into ``interrupted`` and exit 130;
- anything else (a bug) into ``error: internal error: ...`` and exit 70.

``--debug`` on any command line (or ``LOCATER_DEBUG=1``) also prints the traceback; the exit code is the same.
A command that sets up ``torch.distributed`` has its process group torn down on every way out.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import signal
import sys
import traceback
from collections.abc import Callable

from locater.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OUTPUT,
    LocaterError,
    debug_enabled,
    describe_os_error,
    os_error_cause,
)

DEBUG_FLAG = "--debug"
DEBUG_HELP = "print the traceback of a failure (same as LOCATER_DEBUG=1)"
TRUST_CHECKPOINT_HELP = (
    "read a checkpoint that needs full unpickling (it can run code): only for files you trust"
)


def add_trust_checkpoint_flag(parser: argparse.ArgumentParser, help: str = TRUST_CHECKPOINT_HELP) -> None:
    """``--trust-checkpoint``, the opt-in to full unpickling that every command reading checkpoints has."""
    parser.add_argument("--trust-checkpoint", action="store_true", help=help)


def _raise_interrupt(signum, frame) -> None:  # SIGTERM -> the same clean path as Ctrl-C
    raise KeyboardInterrupt


def _cleanup_distributed() -> None:
    """Tear down a process group the command set up; a command that never imported torch.distributed pays
    nothing (no torch import on the way out)."""
    if "torch.distributed" not in sys.modules:
        return
    from locater.engine import distributed

    try:
        distributed.cleanup()
    except Exception:  # tearing down after a failure must not hide the failure
        pass


MISSING_INPUT = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR)


def _os_error_code(error: OSError) -> int:
    return EXIT_BAD_INPUT if error.errno in MISSING_INPUT else EXIT_OUTPUT


def _report(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def command(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Decorate a command's ``main(argv) -> exit code`` (``None`` counts as 0)."""

    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        debug = debug_enabled()
        previous_env = os.environ.get("LOCATER_DEBUG")
        if DEBUG_FLAG in args:
            args = [arg for arg in args if arg != DEBUG_FLAG]
            debug = True
            os.environ["LOCATER_DEBUG"] = "1"  # child processes (recipe stages, DataLoader workers) too
        previous = None
        try:
            previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        except ValueError:  # not the main thread (e.g. called from a test runner's worker thread)
            pass
        try:
            code = main(args)
            return 0 if code is None else int(code)
        except KeyboardInterrupt:
            if debug:
                traceback.print_exc()
            print("interrupted", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        except LocaterError as error:  # InterruptedRun included: its exit code is 130
            return _report(str(error), error.exit_code, debug)
        except OSError as error:
            return _report(describe_os_error(error), _os_error_code(error), debug)
        except ValueError as error:
            return _report(str(error).strip() or type(error).__name__, EXIT_BAD_INPUT, debug)
        except Exception as error:  # a bug, unless the chain holds the system's reason
            cause = os_error_cause(error)
            if cause is not None and cause.errno is not None:
                return _report(describe_os_error(cause), _os_error_code(cause), debug)
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            hint = "" if debug else " (rerun with --debug for the traceback)"
            return _report(f"internal error: {type(error).__name__}: {first}{hint}", EXIT_INTERNAL, debug)
        finally:
            _cleanup_distributed()
            if previous_env is None:  # a command called in-process leaves the environment as it found it
                os.environ.pop("LOCATER_DEBUG", None)
            else:
                os.environ["LOCATER_DEBUG"] = previous_env
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapped
