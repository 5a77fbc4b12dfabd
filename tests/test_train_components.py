import math

import numpy as np
import pytest
import torch

import locater
from locater.checkpoint import CheckpointError
from locater.data.synthetic import generate_video
from locater.data.synthetic.scenes import crossing_frame
from locater.data.synthetic.stream import SyntheticClipStream
from locater.engine.checkpoints import CheckpointManager, load_training_checkpoint
from locater.engine.losses import LossWeights, segmentation_loss
from locater.engine.optim import LRSchedule, build_optimizer
from locater.engine.sampler import TrainingSampler
from locater.preprocess import normalise_frames


def _loss(logits, masks, valid, aux_logits=None, **weights):
    return segmentation_loss(logits, aux_logits, masks, valid, LossWeights(**weights))


def test_loss_is_zero_for_confident_correct_logits_and_ignores_unlabelled_frames():
    masks = torch.zeros(1, 3, 1, 8, 8)
    masks[:, :, :, 2:5, 2:6] = 1
    logits = (masks * 2 - 1) * 50.0
    valid = torch.tensor([[True, True, False]])
    total, terms = _loss(logits, masks, valid)
    assert total.item() < 1e-6 and terms["dice"].item() < 1e-6
    garbage = logits.clone()
    garbage[:, 2] = torch.randn(1, 8, 8) * 10  # an unlabelled frame does not count
    assert _loss(garbage, masks, valid)[0].item() == pytest.approx(total.item(), abs=1e-7)
    wrong = -logits
    assert _loss(wrong, masks, valid)[0].item() > 10


def test_auxiliary_terms_are_weighted_per_stage():
    torch.manual_seed(0)
    masks = (torch.rand(2, 2, 1, 8, 8) > 0.5).float()
    logits, aux = torch.randn(2, 2, 1, 8, 8), torch.randn(2, 2, 3, 8, 8)
    valid = torch.ones(2, 2, dtype=torch.bool)
    base, _ = _loss(logits, masks, valid, aux_logits=aux, aux=(0.0, 0.0, 0.0))
    total, terms = _loss(logits, masks, valid, aux_logits=aux, aux=(0.5, 0.0, 2.0))
    assert set(terms) == {"total", "bce", "dice", "aux_0", "aux_1", "aux_2"}
    expected = base + 0.5 * terms["aux_0"] + 2.0 * terms["aux_2"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="aux_weights has 2 entries"):
        LossWeights.from_config({"aux_weights": [1.0, 1.0]}, num_stages=3)


def test_schedule_warmup_cosine_step_and_time_budget():
    cosine = LRSchedule("cosine", max_steps=100, warmup_steps=10, warmup_start=0.0, min_ratio=0.1)
    assert cosine.factor(0) == 0.0 and cosine.factor(5) == pytest.approx(0.5)
    assert cosine.factor(10) == pytest.approx(1.0)
    assert cosine.factor(55) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cosine.factor(100) == pytest.approx(0.1)
    assert cosine.factor(20, progress=1.0) == pytest.approx(0.1)  # a spent time budget ends the decay
    step = LRSchedule("step", max_steps=100, milestones=(0.5, 0.8), gamma=0.1)
    assert [step.factor(s) for s in (49, 50, 80)] == pytest.approx([1.0, 0.1, 0.01])
    with pytest.raises(ValueError, match="kind"):
        LRSchedule("linear", max_steps=10)


def test_parameter_groups_scale_the_vision_encoder_and_skip_decay_on_norms(tiny_model):
    section = {"lr": 1e-3, "vision_lr_scale": 0.1, "weight_decay": 0.05, "betas": [0.9, 0.999], "eps": 1e-8}
    optimizer = build_optimizer(tiny_model, section)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["vision"]["lr"] == pytest.approx(1e-4) and groups["other"]["lr"] == pytest.approx(1e-3)
    ids = {name: id(p) for name, p in tiny_model.named_parameters()}
    no_decay = {id(p) for p in groups["vision_no_decay"]["params"]}
    assert (
        ids["vision_encoder.vit.pos_embed"] in no_decay and ids["vision_encoder.vit.norm.weight"] in no_decay
    )
    assert groups["vision_no_decay"]["weight_decay"] == 0.0 and groups["other"]["weight_decay"] == 0.05
    counted = sum(len(g["params"]) for g in optimizer.param_groups)
    assert counted == len(list(tiny_model.parameters()))


