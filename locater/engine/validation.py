"""Validation during training: the splits ``validation.splits`` names, their evaluation, the number that picks
``best.pt``, and the prediction overlays drawn into TensorBoard.

Each split is evaluated by the evaluation engine (:func:`locater.engine.evaluator.evaluate_split`, sharded over
the processes), exactly as ``tools/evaluate.py`` does with the same ``eval`` settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from locater.config import Config, load_config
from locater.data.layout import LayoutError, LayoutSplit
from locater.engine.evaluator import EvalSplit, evaluate_split, resolve_eval_splits
from locater.engine.train_logging import overlay
from locater.model.locater import Locater
from locater.preprocess import logits_to_masks, preprocess_frames
from locater.tokenizer import tokenize


@dataclass
class ValidationSplit:
    """One validation split: its name, the config whose ``eval`` section names it, and the split itself."""

    name: str
    cfg: Config
    split: EvalSplit


def resolve_validation_splits(cfg: Config) -> list[ValidationSplit]:
    """``validation.splits`` entries (eval config paths or mappings of eval keys) as splits to evaluate; each
    split folder is opened once here so that a wrong path fails before training starts.

    An entry whose ``eval.testing_type`` is ALL (A2D, SYN) stands for the four testing types, named
    ``<name>-<TYPE>`` (the testing type alone when the entry has no name)."""
    splits = []
    for index, entry in enumerate(cfg.validation.splits):
        if isinstance(entry, str):
            path = Path(entry)
            eval_section = load_config(path).eval.to_dict()
            default_name = path.stem
        elif isinstance(entry, Mapping):
            eval_section = {k: v for k, v in dict(entry).items() if k != "name"}
            default_name = Path(eval_section["split_dir"]).name if eval_section.get("split_dir") else ""
        else:
            raise ValueError(
                f"validation.splits[{index}] must be an eval config path or a mapping, got {entry!r}"
            )
        merged = load_config({**cfg.to_dict(), "eval": {**cfg.eval.to_dict(), **eval_section}})
        base = (str(entry.get("name", "")) if isinstance(entry, Mapping) else "") or default_name
        name = base or merged.eval.testing_type or f"split{index}"
        try:  # fail before training, not after hours of it
            resolved = resolve_eval_splits(merged)
            for split in resolved:
                LayoutSplit.open(split.split_dir)
        except LayoutError as error:
            raise ValueError(f"validation.splits[{index}] ({name}): {error}") from error
        if len(resolved) == 1:
            splits.append(ValidationSplit(name, merged, resolved[0]))
        else:
            for split in resolved:
                split_name = f"{base}-{split.testing_type}" if base else split.testing_type
                splits.append(ValidationSplit(split_name, merged, split))
    names = [s.name for s in splits]
    if len(set(names)) != len(names):
        raise ValueError(f"validation.splits: names must differ, got {names} (give each mapping a name)")
    return splits


def evaluate_validation_splits(
    model: Locater, splits: list[ValidationSplit], device: torch.device, max_videos: int | None
) -> dict[str, dict[str, float]]:
    """The metrics of every split by name (the same on every rank); ``max_videos`` per split (``None``: the
    split's ``eval.max_videos``)."""
    return {
        split.name: evaluate_split(
            model, split.cfg, split.split, device, progress=False, max_videos=max_videos
        ).metrics
        for split in splits
    }


def selection_value(results: Mapping[str, Mapping[str, float]], metric: str) -> float:
    """The number ``validation.metric`` names: ``SPLIT/metric`` or a metric averaged over the splits."""
    if "/" in metric:
        split, key = metric.split("/", 1)
        if split not in results:
            raise KeyError(
                f"validation.metric {metric!r}: no validation split named {split!r} ({list(results)})"
            )
        return float(results[split][key])
    return float(np.mean([float(values[metric]) for values in results.values()]))


def improves(value: float, best: Mapping | None, mode: str) -> bool:
    """Whether ``value`` beats the best so far (``{"value": ...}`` or ``None``) under ``validation.mode``."""
    return (
        best is None or (mode == "max" and value > best["value"]) or (mode == "min" and value < best["value"])
    )


@torch.inference_mode()
def prediction_overlays(
    model: Locater, split: EvalSplit, count: int, device: torch.device
) -> list[np.ndarray]:
    """Overlays (prediction red, ground truth green outline) of the first labelled frame of the first ``count``
    samples of a validation split, the model run online from the video's first frame."""
    layout = LayoutSplit.open(split.split_dir)
    size = model.image_size[0]
    was_training = model.training
    model.eval()
    images = []
    for sample in [s for s in layout.samples if s.labels][:count]:
        frames = [f for f in sample.frames if f <= sample.labels[0]]
        global_ids = (
            layout.global_frames(sample, model.num_global_frames) if model.global_memory is not None else []
        )
        global_frames = torch.stack(
            [preprocess_frames(layout.load_frame(sample.video, f), size) for f in global_ids]
        )
        state = model.start(global_frames[None].to(device), tokenize([sample.sentence]).to(device))
        for frame in frames:
            rgb = layout.load_frame(sample.video, frame)
            logits, state = model.step(preprocess_frames(rgb, size)[None].to(device), state)
        target = layout.load_mask(sample.video, sample.expression, frames[-1])
        prediction = logits_to_masks(logits[0, 0].float(), target.shape).cpu().numpy()
        images.append(overlay(rgb, prediction, target))
    model.train(was_training)
    return images
