"""Vision-language fusion stages.

Each stage: add a learned modality embedding (one vector for vision tokens, one for word tokens), run joint
Transformer blocks over ``[vision ; words]``, LayerNorm, drop the words, run vision-only blocks, apply the same
LayerNorm again. Every stage receives the original word features.
"""

from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn


class FusionStage(nn.Module):
    """One fusion stage.

    Args:
        dim: token width ``C``.
        num_heads: attention heads.
        joint_depth: blocks over vision and word tokens together.
        vision_depth: blocks over vision tokens alone.
        mlp_ratio: MLP hidden width / ``C``.
        drop_path: stochastic depth rate (training).
    """

    def __init__(
        self,
        dim: int = 768,
        num_heads: int = 12,
        joint_depth: int = 2,
        vision_depth: int = 2,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.modality_embed = nn.Parameter(torch.zeros(1, 2, dim))

        def block() -> Block:
            return Block(
                dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=True,
                drop_path=drop_path,
                norm_layer=nn.LayerNorm,
            )

        self.joint_blocks = nn.ModuleList(block() for _ in range(joint_depth))
        self.vision_blocks = nn.ModuleList(block() for _ in range(vision_depth))
        self.norm = nn.LayerNorm(dim)
        trunc_normal_(self.modality_embed, std=0.02)

    def forward(self, vision: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """Args:
            vision: ``B x Nv x C`` vision tokens (CLS included).
            words: ``B x L x C`` word features.

        Returns:
            ``B x Nv x C`` fused vision tokens.
        """
        num_vision = vision.shape[1]
        tokens = torch.cat([vision + self.modality_embed[:, :1], words + self.modality_embed[:, 1:]], dim=1)
        for blk in self.joint_blocks:
            tokens = blk(tokens)
        tokens = self.norm(tokens)[:, :num_vision]
        for blk in self.vision_blocks:
            tokens = blk(tokens)
        return self.norm(tokens)
