"""Frames of synthetic scenes labelled per patch: what the small vision encoder is pre-trained on.

The released Locater starts from an ImageNet ViT; the small synthetic model has no such encoder, and trained from
scratch on referring masks alone it does not learn shape words within a CPU budget (docs/experiments/memory.md).
Its stand-in for ImageNet is this task: single frames of 1-5 random objects on the benchmark's textured
backgrounds, each patch labelled with the shape and the colour of the object covering most of it.
"""

from __future__ import annotations

import numpy as np
import torch

from locater.data.synthetic.render import COLOURS, SHAPES, render
from locater.data.synthetic.scenes import random_object
from locater.preprocess import preprocess_frames

COLOUR_NAMES = tuple(COLOURS)
BACKGROUND_SHAPE = len(SHAPES)  # the shape label of a patch no object covers enough
BACKGROUND_COLOUR = len(COLOUR_NAMES)


def patch_labels(
    shapes: list[str], colours: list[str], masks: np.ndarray, patch_size: int, min_cover: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Shape and colour index of every patch, in raster order.

    Args:
        shapes, colours: the ``N`` objects' attributes.
        masks: ``N x H x W`` bool visible pixels of each object (``H`` and ``W`` multiples of ``patch_size``).
        patch_size: patch side ``P``.
        min_cover: the object covering most of a patch labels it when it covers at least this fraction.

    Returns:
        ``(shape_ids, colour_ids)``, each ``(H / P) * (W / P)`` int64; ``BACKGROUND_SHAPE`` /
        ``BACKGROUND_COLOUR`` where no object covers ``min_cover`` of the patch.
    """
    count, height, width = masks.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"frame {height}x{width} is not a multiple of the patch size {patch_size}")
    rows, cols = height // patch_size, width // patch_size
    if count == 0:
        return np.full(rows * cols, BACKGROUND_SHAPE), np.full(rows * cols, BACKGROUND_COLOUR)
    cover = masks.reshape(count, rows, patch_size, cols, patch_size).mean(axis=(2, 4)).reshape(count, -1)
    best, covered = cover.argmax(axis=0), cover.max(axis=0) >= min_cover
    shape_of = np.array([SHAPES.index(s) for s in shapes])
    colour_of = np.array([COLOUR_NAMES.index(c) for c in colours])
    return (
        np.where(covered, shape_of[best], BACKGROUND_SHAPE).astype(np.int64),
        np.where(covered, colour_of[best], BACKGROUND_COLOUR).astype(np.int64),
    )


def patch_batch(
    rng: np.random.Generator, batch_size: int, image_size: int, patch_size: int, max_objects: int = 5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``batch_size`` fresh one-frame scenes rendered at ``image_size``.

    Returns:
        pre-processed frames ``B x 3 x S x S``, shape labels ``B x N`` and colour labels ``B x N`` (int64,
        ``N = (S / P)^2``; see :func:`patch_labels`).
    """
    frames, shapes, colours = [], [], []
    for _ in range(batch_size):
        objects = [random_object(rng, image_size, 1) for _ in range(int(rng.integers(1, max_objects + 1)))]
        rendered, masks = render(objects, image_size, 1, rng)  # 1 x S x S x 3, N x 1 x S x S
        shape_ids, colour_ids = patch_labels(
            [o.shape for o in objects], [o.colour for o in objects], masks[:, 0], patch_size
        )
        frames.append(rendered[0])
        shapes.append(shape_ids)
        colours.append(colour_ids)
    return (
        preprocess_frames(np.stack(frames), image_size),
        torch.from_numpy(np.stack(shapes)),
        torch.from_numpy(np.stack(colours)),
    )
