import importlib.util
import json
from pathlib import Path

import pytest
import torch
from helpers_data import make_split
from train_helpers import tiny_train_config

from locater.checkpoint import CheckpointError
from locater.data.training import collate_clips
from locater.engine.checkpoints import file_sha256, load_training_checkpoint
from locater.engine.trainer import Trainer, train


def _load_script(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.mark.slow
def test_stop_at_15_and_resume_to_30_is_bit_identical_to_30_steps(tmp_path):
    interrupted = tiny_train_config(tmp_path / "a", "train.max_steps=30", "train.stop_at_step=15")
    first = train(interrupted)
    assert (first.step, first.stopped_by) == (15, "stop_at_step")
    resumed = train(tiny_train_config(tmp_path / "a", "train.max_steps=30", "resume=auto"))
    straight = train(tiny_train_config(tmp_path / "b", "train.max_steps=30"))
    assert resumed.step == straight.step == 30
    a, b = _weights(tmp_path / "a/checkpoints/last.pt"), _weights(tmp_path / "b/checkpoints/last.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    payload = load_training_checkpoint(tmp_path / "a/checkpoints/last.pt")
    assert {"optimizer", "scaler", "scheduler", "sampler", "rng", "config", "epoch"} <= set(payload)
    assert payload["sampler"]["position"] == 30 * 2 and payload["config"]["train"]["max_steps"] == 30
    assert set(payload["rng"][0]) >= {"python", "numpy", "torch", "teacher_forcing"}
    assert (tmp_path / "a/config.yaml").is_file()
    records = [json.loads(line) for line in (tmp_path / "b/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
    assert {
        "loss/total",
        "loss/bce",
        "loss/dice",
        "loss/aux_0",
        "lr/vision",
        "grad_norm",
        "samples_per_s",
    } <= set(records[0])


@pytest.mark.slow
def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path, capsys):
    tool = _load_script("tools/train.py")
    base = ["--config", "configs/model/tiny.yaml"]
    cfg_args = [f"{o}" for o in tiny_train_config.__globals__["TINY_TRAIN"]] + [f"output_dir={tmp_path}"]
    assert tool.main([*base, *cfg_args, "train.max_steps=3"]) == 0
    good = tmp_path / "checkpoints/step_00000003.pt"
    digest = file_sha256(good)
    code = tool.main([*base, *cfg_args, "train.max_steps=6", "resume=auto", "train.loss.bce=.nan"])
    assert code == 1
    message = capsys.readouterr().err
    assert "non-finite loss at step 4" in message and "step_00000003.pt" in message
    assert (
        file_sha256(good) == digest
        and load_training_checkpoint(tmp_path / "checkpoints/last.pt")["step"] == 3
    )
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.pt")) == ["step_00000003.pt"]


@pytest.mark.slow
def test_resume_restores_the_global_random_generators(tmp_path):
    """Stochastic depth draws from the global torch generator, so a resume that skipped restoring the
    generators would drop other paths than the uninterrupted run and end with other weights."""
    drop = ["model.vision.drop_path=0.2", "model.fusion.drop_path=0.2", "train.max_steps=4"]
    first = train(tiny_train_config(tmp_path / "a", *drop, "train.stop_at_step=2"))
    assert (first.step, first.stopped_by) == (2, "stop_at_step")
    resumed = train(tiny_train_config(tmp_path / "a", *drop, "resume=auto"))
    straight = train(tiny_train_config(tmp_path / "b", *drop))
    assert resumed.step == straight.step == 4
    a, b = _weights(tmp_path / "a/checkpoints/last.pt"), _weights(tmp_path / "b/checkpoints/last.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_resume_auto_falls_back_from_a_truncated_checkpoint(tmp_path, caplog):
    train(tiny_train_config(tmp_path, "train.max_steps=4", "train.checkpoint_every=2"))
    newest = tmp_path / "checkpoints/step_00000004.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    trainer = Trainer(tiny_train_config(tmp_path, "train.max_steps=4", "resume=auto"))
    with caplog.at_level("WARNING"):
        trainer._resume()
    assert trainer.step == 2 and trainer.position == 4
    assert "step_00000004.pt" in caplog.text and "truncated" in caplog.text
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        Trainer(tiny_train_config(tmp_path, f"resume={tmp_path / 'absent.pt'}"))._resume()


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("model.local_memory.size=0", lambda m: m.local_memory is None),
        ("model.global_memory.size=0", lambda m: m.global_memory is None),
        ("model.local_memory.mask_history=false", lambda m: m.local_memory.mask_history is False),
        ("model.fusion.num_stages=1", lambda m: len(m.fusion) == 1 and len(m.aux_heads) == 1),
    ],
)
def test_config_overrides_reach_the_model(tmp_path, override, check):
    trainer = Trainer(tiny_train_config(tmp_path, override, "train.max_steps=1", "train.clip_length=3"))
    assert check(trainer.model)
    prefix = override.split("=")[0].removeprefix("model.").split(".")[0]
    names = [name for name, _ in trainer.model.named_parameters()]
    if override.endswith("size=0"):
        assert not [n for n in names if n.startswith(prefix + ".")]
    assert trainer.dataset[(0, 0)]["frames"].shape[0] == 3
    assert trainer.fit().step == 1


@pytest.mark.slow
def test_validation_selects_the_best_checkpoint_and_logs(tmp_path):
    split = make_split(tmp_path / "data", "VAL", num_videos=2, num_frames=5, size=32)
    cfg = tiny_train_config(
        tmp_path / "run",
        "train.max_steps=4",
        "train.log_every=2",
        "train.tensorboard=true",
        f"validation.splits=[{{name: V, split_dir: {split}}}]",
        "validation.every=2",
        "validation.metric=V/mean_iou",
        "validation.overlays=2",
        "eval.coco_ap=false",
    )
    result = train(cfg)
    assert set(result.validation) == {"V"} and 0.0 <= result.validation["V"]["mean_iou"] <= 1.0
    assert result.best["metric"] == "V/mean_iou" and result.best["step"] in (2, 4)
    best = load_training_checkpoint(tmp_path / "run/checkpoints/best.pt")
    assert best["step"] == result.best["step"] and best["best"]["value"] == pytest.approx(
        result.best["value"]
    )
    records = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    validations = [r for r in records if r["kind"] == "validation"]
    assert [r["step"] for r in validations] == [2, 4] and "val/V/mean_iou" in validations[0]
    events = list((tmp_path / "run/tensorboard").glob("events.out.tfevents.*"))
    assert events and sum(e.stat().st_size for e in events) > 2000  # scalars, config text, overlay images


def test_unknown_validation_split_folder_is_a_clear_error(tmp_path):
    cfg = tiny_train_config(
        tmp_path, "train.max_steps=1", f"validation.splits=[{{split_dir: {tmp_path / 'nowhere'}}}]"
    )
    with pytest.raises(ValueError, match="nowhere"):
        train(cfg)


@pytest.mark.slow
def test_two_process_ddp_run_under_torchrun_ends_with_identical_weights(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from train_helpers import TINY_TRAIN

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}"]
    command += ["tools/train.py", "--config", "configs/model/tiny.yaml", *TINY_TRAIN]
    command += ["train.max_steps=3", f"output_dir={tmp_path}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["step"] == 3 and len(summary["weight_fingerprints"]) == 2
    assert len(set(summary["weight_fingerprints"])) == 1  # both ranks hold the same weights
    payload = load_training_checkpoint(tmp_path / "checkpoints/last.pt")
    assert payload["world_size"] == 2 and len(payload["rng"]) == 2
    assert (
        payload["sampler"]["position"] == 3 * 2 * 2
    )  # steps x batch x processes: every rank its own samples
    # a time budget drives the learning-rate schedule: the ranks must follow one clock, not each its own
    timed = [
        *command[:-2],
        "train.max_steps=100000",
        "train.max_minutes=0.05",
        f"output_dir={tmp_path / 'timed'}",
    ]
    result = subprocess.run(timed, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "timed/summary.json").read_text())
    assert summary["stopped_by"] == "max_minutes" and summary["step"] > 3
    assert len(set(summary["weight_fingerprints"])) == 1


@pytest.mark.slow
def test_trains_on_a_layout_split_and_on_ref_youtube_vos(tmp_path):
    from test_ytvos import _fake_ytvos

    split = make_split(tmp_path / "data", "TRAIN", num_videos=2, num_frames=6, size=32)
    layout = train(
        tiny_train_config(
            tmp_path / "a", "train.data.source=layout", f"train.data.split_dir={split}", "train.max_steps=2"
        )
    )
    _fake_ytvos(tmp_path / "ytvos")
    ytvos = train(
        tiny_train_config(
            tmp_path / "b",
            "train.data.source=ytvos",
            f"train.data.ytvos_root={tmp_path / 'ytvos'}",
            "train.max_steps=2",
        )
    )
    for result in (layout, ytvos):
        assert result.step == 2 and all(v == v for v in result.losses.values())  # finite, not NaN
    assert (
        load_training_checkpoint(tmp_path / "a/checkpoints/last.pt")["config"]["train"]["data"]["source"]
        == "layout"
    )


def test_context_frames_write_the_true_mask_and_are_not_supervised(tmp_path):
    cfg = tiny_train_config(
        tmp_path,
        "train.clip_length=3",
        "train.teacher_forcing=0.0",
        "train.data.synthetic_start_share=0.0",
        "train.data.synthetic_context_frame=true",
    )
    trainer = Trainer(cfg)
    items = [trainer.dataset[(i, i)] for i in range(6)]
    starts_late = [bool(item["context"][0]) for item in items]
    assert any(starts_late) and all(not item["context"][1:].any() for item in items)
    batch = collate_clips(items)
    seen = {}

    def network(global_frames, input_ids, frames, memory_masks, memory_mask_select):
        seen["select"] = memory_mask_select.clone()
        logits = torch.zeros(*frames.shape[:2], 1, *frames.shape[-2:], requires_grad=True)
        return logits, None

    trainer._micro_step(network, batch)
    # teacher forcing 0: only the context frames write the true mask
    assert torch.equal(seen["select"], batch["context"])
    # the loss ignores the context frames: changing their masks changes nothing
    loss, _ = trainer._micro_step(network, batch)
    batch["masks"][batch["context"]] = ~batch["masks"][batch["context"]]
    again, _ = trainer._micro_step(network, batch)
    assert torch.equal(loss, again)
    batch["context"][:] = False
    without, _ = trainer._micro_step(network, batch)
    assert not torch.equal(loss, without)
