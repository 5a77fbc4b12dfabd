"""Training augmentations of a clip, each optional with a probability, all driven by one numpy Generator.

Applied in this order to the clip frames, their masks and the global frames alike:

1. horizontal flip of every frame and mask; the sentence gets "left" and "right" swapped (whole words);
2. photometric jitter: brightness, contrast, saturation, one set of factors for the whole clip;
3. random scale/crop of the whole clip that keeps the referred object of the annotated frame inside;

then :func:`to_model_input` resizes and normalises exactly as :func:`locater.preprocess.preprocess_frames`
(masks with nearest-neighbour on the same sampling grid). The same generator state gives the same output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import torch

from locater.preprocess import preprocess_frames

_LEFT_RIGHT = re.compile(r"\b(left|right)\b", re.IGNORECASE)
_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the clip augmentations (a probability of 0 switches one off).

    Attributes:
        flip_prob: probability of the horizontal flip (with the left/right swap in the sentence).
        jitter_prob: probability of the photometric jitter.
        brightness, contrast, saturation: factors drawn uniformly in ``[1 - v, 1 + v]``.
        crop_prob: probability of the random scale/crop.
        crop_scale: range of the crop side as a fraction of the frame side (enlarged to hold the object).
    """

    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    crop_prob: float = 0.5
    crop_scale: tuple[float, float] = (0.6, 1.0)

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all."""
        return cls(flip_prob=0.0, jitter_prob=0.0, crop_prob=0.0)

    def __post_init__(self) -> None:
        for name in ("flip_prob", "jitter_prob", "crop_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1), got {getattr(self, name)}")
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"augment.crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")

    @classmethod
    def from_dict(cls, values: dict) -> AugmentConfig:
        """Build from a config section; unknown keys are an error."""
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown augment option(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        values = dict(values)
        if "crop_scale" in values:
            values["crop_scale"] = tuple(values["crop_scale"])
        return replace(cls(), **values)


@dataclass
class ClipArrays:
    """A clip before model pre-processing.

    Attributes:
        frames: ``T x H x W x 3`` uint8 RGB.
        masks: ``T x H x W`` bool (all False where a frame has no annotation).
        global_frames: ``N1 x H x W x 3`` uint8 RGB (same size as the clip frames).
        sentence: the referring sentence.
        anchor: index in the clip of the annotated frame whose object the crop must keep.
    """

    frames: np.ndarray
    masks: np.ndarray
    global_frames: np.ndarray
    sentence: str
    anchor: int


def swap_left_right(sentence: str) -> str:
    """Swap the whole words "left" and "right" (both at once, case kept); "leftover" stays."""

    def swap(match: re.Match) -> str:
        word = match.group(0)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        return other.capitalize() if word[0].isupper() else other

    return _LEFT_RIGHT.sub(swap, sentence)


def hflip(clip: ClipArrays) -> ClipArrays:
    """Mirror every frame, mask and global frame; swap left/right in the sentence."""
    return replace(
        clip,
        frames=np.ascontiguousarray(clip.frames[:, :, ::-1]),
        masks=np.ascontiguousarray(clip.masks[:, :, ::-1]),
        global_frames=np.ascontiguousarray(clip.global_frames[:, :, ::-1]),
        sentence=swap_left_right(clip.sentence),
    )


def photometric_jitter(
    frames: np.ndarray, brightness: float, contrast: float, saturation: float
) -> np.ndarray:
    """Apply one set of factors to ``N x H x W x 3`` uint8 frames (contrast around the mean grey of all of them).

    A factor of 1 leaves that property unchanged.
    """
    x = frames.astype(np.float32) * brightness
    grey = x @ _GREY_WEIGHTS
    x = (x - grey.mean()) * contrast + grey.mean()
    grey = (x @ _GREY_WEIGHTS)[..., None]
    x = (x - grey) * saturation + grey
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def sample_crop_box(
    height: int,
    width: int,
    keep: np.ndarray | None,
    scale: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[int, int, int, int]:
    """A random crop ``(top, left, crop_height, crop_width)`` that contains every True pixel of ``keep``.

    The side fraction is drawn in ``scale`` (same for both sides), then enlarged where the object needs it.
    """
    fraction = float(rng.uniform(*scale))
    crop_h = min(height, max(1, round(height * fraction)))
    crop_w = min(width, max(1, round(width * fraction)))
    if keep is not None and keep.any():
        ys, xs = np.nonzero(keep)
        y_min, y_max, x_min, x_max = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
        crop_h = max(crop_h, y_max - y_min + 1)
        crop_w = max(crop_w, x_max - x_min + 1)
        top = int(rng.integers(max(0, y_max + 1 - crop_h), min(y_min, height - crop_h) + 1))
        left = int(rng.integers(max(0, x_max + 1 - crop_w), min(x_min, width - crop_w) + 1))
    else:
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
    return top, left, crop_h, crop_w


def crop(clip: ClipArrays, box: tuple[int, int, int, int]) -> ClipArrays:
    """Cut the same box out of every frame, mask and global frame."""
    top, left, h, w = box
    window = (slice(None), slice(top, top + h), slice(left, left + w))
    return replace(
        clip,
        frames=np.ascontiguousarray(clip.frames[window]),
        masks=np.ascontiguousarray(clip.masks[window]),
        global_frames=np.ascontiguousarray(clip.global_frames[window]),
    )


def augment_clip(clip: ClipArrays, config: AugmentConfig, rng: np.random.Generator) -> ClipArrays:
    """Flip, jitter and crop a clip as ``config`` says (see the module docstring)."""
    if config.flip_prob > 0 and rng.random() < config.flip_prob:
        clip = hflip(clip)
    if config.jitter_prob > 0 and rng.random() < config.jitter_prob:
        factors = [
            float(rng.uniform(1 - v, 1 + v)) for v in (config.brightness, config.contrast, config.saturation)
        ]
        count = len(clip.frames)
        jittered = photometric_jitter(np.concatenate([clip.frames, clip.global_frames]), *factors)
        clip = replace(clip, frames=jittered[:count], global_frames=jittered[count:])
    if config.crop_prob > 0 and rng.random() < config.crop_prob:
        height, width = clip.frames.shape[1:3]
        box = sample_crop_box(height, width, clip.masks[clip.anchor], config.crop_scale, rng)
        clip = crop(clip, box)
    return clip


def _nearest_sources(source: int, target: int) -> np.ndarray:
    if target == 1:
        return np.zeros(1, dtype=np.int64)
    return np.floor(np.arange(target) * (source - 1) / (target - 1) + 0.5).astype(np.int64)


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of ``T x H x W`` masks to ``T x size x size``.

    Output pixel ``i`` takes source pixel ``round(i * (H - 1) / (size - 1))``: the sampling grid of the frames'
    bilinear resize with ``align_corners=True``, so masks stay aligned with their frames (and a flip commutes
    with the resize).
    """
    rows = _nearest_sources(masks.shape[1], size)
    cols = _nearest_sources(masks.shape[2], size)
    return masks[:, rows][:, :, cols]


def to_model_input(clip: ClipArrays, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Resize and normalise as the official evaluation.

    Returns:
        frames ``T x 3 x S x S``, masks ``T x 1 x S x S`` float (0/1, :func:`resize_masks`), global frames
        ``N1 x 3 x S x S``.
    """
    frames = preprocess_frames(clip.frames, size)
    masks = torch.from_numpy(resize_masks(clip.masks, size)).float()[:, None]
    global_frames = (
        preprocess_frames(clip.global_frames, size)
        if len(clip.global_frames)
        else torch.zeros(0, 3, size, size, dtype=frames.dtype)
    )
    return frames, masks, global_frames
