"""Training logs of rank 0: TensorBoard events and a JSON-lines file, plus prediction overlays.

``<output_dir>/tensorboard/`` holds the scalars (every loss term, learning rates, gradient norm, samples/s,
memory, validation metrics), the prediction overlays of a few fixed validation clips and the resolved config as
text; ``<output_dir>/log.jsonl`` holds one JSON object per logged step (``{"step", "kind", ...values}``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import yaml

from locater.files import write_text_atomic

logger = logging.getLogger(__name__)


class TrainLogger:
    """Writes TensorBoard and JSON-lines logs when ``enabled`` (rank 0); does nothing otherwise.

    Args:
        output_dir: the run folder.
        enabled: whether this process writes.
        tensorboard: also write TensorBoard events (needs the ``tensorboard`` package).
    """

    def __init__(self, output_dir: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.writer = None
        self.jsonl = None
        if not enabled:
            return
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = (output_dir / "log.jsonl").open("a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise ImportError(
                    "TensorBoard logging needs the 'tensorboard' package (pip install tensorboard), "
                    "or set train.tensorboard=false"
                ) from error
            self.writer = SummaryWriter(str(output_dir / "tensorboard"))

    def scalars(self, step: int, values: Mapping[str, float], kind: str = "train") -> None:
        """Log scalars under their names (``loss/bce``, ``lr/vision``, ``val/NORM/mean_iou`` ...)."""
        if not self.enabled:
            return
        record = {"step": step, "kind": kind, "time": round(time.time(), 3)}
        for key, value in values.items():
            value = float(value)
            record[key] = value if math.isfinite(value) else str(value)
            if self.writer is not None:
                self.writer.add_scalar(key, value, step)
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()

    def drop_after(self, step: int) -> None:
        """Forget what was logged after ``step``: a run resumed from the checkpoint of ``step`` runs those steps
        again, so each step is logged once.

        ``log.jsonl`` is rewritten (atomically) without the records of later steps, and without a line cut short
        by a crash; the TensorBoard writer is reopened with ``purge_step`` so TensorBoard drops its later events.
        """
        if not self.enabled:
            return
        path = Path(self.jsonl.name)
        self.jsonl.close()
        kept, dropped = [], 0
        for line in path.read_text().splitlines():
            try:
                keep = int(json.loads(line)["step"]) <= step
            except (ValueError, KeyError, TypeError):  # not a record: a line cut short by a crash
                keep = False
            if keep:
                kept.append(line)
            else:
                dropped += 1
        if dropped:
            write_text_atomic(path, "".join(f"{line}\n" for line in kept))
            logger.info(
                "%s: dropped %d records after step %d, which this run logs again", path, dropped, step
            )
        self.jsonl = path.open("a")
        if self.writer is not None:
            from torch.utils.tensorboard import SummaryWriter

            log_dir = self.writer.get_logdir()
            self.writer.close()
            self.writer = SummaryWriter(log_dir, purge_step=step + 1)

    def config(self, cfg: Mapping) -> None:
        """The resolved config as TensorBoard text."""
        if self.writer is not None:
            text = yaml.safe_dump(dict(cfg), sort_keys=False)
            self.writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)

    def images(self, tag: str, images: list[np.ndarray], step: int) -> None:
        """``H x W x 3`` uint8 images as ``tag/0``, ``tag/1`` ..."""
        if self.writer is None:
            return
        for index, image in enumerate(images):
            self.writer.add_image(f"{tag}/{index}", image, step, dataformats="HWC")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()


def overlay(frame: np.ndarray, prediction: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """The frame with the prediction tinted red and the ground truth's outline in green.

    Args:
        frame: ``H x W x 3`` uint8 RGB; prediction: ``H x W`` bool; target: ``H x W`` bool or ``None``.

    Returns:
        ``H x W x 3`` uint8.
    """
    image = frame.astype(np.float32)
    red = np.array([255.0, 40.0, 40.0], dtype=np.float32)
    image[prediction] = 0.5 * image[prediction] + 0.5 * red
    if target is not None:
        inner = target.copy()
        inner[1:] &= target[:-1]
        inner[:-1] &= target[1:]
        inner[:, 1:] &= target[:, :-1]
        inner[:, :-1] &= target[:, 1:]
        image[target & ~inner] = (40.0, 255.0, 40.0)
    return image.clip(0, 255).astype(np.uint8)


def peak_memory_mb(device_type: str) -> float:
    """Peak memory of this process: CUDA allocator peak on GPUs, peak resident set size on the CPU."""
    if device_type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
