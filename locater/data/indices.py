"""Which frames build the global memory (DESIGN §1): the one place that knows the rule."""

from __future__ import annotations

import numpy as np


def global_frame_numbers(num_frames: int, num_global: int) -> list[int]:
    """1-indexed frame numbers at the centres of ``num_global`` equal segments, as the official loader.

    ``step = num_frames // num_global``; frame ``(1 + step) // 2 + i * step`` for ``i < num_global``.
    Example: 10 frames, N1 = 3 -> step 3 -> frames 2, 5, 8.
    """
    if num_global <= 0:
        return []
    if num_frames < num_global:
        raise ValueError(f"a video of {num_frames} frames cannot give {num_global} global frames")
    step = num_frames // num_global
    return [(1 + step) // 2 + i * step for i in range(num_global)]


def random_global_frame_numbers(num_frames: int, num_global: int, rng: np.random.Generator) -> list[int]:
    """Training variant: one random 1-indexed frame inside each of the ``num_global`` equal segments."""
    if num_global <= 0:
        return []
    if num_frames < num_global:
        raise ValueError(f"a video of {num_frames} frames cannot give {num_global} global frames")
    step = num_frames // num_global
    return [int(rng.integers(i * step, (i + 1) * step)) + 1 for i in range(num_global)]
