"""Failures a user meets outside the happy path: a full disk, Ctrl-C in training, a resumed run's log, an error in
a DataLoader worker, sentences the model reads only in part, an overlay video the encoder cut short."""

import errno
import json
import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from train_helpers import tiny_train_config

import locater
import locater.tokenizer
from locater.data.frames import DataError
from locater.engine import trainer as trainer_module
from locater.engine.checkpoints import CheckpointManager, load_training_checkpoint
from locater.engine.sampler import next_batch, unwrap_worker_error
from locater.engine.train_logging import TrainLogger
from locater.engine.trainer import Trainer
from locater.errors import EXIT_INTERRUPTED, EXIT_OUTPUT, InterruptedRun, OutputError
from locater.files import atomic_output, save_torch_atomic
from locater.video_io import OverlayVideoWriter

pytestmark = pytest.mark.hardening


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def _disk_full_torch_save(obj, f, *args, **kwargs):
    """What torch.save does on a full disk: part of the file written, then the system's ENOSPC wrapped."""
    Path(f).write_bytes(b"PK\x03\x04 partial zip")
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as cause:
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") from cause


# ------------------------------------------------------------------------------------------------ failed writes
def test_a_failed_torch_save_names_the_file_and_enospc_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_torch_atomic(torch.arange(4), tmp_path / "weights.pt")
    monkeypatch.setattr(torch, "save", _disk_full_torch_save)
    with pytest.raises(OutputError) as caught:
        save_torch_atomic(torch.zeros(8), path)
    assert caught.value.exit_code == EXIT_OUTPUT
    assert str(caught.value) == f"cannot write {path}: no space left on device (ENOSPC)"
    assert _leftovers(tmp_path) == []
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True), torch.arange(4))


@pytest.mark.parametrize("where", ["body", "fsync", "replace"])
def test_an_os_error_of_an_atomic_write_becomes_an_output_error(tmp_path, monkeypatch, where):
    path = tmp_path / "out.txt"
    path.write_text("previous")
    denied = OSError(errno.EACCES, "Permission denied")

    def refuse(*args, **kwargs):
        raise denied

    if where == "fsync":
        monkeypatch.setattr(os, "fsync", refuse)
    elif where == "replace":
        monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OutputError, match=f"cannot write {path}: permission denied \\(EACCES\\)") as caught:
        with atomic_output(path) as tmp:
            tmp.write_text("new")
            if where == "body":
                raise denied
    assert caught.value.__cause__ is denied
    monkeypatch.undo()
    assert path.read_text() == "previous" and _leftovers(tmp_path) == []


def test_other_errors_of_the_body_pass_through_unchanged(tmp_path):
    with pytest.raises(ValueError, match="^not a write failure$"):
        with atomic_output(tmp_path / "out.txt") as tmp:
            tmp.write_text("half")
            raise ValueError("not a write failure")
    assert list(tmp_path.iterdir()) == []


def _payload(step: int) -> dict:
    return {
        "model": {"w": torch.full((3,), float(step))},
        "optimizer": {},
        "step": step,
        "sampler": {"position": step},
        "rng": [],
        "config": {},
    }


def test_a_failed_checkpoint_save_keeps_last_pt_valid(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path / "checkpoints")
    manager.save(_payload(1), 1)
    monkeypatch.setattr(torch, "save", _disk_full_torch_save)
    with pytest.raises(OutputError, match="step_00000002.pt: no space left on device \\(ENOSPC\\)"):
        manager.save(_payload(2), 2)
    monkeypatch.undo()
    assert load_training_checkpoint(manager.last_path)["step"] == 1
    assert [step for step, _ in manager.step_files()] == [1]
    assert _leftovers(manager.directory) == []


