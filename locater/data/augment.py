"""Training augmentations of a clip, each optional with a probability, all driven by one numpy Generator.

Applied in this order to the clip frames, their masks and the global frames alike:

1. horizontal flip of every frame and mask; the sentence gets "left" and "right" swapped (whole words);
2. photometric jitter: brightness, contrast, saturation, one set of factors for the whole clip;
3. random scale/crop of the whole clip that keeps the referred object of the annotated frame inside;

then :func:`to_model_input` resizes as :func:`locater.preprocess.preprocess_frames` does, on uint8
(:func:`locater.preprocess.resize_frames_uint8`; the trainer normalises on its device), and the masks with
nearest-neighbour on the same sampling grid. The same generator state gives the same output.

:func:`augment_clip` draws the three in that order but applies them in the cheapest equivalent order: the crop box
(drawn on the flipped mask when flipping) is mirrored back and cut first, the flip is the same copy, and the jitter,
one affine colour map per clip whose contrast pivot is the mean grey of the whole uncropped clip, runs on the
cropped pixels only (OpenCV, on uint8). The result is the flip-jitter-crop of the list above: the same pixels and
masks, with colours that may differ by one grey level (rounding; never more) from a step-by-step float
computation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from locater.preprocess import resize_frames_uint8

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


def channel_means(*frame_sets: np.ndarray) -> np.ndarray:
    """Mean R, G, B over every pixel of every ``N x H x W x 3`` uint8 array given (float64, shape ``3``)."""
    sums, count = np.zeros(3), 0
    for frames in frame_sets:
        for frame in frames:
            pixels = frame.shape[0] * frame.shape[1]
            sums += np.asarray(cv2.mean(np.ascontiguousarray(frame))[:3]) * pixels
            count += pixels
    if count == 0:
        raise ValueError("channel_means needs at least one pixel")
    return sums / count


def jitter_matrix(means: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """The photometric jitter as one affine colour map ``3 x 4`` (``out = M @ rgb + offset``).

    Brightness scales, contrast pulls towards the mean grey ``g`` of the brightened clip (``means`` are its channel
    means before brightening) and saturation towards each pixel's own grey; with grey weights ``w`` summing to 1
    the three compose to ``M = b c (s I + (1 - s) 1 w^T)`` and ``offset = b g (1 - c)``.
    """
    weights = _GREY_WEIGHTS.astype(np.float64)
    pivot = brightness * float(np.asarray(means, dtype=np.float64) @ weights)
    matrix = (
        brightness * contrast * (saturation * np.eye(3) + (1 - saturation) * np.outer(np.ones(3), weights))
    )
    return np.concatenate([matrix, np.full((3, 1), pivot * (1 - contrast))], axis=1)


def apply_colour_map(frames: np.ndarray, colour_map: np.ndarray) -> np.ndarray:
    """``N x H x W x 3`` uint8 through a ``3 x 4`` affine colour map, rounded and clipped to uint8.

    OpenCV maps the uint8 pixels directly (4x faster than through float32); its fixed-point rounding puts a few
    percent of the values one grey level from the exact formula, none further.
    """
    if frames.size == 0:
        return frames
    count, height, width, _ = frames.shape
    rows = np.ascontiguousarray(frames).reshape(count * height, width, 3)
    return cv2.transform(rows, colour_map).reshape(frames.shape)


def photometric_jitter(
    frames: np.ndarray, brightness: float, contrast: float, saturation: float
) -> np.ndarray:
    """Apply one set of factors to ``N x H x W x 3`` uint8 frames (contrast around the mean grey of all of them).

    A factor of 1 leaves that property unchanged.
    """
    return apply_colour_map(frames, jitter_matrix(channel_means(frames), brightness, contrast, saturation))


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


def cut_window(arrays: np.ndarray, window: tuple[slice, ...], flip: bool) -> np.ndarray:
    """A contiguous copy of ``arrays[window]`` (``N x H x W [x C]``, uint8 or bool), mirrored left-right when
    ``flip``: OpenCV mirrors each frame (numpy's copy through a negative stride was 40x slower)."""
    cut = arrays[window]
    if not flip or cut.size == 0:
        return np.ascontiguousarray(cut[:, :, ::-1] if flip else cut)
    source = cut.view(np.uint8) if cut.dtype == np.bool_ else cut
    out = np.empty(cut.shape, dtype=np.uint8)
    for image, target in zip(source, out):
        cv2.flip(image, 1, dst=target)
    return out.view(np.bool_) if cut.dtype == np.bool_ else out


def augment_clip(clip: ClipArrays, config: AugmentConfig, rng: np.random.Generator) -> ClipArrays:
    """Flip, jitter and crop a clip as ``config`` says (see the module docstring)."""
    flip = config.flip_prob > 0 and rng.random() < config.flip_prob
    colour_map = None
    if config.jitter_prob > 0 and rng.random() < config.jitter_prob:
        factors = [
            float(rng.uniform(1 - v, 1 + v)) for v in (config.brightness, config.contrast, config.saturation)
        ]
        colour_map = jitter_matrix(channel_means(clip.frames, clip.global_frames), *factors)
    height, width = clip.frames.shape[1:3]
    top, left, crop_h, crop_w = 0, 0, height, width
    if config.crop_prob > 0 and rng.random() < config.crop_prob:
        keep = clip.masks[clip.anchor][:, ::-1] if flip else clip.masks[clip.anchor]
        top, left, crop_h, crop_w = sample_crop_box(height, width, keep, config.crop_scale, rng)
        if flip:  # the box was drawn on the mirrored frame: mirror it back
            left = width - left - crop_w
    if flip or (crop_h, crop_w) != (height, width):
        window = (slice(None), slice(top, top + crop_h), slice(left, left + crop_w))
        clip = replace(
            clip,
            frames=cut_window(clip.frames, window, flip),
            masks=cut_window(clip.masks, window, flip),
            global_frames=cut_window(clip.global_frames, window, flip),
        )
    if flip:
        clip = replace(clip, sentence=swap_left_right(clip.sentence))
    if colour_map is not None:
        clip = replace(
            clip,
            frames=apply_colour_map(clip.frames, colour_map),
            global_frames=apply_colour_map(clip.global_frames, colour_map),
        )
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
    """Resize as the official evaluation, on uint8 (:func:`locater.preprocess.normalise_frames` finishes it).

    Returns:
        frames ``T x 3 x S x S`` uint8, masks ``T x 1 x S x S`` bool (:func:`resize_masks`), global frames
        ``N1 x 3 x S x S`` uint8; the trainer turns them into float on its device.
    """
    frames = resize_frames_uint8(clip.frames, size)
    masks = torch.from_numpy(np.ascontiguousarray(resize_masks(clip.masks, size)))[:, None]
    global_frames = (
        resize_frames_uint8(clip.global_frames, size)
        if len(clip.global_frames)
        else torch.zeros(0, 3, size, size, dtype=torch.uint8)
    )
    return frames, masks, global_frames
