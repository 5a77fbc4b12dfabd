import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import locater
from locater.data.augment import (
    AugmentConfig,
    ClipArrays,
    augment_clip,
    photometric_jitter,
    resize_masks,
    sample_crop_box,
    swap_left_right,
    to_model_input,
)
from locater.data.frames import DataError
from locater.data.layout import LayoutSplit, LayoutWriter
from locater.data.training import ReferringClipDataset, collate_clips
from locater.preprocess import normalise_frames, preprocess_frames

H, W = 24, 32


@pytest.fixture
def fake_tokenize(monkeypatch):
    def tokenize(sentences):
        return torch.tensor([[len(s), s.count("left"), s.count("right")] + [0] * 19 for s in sentences])

    monkeypatch.setattr(locater, "tokenize", tokenize)


def _split(tmp_path, num_frames=8, labels=(3, 4, 8)):
    """One video whose frame t has value 10 * t; object "0" is a 4 x 5 box moving right."""
    writer = LayoutWriter(tmp_path / "train", "X_expressions.json")
    writer.add_video("v", num_frames)
    rng = np.random.default_rng(0)
    for t in range(1, num_frames + 1):
        frame = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        frame[0, 0] = 10 * t
        writer.write_frame("v", t, frame)
    writer.add_expression("v", "0", "the box on the left", list(labels))
    for t in labels:
        mask = np.zeros((H, W), bool)
        mask[10:14, 2 + t : 7 + t] = True
        writer.write_mask("v", "0", t, mask)
    writer.close()
    return LayoutSplit.open(tmp_path / "train")


def test_swap_left_right():
    assert (
        swap_left_right("the left man hands the ball to the man on the right")
        == "the right man hands the ball to the man on the left"
    )
    assert (
        swap_left_right("Left of the leftover, rightmost bright") == "Right of the leftover, rightmost bright"
    )


def test_clip_shapes_validity_and_real_tokens(tmp_path):
    split = _split(tmp_path, num_frames=10, labels=(3, 4, 10))
    data = ReferringClipDataset(split, clip_length=4, image_size=16, num_global_frames=3, train=False)
    assert len(data) == 3  # one item per annotated frame
    item = data[0]  # anchor 00003, last clip position -> clamped to frames 1..4
    assert item["frames"].shape == (4, 3, 16, 16) and item["global_frames"].shape == (3, 3, 16, 16)
    assert item["masks"].shape == (4, 1, 16, 16) and item["masks"].dtype == torch.bool
    assert item["frame_ids"] == ["00001", "00002", "00003", "00004"]
    assert item["mask_valid"].tolist() == [False, False, True, True]
    assert item["masks"][0].sum() == 0 and item["masks"][2].sum() > 0
    assert torch.equal(item["input_ids"], locater.tokenize(["the box on the left"])[0])
    assert item["input_ids"].shape == (22,) and item["sentence"] == "the box on the left"
    assert (item["video"], item["expression"]) == ("v", "0")
    frames = np.stack([split.load_frame("v", f"{t:05d}") for t in (2, 5, 8)])  # step 10 // 3 = 3 -> 2, 5, 8
    assert item["frames"].dtype == torch.uint8 and item["global_frames"].dtype == torch.uint8
    # resized on uint8 (normalised on the training device): less than one grey level from the float resize
    difference = normalise_frames(item["global_frames"]) - preprocess_frames(frames, 16)
    assert difference.abs().max() < 1 / 127.5
    last = data[2]  # anchor 00010 at the video end
    assert last["frame_ids"] == ["00007", "00008", "00009", "00010"]
    assert last["mask_valid"].tolist() == [False, False, False, True]


def test_short_video_repeats_last_frame(tmp_path, fake_tokenize):
    split = _split(tmp_path, num_frames=3, labels=(2, 3))
    data = ReferringClipDataset(split, clip_length=5, image_size=8, num_global_frames=2, train=True)
    for index in range(len(data)):
        item = data[index]
        assert item["frame_ids"] == ["00001", "00002", "00003", "00003", "00003"]
        assert item["mask_valid"].tolist() == [False, True, True, False, False]


def test_training_randomness_is_reproducible(tmp_path, fake_tokenize):
    split = _split(tmp_path, num_frames=12, labels=(6,))
    data = ReferringClipDataset(split, clip_length=3, image_size=8, augment=AugmentConfig(), seed=5)
    first = [data[0] for _ in range(2)]
    assert all(torch.equal(first[0][k], first[1][k]) for k in ("frames", "global_frames", "masks"))
    seen = set()
    for epoch in range(12):
        data.set_epoch(epoch)
        item = data[0]
        assert "00006" in item["frame_ids"] and item["mask_valid"].sum() == 1
        seen.add(tuple(item["frame_ids"]))
    assert len(seen) == 3  # the anchor took every position of the clip


