"""Load a model for inference from any checkpoint: official files or ours (which carry their config)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from locater.checkpoint import (
    CheckpointError,
    from_official,
    is_official_state_dict,
    load_checkpoint,
    strip_module_prefix,
)
from locater.config import Config, load_config
from locater.model.build import build_model_from_section
from locater.model.locater import Locater

logger = logging.getLogger(__name__)


def load_model_for_inference(
    checkpoint: str | Path,
    cfg: Config | None = None,
    device: torch.device | str = "cpu",
    model_from_checkpoint: bool = False,
) -> tuple[Locater, Config]:
    """Build and load the model a checkpoint holds.

    * Official checkpoints: architecture inferred from the tensors; memory sizes and N1 from ``cfg.model`` (the
      official defaults 1.5 / 2 / 3 when no config is given).
    * Our training checkpoints (``{"model": ..., "config": ...}``): ``cfg``'s model section when ``cfg`` is given
      and ``model_from_checkpoint`` is false (a mismatch is a :class:`CheckpointError` listing the keys), else the
      stored config's model section (the rest of ``cfg`` is kept).
    * Plain state dicts in our naming: ``cfg`` (default: the released architecture).

    Returns:
        The model in eval mode on ``device`` and the config whose ``model`` section built it.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a dict, got {type(raw).__name__}")
    weights = raw["model"] if isinstance(raw.get("model"), Mapping) else raw
    if is_official_state_dict(strip_module_prefix(weights)):
        config = cfg if cfg is not None else load_config(None)
        model = from_official(
            weights,
            global_mem_size=config.model.global_memory.size,
            local_mem_size=config.model.local_memory.size,
            N1=config.model.global_memory.num_frames,
            mask_history=config.model.local_memory.mask_history,
        )
        config = load_config(config.to_dict(), validate=True)
        config.model = Config.wrap(model.model_config)
        logger.info("loaded official checkpoint %s", path)
    else:
        stored = raw.get("config")
        config = cfg if cfg is not None else load_config(None)
        if isinstance(stored, Mapping) and (cfg is None or model_from_checkpoint):
            config = load_config(config.to_dict())
            config.model = load_config({"model": dict(stored.get("model", {}))}).model
        model = build_model_from_section(config.model)
        try:
            load_checkpoint(model, weights, strict=False)
        except CheckpointError as error:
            raise CheckpointError(str(error).replace("<state dict>", str(path))) from error
        logger.info("loaded checkpoint %s", path)
    return model.to(device).eval(), config
