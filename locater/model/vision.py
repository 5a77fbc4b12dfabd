"""Vision encoder: timm's ViT (patch embedding, CLS token, learned position embedding, blocks, final norm)
followed by the per-token ``pre_logits`` layer (Linear + Tanh) that the released Locater applies to every token.
Optionally (not the released model) a small convolutional stem at full resolution before the patch embedding."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from locater.config import CHOICES

POS_EMBED_INITS = CHOICES["model.vision.pos_embed_init"]


def sincos_position_embedding(grid_size: tuple[int, int], dim: int) -> torch.Tensor:
    """The 2-D sine-cosine position table of MAE: half of the channels encode the row, half the column, each
    with ``dim / 4`` frequencies ``1 / 10000^(k / (dim / 4))`` as sine and cosine.

    Args:
        grid_size: ``(h, w)`` token grid.
        dim: width ``C``, divisible by 4.

    Returns:
        ``(h * w) x C`` table in raster order, values in [-1, 1].
    """
    if dim % 4:
        raise ValueError(f"a sine-cosine position embedding needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid_size[0], dtype=torch.float64),
        torch.arange(grid_size[1], dtype=torch.float64),
        indexing="ij",
    )

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


class VisionEncoder(nn.Module):
    """ViT over one frame.

    Args:
        image_size: input side in pixels.
        patch_size: patch side in pixels.
        in_chans: input channels.
        embed_dim: token width ``C``.
        depth: number of ViT blocks (the released model keeps the first 6 of ViT-B/16's 12).
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / ``C``.
        drop_path: stochastic depth rate (training).
        stem_channels: 0 (the released linear patch embedding), or the width of a stem of two 3x3 convolutions
            with ReLUs at full resolution whose output the patch embedding reads (local shape features that a
            small ViT trained from scratch learns slowly from pixels split across patches).
        pos_embed_init: how the learned position embedding starts: ``random`` (timm's N(0, 0.02), which an
            ImageNet ViT or a checkpoint then overwrites) or ``sincos`` (the fixed 2-D sine-cosine table of MAE,
            amplitude 1, still learned afterwards: a model trained from scratch then knows where every token is
            from the first step; see :func:`sincos_position_embedding`).
    """

    def __init__(
        self,
        image_size: int = 320,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 6,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        stem_channels: int = 0,
        pos_embed_init: str = "random",
    ) -> None:
        super().__init__()
        if pos_embed_init not in POS_EMBED_INITS:
            raise ValueError(
                f"model.vision.pos_embed_init must be one of {POS_EMBED_INITS}, got {pos_embed_init!r}"
            )
        if stem_channels < 0:
            raise ValueError(f"model.vision.stem_channels must be >= 0, got {stem_channels}")
        self.stem = (
            nn.Sequential(
                nn.Conv2d(in_chans, stem_channels, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.Conv2d(stem_channels, stem_channels, kernel_size=3, padding=1),
                nn.ReLU(),
            )
            if stem_channels
            else None
        )
        self.vit = VisionTransformer(
            img_size=image_size,
            patch_size=patch_size,
            in_chans=stem_channels or in_chans,
            num_classes=0,
            global_pool="",
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            class_token=True,
            drop_path_rate=drop_path,
        )
        self.pre_logits = nn.Linear(embed_dim, embed_dim)
        self.grid_size: tuple[int, int] = tuple(self.vit.patch_embed.grid_size)
        if pos_embed_init == "sincos":
            with torch.no_grad():
                self.vit.pos_embed[0, 1:] = sincos_position_embedding(self.grid_size, embed_dim)
                self.vit.pos_embed[0, :1] = 0.0  # the CLS token has no position

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Encode frames.

        Args:
            frames: ``B x 3 x H x W`` pre-processed frames.

        Returns:
            ``B x (1 + N) x C`` tokens (CLS first, then the ``N = h * w`` patches in raster order).
        """
        if self.stem is not None:
            frames = self.stem(frames)
        return torch.tanh(self.pre_logits(self.vit.forward_features(frames)))