def test_flip_mirrors_frames_masks_and_sentence(tmp_path, fake_tokenize):
    split = _split(tmp_path)
    plain = ReferringClipDataset(split, clip_length=2, image_size=16, augment=AugmentConfig.off())[1]
    flipped = ReferringClipDataset(
        split, clip_length=2, image_size=16, augment=AugmentConfig(flip_prob=1.0, jitter_prob=0, crop_prob=0)
    )[1]
    assert flipped["frame_ids"] == plain["frame_ids"]
    assert (flipped["frames"].int() - plain["frames"].flip(-1).int()).abs().max() <= 1
    assert torch.equal(flipped["masks"], plain["masks"].flip(-1))
    assert flipped["sentence"] == "the box on the right" and flipped["input_ids"][1:3].tolist() == [0, 1]


def test_jitter_is_one_transform_for_the_clip():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    assert np.array_equal(photometric_jitter(frame[None], 1.0, 1.0, 1.0)[0], frame)
    out = photometric_jitter(np.stack([frame, frame, frame]), 1.2, 0.8, 1.3)
    assert np.array_equal(out[0], out[2]) and not np.array_equal(out[0], frame)
    grey = np.full((1, 4, 4, 3), 100, np.uint8)
    assert np.all(photometric_jitter(grey, 1.0, 1.5, 2.0) == 100)  # contrast and saturation keep flat grey


def test_crop_keeps_the_object():
    rng = np.random.default_rng(0)
    for _ in range(200):
        keep = np.zeros((H, W), bool)
        y, x = rng.integers(0, H - 1), rng.integers(0, W - 1)
        keep[y : y + rng.integers(1, H), x : x + rng.integers(1, W)] = True
        top, left, h, w = sample_crop_box(H, W, keep, (0.2, 0.5), rng)
        assert 0 <= top and top + h <= H and 0 <= left and left + w <= W
        assert keep[top : top + h, left : left + w].sum() == keep.sum()
    assert sample_crop_box(H, W, np.zeros((H, W), bool), (0.5, 0.5), rng)[2:] == (12, 16)


def test_clip_crop_keeps_anchor_object_and_resizes():
    rng = np.random.default_rng(3)
    masks = np.zeros((3, H, W), bool)
    masks[1, 15:20, 25:30] = True
    masks[2, 0:3, 0:3] = True  # another frame's mask may leave the crop
    clip = ClipArrays(
        frames=rng.integers(0, 256, (3, H, W, 3), dtype=np.uint8),
        masks=masks,
        global_frames=rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8),
        sentence="x",
        anchor=1,
    )
    config = AugmentConfig(flip_prob=0, jitter_prob=0, crop_prob=1.0, crop_scale=(0.3, 0.3))
    out = augment_clip(clip, config, rng)
    assert out.frames.shape[1:3] == out.masks.shape[1:] == out.global_frames.shape[1:3] == (7, 10)
    assert out.masks[1].sum() == 25
    frames, model_masks, global_frames = to_model_input(out, 14)
    assert frames.shape == (3, 3, 14, 14) and global_frames.shape == (2, 3, 14, 14)
    assert set(model_masks.unique().tolist()) <= {0.0, 1.0} and model_masks[1].sum() > 0


def test_mask_resize_follows_the_frame_grid():
    mask = np.array([[[True, False], [False, False]]])
    assert resize_masks(mask, 4)[0].astype(int).tolist() == [
        [1, 1, 0, 0],
        [1, 1, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ]
    wide = np.zeros((1, 5, 9), bool)
    wide[0, :, 8] = True  # the last column lands on the last output column, as align_corners=True does
    assert resize_masks(wide, 3)[0, :, 2].all() and not resize_masks(wide, 3)[0, :, :2].any()


def test_collate_and_dataloader(tmp_path, fake_tokenize):
    data = ReferringClipDataset(_split(tmp_path), clip_length=3, image_size=8, num_global_frames=1)
    batch = next(iter(DataLoader(data, batch_size=2, collate_fn=collate_clips)))
    assert batch["frames"].shape == (2, 3, 3, 8, 8) and batch["input_ids"].shape == (2, 22)
    assert batch["mask_valid"].dtype == torch.bool and batch["global_frames"].shape == (2, 1, 3, 8, 8)
    assert batch["video"] == ["v", "v"] and len(batch["frame_ids"]) == 2


def test_errors(tmp_path, fake_tokenize):
    split = _split(tmp_path)
    split.samples[0].labels.append("00099")
    with pytest.raises(DataError, match="labelled frame 00099 is not among"):
        ReferringClipDataset(split)
    split.samples[0].labels = []
    with pytest.raises(DataError, match="no annotated frame"):
        ReferringClipDataset(split)
    with pytest.raises(ValueError, match="unknown augment option"):
        AugmentConfig.from_dict({"flip": 0.5})


def test_ytvos_source(tmp_path, fake_tokenize):
    from test_ytvos import _fake_ytvos

    from locater.data.ytvos import YTVOSSplit

    _fake_ytvos(tmp_path)
    data = ReferringClipDataset(YTVOSSplit.open(tmp_path), clip_length=2, image_size=8, num_global_frames=2)
    assert len(data) == 6 + 6 + 3  # every frame of every expression is annotated
    item = data[14]
    assert item["video"] == "v1" and item["mask_valid"].all() and item["masks"].shape == (2, 1, 8, 8)