def test_a_failed_copy_of_last_pt_keeps_the_previous_pair(tmp_path, monkeypatch):
    """Where hard links are refused, last.pt is a copy; a copy that fails must not leave last.pt.sha256 of the new
    checkpoint beside the old last.pt (that pair would read as corrupt)."""
    manager = CheckpointManager(tmp_path / "checkpoints")
    manager.save(_payload(1), 1)
    copy = shutil.copyfile

    def no_links(source, target):
        raise OSError(errno.EPERM, "Operation not permitted")

    def full_disk_for_checkpoints(source, target):
        if not str(target).endswith(f".sha256.tmp{os.getpid()}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return copy(source, target)

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(shutil, "copyfile", full_disk_for_checkpoints)
    with pytest.raises(OutputError, match="last.pt: no space left on device \\(ENOSPC\\)"):
        manager.save(_payload(2), 2)
    monkeypatch.undo()
    assert load_training_checkpoint(manager.last_path)["step"] == 1
    assert load_training_checkpoint(manager.step_path(2))["step"] == 2
    assert _leftovers(manager.directory) == []


def test_a_real_full_disk_names_the_file_and_enospc(tiny_disk):
    path = save_torch_atomic(torch.arange(10), tiny_disk / "weights.pt")
    with pytest.raises(OutputError) as caught:
        save_torch_atomic(torch.zeros(400_000), path)  # 1.6 MB on a 1 MiB disk
    assert str(caught.value).startswith(f"cannot write {path}: no space left on device (ENOSPC")
    assert _leftovers(tiny_disk) == []
    assert shutil.disk_usage(tiny_disk).free > 1_000_000  # the removed temporary file holds no space
    assert torch.equal(torch.load(path, weights_only=True), torch.arange(10))


# ------------------------------------------------------------------------------------------ training: Ctrl-C
def _interrupt_at(monkeypatch, step: int) -> None:
    """Ctrl-C during the ``step``-th optimizer step (``train.accumulate=1``: one micro-step each)."""
    real = Trainer._micro_step
    calls = {"n": 0}

    def micro_step(self, network, batch):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return real(self, network, batch)

    monkeypatch.setattr(Trainer, "_micro_step", micro_step)


@pytest.mark.slow
def test_ctrl_c_in_training_names_the_last_checkpoint_and_leaves_it_whole(tmp_path, monkeypatch):
    cfg = tiny_train_config(tmp_path, "train.max_steps=4", "train.checkpoint_every=2")
    _interrupt_at(monkeypatch, 3)
    with pytest.raises(InterruptedRun) as caught:
        Trainer(cfg).fit()
    folder = tmp_path / "checkpoints"
    assert str(caught.value) == (
        f"interrupted at step 3; the last checkpoint is {folder / 'step_00000002.pt'} (step 2): "
        "resume with the same command and resume=auto"
    )
    assert caught.value.exit_code == EXIT_INTERRUPTED
    assert sorted(p.name for p in folder.glob("*.pt")) == ["last.pt", "step_00000002.pt"]
    assert load_training_checkpoint(folder / "step_00000002.pt")["step"] == 2
    assert load_training_checkpoint(folder / "last.pt")["step"] == 2
    assert _leftovers(folder) == []


def test_ctrl_c_before_any_checkpoint_says_so(tmp_path, monkeypatch):
    _interrupt_at(monkeypatch, 1)
    with pytest.raises(InterruptedRun, match="^interrupted at step 1; no checkpoint was saved yet"):
        Trainer(tiny_train_config(tmp_path)).fit()
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_ctrl_c_during_a_save_keeps_the_previous_checkpoint_and_the_resumed_log_has_each_step_once(
    tmp_path, monkeypatch
):
    overrides = ("train.max_steps=2", "train.checkpoint_every=1", "train.log_every=1")
    save = torch.save

    def interrupted_save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("step") == 2:  # Ctrl-C half-way through the checkpoint of step 2
            Path(f).write_bytes(b"PK\x03\x04 partial zip")
            raise KeyboardInterrupt
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(InterruptedRun, match="step_00000001.pt \\(step 1\\)"):
        Trainer(tiny_train_config(tmp_path, *overrides)).fit()
    monkeypatch.undo()
    folder = tmp_path / "checkpoints"
    assert _leftovers(folder) == [] and not (folder / "step_00000002.pt").exists()
    assert load_training_checkpoint(folder / "last.pt")["step"] == 1
    log = tmp_path / "log.jsonl"
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2]
    with log.open("a") as handle:
        handle.write('{"step": 3, "kind": "tr')  # a record cut short by a crash
    result = Trainer(tiny_train_config(tmp_path, *overrides, "resume=auto")).fit()
    assert result.step == 2  # step 2 ran again from the checkpoint of step 1, and is logged once
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2]


def test_a_resumed_logger_drops_the_later_records_and_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = TrainLogger(tmp_path, tensorboard=True)
    for step in (1, 2, 3):
        log.scalars(step, {"loss/total": step})
    log.drop_after(1)
    for step in (2, 3):
        log.scalars(step, {"loss/total": 10 * step})
    log.close()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss/total"]) for r in records] == [(1, 1.0), (2, 20.0), (3, 30.0)]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss/total")] == [(1, 1.0), (2, 20.0), (3, 30.0)]


