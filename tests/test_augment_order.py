"""augment_clip applies flip, jitter and crop in the cheapest order; the result is the step-by-step one."""

from dataclasses import replace

import numpy as np

from locater.data.augment import (
    _GREY_WEIGHTS,
    AugmentConfig,
    ClipArrays,
    augment_clip,
    crop,
    hflip,
    photometric_jitter,
    sample_crop_box,
)


def _reference_jitter(frames, brightness, contrast, saturation):
    """The jitter written out step by step in float64: brightness, contrast around the mean grey, saturation."""
    x = frames.astype(np.float64) * brightness
    grey = x @ _GREY_WEIGHTS.astype(np.float64)
    x = (x - grey.mean()) * contrast + grey.mean()
    grey = (x @ _GREY_WEIGHTS.astype(np.float64))[..., None]
    x = (x - grey) * saturation + grey
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _reference_augment(clip, config, rng):
    """Flip, then jitter the whole clip, then crop: the documented order, one step after the other."""
    if config.flip_prob > 0 and rng.random() < config.flip_prob:
        clip = hflip(clip)
    if config.jitter_prob > 0 and rng.random() < config.jitter_prob:
        factors = [
            float(rng.uniform(1 - v, 1 + v)) for v in (config.brightness, config.contrast, config.saturation)
        ]
        count = len(clip.frames)
        jittered = _reference_jitter(np.concatenate([clip.frames, clip.global_frames]), *factors)
        clip = replace(clip, frames=jittered[:count], global_frames=jittered[count:])
    if config.crop_prob > 0 and rng.random() < config.crop_prob:
        height, width = clip.frames.shape[1:3]
        clip = crop(clip, sample_crop_box(height, width, clip.masks[clip.anchor], config.crop_scale, rng))
    return clip


def _clip(rng, height, width, num_global):
    masks = np.zeros((4, height, width), bool)
    top, left = rng.integers(0, height - 6), rng.integers(0, width - 8)
    masks[:, top : top + 5, left : left + 7] = True
    return ClipArrays(
        frames=rng.integers(0, 256, (4, height, width, 3), dtype=np.uint8),
        masks=masks,
        global_frames=rng.integers(0, 256, (num_global, height, width, 3), dtype=np.uint8),
        sentence="the dog on the left",
        anchor=int(rng.integers(0, 4)),
    )


def test_augment_clip_equals_flip_then_jitter_then_crop():
    rng = np.random.default_rng(0)
    config = AugmentConfig(flip_prob=0.5, jitter_prob=0.8, crop_prob=0.7)
    differing = total = 0
    flipped = cropped = 0
    for seed in range(60):
        clip = _clip(rng, int(rng.integers(12, 40)), int(rng.integers(12, 50)), num_global=seed % 4)
        ours = augment_clip(clip, config, np.random.default_rng([seed]))
        expected = _reference_augment(clip, config, np.random.default_rng([seed]))
        assert ours.sentence == expected.sentence
        assert np.array_equal(ours.masks, expected.masks)  # geometry: exactly the same pixels
        for got, want in ((ours.frames, expected.frames), (ours.global_frames, expected.global_frames)):
            assert got.shape == want.shape and got.dtype == np.uint8
            difference = np.abs(got.astype(int) - want.astype(int))
            assert difference.max(initial=0) <= 1  # colours: at most a rounding apart
            differing += int((difference > 0).sum())
            total += difference.size
        flipped += ours.sentence != clip.sentence
        cropped += ours.frames.shape != clip.frames.shape
    assert differing <= total * 0.1  # OpenCV's fixed-point uint8 rounding: a few percent of the values
    assert flipped and cropped  # both paths ran


def test_jitter_matches_the_step_by_step_formula():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
    for factors in ((1.2, 0.8, 1.3), (0.7, 1.3, 0.75), (1.0, 1.0, 0.0)):
        difference = np.abs(
            photometric_jitter(frames, *factors).astype(int) - _reference_jitter(frames, *factors)
        )
        assert difference.max() <= 1 and (difference > 0).mean() < 0.15  # fixed-point rounding, never more
