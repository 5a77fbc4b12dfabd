"""Which frames build the global memory (docs/architecture.md): the one place that knows the rule."""

from __future__ import annotations

import numpy as np


def global_frame_numbers(num_frames: int, num_global_frames: int) -> list[int]:
    """1-indexed frame numbers at the centres of ``num_global_frames`` equal segments, as the official loader.

    ``step = num_frames // num_global_frames``; frame ``(1 + step) // 2 + i * step`` for ``i < num_global_frames``.
    Example: 10 frames, N1 = 3 -> step 3 -> frames 2, 5, 8.
    """
    if num_global_frames <= 0:
        return []
    if num_frames < num_global_frames:
        raise ValueError(f"a video of {num_frames} frames cannot give {num_global_frames} global frames")
    step = num_frames // num_global_frames
    return [(1 + step) // 2 + i * step for i in range(num_global_frames)]


def global_frame_positions(num_frames: int, num_global_frames: int) -> list[int]:
    """0-based positions of the global frames among ``num_frames`` frames: :func:`global_frame_numbers`, and for
    fewer frames than ``num_global_frames`` the frames repeated in order (``i * num_frames // num_global_frames``),
    so the global memory always holds ``num_global_frames`` frames."""
    if num_global_frames <= 0:
        return []
    if num_frames <= 0:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    if num_frames < num_global_frames:
        return [i * num_frames // num_global_frames for i in range(num_global_frames)]
    return [number - 1 for number in global_frame_numbers(num_frames, num_global_frames)]


def random_global_frame_numbers(
    num_frames: int, num_global_frames: int, rng: np.random.Generator
) -> list[int]:
    """Training variant: one random 1-indexed frame inside each of the ``num_global_frames`` equal segments."""
    if num_global_frames <= 0:
        return []
    if num_frames < num_global_frames:
        raise ValueError(f"a video of {num_frames} frames cannot give {num_global_frames} global frames")
    step = num_frames // num_global_frames
    return [int(rng.integers(i * step, (i + 1) * step)) + 1 for i in range(num_global_frames)]
