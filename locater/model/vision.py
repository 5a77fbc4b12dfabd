"""Vision encoder: timm's ViT (patch embedding, CLS token, learned position embedding, blocks, final norm)
followed by the per-token ``pre_logits`` layer (Linear + Tanh) that the released Locater applies to every token."""

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
    ) -> None:
        super().__init__()
        self.vit = VisionTransformer(
            img_size=image_size,
            patch_size=patch_size,
            in_chans=in_chans,
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
        return torch.tanh(self.pre_logits(self.vit.forward_features(frames)))