def test_sampler_sees_every_sample_once_per_epoch_over_ranks_and_resumes_mid_stream():
    def take(sampler, count):
        stream = iter(sampler)
        return [next(stream) for _ in range(count)]

    n = 10
    rank0, rank1 = (take(TrainingSampler(n, seed=3, rank=r, world_size=2), 5) for r in (0, 1))
    assert sorted(i for i, _ in rank0 + rank1) == list(range(n))
    assert sorted(s for _, s in rank0 + rank1) == list(range(n))  # sample seeds = stream positions
    single = take(TrainingSampler(n, seed=3), 25)
    assert [i for i, _ in single[:10]] != [i for i, _ in single[10:20]]  # a new permutation each epoch
    assert take(TrainingSampler(n, seed=3, start=7), 18) == single[7:25]


def test_checkpoint_manager_keeps_the_last_k_links_last_and_best(tmp_path):
    manager = CheckpointManager(tmp_path / "ck", keep_last=2)
    payload = {"model": {"w": torch.ones(2)}, "optimizer": {}, "sampler": {}, "rng": [], "config": {}}
    for step in (1, 2, 3):
        manager.save({**payload, "step": step}, step, is_best=step == 2)
    assert [s for s, _ in manager.step_files()] == [2, 3]
    assert load_training_checkpoint(manager.last_path)["step"] == 3
    assert load_training_checkpoint(manager.best_path)["step"] == 2
    assert not [p for p in (tmp_path / "ck").iterdir() if ".tmp" in p.name]
    latest, path = manager.load_latest()
    assert latest["step"] == 3 and path.name == "step_00000003.pt"
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        torch.save({"model": {}}, tmp_path / "plain.pt")
        load_training_checkpoint(tmp_path / "plain.pt")


def test_truncated_and_bit_flipped_checkpoints_are_detected(tmp_path, caplog):
    manager = CheckpointManager(tmp_path, keep_last=0)
    for step in (1, 2, 3):
        manager.save(
            {"model": {}, "optimizer": {}, "sampler": {}, "rng": [], "config": {}, "step": step}, step
        )
    newest = manager.step_path(3)
    newest.write_bytes(newest.read_bytes()[:-40])  # truncated
    middle = manager.step_path(2)
    data = bytearray(middle.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, different checksum
    middle.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        payload, path = manager.load_latest()
    assert payload["step"] == 1 and path == manager.step_path(1)
    assert "step_00000003.pt" in caplog.text and "truncated" in caplog.text and "corrupt" in caplog.text
    manager.step_path(1).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no valid checkpoint"):
        manager.load_latest()


def test_synthetic_stream_is_fresh_per_key_and_deterministic():
    stream = SyntheticClipStream(10, clip_length=3, image_size=32, num_global_frames=2, render_size=64)
    first, again, other = stream[(0, 5)], stream[(0, 5)], stream[(0, 6)]
    assert first["frames"].shape == (3, 3, 32, 32) and first["global_frames"].shape == (2, 3, 32, 32)
    assert first["masks"].shape == (3, 1, 32, 32) and set(first["masks"].unique().tolist()) <= {0.0, 1.0}
    assert first["mask_valid"].all() and first["masks"].sum() > 0
    assert torch.equal(first["frames"], again["frames"]) and first["sentence"] == again["sentence"]
    assert not torch.equal(first["frames"], other["frames"])
    assert first["input_ids"].shape == (22,) and first["input_ids"][0] == 101
    with pytest.raises(ValueError, match="synthetic_mix"):
        SyntheticClipStream(10, 3, 32, 2, mix=[1.0, 1.0])
    with pytest.raises(ValueError, match="synthetic_frames"):
        SyntheticClipStream(10, 8, 32, 2, num_frames=[4, 6])


def test_synthetic_stream_start_share_begins_clips_at_the_video_start():
    def clip_starts(share: float) -> list[int]:
        stream = SyntheticClipStream(10, 3, 64, 1, render_size=64, num_frames=(12, 12), start_share=share)
        starts = []
        for key in range(8):
            item = stream[(0, key)]
            kind = item["video"].split("_")[1]
            video = generate_video(kind, [0, key, 12], size=64, num_frames=12, all_labelled=True)
            frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2)  # uint8, no resize at 64 px
            starts.append(next(s for s in range(10) if torch.equal(frames[s : s + 3], item["frames"])))
        return starts

    assert clip_starts(1.0) == [0] * 8
    assert sum(start > 0 for start in clip_starts(0.0)) >= 4  # anywhere in 0..9
    with pytest.raises(ValueError, match="synthetic_start_share"):
        SyntheticClipStream(10, 3, 32, 2, start_share=1.5)


