"""Frame pre-processing and prediction post-processing, exactly as the official evaluation.

Frames: RGB uint8 -> float in [0, 1] -> bilinear resize (align_corners=True) to ``size x size`` without
keeping the aspect ratio -> normalised with mean = std = 0.5.
Predictions: sigmoid(logits) -> bilinear resize (align_corners=True) to the target size -> threshold 0.5.

Training splits the frame path in two: :func:`resize_frames_uint8` runs in the DataLoader workers (the same
sampling grid, rounded to uint8: a quarter of the bytes to hand to the main process, and 20x less CPU than the
float resize) and :func:`normalise_frames` on the training device. Evaluation keeps :func:`preprocess_frames`.
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


def resize_frames_uint8(frames: np.ndarray | torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """The resize of :func:`preprocess_frames` (bilinear, ``align_corners=True``) on uint8, without normalising.

    Args:
        frames: ``T x H x W x 3`` uint8 RGB array or tensor.
        size: output size (square int, or ``(height, width)``).

    Returns:
        ``T x 3 x size x size`` uint8 tensor (channels-last memory layout), each value less than one grey level from the float resize
        (torch's fixed-point uint8 kernel, then rounding: at most 0.51 from A2D's 320 x 427 frames to 320 x 320).
    """
    tensor = torch.as_tensor(frames)
    if tensor.dim() != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"expected frames of shape T x H x W x 3, got {tuple(tensor.shape)}")
    if tensor.dtype != torch.uint8:
        raise ValueError(f"expected uint8 RGB frames, got {tensor.dtype}")
    out_size = (size, size) if isinstance(size, int) else tuple(size)
    # a channels-last view, the layout of torch's fast uint8 kernel and of preprocess_frames' output: the model
    # then meets the same memory layout, and so the same float sums, as in evaluation
    channels_first = tensor.permute(0, 3, 1, 2)
    if tuple(channels_first.shape[-2:]) == out_size or len(channels_first) == 0:
        return channels_first.contiguous(memory_format=torch.channels_last)
    resized = F.interpolate(channels_first, size=out_size, mode="bilinear", align_corners=True)
    return resized.contiguous(memory_format=torch.channels_last)


def normalise_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames ``... x 3 x H x W`` -> float32 model input, the normalisation of :func:`preprocess_frames`
    (the same operations in the same order, so a frame that needed no resize gives the same bits)."""
    if frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames, got {frames.dtype}")
    x = frames.float().div_(255.0)
    shape = (1,) * (x.dim() - 3) + (3, 1, 1)
    mean = torch.tensor(FRAME_MEAN, dtype=x.dtype, device=x.device).view(shape)
    std = torch.tensor(FRAME_STD, dtype=x.dtype, device=x.device).view(shape)
    return (x - mean) / std


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
