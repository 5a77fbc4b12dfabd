"""The one autocast helper: modes, the boolean switch, and the errors."""

import pytest
import torch

from locater.engine.amp import autocast_for, check_amp


def test_none_and_false_leave_autocast_off():
    for amp in ("none", False):
        with autocast_for("cpu", amp):
            assert not torch.is_autocast_enabled("cpu")
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_bf16_and_true_run_matmuls_in_bfloat16_on_the_cpu():
    for amp in ("bf16", True):
        with autocast_for("cpu", amp):
            assert torch.is_autocast_enabled("cpu")
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
        assert not torch.is_autocast_enabled("cpu")


def test_bad_modes_are_refused():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        autocast_for("cpu", "fp16")
    with pytest.raises(ValueError, match="amp must be one of none, bf16, fp16, got 'fp32'"):
        autocast_for("cpu", "fp32")
    check_amp("fp16", "cuda")  # allowed on CUDA (not entered here: no GPU needed)
    check_amp("fp16", None)  # the mode alone, before the device is known
    with pytest.raises(ValueError, match="train.amp must be one of none, bf16, fp16, got 'fp32'"):
        check_amp("fp32", None, "train.amp")
    with pytest.raises(ValueError, match="train.amp=fp16 needs a CUDA device"):
        check_amp("fp16", "cpu", "train.amp")


def test_segmenter_amp_runs_the_model_in_bfloat16_close_to_float32(tiny_model):
    import numpy as np

    from locater.inference import VideoSegmenter

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    dtypes = []
    hook = tiny_model.vision_encoder.register_forward_hook(lambda m, i, o: dtypes.append(o[-1].dtype))
    exact = list(VideoSegmenter(tiny_model, device="cpu").segment(frames, "a man"))
    assert set(dtypes) == {torch.float32}
    dtypes.clear()
    mixed = list(VideoSegmenter(tiny_model, device="cpu", amp=True).segment(frames, "a man"))
    hook.remove()
    assert set(dtypes) == {torch.bfloat16}
    for a, b in zip(exact, mixed):
        assert b.probabilities.dtype == torch.float32
        assert (a.probabilities - b.probabilities).abs().max() < 0.05
