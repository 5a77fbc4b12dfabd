"""An A2D-Sentences-like training split in layout 3.1, written by the project's own :class:`LayoutWriter`.

The data benchmark (:mod:`locater.bench.data`) times the real training dataset on it, so the files must cost what
the A2D converter's files cost to read: PNG frames of ``allPngs320H`` at the sizes ``Release/clips320H`` gives (320
rows; 427 columns for 4:3 videos, 569 for 16:9), written with the converter's PNG settings, and uint8 mask tensors
on a few annotated frames per video, as ``locater.data.releases.a2d`` writes them. Frame content is a smooth
background with a moving object and mild sensor-like noise, so the PNGs compress about as camera frames do (the
benchmark reports their mean size); a handful of short videos keeps it small on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from locater.data.layout import LayoutWriter

A2D_FRAME_SIZES = ((320, 427), (320, 569))  # (H, W) of clips320H frames: 4:3 and 16:9 videos, alternating
SENTENCES = ("the man in red is running on the left", "a dog jumping over the fence on the right")


@dataclass(frozen=True)
class WrittenSplit:
    """What :func:`write_a2d_like_split` wrote.

    Attributes:
        split_dir: the split folder (``train.data.split_dir``).
        num_videos, num_frames: videos, and frames per video.
        num_expressions, num_items: expressions, and (expression, annotated frame) training items.
        mean_png_bytes: mean size of a frame file.
        frame_sizes: the ``(H, W)`` sizes used.
    """

    split_dir: Path
    num_videos: int
    num_frames: int
    num_expressions: int
    num_items: int
    mean_png_bytes: float
    frame_sizes: tuple[tuple[int, int], ...]


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour fields at two scales: ``H x W x 3`` float32 in about [0, 255]."""
    coarse = rng.uniform(30, 225, (height // 40 + 2, width // 40 + 2, 3)).astype(np.float32)
    fine = rng.normal(0, 18, (height // 6 + 2, width // 6 + 2, 3)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) + cv2.resize(
        fine, (width, height), interpolation=cv2.INTER_LINEAR
    )


def write_a2d_like_split(
    root: str | Path,
    num_videos: int = 6,
    num_frames: int = 24,
    labels_per_video: int = 3,
    frame_sizes: tuple[tuple[int, int], ...] = A2D_FRAME_SIZES,
    noise: float = 3.0,
    seed: int = 0,
) -> WrittenSplit:
    """Write ``root/train``: ``num_videos`` videos of ``num_frames`` frames, two expressions each.

    Args:
        root: parent folder (created).
        labels_per_video: annotated frames per video, spread evenly (A2D annotates 3 to 5 per video).
        frame_sizes: ``(H, W)`` of the videos, used in turn.
        noise: standard deviation of the per-pixel noise (grey levels).

    Returns:
        A :class:`WrittenSplit`.
    """
    if num_videos < 1 or num_frames < 1 or not 1 <= labels_per_video <= num_frames:
        raise ValueError(
            f"need num_videos >= 1, num_frames >= 1 and 1 <= labels_per_video <= num_frames; got "
            f"{num_videos}, {num_frames}, {labels_per_video}"
        )
    rng = np.random.default_rng(seed)
    split_dir = Path(root) / "train"
    writer = LayoutWriter(split_dir, "A2D_train_expressions.json")
    step = num_frames / labels_per_video
    labels = sorted({int(step * (k + 0.5)) + 1 for k in range(labels_per_video)})
    sizes: list[int] = []
    for v in range(num_videos):
        video = f"video{v:03d}"
        height, width = frame_sizes[v % len(frame_sizes)]
        writer.add_video(video, num_frames)
        background = _background(height, width, rng)
        boxes = []
        for t in range(1, num_frames + 1):
            image = background.copy()
            # two objects crossing the frame: the referred ones of the two expressions
            top, left = height // 4 + t, (width // 8 + 6 * t) % (width - width // 4)
            box = (top, left, top + height // 3, left + width // 6)
            image[box[0] : box[2], box[1] : box[3]] = (200.0, 50.0, 40.0)
            centre = (width - left - width // 10, height // 2 + t)
            cv2.circle(image, centre, height // 8, (60.0, 120.0, 210.0), -1)
            boxes.append((box, centre))
            image += rng.normal(0, noise, image.shape).astype(np.float32)
            frame = np.clip(np.rint(image), 0, 255).astype(np.uint8)
            sizes.append(writer.write_frame(video, t, frame).stat().st_size)
        for obj, sentence in enumerate(SENTENCES):
            writer.add_expression(video, str(obj), sentence, labels)
            for t in labels:
                mask = np.zeros((height, width), np.uint8)
                box, centre = boxes[t - 1]
                if obj == 0:
                    mask[box[0] : box[2], box[1] : box[3]] = 1
                else:
                    cv2.circle(mask, centre, height // 8, 1, -1)
                writer.write_mask(video, str(obj), t, mask)
    writer.close()
    return WrittenSplit(
        split_dir=split_dir,
        num_videos=num_videos,
        num_frames=num_frames,
        num_expressions=num_videos * len(SENTENCES),
        num_items=num_videos * len(SENTENCES) * len(labels),
        mean_png_bytes=float(np.mean(sizes)),
        frame_sizes=tuple(frame_sizes),
    )