# ------------------------------------------------------------------------------------ DataLoader worker errors
class _CorruptFrames(Dataset):
    """A dataset whose every item names a corrupt frame (as the frame reader does)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, key):
        raise DataError("frames/x.png: cannot decode image")


def test_a_named_error_in_a_dataloader_worker_arrives_as_raised():
    batches = iter(DataLoader(_CorruptFrames(), num_workers=1))
    with pytest.raises(DataError) as caught:
        next_batch(batches)
    assert str(caught.value) == "frames/x.png: cannot decode image"
    assert "Caught DataError in DataLoader worker process 0" in str(caught.value.__cause__)


def test_other_worker_errors_are_left_alone():
    wrapped = KeyError(
        "Caught KeyError in DataLoader worker process 0.\nOriginal Traceback ...\nKeyError: 'x'"
    )
    assert unwrap_worker_error(wrapped) is wrapped
    plain = DataError("frames/y.png: cannot decode image")
    assert unwrap_worker_error(plain) is plain


def test_a_corrupt_frame_in_a_training_worker_stops_training_with_its_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "build_train_dataset", lambda cfg: _CorruptFrames())
    cfg = tiny_train_config(tmp_path, "train.data.num_workers=1")
    with pytest.raises(DataError) as caught:
        Trainer(cfg).fit()
    assert str(caught.value) == "frames/x.png: cannot decode image"


# ------------------------------------------------------------------------------------------------ sentences
@pytest.fixture
def fresh_warnings(monkeypatch, caplog):
    monkeypatch.setattr(locater.tokenizer, "_EXAMINED", set())
    caplog.set_level(logging.WARNING, logger="locater.tokenizer")
    return caplog


def test_a_truncated_sentence_is_warned_about_once(fresh_warnings):
    sentence = " ".join(["dog"] * 25)
    locater.tokenize([sentence, sentence])
    locater.tokenize(sentence)
    warnings = [r.getMessage() for r in fresh_warnings.records]
    assert warnings == [
        f"sentence {sentence!r}: 25 word tokens, the model reads 20; 5 dropped ('dog dog dog dog dog')"
    ]


def test_a_sentence_of_half_unknown_tokens_is_warned_about(fresh_warnings):
    locater.tokenize(["the 🙂 🙂", "the red 🙂 dog"])
    warnings = [r.getMessage() for r in fresh_warnings.records]
    assert len(warnings) == 1 and warnings[0].startswith(
        "sentence 'the 🙂 🙂': 2 of its 3 word tokens are [UNK]"
    )


def test_the_reference_sentence_keeps_its_ids_without_a_warning(fresh_warnings):
    ids = locater.tokenize(["the man in red is running on the left"])
    assert ids.tolist() == [[101, 1996, 2158, 1999, 2417, 2003, 2770, 2006, 1996, 2187, 102] + [0] * 11]
    assert fresh_warnings.records == []


# ------------------------------------------------------------------------------------------- overlay writer
def _frames(count: int) -> list[np.ndarray]:
    return [np.full((24, 32, 3), 10 * i, np.uint8) for i in range(count)]


def test_the_overlay_writer_verifies_a_complete_video(tmp_path):
    with OverlayVideoWriter(tmp_path / "overlay.mp4", 5.0, (24, 32)) as writer:
        for frame in _frames(6):
            writer.write(frame)
    assert writer.frames_in_file() == 6


def test_a_full_disk_stops_the_overlay_at_the_first_frame_it_would_drop(tmp_path, monkeypatch):
    path = tmp_path / "overlay.mp4"
    writer = OverlayVideoWriter(path, 5.0, (24, 32))
    calls = {"n": 0}

    def disk_usage(folder):
        calls["n"] += 1
        return SimpleNamespace(total=10**9, used=10**9, free=10**6 if calls["n"] <= 3 else 1000)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    frames = _frames(6)
    for frame in frames[:3]:
        writer.write(frame)
    with pytest.raises(
        OutputError, match=f"cannot write {path}: no space left on device \\(ENOSPC\\) at frame 3"
    ):
        writer.write(frames[3])
    assert not path.exists()
    writer.close()  # already released: nothing left to check


def test_an_overlay_on_a_real_full_disk_stops_with_enospc(tiny_disk):
    path = tiny_disk / "overlay.mp4"
    noise = np.random.default_rng(0).integers(0, 256, (50, 240, 320, 3), dtype=np.uint8)  # barely compresses
    writer = OverlayVideoWriter(path, 25.0, (240, 320))
    with pytest.raises(
        OutputError, match=f"cannot write {path}: no space left on device \\(ENOSPC\\) at frame"
    ):
        for frame in noise:
            writer.write(frame)
    assert 0 < writer.frames_written < len(noise) and not path.exists()


class _DroppingWriter:
    """An OpenCV writer that silently loses every other frame, as one does on a full disk."""

    def __init__(self, inner) -> None:
        self.inner, self.count = inner, 0

    def write(self, frame) -> None:
        self.count += 1
        if self.count % 2:
            self.inner.write(frame)

    def release(self) -> None:
        self.inner.release()


def test_an_overlay_that_lost_frames_is_an_error_and_deleted(tmp_path):
    path = tmp_path / "overlay.mp4"
    writer = OverlayVideoWriter(path, 5.0, (24, 32))
    writer.writer = _DroppingWriter(writer.writer)
    for frame in _frames(6):
        writer.write(frame)
    with pytest.raises(OutputError, match=f"cannot write {path}: the file holds 3 frames, 6 were written"):
        writer.close()
    assert not path.exists()