def test_synthetic_stream_crossing_share_places_temp_clips_across_the_crossing():
    def clip_offsets(share: float) -> list[int]:
        """Crossing frame minus clip start, for 12 TEMP clips of 3 frames."""
        stream = SyntheticClipStream(
            10, 3, 64, 1, mix=(0, 0, 0, 1), num_frames=(14, 14), crossing_share=share, start_share=0.5
        )
        offsets = []
        for key in range(12):
            item = stream[(0, key)]
            video = generate_video("TEMP", [0, key, 12], size=64, num_frames=14, all_labelled=True)
            frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2)  # uint8, no resize at 64 px
            start = next(s for s in range(12) if torch.equal(frames[s : s + 3], item["frames"]))
            offsets.append(crossing_frame(video.objects, video.expressions[0].target) - start)
        return offsets

    assert all(offset in (1, 2) for offset in clip_offsets(1.0))
    assert sum(offset not in (1, 2) for offset in clip_offsets(0.0)) >= 6  # before, or already crossed
    with pytest.raises(ValueError, match="synthetic_crossing_share"):
        SyntheticClipStream(10, 3, 32, 2, crossing_share=-0.1)
    with pytest.raises(ValueError, match="at least 2 frames"):
        SyntheticClipStream(10, 1, 32, 1, crossing_share=0.5)


def test_synthetic_stream_frame_stride_reads_the_video_at_a_lower_frame_rate():
    stream = SyntheticClipStream(
        10, 3, 64, 1, mix=(0, 0, 0, 1), num_frames=(14, 14), frame_stride=[2, 3], crossing_share=1.0
    )
    strides = set()
    for key in range(10):
        item = stream[(0, key)]
        video = generate_video("TEMP", [0, key, 12], size=64, num_frames=14, all_labelled=True)
        frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2)  # uint8, no resize at 64 px
        (start, stride), *others = [
            (s, k)
            for k in (1, 2, 3)
            for s in range(14 - 2 * k)
            if torch.equal(frames[s : s + 2 * k + 1 : k], item["frames"])
        ]
        assert not others and stride in (2, 3)
        strides.add(stride)
        # the masks follow the same frames, and the crossing falls between the clip's first and last frame
        target = int(item["expression"])
        expected = torch.from_numpy(video.masks[target, start : start + 2 * stride + 1 : stride])
        assert torch.equal(item["masks"][:, 0].bool(), expected)
        assert start < crossing_frame(video.objects, target) <= start + 2 * stride
    assert strides == {2, 3}
    with pytest.raises(ValueError, match="frames a clip covers"):
        SyntheticClipStream(10, 3, 64, 1, num_frames=(12, 24), frame_stride=[6])
    with pytest.raises(ValueError, match="synthetic_frame_stride"):
        SyntheticClipStream(10, 3, 64, 1, frame_stride=[0, 1])


@pytest.mark.slow
def test_a_few_steps_overfit_a_fixed_tiny_batch():
    torch.manual_seed(0)
    cfg = locater.load_config("configs/model/tiny.yaml")
    model = locater.build_model(cfg).train()
    stream = SyntheticClipStream(10, clip_length=2, image_size=64, num_global_frames=3, render_size=64)
    items = [stream[(i, i)] for i in range(2)]
    batch = {
        k: torch.stack([item[k] for item in items]) for k in ("frames", "global_frames", "input_ids", "masks")
    }
    valid = torch.ones(2, 2, dtype=torch.bool)
    weights = LossWeights.from_config(cfg.train.loss, len(model.fusion))
    section = dict(cfg.train.optimizer, lr=3e-3, vision_lr_scale=1.0)
    optimizer = build_optimizer(model, section)
    losses = []
    for _ in range(60):
        logits, aux = model(
            normalise_frames(batch["global_frames"]),
            batch["input_ids"],
            normalise_frames(batch["frames"]),
            batch["masks"].float(),
            valid,
        )
        loss, _ = segmentation_loss(logits, aux, batch["masks"].float(), valid, weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.65 * np.mean(losses[:3]), losses
