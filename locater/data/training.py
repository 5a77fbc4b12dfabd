"""Training clips over (expression, annotated frame) pairs of a layout-3.1 split or Ref-YouTube-VOS train.

One item is a clip of ``T`` consecutive frames (consecutive in the sample's ``frames`` list) that contains the
annotated frame: at a random position while training, at the last position otherwise (the model has then seen
``T - 1`` frames of history, as in online evaluation); clips are clamped at the video ends, and a video shorter
than ``T`` repeats its last frame (the repeats are not supervised). The ``N1`` global frames are random within
each segment while training and the segment centres otherwise. Every frame of the clip that carries an
annotation is supervised (``mask_valid``).

Randomness comes from ``numpy.random.default_rng([seed, epoch, index])``, so an item is the same in any
DataLoader worker; call :meth:`ReferringClipDataset.set_epoch` every epoch.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from locater.data.augment import AugmentConfig, ClipArrays, augment_clip, to_model_input
from locater.data.frames import DataError
from locater.data.layout import ExpressionSample

logger = logging.getLogger(__name__)


class SampleSource(Protocol):
    """What the dataset needs from a reader (:class:`~locater.data.layout.LayoutSplit`, ``YTVOSSplit``)."""

    samples: list[ExpressionSample]

    def load_frame(self, video: str, frame: str) -> np.ndarray: ...

    def load_mask(self, video: str, expression: str, frame: str) -> np.ndarray: ...

    def global_frames(self, sample: ExpressionSample, num_global_frames: int) -> list[str]: ...

    def random_global_frames(
        self, sample: ExpressionSample, num_global_frames: int, rng: np.random.Generator
    ) -> list[str]: ...


class ReferringClipDataset(Dataset):
    """Clips for training (or validation) over every (expression, annotated frame) pair of ``source``.

    Args:
        source: a reader with masks on the annotated frames.
        clip_length: ``T``, frames per clip.
        image_size: ``S``, model input size.
        num_global_frames: ``N1``, global-memory frames per clip (0 for none).
        augment: augmentations (``None``: none).
        train: random clip position and global frames (and augmentation); otherwise deterministic.
        seed: base seed of the per-item generators.

    Items are dicts: ``frames`` T x 3 x S x S uint8, ``global_frames`` N1 x 3 x S x S uint8 (resized, not yet
    normalised: :func:`locater.preprocess.normalise_frames` on the training device), ``input_ids`` 22 (long),
    ``masks`` T x 1 x S x S bool (float on the training device), ``mask_valid`` T bool, ``sentence``,
    ``video``, ``expression`` (str), ``frame_ids`` (list of T frame ids).
    """

    def __init__(
        self,
        source: SampleSource,
        clip_length: int = 5,
        image_size: int = 320,
        num_global_frames: int = 3,
        augment: AugmentConfig | None = None,
        train: bool = True,
        seed: int = 0,
    ) -> None:
        if clip_length < 1 or image_size < 1 or num_global_frames < 0:
            raise ValueError(
                f"need clip_length >= 1, image_size >= 1, num_global_frames >= 0; got {clip_length}, {image_size}, {num_global_frames}"
            )
        self.source = source
        self.clip_length = clip_length
        self.image_size = image_size
        self.num_global_frames = num_global_frames
        self.augment = augment
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.items: list[tuple[int, int]] = []  # (sample index, position of the annotated frame in frames)
        for index, sample in enumerate(source.samples):
            positions = {frame: i for i, frame in enumerate(sample.frames)}
            for label in sample.labels:
                if label not in positions:
                    raise DataError(
                        f"video {sample.video!r}, expression {sample.expression!r}: labelled frame {label} "
                        "is not among the video's frames"
                    )
                self.items.append((index, positions[label]))
        if not self.items:
            raise DataError(f"{_describe(source)}: no annotated frame to train on (a split without masks?)")

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws of every item (call once per epoch, before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def rng(self, index: int) -> np.random.Generator:
        """The generator of one item: a function of (seed, epoch, index) only."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def clip_positions(self, anchor: int, num_frames: int, rng: np.random.Generator) -> tuple[list[int], int]:
        """Positions (in the sample's frames) of the clip and the anchor's index inside the clip."""
        length = self.clip_length
        offset = int(rng.integers(0, length)) if self.train else length - 1
        start = min(max(anchor - offset, 0), max(num_frames - length, 0))
        positions = [min(start + i, num_frames - 1) for i in range(length)]
        return positions, anchor - start

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample_index, anchor = self.items[index]
        sample = self.source.samples[sample_index]
        rng = self.rng(index)
        positions, anchor_in_clip = self.clip_positions(anchor, len(sample.frames), rng)
        if self.num_global_frames == 0:
            global_ids: list[str] = []
        elif self.train:
            global_ids = self.source.random_global_frames(sample, self.num_global_frames, rng)
        else:
            global_ids = self.source.global_frames(sample, self.num_global_frames)
        valid = self._valid(sample, positions)
        clip = self._load(sample, positions, valid, global_ids, anchor_in_clip)
        if self.train and self.augment is not None:
            clip = augment_clip(clip, self.augment, rng)
        frames, masks, global_frames = to_model_input(clip, self.image_size)
        import locater  # late: the tokenizer module may be patched in tests

        input_ids = locater.tokenize([clip.sentence])[0]
        return {
            "frames": frames,
            "global_frames": global_frames,
            "input_ids": input_ids,
            "masks": masks,
            "mask_valid": torch.from_numpy(valid),
            "sentence": clip.sentence,
            "video": sample.video,
            "expression": sample.expression,
            "frame_ids": [sample.frames[p] for p in positions],
        }

    def _valid(self, sample: ExpressionSample, positions: list[int]) -> np.ndarray:
        labels = set(sample.labels)
        seen: set[int] = set()
        valid = np.zeros(len(positions), dtype=bool)
        for i, position in enumerate(positions):
            valid[i] = sample.frames[position] in labels and position not in seen
            seen.add(position)
        return valid

    def _load(
        self,
        sample: ExpressionSample,
        positions: list[int],
        valid: np.ndarray,
        global_ids: list[str],
        anchor: int,
    ) -> ClipArrays:
        cache: dict[str, np.ndarray] = {}

        def frame(frame_id: str) -> np.ndarray:
            if frame_id not in cache:
                cache[frame_id] = self.source.load_frame(sample.video, frame_id)
            return cache[frame_id]

        frames = [frame(sample.frames[p]) for p in positions]
        global_frames = [frame(f) for f in global_ids]
        size = frames[0].shape[:2]
        for frame_id, image in cache.items():
            if image.shape[:2] != size:
                raise DataError(
                    f"video {sample.video!r}: frame {frame_id} is {image.shape[0]} x {image.shape[1]}, "
                    f"other frames are {size[0]} x {size[1]}"
                )
        masks = np.zeros((len(positions), *size), dtype=bool)
        for i, position in enumerate(positions):
            if valid[i]:
                frame_id = sample.frames[position]
                mask = self.source.load_mask(sample.video, sample.expression, frame_id)
                if mask.shape != size:
                    raise DataError(
                        f"video {sample.video!r}, expression {sample.expression!r}, frame {frame_id}: mask is "
                        f"{mask.shape[0]} x {mask.shape[1]}, its frame is {size[0]} x {size[1]}"
                    )
                masks[i] = mask
        empty = np.zeros((0, *size, 3), dtype=np.uint8)
        return ClipArrays(
            frames=np.stack(frames),
            masks=masks,
            global_frames=np.stack(global_frames) if global_frames else empty,
            sentence=sample.sentence,
            anchor=anchor,
        )


def collate_clips(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors (``B x ...``); strings and frame-id lists become lists of length ``B``."""
    if not batch:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {}
    for key, value in batch[0].items():
        values = [item[key] for item in batch]
        out[key] = torch.stack(values) if isinstance(value, torch.Tensor) else values
    return out


def _describe(source: SampleSource) -> str:
    root = getattr(source, "root", None)
    return str(root) if root is not None else type(source).__name__
