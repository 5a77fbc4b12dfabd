"""The one place that turns an AMP mode into an autocast context (training, evaluation, inference, benchmarks).

Evaluation and inference also take ``"auto"``: bfloat16 autocast where the device computes in bfloat16 natively
(:func:`native_bf16`), float32 elsewhere, because on a CPU without bf16 units autocast emulates it and runs slower
than float32.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

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


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (x86 ``flags``, Arm ``Features``); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.cache
def _cpu_has_bf16_units() -> bool:
    # torch's own probes first (they see what oneDNN will use); they are private, hence the guarded lookups
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except Exception:  # a probe that is missing a backend: fall back to the flags
            pass
    # x86 AVX512-BF16 and AMX-BF16; Arm's BF16 extension
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 matrix products in hardware (not emulated).

    CUDA: the GPU supports bfloat16 natively (Ampere and newer). CPU: AVX512-BF16 or AMX (x86) or the BF16
    extension (Arm); without them oneDNN emulates bfloat16 and autocast is slower than float32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return _cpu_has_bf16_units()
    return False


def resolve_amp(amp: bool | str, device: torch.device | str) -> bool:
    """The evaluation / inference switch as a bool: ``True`` / ``False`` as given, ``"auto"`` :func:`native_bf16`.

    Also accepts ``"on"`` / ``"off"`` (the command-line spelling). Anything else raises ``ValueError``.
    """
    if isinstance(amp, bool):
        return amp
    if amp == "auto":
        return native_bf16(device)
    if amp in ("on", "off"):
        return amp == "on"
    raise ValueError(f"amp must be true, false or auto (on, off, auto), got {amp!r}")


def autocast_for(device_type: str, amp: str | bool) -> contextlib.AbstractContextManager:
    """An autocast context for ``amp`` on ``device_type`` (``"cpu"``, ``"cuda"``).

    Args:
        amp: ``none`` | ``bf16`` | ``fp16``; ``True`` / ``False`` mean ``bf16`` / ``none`` and ``"auto"`` means
            ``bf16`` where :func:`native_bf16` (the evaluation and inference switch).
    """
    if amp == "auto":
        amp = resolve_amp(amp, device_type)
    if isinstance(amp, bool):
        amp = "bf16" if amp else "none"
    check_amp(amp, device_type)
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
