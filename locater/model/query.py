"""Query generator: one query vector per head from attention over the words, keyed by the frame and memories."""

from __future__ import annotations

import torch
from timm.layers import Mlp
from torch import nn

from locater.model.memory import _init_linear_and_norm


class QueryGenerator(nn.Module):
    """Adaptive queries.

    Each head ``h`` attends over the ``L`` words with the score ``<K_h(words), c_h>`` where
    ``c = MLP([mean(V_t) ; mean(local) ; mean(global)])``; the values are ``MLP(words)``; a LayerNorm follows.

    Args:
        dim: width ``C``.
        num_queries: number of queries = heads ``Q`` (``C`` divisible by ``Q``).
        mlp_ratio: hidden width / ``C`` of the MLPs.
    """

    def __init__(self, dim: int = 768, num_queries: int = 8, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_queries:
            raise ValueError(f"width {dim} is not divisible by {num_queries} queries")
        hidden = int(dim * mlp_ratio)
        self.num_queries = num_queries
        self.context_mlp = Mlp(3 * dim, hidden, dim)
        self.key_mlp = Mlp(dim, hidden, dim)
        self.value_mlp = Mlp(dim, hidden, dim)
        self.norm = nn.LayerNorm(dim)
        self.scale = (dim // num_queries) ** -0.5
        self.apply(_init_linear_and_norm)

    def forward(
        self,
        words: torch.Tensor,
        frame_mean: torch.Tensor,
        local_mean: torch.Tensor,
        global_mean: torch.Tensor,
    ) -> torch.Tensor:
        """Args:
            words: ``B x L x C`` word features.
            frame_mean, local_mean, global_mean: ``B x C`` mean tokens of ``V_t`` and the two memories.

        Returns:
            ``B x Q x C`` queries.
        """
        batch, length, dim = words.shape
        heads = self.num_queries
        context = self.context_mlp(torch.cat([frame_mean, local_mean, global_mean], dim=1))
        context = context.view(batch, heads, dim // heads, 1)
        keys = self.key_mlp(words).view(batch, length, heads, dim // heads).transpose(1, 2)  # B x Q x L x D
        attention = torch.softmax((keys @ context).squeeze(-1) * self.scale, dim=-1)  # B x Q x L
        return self.norm(attention @ self.value_mlp(words))
