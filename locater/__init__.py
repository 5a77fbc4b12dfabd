"""Locater: local-global context aware Transformer for language-guided video segmentation.

Public API (docs/architecture.md)::

    import locater
    model = locater.build_model(cfg)                  # YAML path, dict or Config
    model = locater.from_official(ckpt, **overrides)  # official checkpoint; architecture inferred
    locater.load_checkpoint(model, path)              # ours or official, clear errors
    locater.export_safetensors(model, "w.safetensors")  # weights + model config, loads without unpickling
    state = model.start(global_frames, input_ids)
    logits, state = model.step(frame, state)
    ids = locater.tokenize(["the man in red", ...])
"""

from locater.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    export_official,
    export_safetensors,
    load_checkpoint,
)
from locater.config import Config, ConfigError, load_config, save_config
from locater.model import Locater, LocaterState, StepOutput, build_model, from_official
from locater.tokenizer import tokenize

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Config",
    "ConfigError",
    "Locater",
    "LocaterState",
    "StepOutput",
    "UnsafeCheckpointError",
    "build_model",
    "export_official",
    "export_safetensors",
    "from_official",
    "load_checkpoint",
    "load_config",
    "save_config",
    "tokenize",
]
