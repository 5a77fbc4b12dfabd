"""Small layout-3.1 splits and checkpoints built in a temporary folder for tests."""

from pathlib import Path

import numpy as np
import torch

import locater
from locater.data.layout import LayoutWriter


def make_split(
    root: Path, name: str = "NORM", num_videos: int = 3, num_frames: int = 7, size: int = 40, seed: int = 0
) -> Path:
    """A split with 2 expressions per video, labelled frames scattered, one empty mask; returns its folder."""
    rng = np.random.default_rng(seed)
    split = root / name
    writer = LayoutWriter(split, f"A2D_{name}_test_expressions.json")
    for v in range(num_videos):
        video = f"vid{v:02d}"
        frames = num_frames + v  # different lengths
        writer.add_video(video, frames)
        for f in range(1, frames + 1):
            writer.write_frame(video, f, rng.integers(0, 256, size=(size, size + 8, 3), dtype=np.uint8))
        for obj, sentence in (("0", "the red circle on the left"), ("1", "a blue square moving right")):
            labels = sorted(rng.choice(np.arange(1, frames - 1), size=3, replace=False).tolist())
            writer.add_expression(video, obj, sentence, labels)
            for f in labels:
                mask = np.zeros((size, size + 8), bool)
                if not (v == 0 and obj == "1" and f == labels[0]):  # one empty ground truth
                    y, x = rng.integers(0, size - 10, 2)
                    mask[y : y + 10, x : x + 12] = True
                writer.write_mask(video, obj, f, mask)
    writer.close()
    return split


def make_checkpoint(path: Path, overrides=(), seed: int = 0) -> Path:
    """A random tiny model saved as our checkpoint format (with its config)."""
    torch.manual_seed(seed)
    cfg = locater.load_config("configs/model/tiny.yaml", list(overrides))
    model = locater.build_model(cfg)
    torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, path)
    return path
