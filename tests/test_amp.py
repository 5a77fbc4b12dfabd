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


@pytest.mark.parametrize("has_units", [True, False])
def test_auto_follows_native_bf16_support(monkeypatch, has_units):
    from locater.engine import amp

    monkeypatch.setattr(amp, "_cpu_has_bf16_units", lambda: has_units)
    assert amp.native_bf16("cpu") is has_units
    assert amp.resolve_amp("auto", "cpu") is has_units
    assert amp.resolve_amp("on", "cpu") is True and amp.resolve_amp(False, "cpu") is False
    with autocast_for("cpu", "auto"):
        assert torch.is_autocast_enabled("cpu") is has_units
    with pytest.raises(ValueError, match="amp must be true, false or auto"):
        amp.resolve_amp("sometimes", "cpu")
    with pytest.raises(ValueError, match="train.amp must be one of none, bf16, fp16, got 'auto'"):
        check_amp("auto", "cpu", "train.amp")  # training names its precision


def test_cpu_probe_reads_the_flags_when_torch_has_no_probe(monkeypatch):
    from locater.engine import amp

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, probe, raising=False)
    amp._cpu_has_bf16_units.cache_clear()
    monkeypatch.setattr(amp, "_cpu_flags", lambda: frozenset({"sse4_2", "avx512_bf16"}))
    assert amp._cpu_has_bf16_units()
    amp._cpu_has_bf16_units.cache_clear()
    monkeypatch.setattr(amp, "_cpu_flags", lambda: frozenset({"sse4_2", "avx2"}))
    assert not amp._cpu_has_bf16_units()
    amp._cpu_has_bf16_units.cache_clear()  # the real machine's answer again for later tests


def test_segmenter_and_eval_config_take_auto(monkeypatch, tiny_model):
    import locater
    from locater.config import ConfigError
    from locater.engine import amp
    from locater.inference import VideoSegmenter

    for has_units in (True, False):
        monkeypatch.setattr(amp, "_cpu_has_bf16_units", lambda has_units=has_units: has_units)
        assert VideoSegmenter(tiny_model, device="cpu", amp="auto").amp is has_units
    assert VideoSegmenter(tiny_model, device="cpu", amp="off").amp is False
    assert locater.load_config(None, ["eval.amp=auto"]).eval.amp == "auto"
    with pytest.raises(ConfigError, match="eval.amp must be true, false or auto, got 'maybe'"):
        locater.load_config(None, ["eval.amp=maybe"])
    with pytest.raises(ConfigError, match="eval.truncate must be true or false, got 'auto'"):
        locater.load_config(None, ["eval.truncate=auto"])


def test_demo_amp_flag_takes_off_on_auto_and_a_bare_flag():
    from locater.cli.demo import parse_args

    base = ["--checkpoint", "c.pt", "--video", "v.mp4", "--text", "a dog", "--out", "o"]
    assert parse_args(base).amp == "auto"  # bf16 where the device has bf16 units
    assert parse_args([*base, "--amp"]).amp == "on"  # the old switch keeps its meaning
    assert parse_args([*base, "--amp", "auto", "model.global_memory.num_frames=5"]).amp == "auto"
    with pytest.raises(SystemExit):
        parse_args([*base, "--amp", "sometimes"])
