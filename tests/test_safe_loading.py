"""No file a user hands us runs code when loaded: checkpoints, mask files and frame-count dicts are read with
``weights_only=True``; only an explicit ``trust_checkpoint`` / ``--trust-checkpoint`` unpickles objects.

A crafted pickle here only touches a marker file in the test's temporary folder, so "the marker does not exist"
proves that nothing the file holds was run.
"""

import pathlib
import pickle
import random
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
from helpers_data import make_checkpoint, make_split
from train_helpers import tiny_train_config

import locater
from locater.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    ours_to_official_key,
    read_checkpoint,
)
from locater.cli import export as export_cli
from locater.data.check import check_split
from locater.data.layout import LayoutError, LayoutSplit
from locater.engine.checkpoints import (
    CheckpointManager,
    capture_rng_state,
    load_training_checkpoint,
    restore_rng_state,
    save_with_checksum,
)
from locater.engine.trainer import train
from locater.model.loading import PLAIN_STATE_HINT, load_model

pytestmark = pytest.mark.hardening

# head counts are not stored in the weights: a plain or official state dict of the tiny model needs them
TINY_HEADS = ["model.memory_heads=4", "model.vision.num_heads=4", "model.fusion.num_heads=4"]


class _TouchesMarker:
    """Unpickling this calls ``Path.touch(marker)``: what a crafted file could do with any function."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _crafted(path: pathlib.Path, marker: pathlib.Path, payload=None) -> pathlib.Path:
    """``torch.save`` of ``payload`` (default: a dict with weights) plus an object that touches ``marker``."""
    data = {"model": {"w": torch.ones(2)}} if payload is None else payload
    torch.save({**data, "hook": _TouchesMarker(marker)} if isinstance(data, dict) else data, path)
    return path


def _tiny(overrides=()):
    torch.manual_seed(0)
    return locater.build_model(locater.load_config("configs/model/tiny.yaml", list(overrides))).eval()


def _run(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(1, 4, 3, *model.image_size, generator=g)
    ids = locater.tokenize(["the man in red is running on the left"])
    outputs = []
    with torch.no_grad():
        state = model.start(video[:, [0, 2, 3]], ids)
        for t in range(video.shape[1]):
            logits, state = model.step(video[:, t], state)
            outputs.append(logits)
    return torch.stack(outputs)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------- checkpoints
def test_a_crafted_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"
    path = _crafted(tmp_path / "crafted.pt", marker)
    for load in (
        lambda: read_checkpoint(path),
        lambda: load_model(path),
        lambda: locater.load_checkpoint(_tiny(), path),
        lambda: load_training_checkpoint(path),
    ):
        with pytest.raises(UnsafeCheckpointError) as error:
            load()
        message = str(error.value)
        assert message.startswith(f"{path}: holds Python objects beyond tensors and plain values")
        assert "--trust-checkpoint (Python: trust_checkpoint=True)" in message and "\n" not in message
        assert not marker.exists()


def test_a_crafted_checkpoint_is_read_only_when_trusted(tmp_path, caplog):
    marker = tmp_path / "marker"
    path = _crafted(tmp_path / "crafted.pt", marker)
    with caplog.at_level("WARNING"):
        raw = read_checkpoint(path, trust=True)
    assert torch.equal(raw["model"]["w"], torch.ones(2))
    assert marker.exists()  # what trusting a file means: its objects were unpickled, and ran
    assert "crafted.pt" in caplog.text and "can run code" in caplog.text


def test_a_legacy_pickle_is_refused_too(tmp_path):
    """A file written by ``pickle`` itself (not ``torch.save``) goes through torch's legacy reader."""
    marker = tmp_path / "marker"
    path = tmp_path / "legacy.pt"
    path.write_bytes(pickle.dumps({"hook": _TouchesMarker(marker)}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="legacy.pt: holds Python objects"):
        read_checkpoint(path)
    assert not marker.exists()


def test_corrupt_checkpoints_keep_their_own_message(tmp_path):
    path = tmp_path / "truncated.pt"
    torch.save({"model": {"w": torch.ones(100)}}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated.pt: cannot read checkpoint") as error:
        read_checkpoint(path)
    assert not isinstance(error.value, UnsafeCheckpointError)


def test_commands_refuse_a_crafted_checkpoint_with_one_line(tmp_path, capsys):
    marker = tmp_path / "marker"
    path = _crafted(tmp_path / "crafted.pt", marker)
    code = export_cli.main(["--checkpoint", str(path), "--out", str(tmp_path / "out.safetensors")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "crafted.pt: holds Python objects" in err and "--trust-checkpoint" in err
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_pretrained_checkpoint_of_a_config_is_read_safely(tmp_path):
    marker = tmp_path / "marker"
    path = _crafted(tmp_path / "crafted.pt", marker)
    cfg = locater.load_config("configs/model/tiny.yaml", [f"pretrained.checkpoint={path}"])
    with pytest.raises(UnsafeCheckpointError):
        locater.build_model(cfg)
    assert not marker.exists()


def test_a_crafted_imagenet_vit_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"
    path = _crafted(tmp_path / "vit.pth", marker, {"blocks.0.norm1.weight": torch.ones(64)})
    cfg = locater.load_config("configs/model/tiny.yaml", [f"pretrained.vit={path}"])
    with pytest.raises(ValueError, match="vit.pth: holds Python objects beyond tensors and plain values"):
        locater.build_model(cfg)
    assert not marker.exists()


def test_official_snapshot_loads_with_weights_only(tmp_path):
    """The official code saves ``torch.save(net.state_dict())`` of its (Distributed)DataParallel network: an
    OrderedDict (with torch's ``_metadata``) of ``module.``-prefixed official names; its evaluate.py loads it with
    a plain ``torch.load``."""
    source = _tiny()
    wrapped = torch.nn.DataParallel(source).state_dict()
    snapshot = OrderedDict(
        ("module." + ours_to_official_key(key.removeprefix("module.")), value)
        for key, value in wrapped.items()
    )
    snapshot._metadata = wrapped._metadata  # what torch's state_dict() attaches, pickled with it
    path = tmp_path / "snapshot.pth"
    torch.save(snapshot, path)
    torch.load(path, weights_only=True)  # the format itself needs nothing beyond tensors and plain values
    model = load_model(path, overrides=TINY_HEADS)
    assert _same_weights(model, source)
    assert torch.equal(_run(model), _run(source))
    assert _same_weights(
        locater.from_official(path, memory_heads=4, vision={"num_heads": 4}, fusion={"num_heads": 4}), source
    )


# ------------------------------------------------------------------------------------- training payloads
def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    state = capture_rng_state()
    expected = (random.random(), np.random.standard_normal(3), torch.rand(3))
    torch.save({"rng": state}, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)["rng"]
    assert (
        isinstance(loaded["numpy"]["state"], torch.Tensor) and loaded["numpy"]["state"].dtype == torch.int64
    )
    assert isinstance(loaded["python"], tuple)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    restore_rng_state(loaded)
    got = (random.random(), np.random.standard_normal(3), torch.rand(3))
    assert got[0] == expected[0] and np.array_equal(got[1], expected[1]) and torch.equal(got[2], expected[2])


def test_the_older_rng_layout_is_read_only_with_trust_and_still_restores(tmp_path):
    """Checkpoints written before the RNG states were tensors hold numpy's tuple (an ndarray): refused by the
    safe reader, not skipped as corrupt (resuming from an older one would silently lose steps), and restored when
    trusted."""
    np.random.seed(5)
    old_state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    expected = np.random.standard_normal(3)
    manager = CheckpointManager(tmp_path / "checkpoints")
    payload = {"model": {}, "optimizer": {}, "step": 1, "sampler": {}, "rng": [old_state], "config": {}}
    manager.directory.mkdir()
    torch.save(payload, manager.step_path(1))  # as the older writer did: the ndarray pickled as is
    with pytest.raises(UnsafeCheckpointError, match="step_00000001.pt: holds Python objects"):
        manager.load_latest()
    loaded, _ = manager.load_latest(trust_checkpoint=True)
    np.random.seed(0)
    restore_rng_state(loaded["rng"][0])
    assert np.array_equal(np.random.standard_normal(3), expected)


def test_numpy_values_of_a_payload_are_stored_as_plain_values(tmp_path):
    payload = {"best": {"value": np.float64(0.5), "step": np.int64(2)}, "table": np.arange(3)}
    save_with_checksum(payload, tmp_path / "p.pt")
    loaded = torch.load(tmp_path / "p.pt", weights_only=True)
    assert loaded["best"] == {"value": 0.5, "step": 2} and type(loaded["best"]["value"]) is float
    assert torch.equal(loaded["table"], torch.arange(3))


@pytest.mark.slow
def test_a_training_checkpoint_loads_with_weights_only(tmp_path):
    """The whole payload a trainer writes (optimizer, sampler, scaler, config, RNG states, validation metrics and
    the best value) is tensors and plain values."""
    split = make_split(tmp_path / "data", "VAL", num_videos=1, num_frames=5, size=32)
    cfg = tiny_train_config(
        tmp_path / "run",
        "train.max_steps=1",
        f"validation.splits=[{{name: V, split_dir: {split}}}]",
        "validation.every=1",
        "validation.metric=V/mean_iou",
        "eval.coco_ap=false",
    )
    train(cfg)
    path = tmp_path / "run/checkpoints/last.pt"
    payload = torch.load(path, weights_only=True)
    assert {"model", "optimizer", "scaler", "sampler", "rng", "config", "best", "validation"} <= set(payload)
    assert payload["best"]["metric"] == "V/mean_iou" and type(payload["best"]["value"]) is float
    assert payload["step"] == 1 and payload["config"]["train"]["max_steps"] == 1
    assert load_training_checkpoint(path)["step"] == 1  # the package's own reader: the safe path too


# ------------------------------------------------------------------------------------------- layout files
def test_a_crafted_mask_file_is_refused_without_running_it(tmp_path):
    split_dir = make_split(tmp_path, "NORM", num_videos=1, num_frames=5, size=24)
    split = LayoutSplit.open(split_dir)
    sample = split.samples[0]
    mask_path = split.mask_path(sample.video, sample.expression, sample.labels[0])
    marker = tmp_path / "marker"
    torch.save({"mask": torch.ones(24, 32), "hook": _TouchesMarker(marker)}, mask_path)
    with pytest.raises(LayoutError) as error:
        split.load_mask(sample.video, sample.expression, sample.labels[0])
    assert str(error.value) == (
        f"{mask_path}: holds Python objects beyond tensors and plain values; rewrite it with tensors "
        "(the converters do)"
    )
    report = check_split(split_dir)  # python -m locater.data.check lists it with the other problems
    assert any(str(mask_path) in problem and "Python objects" in problem for problem in report.problems)
    assert not marker.exists()


def test_a_crafted_frame_count_dict_is_refused_without_running_it(tmp_path):
    split_dir = make_split(tmp_path, "NORM", num_videos=1, num_frames=5, size=24)
    counts = split_dir / "vid_frame_dict.pth"
    marker = tmp_path / "marker"
    torch.save({"vid00": 5, "hook": _TouchesMarker(marker)}, counts)
    with pytest.raises(LayoutError, match="vid_frame_dict.pth: holds Python objects beyond tensors"):
        LayoutSplit.open(split_dir)
    assert any("Python objects" in problem for problem in check_split(split_dir).problems)
    assert not marker.exists()


def test_files_the_converters_write_load_with_weights_only(tmp_path):
    split_dir = make_split(tmp_path, "NORM", num_videos=1, num_frames=5, size=24)  # LayoutWriter, as they use
    for path in [split_dir / "vid_frame_dict.pth", *sorted((split_dir / "mask").glob("*.pth"))]:
        torch.load(path, weights_only=True)


def test_frame_counts_saved_as_numpy_integers_still_load(tmp_path):
    """A count dict written with numpy integers (also by numpy 1, under its old module name) holds no code."""
    split_dir = make_split(tmp_path, "NORM", num_videos=1, num_frames=5, size=24)
    counts = split_dir / "vid_frame_dict.pth"
    torch.save({"vid00": np.int64(5)}, counts)
    assert LayoutSplit.open(split_dir).frame_counts == {"vid00": 5}
    with zipfile.ZipFile(counts) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(counts, "w") as archive:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            archive.writestr(info, data)
    assert LayoutSplit.open(split_dir).frame_counts == {"vid00": 5}


# ------------------------------------------------------------------------------------------------ export
def test_safetensors_export_rebuilds_the_same_model(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ours.pt")
    source = load_model(checkpoint)
    out = tmp_path / "weights.safetensors"
    assert export_cli.main(["--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as handle:
        assert handle.metadata()["format"] == "locater"
    model = load_model(out)  # the architecture comes from the stored model_config alone
    assert model.model_config == source.model_config
    assert _same_weights(model, source)
    assert torch.equal(_run(model), _run(source))


def test_official_and_state_dict_exports_load_back(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ours.pt")
    source = load_model(checkpoint)
    for fmt in ("official", "state-dict"):
        out = tmp_path / f"{fmt}.pth"
        assert export_cli.main(["--checkpoint", str(checkpoint), "--out", str(out), "--format", fmt]) == 0
        torch.load(out, weights_only=True)
        assert _same_weights(load_model(out, overrides=TINY_HEADS), source)


def test_export_refuses_an_output_name_the_readers_would_misread(tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "ours.pt")
    assert export_cli.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "w.pth")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err


def test_a_corrupt_safetensors_file_names_the_file(tmp_path):
    good = locater.checkpoint.export_safetensors(_tiny(), tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:1000])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    for path in (truncated, garbage):
        with pytest.raises(CheckpointError, match=f"{path.name}: cannot read safetensors file"):
            load_model(path)


# ------------------------------------------------------------------------------------- plain state dicts
def test_a_plain_state_dict_that_needs_overrides_says_so(tmp_path):
    source = _tiny(["model.local_memory.write=window"])  # parameters the tensors' sizes alone do not imply
    path = tmp_path / "plain.pth"
    torch.save(source.state_dict(), path)
    with pytest.raises(CheckpointError) as error:
        load_model(path, overrides=TINY_HEADS)
    assert str(error.value).endswith(PLAIN_STATE_HINT) and "plain.pth" in str(error.value)
    model = load_model(path, overrides=[*TINY_HEADS, "model.local_memory.write=window"])
    assert _same_weights(model, source)
    stored = make_checkpoint(tmp_path / "ours.pt")  # a stored config: a mismatch there gets no such hint
    with pytest.raises(CheckpointError) as error:
        load_model(stored, overrides=["model.local_memory.write=window"])
    assert PLAIN_STATE_HINT not in str(error.value)
