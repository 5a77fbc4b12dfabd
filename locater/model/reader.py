"""Memory reader: cross-attention from the frame tokens to ``[local ; global]`` memory, then LayerNorm.

With ``locality=True`` (not the released model) each head adds ``w_h * bias`` to its attention logits, ``bias``
(``N x M``, from :class:`~locater.model.locater.Locater`) a Gaussian log-prior on the grid distance between a query's
cell and a memory token's cell, and ``w_h`` a learned weight per head (1 at the start; a head may learn to drop it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MemoryAttention(nn.Module):
    """Multi-head cross-attention with separate q/k/v projections (qkv bias) and an output projection."""

    def __init__(self, dim: int = 768, num_heads: int = 8, locality: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        # per-head weight of the locality bias (module docstring); absent in the released model
        self.locality = nn.Parameter(torch.ones(num_heads)) if locality else None

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        query_pos: torch.Tensor | None = None,
        memory_pos: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args:
            query: ``B x N x C``; memory: ``B x M x C``.
            query_pos, memory_pos: optional ``N x C`` / ``M x C`` position codes added to the queries' and the
                keys' inputs (not to the values), as DETR's attention does.
            bias: ``N x M`` locality bias: required with ``locality=True``, an error without it.

        Returns:
            ``B x N x C``.
        """
        batch, num_query, dim = query.shape
        heads = self.num_heads
        if (bias is None) != (self.locality is None):
            raise ValueError("a locality bias is needed exactly when the attention has locality weights")

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, heads, dim // heads).transpose(1, 2)

        keys = memory if memory_pos is None else memory + memory_pos
        queries = query if query_pos is None else query + query_pos
        mask = None
        if self.locality is not None and bias is not None:
            mask = (self.locality.view(heads, 1, 1) * bias.to(query.dtype)).unsqueeze(0)  # 1 x H x N x M
        out = F.scaled_dot_product_attention(
            split(self.q(queries)), split(self.k(keys)), split(self.v(memory)), attn_mask=mask
        )
        return self.proj(out.transpose(1, 2).reshape(batch, num_query, dim))


class MemoryReader(nn.Module):
    """``LayerNorm(CrossAttention(V_t, memory))`` (no residual, as the released model), or with ``residual``
    ``LayerNorm(V_t + CrossAttention(V_t, memory))`` (same parameters; not the released model)."""

    def __init__(
        self, dim: int = 768, num_heads: int = 8, residual: bool = False, locality: bool = False
    ) -> None:
        super().__init__()
        self.attention = MemoryAttention(dim, num_heads, locality)
        self.norm = nn.LayerNorm(dim)
        self.residual = residual

    def forward(
        self,
        frame: torch.Tensor,
        memory: torch.Tensor,
        frame_pos: torch.Tensor | None = None,
        memory_pos: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args:
            frame: ``B x N x C`` frame features; memory: ``B x M x C``.
            frame_pos, memory_pos, bias: optional position codes of the queries and keys and the ``N x M``
                locality bias (:class:`MemoryAttention`).

        Returns:
            ``B x N x C`` read features.
        """
        read = self.attention(frame, memory, frame_pos, memory_pos, bias)
        return self.norm(frame + read if self.residual else read)
