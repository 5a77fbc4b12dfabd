"""hubconf.py through torch.hub.load(source="local"): our and official checkpoints, the segmenter, clear errors."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_data import make_checkpoint

import locater
from locater.checkpoint import CheckpointError
from locater.inference import VideoSegmenter

ROOT = str(Path(__file__).resolve().parents[1])
HEADS = ["model.vision.num_heads=4", "model.fusion.num_heads=4", "model.memory_heads=4"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    ours = make_checkpoint(root / "ours.pt", seed=3)
    model = locater.load_checkpoint(locater.build_model("configs/model/tiny.yaml"), ours)
    return {"ours": ours, "official": locater.export_official(model, root / "official.pth"), "model": model}


def test_hub_loads_our_and_official_checkpoints_from_the_local_clone(checkpoints):
    expected = checkpoints["model"].state_dict()
    # an official file stores no head counts: the tiny model's are given (the released model's are the default)
    for kind, overrides in (("ours", []), ("official", HEADS)):
        model = torch.hub.load(
            ROOT, "locater", source="local", checkpoint=checkpoints[kind], overrides=overrides
        )
        assert isinstance(model, locater.Locater) and not model.training
        state = model.state_dict()
        assert set(state) == set(expected)
        assert all(torch.equal(state[k], expected[k]) for k in expected), kind
    edited = torch.hub.load(
        ROOT,
        "locater",
        source="local",
        checkpoint=str(checkpoints["ours"]),
        overrides=["model.global_memory.num_frames=5"],
    )
    assert edited.num_global_frames == 5


def test_hub_segmenter_gives_the_masks_of_video_segmenter(checkpoints):
    segmenter = torch.hub.load(
        ROOT, "segmenter", source="local", checkpoint=checkpoints["ours"], device="cpu", threshold=0.4
    )
    assert isinstance(segmenter, VideoSegmenter) and segmenter.threshold == 0.4
    assert segmenter.device == torch.device("cpu")
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 48, 3), dtype=np.uint8)
    direct = VideoSegmenter.from_checkpoint(checkpoints["ours"], device="cpu", threshold=0.4)
    for a, b in zip(segmenter.segment(frames, "the red circle"), direct.segment(frames, "the red circle")):
        assert a.masks.shape == (1, 40, 48) and torch.equal(a.probabilities, b.probabilities)


def test_hub_refuses_a_missing_checkpoint_clearly(tmp_path):
    missing = tmp_path / "nowhere.pth"
    for entry in ("locater", "segmenter"):
        with pytest.raises(CheckpointError, match=f"checkpoint not found: {missing}"):
            torch.hub.load(ROOT, entry, source="local", checkpoint=missing)
        with pytest.raises(CheckpointError, match=r"give checkpoint=PATH .*downloads nothing"):
            torch.hub.load(ROOT, entry, source="local")


def test_hubconf_lists_two_entries_and_importable_dependencies():
    spec = importlib.util.spec_from_file_location("hubconf_under_test", Path(ROOT) / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # by path, as torch.hub imports it
    assert module.dependencies[0] == "torch"
    assert all(importlib.util.find_spec(name) is not None for name in module.dependencies)
    entries = sorted(
        name for name in dir(module) if callable(getattr(module, name)) and not name.startswith("_")
    )
    assert entries == ["locater", "segmenter"]  # what torch.hub.list shows for a clone
    assert "checkpoint" in module.locater.__doc__ and "VideoSegmenter" in module.segmenter.__doc__
