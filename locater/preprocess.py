"""Frame pre-processing and prediction post-processing, exactly as the official evaluation.

Frames: RGB uint8 -> float in [0, 1] -> bilinear resize (align_corners=True) to ``size x size`` without
keeping the aspect ratio -> normalised with mean = std = 0.5.
Predictions: sigmoid(logits) -> bilinear resize (align_corners=True) to the target size -> threshold 0.5.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

FRAME_MEAN = (0.5, 0.5, 0.5)
FRAME_STD = (0.5, 0.5, 0.5)


def preprocess_frames(frames: np.ndarray | torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Turn RGB frames into model input.

    Args:
        frames: ``T x H x W x 3`` (or ``H x W x 3``) uint8 RGB array or tensor.
        size: model input size (square int, or ``(height, width)``).

    Returns:
        ``T x 3 x size x size`` float32 tensor (``3 x size x size`` for a single frame).
    """
    tensor = torch.as_tensor(frames)
    single = tensor.dim() == 3
    if single:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"expected frames of shape T x H x W x 3, got {tuple(tensor.shape)}")
    if tensor.dtype != torch.uint8:
        raise ValueError(f"expected uint8 RGB frames, got {tensor.dtype}")
    out_size = (size, size) if isinstance(size, int) else tuple(size)
    x = tensor.permute(0, 3, 1, 2).float().div_(255.0)
    x = F.interpolate(x, size=out_size, mode="bilinear", align_corners=True)
    mean = torch.tensor(FRAME_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(FRAME_STD, dtype=x.dtype).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x[0] if single else x


def logits_to_probabilities(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sigmoid, then bilinear resize (align_corners=True) to ``size``.

    Args:
        logits: ``B x 1 x h x w`` (or ``h x w``) model logits.
        size: ``(height, width)`` of the target (the ground-truth mask or the original frame).

    Returns:
        ``B x 1 x height x width`` float probabilities (``height x width`` for a 2-D input).
    """
    flat = logits.dim() == 2
    x = logits[None, None] if flat else logits
    x = torch.sigmoid(x.float())
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
    return x[0, 0] if flat else x


def logits_to_masks(logits: torch.Tensor, size: tuple[int, int], threshold: float = 0.5) -> torch.Tensor:
    """Binary masks at ``size``: ``sigmoid(logits)`` resized, then ``> threshold``.

    Args:
        logits: ``B x 1 x h x w`` (or ``h x w``) model logits.
        size: ``(height, width)`` of the output masks.

    Returns:
        bool tensor ``B x 1 x height x width`` (or ``height x width``).
    """
    return logits_to_probabilities(logits, size) > threshold
