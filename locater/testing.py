"""Deterministic weights and videos for parity tests and benchmarks (no randomness from global state)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping

import torch
import torch.nn.functional as F


def _generator(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed << 32) ^ zlib.crc32(key.encode()))


def seeded_official_state_dict(shapes: Mapping[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Fill every key of a state dict deterministically and independently of the others.

    Each key draws from its own generator seeded with ``(seed, crc32(key))``, so the values do not depend on the
    order or the presence of other keys. The scales keep activations non-degenerate through the whole network:

    * ``*num_batches_tracked`` -> int64 0; ``*running_var`` -> 0.5 + U(0, 1); ``*running_mean`` -> 0.1 N(0, 1);
    * names containing ``cls_token``, ``pos_embed`` or ``modal_embed`` -> 0.1 N(0, 1);
    * other 1-D ``weight`` -> 1 + 0.1 N(0, 1); other 1-D ``bias`` -> 0.05 N(0, 1);
    * every other tensor -> N(0, 1) / sqrt(prod(shape[1:])).

    Args:
        shapes: ``{key: shape}`` in any naming.
        seed: base seed.

    Returns:
        ``{key: float32 tensor}`` (int64 for ``num_batches_tracked``).
    """
    state = {}
    for key, shape in shapes.items():
        shape = tuple(shape)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=torch.long)
            continue
        g = _generator(seed, key)
        if key.endswith("running_var"):
            value = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean"):
            value = 0.1 * torch.randn(shape, generator=g)
        elif any(name in key for name in ("cls_token", "pos_embed", "modal_embed")):
            value = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1 and key.endswith("weight"):
            value = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            value = 0.05 * torch.randn(shape, generator=g)
        else:
            value = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        state[key] = value.float()
    return state


def seeded_video(num_frames: int, size: int, seed: int) -> torch.Tensor:
    """A smooth, varied, deterministic RGB video: drifting low-frequency colour fields plus moving blobs.

    Returns:
        ``T x size x size x 3`` uint8.
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_frames + 3, 3, 5, 5, generator=g)
    # a slowly changing background: blend consecutive coarse fields
    weights = torch.linspace(0, 1, num_frames)
    background = (1 - weights.view(-1, 1, 1, 1)) * coarse[:num_frames] + weights.view(-1, 1, 1, 1) * coarse[
        3:
    ]
    frames = F.interpolate(background, size=(size, size), mode="bilinear", align_corners=False)
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    for _ in range(3):
        start = torch.rand(2, generator=g) * size
        velocity = (torch.rand(2, generator=g) - 0.5) * size / max(num_frames, 1)
        radius = size * (0.08 + 0.1 * float(torch.rand(1, generator=g)))
        colour = torch.rand(3, generator=g)
        for t in range(num_frames):
            cy, cx = start + velocity * t
            blob = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * radius**2))
            frames[t] = frames[t] * (1 - blob) + colour.view(3, 1, 1) * blob
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
