"""AdamW parameter groups and the learning-rate schedule (``train.optimizer``, ``train.schedule``).

Two learning rates: the vision encoder learns at ``lr * vision_lr_scale``, everything else at ``lr``; neither
decays biases, norms, position / modality embeddings or the CLS token. The schedule (linear warm-up, then cosine,
step or constant) is a pure function of the step, and optionally of the spent fraction of a time budget, so it
has no state of its own to resume.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from locater.config import CHOICES

NO_DECAY_NAMES = ("pos_embed", "cls_token", "modality_embed")
SCHEDULE_KINDS = CHOICES["train.schedule.kind"]


def _no_weight_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim <= 1 or name.split(".")[-1] in NO_DECAY_NAMES


def parameter_groups(model: nn.Module, lr: float, vision_lr_scale: float, weight_decay: float) -> list[dict]:
    """AdamW groups ``vision``, ``vision_no_decay``, ``other``, ``other_no_decay`` (empty ones left out).

    Each group carries ``name`` and ``initial_lr`` (the rate the schedule scales).
    """
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            key = (name.startswith("vision_encoder."), _no_weight_decay(name, param))
            buckets.setdefault(key, []).append(param)
    groups = []
    for (is_vision, no_decay), params in sorted(buckets.items(), reverse=True):
        rate = lr * (vision_lr_scale if is_vision else 1.0)
        groups.append(
            {
                "name": ("vision" if is_vision else "other") + ("_no_decay" if no_decay else ""),
                "params": params,
                "lr": rate,
                "initial_lr": rate,
                "weight_decay": 0.0 if no_decay else weight_decay,
            }
        )
    return groups


def build_optimizer(model: nn.Module, section: Mapping) -> torch.optim.AdamW:
    """AdamW from ``train.optimizer`` (``lr``, ``vision_lr_scale``, ``weight_decay``, ``betas``, ``eps``)."""
    betas = tuple(float(b) for b in section["betas"])
    if len(betas) != 2:
        raise ValueError(f"train.optimizer.betas must hold two numbers, got {section['betas']!r}")
    groups = parameter_groups(model, section["lr"], section["vision_lr_scale"], section["weight_decay"])
    return torch.optim.AdamW(groups, lr=section["lr"], betas=betas, eps=section["eps"])


@dataclass(frozen=True)
class LRSchedule:
    """Linear warm-up, then cosine decay, step decay or a constant rate.

    Attributes:
        kind: ``cosine`` | ``step`` | ``constant``.
        max_steps: optimizer steps of the whole run.
        warmup_steps: steps of linear warm-up from ``warmup_start`` to 1.
        warmup_start: factor at step 0.
        min_ratio: ``cosine``: factor at the end of the run.
        milestones: ``step``: fractions of the run after which the factor is multiplied by ``gamma``.
        gamma: ``step`` decay factor.
    """

    kind: str
    max_steps: int
    warmup_steps: int = 0
    warmup_start: float = 0.01
    min_ratio: float = 0.0
    milestones: tuple[float, ...] = (0.7, 0.9)
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"train.schedule.kind must be one of {SCHEDULE_KINDS}, got {self.kind!r}")
        if self.max_steps < 1:
            raise ValueError(f"train.max_steps must be >= 1, got {self.max_steps}")

    @classmethod
    def from_config(cls, section: Mapping, max_steps: int) -> LRSchedule:
        """From ``train.schedule``."""
        return cls(
            kind=section["kind"],
            max_steps=max_steps,
            warmup_steps=section["warmup_steps"],
            warmup_start=section["warmup_start"],
            min_ratio=section["min_lr_ratio"],
            milestones=tuple(float(m) for m in section["milestones"]),
            gamma=section["gamma"],
        )

    def factor(self, step: int, progress: float | None = None) -> float:
        """Learning-rate factor of the update that follows ``step`` completed steps.

        Args:
            step: optimizer steps done so far.
            progress: fraction of the run done, in ``[0, 1]`` (default ``step / max_steps``; a time budget may
                advance it faster).
        """
        if step < self.warmup_steps:
            return self.warmup_start + (1.0 - self.warmup_start) * step / self.warmup_steps
        done = step / self.max_steps if progress is None else progress
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            return self.gamma ** sum(done >= m for m in self.milestones)
        start = min(self.warmup_steps / self.max_steps, 1.0)
        fraction = min(max((done - start) / max(1.0 - start, 1e-12), 0.0), 1.0)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * fraction))

    def apply(self, optimizer: torch.optim.Optimizer, step: int, progress: float | None = None) -> float:
        """Set every group's ``lr`` to ``initial_lr * factor``; returns the factor."""
        factor = self.factor(step, progress)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        return factor


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """``{"lr/vision": ..., "lr/other": ...}``: one entry per group name without its ``_no_decay`` suffix."""
    rates: dict[str, float] = {}
    for group in optimizer.param_groups:
        rates.setdefault(f"lr/{group['name'].removesuffix('_no_decay')}", group["lr"])
    return rates
