"""Memory reader: cross-attention from the frame tokens to ``[local ; global]`` memory, then LayerNorm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MemoryAttention(nn.Module):
    """Multi-head cross-attention with separate q/k/v projections (qkv bias) and an output projection."""

    def __init__(self, dim: int = 768, num_heads: int = 8) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        query_pos: torch.Tensor | None = None,
        memory_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args:
            query: ``B x N x C``; memory: ``B x M x C``.
            query_pos, memory_pos: optional ``N x C`` / ``M x C`` position codes added to the queries' and the
                keys' inputs (not to the values), as DETR's attention does.

        Returns:
            ``B x N x C``.
        """
        batch, num_query, dim = query.shape
        heads = self.num_heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, heads, dim // heads).transpose(1, 2)

        keys = memory if memory_pos is None else memory + memory_pos
        queries = query if query_pos is None else query + query_pos
        out = F.scaled_dot_product_attention(
            split(self.q(queries)), split(self.k(keys)), split(self.v(memory))
        )
        return self.proj(out.transpose(1, 2).reshape(batch, num_query, dim))


class MemoryReader(nn.Module):
    """``LayerNorm(CrossAttention(V_t, memory))`` (no residual, as the released model), or with ``residual``
    ``LayerNorm(V_t + CrossAttention(V_t, memory))`` (same parameters; not the released model)."""

    def __init__(self, dim: int = 768, num_heads: int = 8, residual: bool = False) -> None:
        super().__init__()
        self.attention = MemoryAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)
        self.residual = residual

    def forward(
        self,
        frame: torch.Tensor,
        memory: torch.Tensor,
        frame_pos: torch.Tensor | None = None,
        memory_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args:
            frame: ``B x N x C`` frame features; memory: ``B x M x C``.
            frame_pos, memory_pos: optional position codes of the queries and keys (:class:`MemoryAttention`).

        Returns:
            ``B x N x C`` read features.
        """
        read = self.attention(frame, memory, frame_pos, memory_pos)
        return self.norm(frame + read if self.residual else read)
