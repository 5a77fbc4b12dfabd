"""Pre-training the vision encoder of the small synthetic model on patch labels (its stand-in for ImageNet).

Two linear heads on the encoder's patch tokens: the shape of the object covering each patch (object patches
only) and its colour (background included), cross-entropy each, AdamW, for a time or step budget. The encoder's
ViT is saved as a timm state dict, which ``pretrained.vit`` loads like an ImageNet file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from locater.config import Config
from locater.data.synthetic.patches import BACKGROUND_COLOUR, BACKGROUND_SHAPE, patch_batch
from locater.engine.checkpoints import save_with_checksum
from locater.model.loading import build_model
from locater.model.vision import VisionEncoder

logger = logging.getLogger(__name__)


class PatchHeads(nn.Module):
    """Linear shape and colour classifiers over patch tokens ``B x N x C``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.shape = nn.Linear(dim, BACKGROUND_SHAPE + 1)
        self.colour = nn.Linear(dim, BACKGROUND_COLOUR + 1)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.shape(tokens), self.colour(tokens)


def _losses(
    encoder: VisionEncoder,
    heads: PatchHeads,
    frames: torch.Tensor,
    shapes: torch.Tensor,
    colours: torch.Tensor,
) -> tuple[torch.Tensor, float, float]:
    """Loss, and the shape and colour accuracies on the object patches of one batch."""
    shape_logits, colour_logits = heads(encoder(frames)[:, 1:])
    loss = F.cross_entropy(shape_logits.flatten(0, 1), shapes.flatten(), ignore_index=BACKGROUND_SHAPE)
    loss = loss + F.cross_entropy(colour_logits.flatten(0, 1), colours.flatten())
    objects = shapes != BACKGROUND_SHAPE
    shape_accuracy = (shape_logits.argmax(-1)[objects] == shapes[objects]).float().mean().item()
    colour_accuracy = (colour_logits.argmax(-1)[objects] == colours[objects]).float().mean().item()
    return loss, shape_accuracy, colour_accuracy


def pretrain_vision_encoder(
    cfg: Config,
    out: str | Path,
    minutes: float = 1.5,
    max_steps: int = 0,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Pre-train the vision encoder that ``cfg``'s model section builds and save its ViT to ``out``.

    Args:
        cfg: a config whose ``model`` section is the small synthetic model (frames ``model.image_size``).
        out: the ``.pth`` file to write (a timm ViT state dict, for ``pretrained.vit``).
        minutes: time budget (0: none); max_steps: step budget (0: none); at least one must be set.
        batch_size, lr, seed: frames per step, AdamW learning rate, seed of the weights and the scenes.
        progress: a tqdm bar.

    Returns:
        Summary: ``steps``, ``minutes``, and ``shape_accuracy`` / ``colour_accuracy`` on the object patches of
        256 held-out frames (chance: 1/6 and 1/7).
    """
    if minutes <= 0 and max_steps <= 0:
        raise ValueError("give a time budget (minutes > 0) or a step budget (max_steps > 0)")
    if cfg.model.vision.stem_channels:
        raise ValueError("the pre-trained ViT must read RGB: set model.vision.stem_channels=0")
    torch.manual_seed(seed)
    encoder = build_model(cfg).vision_encoder.train()
    heads = PatchHeads(cfg.model.embed_dim)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *heads.parameters()], lr=lr, weight_decay=0.01)
    size, patch = cfg.model.image_size, cfg.model.patch_size
    rng = np.random.default_rng([seed, 21])
    start, step, recent = time.perf_counter(), 0, []
    bar = tqdm(total=max_steps or None, unit="step", disable=not progress, dynamic_ncols=True)
    while True:
        elapsed = (time.perf_counter() - start) / 60
        if (max_steps and step >= max_steps) or (minutes > 0 and elapsed >= minutes):
            break
        loss, shape_accuracy, _ = _losses(encoder, heads, *patch_batch(rng, batch_size, size, patch))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite pre-training loss at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        recent = [*recent[-99:], shape_accuracy]
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", shape_acc=f"{np.nanmean(recent):.3f}")
    bar.close()
    minutes_used = (time.perf_counter() - start) / 60
    encoder.eval()
    with torch.no_grad():
        held_out = patch_batch(np.random.default_rng([seed, 22]), 256, size, patch)
        _, shape_accuracy, colour_accuracy = _losses(encoder, heads, *held_out)
    save_with_checksum(encoder.vit.state_dict(), out)
    summary = {
        "steps": step,
        "minutes": round(minutes_used, 3),
        "shape_accuracy": round(shape_accuracy, 4),
        "colour_accuracy": round(colour_accuracy, 4),
        "out": str(out),
    }
    logger.info("vision pre-training: %s", summary)
    return summary
