"""Training loss: BCE + Dice on the main output plus weighted BCE + Dice on the K auxiliary stage heads.

Only frames with a ground-truth mask (``mask_valid``) are supervised. Every term is computed in float32, whatever
the autocast dtype of the logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (``train.loss``).

    Attributes:
        bce: weight of the per-pixel binary cross-entropy.
        dice: weight of the soft Dice loss.
        aux: one weight per auxiliary stage head (``K`` entries); head ``k`` adds
            ``aux[k] * (bce * BCE_k + dice * Dice_k)``.
        dice_smooth: additive smoothing of the Dice ratio (an empty mask predicted empty costs 0).
    """

    bce: float = 1.0
    dice: float = 1.0
    aux: tuple[float, ...] = ()
    dice_smooth: float = 1.0

    @classmethod
    def from_config(cls, section: Mapping, num_stages: int) -> LossWeights:
        """From ``train.loss``: ``aux_weights`` (``K`` entries) wins over ``aux`` (the same for every stage)."""
        per_stage = list(section.get("aux_weights") or [])
        if per_stage and len(per_stage) != num_stages:
            raise ValueError(
                f"train.loss.aux_weights has {len(per_stage)} entries but the model has {num_stages} fusion stages"
            )
        aux = per_stage or [float(section.get("aux", 0.0))] * num_stages
        return cls(
            bce=float(section.get("bce", 1.0)),
            dice=float(section.get("dice", 1.0)),
            aux=tuple(float(w) for w in aux),
            dice_smooth=float(section.get("dice_smooth", 1.0)),
        )


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    weights = valid.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def binary_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel BCE over the valid frames.

    Args:
        logits: ``N x H x W`` (any float dtype).
        targets: ``N x H x W`` in {0, 1}.
        valid: ``N`` bool, frames that count.

    Returns:
        A float32 scalar (0, still attached to the graph, when no frame is valid).
    """
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    return _masked_mean(per_pixel.flatten(1).mean(1), valid)


def dice_loss(
    logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, smooth: float = 1.0
) -> torch.Tensor:
    """Mean soft Dice loss ``1 - (2 |P G| + s) / (|P| + |G| + s)`` over the valid frames, ``P = sigmoid(logits)``.

    Args:
        logits: ``N x H x W``; targets: ``N x H x W`` in {0, 1}; valid: ``N`` bool.
    """
    probs = torch.sigmoid(logits.float()).flatten(1)
    target = targets.float().flatten(1)
    intersection = (probs * target).sum(1)
    per_frame = 1.0 - (2.0 * intersection + smooth) / (probs.sum(1) + target.sum(1) + smooth)
    return _masked_mean(per_frame, valid)


def segmentation_loss(
    logits: torch.Tensor,
    aux_logits: torch.Tensor | None,
    masks: torch.Tensor,
    mask_valid: torch.Tensor,
    weights: LossWeights,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss of a batch of clips.

    Args:
        logits: ``B x T x 1 x H x W`` main logits.
        aux_logits: ``B x T x K x H x W`` auxiliary logits, or ``None``.
        masks: ``B x T x 1 x H x W`` ground truth in {0, 1}.
        mask_valid: ``B x T`` bool, frames with a ground-truth mask.
        weights: term weights.

    Returns:
        The total (a scalar with gradient) and the detached terms ``total``, ``bce``, ``dice`` and, with auxiliary
        heads, ``aux_0 .. aux_{K-1}`` (each head's ``bce * BCE + dice * Dice`` before its weight).
    """
    if logits.shape != masks.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and masks {tuple(masks.shape)} differ in shape")
    valid = mask_valid.reshape(-1).to(torch.bool)
    target = masks.flatten(0, 2)  # (B*T) x H x W
    main = logits.flatten(0, 2)
    bce = binary_cross_entropy(main, target, valid)
    dice = dice_loss(main, target, valid, weights.dice_smooth)
    total = weights.bce * bce + weights.dice * dice
    terms = {"bce": bce.detach(), "dice": dice.detach()}
    if aux_logits is not None and any(weights.aux):
        if aux_logits.shape[2] != len(weights.aux):
            raise ValueError(
                f"{aux_logits.shape[2]} auxiliary heads but {len(weights.aux)} auxiliary weights"
            )
        for k, weight in enumerate(weights.aux):
            head = aux_logits[:, :, k].flatten(0, 1)
            term = weights.bce * binary_cross_entropy(head, target, valid)
            term = term + weights.dice * dice_loss(head, target, valid, weights.dice_smooth)
            terms[f"aux_{k}"] = term.detach()
            total = total + weight * term
    return total, {"total": total.detach(), **terms}
