"""Text encoder: word embedding -> bidirectional LSTM -> LayerNorm (no attention mask, as the released model)."""

from __future__ import annotations

import torch
from torch import nn


class TextEncoder(nn.Module):
    """Encode WordPiece ids into word features.

    Args:
        vocab_size: rows of the word embedding (the released model: 30000; larger ids must be mapped to [UNK]
            before, see :func:`locater.tokenize`).
        word_dim: embedding width.
        hidden_size: LSTM hidden size per direction; the output width is ``2 * hidden_size``.
        num_layers: stacked LSTM layers.
    """

    def __init__(
        self, vocab_size: int = 30000, word_dim: int = 300, hidden_size: int = 384, num_layers: int = 3
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, word_dim)
        self.lstm = nn.LSTM(
            word_dim, hidden_size, num_layers=num_layers, bidirectional=True, batch_first=True
        )
        self.norm = nn.LayerNorm(2 * hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Args:
            input_ids: ``B x L`` int64 ids (0-padded).

        Returns:
            ``B x L x 2*hidden_size`` word features.
        """
        if input_ids.numel() and int(input_ids.max()) >= self.vocab_size:
            raise ValueError(
                f"token id {int(input_ids.max())} is beyond the {self.vocab_size}-row word embedding; "
                "tokenize with locater.tokenize(), which maps such ids to [UNK]"
            )
        # The LSTM runs in float32 even under autocast: it is cheap, and oneDNN has no bf16 LSTM on some CPUs.
        with torch.autocast(device_type=input_ids.device.type, enabled=False):
            features, _ = self.lstm(self.embedding(input_ids).float())
            return self.norm(features)
