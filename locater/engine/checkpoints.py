"""Training checkpoints: atomic writes, checksums, keep the last k, the best by a metric, resume.

Layout of ``<output_dir>/checkpoints/``::

    step_00001000.pt (+ .sha256)   one file per saved step; the newest ``keep_last`` are kept
    last.pt          (+ .sha256)   the newest checkpoint (a hard link, or a copy where links are not supported)
    best.pt          (+ .sha256)   the checkpoint with the best validation metric

Every file is written to a temporary name in the same folder, synced and renamed, so a crash never leaves a
half-written ``step_*.pt``; its SHA-256 is written first, so a file truncated or corrupted later is detected and
:meth:`CheckpointManager.load_latest` falls back to the previous one with a warning.

A checkpoint holds tensors and plain Python values only (the RNG states too, see :func:`capture_rng_state`), so
it reads back with ``torch.load(..., weights_only=True)``: resuming never needs to unpickle arbitrary objects.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from locater.checkpoint import CheckpointError, UnsafeCheckpointError, read_checkpoint
from locater.files import atomic_output, sync_directory, write_text_atomic

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


def plain_values(value: Any) -> Any:
    """``value`` with numpy scalars turned into Python numbers and numpy arrays into tensors (containers walked),
    so ``torch.load(weights_only=True)`` reads it back: it refuses numpy objects."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {key: plain_values(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [plain_values(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def save_with_checksum(payload: Mapping, path: str | Path) -> Path:
    """``torch.save`` atomically (:mod:`locater.files`), the checksum file written before the rename. Numpy values
    are stored as Python numbers and tensors (:func:`plain_values`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(plain_values(dict(payload)), tmp)
        write_text_atomic(_checksum_path(path), f"{file_sha256(tmp)} {tmp.stat().st_size}\n")
    sync_directory(path.parent)
    return path


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # no hard links on this file system: a copy (which needs the space)
        shutil.copyfile(source, target)


def _point_alias(source: Path, alias: Path) -> None:
    """Point ``alias`` (``last.pt``, ``best.pt``) and its checksum file at ``source``'s.

    Both are linked (or copied) to temporary names first and renamed last, so a copy that fails (a full disk)
    leaves the previous pair as it was: a checksum file renamed alone would no longer match its checkpoint."""
    with atomic_output(alias) as tmp:
        _link_or_copy(source, tmp)
        with atomic_output(_checksum_path(alias)) as tmp_checksum:
            _link_or_copy(_checksum_path(source), tmp_checksum)


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


def load_training_checkpoint(path: str | Path, *, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Read and check a training checkpoint (checksum, readability, required entries).

    ``trust_checkpoint``: unpickle every object the file holds (see :func:`locater.checkpoint.read_checkpoint`),
    e.g. for a checkpoint written before the RNG states were stored as tensors.

    Raises:
        UnsafeCheckpointError: the file holds Python objects beyond tensors and plain values (not trusted).
        CheckpointError: missing, truncated, corrupt, or not a training checkpoint; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    verify_checksum(path)
    payload = dict(read_checkpoint(path, trust=trust_checkpoint))
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
                _point_alias(path, alias)
        if self.keep_last > 0:
            for _, old in self.step_files()[: -self.keep_last]:
                old.unlink()
                _checksum_path(old).unlink(missing_ok=True)
        sync_directory(self.directory)
        logger.info("saved checkpoint %s%s", path, " (best)" if is_best else "")
        return path

    def load_latest(self, *, trust_checkpoint: bool = False) -> tuple[dict[str, Any], Path] | None:
        """The newest checkpoint that passes :func:`load_training_checkpoint`, or ``None`` when there is none.

        A corrupt or truncated file is skipped with a warning and the previous one is tried. A file refused for
        holding Python objects is not skipped: it is intact, and falling back would silently lose its steps.

        Raises:
            UnsafeCheckpointError: the newest checkpoint needs full unpickling and ``trust_checkpoint`` is false.
            CheckpointError: checkpoints exist but none of them is valid.
        """
        candidates = [path for _, path in reversed(self.step_files())]
        if not candidates and self.last_path.is_file():
            candidates = [self.last_path]
        problems = []
        for path in candidates:
            try:
                return load_training_checkpoint(path, trust_checkpoint=trust_checkpoint), path
            except UnsafeCheckpointError:
                raise
            except CheckpointError as error:
                problems.append(str(error))
                logger.warning("skipping checkpoint %s: %s; trying the previous one", path.name, error)
        if problems:
            raise CheckpointError(f"no valid checkpoint in {self.directory}: " + "; ".join(problems))
        return None


def capture_rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch CPU and CUDA generator states, as tensors and plain values only (a
    checkpoint must read back with ``weights_only=True``, which refuses numpy arrays):

    * ``python``: ``random.getstate()``, a tuple of ints (and ``None`` or a float);
    * ``numpy``: ``{"bit_generator": str, "state": int64 tensor of the key array, "pos": int, "has_gauss": int,
      "cached_gaussian": float}`` (the fields of ``np.random.get_state()``);
    * ``torch`` and ``cuda``: the generators' own byte tensors.
    """
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": str(kind),
            "state": torch.from_numpy(np.asarray(keys).astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state(saved: Any) -> tuple:
    """``np.random.set_state``'s tuple from :func:`capture_rng_state`'s dict, or the older layout (that tuple
    itself, holding an ndarray: only in checkpoints read with trust)."""
    if not isinstance(saved, Mapping):
        kind, keys, *rest = saved
        return (kind, keys.numpy() if isinstance(keys, torch.Tensor) else keys, *rest)
    keys = saved["state"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    return (
        str(saved["bit_generator"]),
        keys.astype(np.uint32),
        int(saved["pos"]),
        int(saved["has_gauss"]),
        float(saved["cached_gaussian"]),
    )


def _python_state(saved: Any) -> tuple:
    """``random.setstate``'s nested tuple (a round trip through other containers may give lists or a tensor)."""
    version, internal, gauss_next = saved
    if isinstance(internal, torch.Tensor):
        internal = internal.tolist()
    return (int(version), tuple(int(x) for x in internal), gauss_next)


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (also accepts the older numpy layout, an ``np.random.get_state()``
    tuple)."""
    random.setstate(_python_state(state["python"]))
    np.random.set_state(_numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
