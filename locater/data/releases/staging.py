"""The staged output shared by every release converter (A2D-Sentences, JHMDB-Sentences, A2D-S+).

A split is built in ``<split>.partial`` with one marker per finished video and renamed to ``<split>`` when
complete, so an interrupted run resumes and a finished split is never replaced by a partial one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from locater.data.frames import DataError
from locater.files import swap_dir, write_json_atomic
from locater.paths import id_parts

logger = logging.getLogger(__name__)


class ReleaseError(DataError):
    """A file of an original release is missing or malformed; the message names the file and the problem."""


class StagedSplit:
    """A split folder built in ``<final>.partial`` and renamed to ``<final>`` only once complete.

    Each finished video leaves a marker ``.done/<video>.json`` (its record) in the partial folder, so a rerun
    converts only the videos without one. The options of the run are kept in ``.options.json``; resuming with
    other options is refused (the partial videos would not match).
    """

    def __init__(self, final: str | Path, options: dict[str, Any], overwrite: bool = False) -> None:
        self.final = Path(final)
        self.partial = self.final.with_name(self.final.name + ".partial")
        self.options = options
        self.overwrite = overwrite

    def complete(self) -> bool:
        """True when the split exists and is not to be rebuilt."""
        return self.final.is_dir() and not self.overwrite

    def begin(self) -> None:
        """Create (or resume) the partial folder."""
        options_file = self.partial / ".options.json"
        if options_file.is_file():
            saved = _read_json(options_file)
            if saved != self.options:
                raise ReleaseError(
                    f"{self.partial}: left by an interrupted run with other options ({saved}, now {self.options}); "
                    "delete it or rerun with the same options"
                )
        self.partial.mkdir(parents=True, exist_ok=True)
        write_json_atomic(options_file, self.options)

    def finished_record(self, video: str) -> dict[str, Any] | None:
        """The record of a video finished by an earlier run, or ``None``."""
        path = marker_path(self.partial, video)
        if not path.is_file():
            return None
        return _read_json(path)

    def finish(self) -> None:
        """Drop the markers and move the partial folder into place (replacing the old one only now)."""
        shutil.rmtree(self.partial / ".done", ignore_errors=True)
        (self.partial / ".options.json").unlink(missing_ok=True)
        swap_dir(self.partial, self.final)


def _read_json(path: Path) -> Any:
    """A file this module wrote (options, markers); :class:`ReleaseError` naming it when it is damaged."""
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReleaseError(
            f"{path}: malformed JSON ({error}); delete the .partial folder holding it to convert the split afresh"
        ) from error


def marker_path(partial_dir: Path, video: str) -> Path:
    """``.done/<video>.json``; the id's parts are checked (``action/video`` for JHMDB) so the marker stays inside."""
    *folders, name = id_parts(video, "video id", partial_dir)
    return partial_dir.joinpath(".done", *folders, f"{name}.json")


def save_marker(partial_dir: Path, video: str, record: dict[str, Any]) -> None:
    """Mark ``video`` finished; its record is what the final JSON is assembled from."""
    path = marker_path(partial_dir, video)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target``, or copy it where links are impossible (other file system)."""
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def run_tasks(function: Callable[[Any], Any], tasks: list[Any], workers: int, what: str) -> Iterator[Any]:
    """``function(task)`` for every task, in order, in ``workers`` processes (1: in this process)."""
    total = len(tasks)
    step = max(1, total // 20)
    if workers <= 1:
        results: Iterable[Any] = map(function, tasks)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(function, tasks)
    try:
        for done, result in enumerate(results, start=1):
            if done % step == 0 or done == total:
                logger.info("%s: %d/%d videos converted", what, done, total)
            yield result
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
