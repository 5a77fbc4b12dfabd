"""Training checkpoints: atomic writes, checksums, keep the last k, the best by a metric, resume.

Layout of ``<output_dir>/checkpoints/``::

    step_00001000.pt (+ .sha256)   one file per saved step; the newest ``keep_last`` are kept
    last.pt          (+ .sha256)   the newest checkpoint (a hard link, or a copy where links are not supported)
    best.pt          (+ .sha256)   the checkpoint with the best validation metric

Every file is written to a temporary name in the same folder, synced and renamed, so a crash never leaves a
half-written ``step_*.pt``; its SHA-256 is written first, so a file truncated or corrupted later is detected and
:meth:`CheckpointManager.load_latest` falls back to the previous one with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from locater.checkpoint import CheckpointError, read_checkpoint
from locater.files import atomic_output, link_atomic, sync_directory, write_text_atomic

logger = logging.getLogger(__name__)

STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
REQUIRED_KEYS = ("model", "optimizer", "step", "sampler", "rng", "config")
CHECKSUM_SUFFIX = ".sha256"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def save_with_checksum(payload: Mapping, path: str | Path) -> Path:
    """``torch.save`` atomically (:mod:`locater.files`), the checksum file written before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(dict(payload), tmp)
        write_text_atomic(_checksum_path(path), f"{file_sha256(tmp)} {tmp.stat().st_size}\n")
    sync_directory(path.parent)
    return path


def verify_checksum(path: Path) -> None:
    """Raise :class:`CheckpointError` when ``path``'s size or SHA-256 differs from its ``.sha256`` file."""
    record = _checksum_path(path)
    if not record.is_file():
        logger.warning("%s has no %s file: only its structure can be checked", path, CHECKSUM_SUFFIX)
        return
    fields = record.read_text().split()
    if len(fields) != 2:
        raise CheckpointError(f"{record}: malformed checksum file")
    expected_digest, expected_size = fields[0], int(fields[1])
    size = path.stat().st_size
    if size != expected_size:
        raise CheckpointError(f"{path}: {size} bytes, expected {expected_size} (truncated?)")
    if file_sha256(path) != expected_digest:
        raise CheckpointError(f"{path}: SHA-256 differs from {record.name} (corrupt file)")


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a training checkpoint (checksum, readability, required entries).

    Raises:
        CheckpointError: missing, truncated, corrupt, or not a training checkpoint; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    verify_checksum(path)
    payload = dict(read_checkpoint(path))
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint (missing {', '.join(missing)})")
    return payload


class CheckpointManager:
    """Writes and finds the training checkpoints of one run (only rank 0 writes).

    Args:
        directory: ``<output_dir>/checkpoints``.
        keep_last: step files kept (older ones are deleted; ``last.pt`` and ``best.pt`` stay); 0 keeps all.
    """

    def __init__(self, directory: str | Path, keep_last: int = 3) -> None:
        self.directory = Path(directory)
        self.keep_last = keep_last

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def step_path(self, step: int) -> Path:
        return self.directory / f"step_{step:08d}.pt"

    def step_files(self) -> list[tuple[int, Path]]:
        """Saved ``(step, path)`` pairs, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := STEP_FILE.match(p.name))]
        return sorted(found)

    def save(self, payload: Mapping, step: int, is_best: bool = False) -> Path:
        """Write ``step_<step>.pt``, point ``last.pt`` (and ``best.pt`` when ``is_best``) at it, prune old files."""
        path = save_with_checksum(payload, self.step_path(step))
        for alias, wanted in ((self.last_path, True), (self.best_path, is_best)):
            if wanted:
                link_atomic(_checksum_path(path), _checksum_path(alias))
                link_atomic(path, alias)
        if self.keep_last > 0:
            for _, old in self.step_files()[: -self.keep_last]:
                old.unlink()
                _checksum_path(old).unlink(missing_ok=True)
        sync_directory(self.directory)
        logger.info("saved checkpoint %s%s", path, " (best)" if is_best else "")
        return path

    def load_latest(self) -> tuple[dict[str, Any], Path] | None:
        """The newest checkpoint that passes :func:`load_training_checkpoint`, or ``None`` when there is none.

        A corrupt or truncated file is skipped with a warning and the previous one is tried.

        Raises:
            CheckpointError: checkpoints exist but none of them is valid.
        """
        candidates = [path for _, path in reversed(self.step_files())]
        if not candidates and self.last_path.is_file():
            candidates = [self.last_path]
        problems = []
        for path in candidates:
            try:
                return load_training_checkpoint(path), path
            except CheckpointError as error:
                problems.append(str(error))
                logger.warning("skipping checkpoint %s: %s; trying the previous one", path.name, error)
        if problems:
            raise CheckpointError(f"no valid checkpoint in {self.directory}: " + "; ".join(problems))
        return None


def capture_rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch CPU and CUDA generator states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
