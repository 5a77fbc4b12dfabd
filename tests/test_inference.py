"""VideoSegmenter: same numbers as start/step by hand, one pass for all sentences, streaming, checkpoints."""

import logging
import threading

import numpy as np
import pytest
import torch

import locater
from locater.checkpoint import CheckpointError
from locater.config import ConfigError, load_config
from locater.inference import VideoSegmenter, global_frame_indices, load_model
from locater.preprocess import logits_to_probabilities, preprocess_frames
from locater.video_io import VideoError

HEADS = ["model.vision.num_heads=4", "model.fusion.num_heads=4", "model.memory_heads=4"]


def _frames(count, height=40, width=56, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def _by_hand(model, frames, sentences, global_indices):
    """Probabilities ``T x S x H x W`` from model.start / model.step, the reference for the segmenter."""
    size = model.image_size
    with torch.inference_mode():
        global_frames = preprocess_frames(np.stack([frames[i] for i in global_indices]), size)[None]
        state = model.start(global_frames, locater.tokenize(sentences))
        out = []
        for frame in frames:
            logits, state = model.step(preprocess_frames(frame, size)[None], state)
            out.append(logits_to_probabilities(logits, frame.shape[:2])[:, 0])
    return torch.stack(out)


def test_global_frame_indices_follow_the_official_rule(caplog):
    assert global_frame_indices(10, 3) == [1, 4, 7]  # 1-indexed 2, 5, 8
    assert global_frame_indices(1000, 3) == [166, 499, 832]
    assert global_frame_indices(9, 0) == []
    with caplog.at_level(logging.WARNING):
        assert global_frame_indices(2, 3) == [0, 0, 1]
    assert "fewer than" in caplog.text


def test_segment_matches_start_and_step_by_hand(tiny_model):
    frames = _frames(7)
    results = list(VideoSegmenter(tiny_model, device="cpu").segment(frames, ["a man", "the red dog"]))
    expected = _by_hand(tiny_model, frames, ["a man", "the red dog"], global_frame_indices(7, 3))
    assert [r.index for r in results] == list(range(7))
    for result, frame, probabilities in zip(results, frames, expected):
        assert result.frame is frame or np.array_equal(result.frame, frame)
        assert result.masks.shape == (2, 40, 56) and result.masks.dtype == torch.bool
        assert torch.allclose(result.probabilities, probabilities, atol=1e-5)
        assert torch.equal(result.masks, result.probabilities > 0.5)


def test_sentences_share_one_vision_pass_and_equal_separate_runs(tiny_model):
    frames = _frames(3, seed=1)
    calls = []
    hook = tiny_model.vision_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    segmenter = VideoSegmenter(tiny_model, device="cpu")
    together = list(segmenter.segment(frames, ["a man", "the red dog"]))
    hook.remove()
    assert calls == [3] + [1] * 3  # the N1 global frames once, then one frame at a time for all sentences
    for k, sentence in enumerate(["a man", "the red dog"]):
        alone = list(segmenter.segment(frames, sentence))
        for a, b in zip(alone, together):
            assert torch.allclose(a.probabilities[0], b.probabilities[k], atol=1e-5)


def test_streaming_state_stays_constant_and_frames_are_read_lazily(tiny_model):
    shapes = []
    step = tiny_model.step

    def recording_step(frame, state, *args, **kwargs):
        logits, new_state = step(frame, state, *args, **kwargs)
        shapes.append((tuple(new_state.local_memory.shape), tuple(new_state.global_memory.shape)))
        return logits, new_state

    tiny_model.step = recording_step
    produced = []

    def source():
        for i, frame in enumerate(_frames(40, 24, 32, seed=2)):
            produced.append(i)
            yield frame

    segmenter = VideoSegmenter(tiny_model, device="cpu", prefetch=2)
    threads_before = threading.active_count()
    consumed = 0
    for result in segmenter.segment(source(), "a man", num_frames=40):
        consumed += 1
        assert len(produced) <= max(result.index + 1, 34) + 4  # spooled up to the last global frame (34th)
        if consumed == 35:
            break
    assert len(produced) < 40  # stopping early stops reading
    assert shapes[2] == shapes[34] == shapes[-1]
    assert (
        shapes[0][0][1] < shapes[2][0][1]
    )  # the local memory fills up over the first two frames, then stays
    for _ in range(50):
        if threading.active_count() <= threads_before:
            break
        threading.Event().wait(0.05)
    assert threading.active_count() <= threads_before  # the reader thread ended with the generator


def test_iterator_sources(tiny_model, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    frames = _frames(9, seed=3)
    segmenter = VideoSegmenter(tiny_model, device="cpu")
    from_list = list(segmenter.segment(frames, "a man"))
    from_iterator = list(segmenter.segment(iter(frames), "a man", num_frames=9))
    for a, b in zip(from_list, from_iterator):
        assert torch.equal(a.probabilities, b.probabilities)
    assert list(tmp_path.iterdir()) == []  # the spool folder is removed
    with caplog.at_level(logging.WARNING):
        unknown_length = list(segmenter.segment(iter(frames), "a man"))
    assert "first 3 frames" in caplog.text
    expected = _by_hand(tiny_model, frames, ["a man"], [0, 1, 2])
    assert len(unknown_length) == 9
    assert all(torch.allclose(r.probabilities, e, atol=1e-5) for r, e in zip(unknown_length, expected))
    with pytest.raises(ValueError, match="ended after 9 frames"):
        list(segmenter.segment(iter(frames), "a man", num_frames=20))


def test_max_frames_treats_the_video_as_its_first_frames(tiny_model):
    frames = _frames(8, seed=4)
    segmenter = VideoSegmenter(tiny_model, device="cpu")
    cut = list(segmenter.segment(frames, "a man", max_frames=4))
    short = list(segmenter.segment(frames[:4], "a man"))
    assert len(cut) == 4
    assert all(torch.equal(a.probabilities, b.probabilities) for a, b in zip(cut, short))


def test_bad_input_gets_a_clear_error(tiny_model, tmp_path):
    segmenter = VideoSegmenter(tiny_model, device="cpu")
    frames = _frames(4)
    with pytest.raises(ValueError, match="at least one sentence"):
        list(segmenter.segment(frames, []))
    with pytest.raises(ValueError, match="empty"):
        list(segmenter.segment(frames, ["a man", "  "]))
    with pytest.raises(ValueError, match="frame 2: expected an H x W x 3 uint8"):
        list(segmenter.segment(frames[:2] + [frames[2].astype(np.float32)] + frames[3:], "a man"))
    with pytest.raises(VideoError, match="not found"):
        list(segmenter.segment(tmp_path / "missing.mp4", "a man"))
    with pytest.raises(ValueError, match="num_frames=5 but the source holds 4"):
        list(segmenter.segment(frames, "a man", num_frames=5))


def test_load_model_reads_ours_and_official_checkpoints(tmp_path):
    cfg = load_config("configs/model/tiny.yaml")
    torch.manual_seed(0)
    model = locater.build_model(cfg).eval()
    ours = tmp_path / "ours.pt"
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "step": 3}, ours)
    official = locater.export_official(model, tmp_path / "official.pth")

    loaded = load_model(ours)
    assert loaded.model_config["embed_dim"] == 64 and not loaded.training
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    from_official = load_model(official, overrides=HEADS)
    frames = _frames(4, seed=5)
    a = list(VideoSegmenter(loaded, "cpu").segment(frames, "a man"))
    b = list(VideoSegmenter(from_official, "cpu").segment(frames, "a man"))
    assert all(torch.allclose(x.probabilities, y.probabilities, atol=1e-5) for x, y in zip(a, b))

    assert load_model(ours, overrides=["model.global_memory.num_frames=2"]).num_global_frames == 2
    with pytest.raises(ConfigError, match="only model"):
        load_model(ours, overrides=["seed=1"])
    with pytest.raises(CheckpointError, match="ours.pt"):
        load_model(ours, overrides=["model.fusion.num_stages=3"])
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pt"):
        load_model(broken)
