"""Vision encoder: timm's ViT (patch embedding, CLS token, learned position embedding, blocks, final norm)
followed by the per-token ``pre_logits`` layer (Linear + Tanh) that the released Locater applies to every token.
Optionally (not the released model) a small convolutional stem at full resolution before the patch embedding."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn


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
    ) -> None:
        super().__init__()
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
