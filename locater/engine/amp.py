"""The one place that turns an AMP mode into an autocast context (training, evaluation, inference, benchmarks)."""

from __future__ import annotations

import contextlib

import torch

from locater.config import CHOICES

AMP_MODES = CHOICES["train.amp"]


def check_amp(amp: str, device_type: str | None, name: str = "amp") -> None:
    """Raise ``ValueError`` for an unknown mode, or fp16 off CUDA (fp16 needs a gradient scaler and a GPU).

    ``device_type`` ``None`` checks the mode alone (before the device is known); ``name`` is the setting's name in
    the messages (e.g. ``train.amp``).
    """
    if amp not in AMP_MODES:
        raise ValueError(f"{name} must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if device_type is not None and amp == "fp16" and device_type != "cuda":
        raise ValueError(f"{name}=fp16 needs a CUDA device; use bf16 on the CPU")


def autocast_for(device_type: str, amp: str | bool) -> contextlib.AbstractContextManager:
    """An autocast context for ``amp`` on ``device_type`` (``"cpu"``, ``"cuda"``).

    Args:
        amp: ``none`` | ``bf16`` | ``fp16``; ``True`` / ``False`` mean ``bf16`` / ``none`` (the evaluation and
            inference switch).
    """
    if isinstance(amp, bool):
        amp = "bf16" if amp else "none"
    check_amp(amp, device_type)
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
