"""torch.hub entry points of Locater, for a local clone (nothing is downloaded: the weights are a file you name).

    import torch
    model = torch.hub.load("path/to/locater", "locater", source="local", checkpoint="locater_a2d.pth")
    segmenter = torch.hub.load("path/to/locater", "segmenter", source="local", checkpoint="locater_a2d.pth")

``checkpoint`` is an official Locater checkpoint or one of ours (a training checkpoint or a safetensors export);
the architecture comes from the file. docs/demo.md#torchhub.
"""

from __future__ import annotations

from collections.abc import Sequence as _Sequence
from pathlib import Path as _Path

# every name imported here is private: torch.hub lists each public callable of this module as an entry point
from locater.checkpoint import CheckpointError as _CheckpointError
from locater.inference import VideoSegmenter as _VideoSegmenter
from locater.model.loading import load_model as _load_model

# the modules loading a checkpoint imports (torch.hub checks that each is importable before calling an entry)
dependencies = ["torch", "torchvision", "timm", "numpy", "cv2", "yaml", "PIL", "safetensors"]


def _checkpoint(checkpoint: str | _Path | None) -> _Path:
    if checkpoint is None:
        raise _CheckpointError(
            "give checkpoint=PATH (an official Locater checkpoint or one of ours): this hub entry downloads nothing"
        )
    return _Path(checkpoint).expanduser()


def locater(
    checkpoint: str | _Path | None = None,
    device: str = "cpu",
    overrides: _Sequence[str] = (),
    trust_checkpoint: bool = False,
):
    """The Locater model of a checkpoint file, in eval mode on ``device``.

    Args:
        checkpoint: an official checkpoint or one of ours (``.pth``, ``.pt``, ``.safetensors``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        overrides: ``model.*=value`` edits, e.g. ``["model.global_memory.num_frames=5"]``.
        trust_checkpoint: read a file that needs full unpickling (it can run code): trusted files only.

    Returns:
        A :class:`locater.Locater`: ``state = model.start(global_frames, input_ids)``, then
        ``logits, state = model.step(frame, state)`` per frame (README, Python API).

    Raises:
        CheckpointError: no checkpoint given, the file is missing or unreadable, or its weights do not fit.
    """
    return _load_model(_checkpoint(checkpoint), device, overrides, trust_checkpoint=trust_checkpoint)


def segmenter(
    checkpoint: str | _Path | None = None,
    device: str = "auto",
    overrides: _Sequence[str] = (),
    trust_checkpoint: bool = False,
    **kwargs,
):
    """A :class:`locater.inference.VideoSegmenter` for a checkpoint file: masks at the original resolution for any
    video, frame folder or stream, all sentences in one pass.

    Args:
        checkpoint, device, overrides, trust_checkpoint: as for :func:`locater`.
        **kwargs: ``amp``, ``threshold``, ``prefetch`` of :class:`~locater.inference.VideoSegmenter`.

    Example::

        for result in segmenter.segment("video.mp4", ["a man in red", "the white dog"]):
            result.masks  # 2 x H x W bool
    """
    return _VideoSegmenter.from_checkpoint(
        _checkpoint(checkpoint), device, overrides, trust_checkpoint=trust_checkpoint, **kwargs
    )
