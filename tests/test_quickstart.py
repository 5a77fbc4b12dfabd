"""The quickstart in smoke mode (a few training steps, two test videos per split) and the report's GIFs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SPLITS = {"NORM", "MUL", "SPAT", "TEMP"}


def _env(**extra):
    # an active virtual environment: the scripts then skip their own set-up and use this interpreter
    venv = str(Path(sys.executable).parent.parent)
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    return dict(os.environ, VIRTUAL_ENV=venv, PATH=path, OMP_NUM_THREADS="2", **extra)


def _check_results(results, variants):
    assert set(results) == set(variants)
    for variant in variants:
        assert set(results[variant]) == SPLITS
        for split in SPLITS:
            assert 0.0 <= results[variant][split]["mean_iou"] <= 1.0
            assert 0.0 <= results[variant][split]["overall_iou"] <= 1.0


@pytest.mark.slow
def test_quickstart_smoke(tmp_path):
    out, data = tmp_path / "quickstart", tmp_path / "synthetic"
    env = _env(QUICKSTART_SMOKE="1", QUICKSTART_OUT=str(out), QUICKSTART_DATA=str(data))
    result = subprocess.run(["bash", "scripts/quickstart.sh"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_results(json.loads((out / "results.json").read_text()), ["full"])
    table = (out / "results.md").read_text()
    assert all(split in table for split in SPLITS) and "NORM" in result.stdout
    assert len(list(out.glob("*.gif"))) == 8  # two videos of each split
    first = yaml.safe_load((out / "full/appearance/config.yaml").read_text())
    last = yaml.safe_load((out / "full/tracking/config.yaml").read_text())
    # one-frame clips with a one-frame global memory, then 3-frame clips through the memory
    assert (first["train"]["clip_length"], first["model"]["global_memory"]["num_frames"]) == (1, 1)
    assert last["train"]["clip_length"] == 3
    # the vision stage pre-trained the encoder; the next stages start from it at a tenth of the learning rate
    assert first["pretrained"]["vit"] == str(out / "full/vision/vit.pth")
    assert last["pretrained"]["checkpoint"] == str(out / "full/appearance/checkpoints/last.pt")
    assert (
        first["train"]["optimizer"]["vision_lr_scale"] == last["train"]["optimizer"]["vision_lr_scale"] == 0.1
    )
    assert (first["train"]["max_steps"], last["train"]["max_steps"]) == (3, 3)  # the smoke run's override


def test_overlay_gifs_outline_the_ground_truth_on_labelled_frames(tmp_path):
    """The report's GIFs: the prediction in magenta, the ground truth's outline in green where labelled."""
    import numpy as np
    from PIL import Image

    from locater.data.layout import LayoutSplit
    from locater.data.synthetic import write_split
    from locater.recipes import report

    square = np.zeros((6, 6), bool)
    square[1:5, 1:5] = True
    assert report.mask_outline(square).sum() == 12 and not report.mask_outline(square)[2:4, 2:4].any()

    split_dir = write_split(tmp_path, "NORM", 1, seed=0, size=64)
    sample = next(iter(LayoutSplit.open(split_dir).videos().values()))[0]
    predicted = tmp_path / "masks" / sample.video / sample.expression
    predicted.mkdir(parents=True)
    for frame in sample.frames:  # a full-frame prediction: every pixel tinted magenta
        Image.fromarray(np.full((64, 64), 255, np.uint8)).save(predicted / f"{frame}.png")
    (gif,) = report.overlay_gif(split_dir, tmp_path / "masks", tmp_path, 1)
    image = Image.open(gif)
    for index, frame in enumerate(sample.frames):
        image.seek(index)
        rgb = np.asarray(image.convert("RGB")).astype(int)
        green = (rgb[..., 1] > 200) & (rgb[..., 0] < 100) & (rgb[..., 2] < 100)
        assert green.any() == (frame in sample.labels), frame
        assert (rgb[..., 0] > rgb[..., 1])[~green].mean() > 0.9  # the magenta tint elsewhere
