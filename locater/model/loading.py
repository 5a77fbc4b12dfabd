"""The one model loader: a :class:`Locater` from a config, from one of our checkpoints or from an official one.

* :func:`build_model` -- the model a config describes, with its ``pretrained.*`` weights (an ImageNet ViT, or
  every weight from ``pretrained.checkpoint`` through :func:`load_model`).
* :func:`load_model` -- the model a checkpoint file holds (evaluation, the demo, :mod:`locater.inference`).
* :func:`from_official` -- an official checkpoint with the official argument names.

Reading files and converting the official naming is :mod:`locater.checkpoint`'s job; building modules from a
``model`` section is :mod:`locater.model.build`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from locater.checkpoint import (
    CheckpointError,
    infer_model_config,
    load_checkpoint,
    read_checkpoint,
    read_state_dict,
)
from locater.config import Config, ConfigError, load_config, merge_dicts, parse_overrides
from locater.model.build import build_model_from_section
from locater.model.locater import Locater
from locater.pretrained import load_imagenet_vit

logger = logging.getLogger(__name__)

PLAIN_STATE_HINT = (
    "a plain state dict stores no config: pass the model.* overrides it was trained with (e.g. "
    "model.embed_dim=...), or load a training checkpoint / safetensors export, which store it"
)


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; any other name as ``torch.device``."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def resolve_config(cfg: str | Path | Mapping | None) -> Config:
    """A full config from a YAML path, a full config mapping, or a mapping holding only the model section."""
    if cfg is None or isinstance(cfg, (str, Path)):
        return load_config(cfg)
    if "model" in cfg:
        return load_config(cfg)
    return load_config({"model": dict(cfg)})


def build_model(cfg: str | Path | Mapping | None = None, *, trust_checkpoint: bool = False) -> Locater:
    """Build Locater from a YAML path, a config (full, or only its ``model`` section) or ``None`` (the released
    architecture). ``pretrained.*`` entries of a full config are applied too (local files only):
    ``pretrained.checkpoint`` gives every weight (it must fit the configured model exactly, so a
    ``pretrained.vit`` beside it is not read), else ``pretrained.vit`` initialises the vision encoder.
    ``trust_checkpoint``: read ``pretrained.checkpoint`` / ``pretrained.vit`` even if it needs full unpickling
    (see :func:`load_model`).
    """
    config = resolve_config(cfg)
    pretrained = config.pretrained
    if pretrained.checkpoint:
        if pretrained.vit:
            logger.info("pretrained.checkpoint gives every weight: pretrained.vit is not read")
        return load_model(
            pretrained.checkpoint, cfg=config, strict=True, trust_checkpoint=trust_checkpoint
        ).train()
    model = build_model_from_section(config.model)
    if pretrained.vit:
        load_imagenet_vit(
            model, pretrained.vit, into_fusion=pretrained.vit_into_fusion, trust_checkpoint=trust_checkpoint
        )
    return model


def _inferred_section(state: Mapping[str, torch.Tensor], entries: Mapping[str, Any]) -> Config:
    """The ``model`` section of a state dict without a stored config: the sizes the tensors fix, then ``entries``
    (what they cannot tell: memory sizes, the number of global frames, head counts ...), then the defaults."""
    section = merge_dicts(infer_model_config(state), entries)
    return load_config({"model": section}).model


def from_official(
    checkpoint: str | Path | Mapping[str, torch.Tensor],
    global_mem_size: float | None = None,
    local_mem_size: float | None = None,
    N1: int | None = None,  # noqa: N803 (the official argument name)
    mask_history: bool | None = None,
    *,
    trust_checkpoint: bool = False,
    **model_overrides: Any,
) -> Locater:
    """Build Locater from an official checkpoint, inferring image size, patch size, K and every depth.

    The arguments keep the official code's names (``N1`` is ``model.global_memory.num_frames``).

    Args:
        checkpoint: path or state dict in the official format (our format is accepted too).
        global_mem_size, local_mem_size: memory sizes in frames (official defaults 1.5 and 2); they are not
            stored in the weights.
        N1: number of frames that build the global memory (official default 3).
        mask_history: write the predicted mask into the local memory (default true).
        trust_checkpoint: read a file that needs full unpickling (it can run code; see :func:`load_model`).
        model_overrides: other ``model`` config entries (nested dicts allowed), e.g. ``memory_heads=8``.

    Returns:
        The model in eval mode with the weights loaded.
    """
    state = read_state_dict(checkpoint, trust=trust_checkpoint)
    entries: dict[str, Any] = {}
    if global_mem_size is not None:
        entries.setdefault("global_memory", {})["size"] = float(global_mem_size)
    if local_mem_size is not None:
        entries.setdefault("local_memory", {})["size"] = float(local_mem_size)
    if N1 is not None:
        entries.setdefault("global_memory", {})["num_frames"] = int(N1)
    if mask_history is not None:
        entries.setdefault("local_memory", {})["mask_history"] = bool(mask_history)
    model = build_model_from_section(_inferred_section(state, merge_dicts(entries, model_overrides)))
    load_checkpoint(model, state)
    return model.eval()


def load_model(
    checkpoint: str | Path,
    device: str | torch.device = "cpu",
    overrides: Sequence[str] = (),
    *,
    cfg: Mapping | None = None,
    strict: bool = False,
    trust_checkpoint: bool = False,
) -> Locater:
    """The model of a checkpoint file, ready for inference.

    Where its ``model`` section comes from:

    * ``cfg`` given (a full config): ``cfg.model``; the weights must fit it.
    * Our training checkpoints (``{"model": weights, "config": resolved config}``) and our safetensors exports
      (``locater-export``, the ``model_config`` metadata): the stored ``model`` section.
    * Official checkpoints (with or without ``module.``) and plain state dicts: the architecture inferred from the
      tensors; what the tensors cannot tell (head counts, memory sizes, the number of global frames) takes the
      released values.

    Args:
        checkpoint: the checkpoint file (ours, official, or a ``.safetensors`` file).
        device: where the model goes (``"auto"``, ``"cpu"``, ``"cuda:N"`` or a ``torch.device``).
        overrides: dotted ``model.*=value`` entries applied on top (e.g. ``model.global_memory.num_frames=5``,
            ``model.local_memory.size=0``).
        cfg: a full config whose ``model`` section builds the model.
        strict: every key of the model must be in the checkpoint; otherwise the auxiliary heads may be absent
            (checkpoints exported without them).
        trust_checkpoint: unpickle every object the file holds (``weights_only=False``). A crafted file runs code
            then: only for files from a trusted source that the safe reader refuses (e.g. training checkpoints
            written before the RNG states were stored as tensors). By default only tensors and plain values load.

    Returns:
        The model in eval mode on ``device``; ``model.model_config`` holds its resolved ``model`` section.

    Raises:
        ConfigError: an override that is unknown, of the wrong type or outside ``model.*`` (before the file is read).
        CheckpointError: the file is missing or unreadable, holds Python objects and ``trust_checkpoint`` is false
            (:class:`~locater.checkpoint.UnsafeCheckpointError`), or its weights do not fit the model (every
            missing, unexpected and mis-shaped key listed; for a plain state dict, which stores no config, with a
            hint to pass the ``model.*`` overrides it was trained with); the message names the file.
    """
    path = Path(checkpoint)
    load_config(None, list(overrides))  # unknown keys and wrong types fail here, before the file is read
    tree = parse_overrides(overrides)
    if set(tree) - {"model"}:
        raise ConfigError(f"only model.* overrides apply at inference, got {sorted(set(tree) - {'model'})}")
    raw = read_checkpoint(path, trust=trust_checkpoint)
    stored = raw.get("config")
    plain = False  # the architecture is guessed from the tensors: the file stores no config
    try:
        state = read_state_dict(raw)
        if cfg is not None:
            section = load_config({"model": dict(cfg["model"])}, list(overrides)).model
        elif isinstance(stored, Mapping) and isinstance(stored.get("model"), Mapping):
            section = load_config({"model": dict(stored["model"])}, list(overrides)).model
        else:
            plain = True
            section = _inferred_section(state, tree.get("model", {}))
        model = build_model_from_section(section)
        load_checkpoint(model, state, strict=strict)
    except CheckpointError as error:
        message = str(error).replace("<state dict>", str(path))
        if plain and "does not fit the model" in message:
            message += f"\n{PLAIN_STATE_HINT}"
        raise CheckpointError(message) from error
    logger.info("loaded %s", path)
    return model.to(resolve_device(device)).eval()
