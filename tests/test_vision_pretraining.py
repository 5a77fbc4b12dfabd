"""Pre-training the small model's vision encoder on patch labels (tools/pretrain_vision.py)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import locater
from locater.data.synthetic.patches import BACKGROUND_COLOUR, BACKGROUND_SHAPE, patch_batch, patch_labels
from locater.data.synthetic.render import SHAPES


def test_patch_labels_take_the_object_covering_most_of_each_patch():
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 0:4, 0:4] = True  # fills the top-left 4x4 patch
    masks[0, 4:5, 4:8] = True  # a quarter of the bottom-right patch ...
    masks[1, 5:8, 4:8] = True  # ... where the second object covers three quarters
    masks[1, 0:1, 4:5] = True  # 1/16 of the top-right patch: below min_cover
    shapes, colours = patch_labels(["star", "cross"], ["red", "blue"], masks, patch_size=4)
    assert shapes.tolist() == [
        SHAPES.index("star"),
        BACKGROUND_SHAPE,
        BACKGROUND_SHAPE,
        SHAPES.index("cross"),
    ]
    assert colours[1] == BACKGROUND_COLOUR and colours[0] != colours[3]
    with pytest.raises(ValueError, match="multiple of the patch size"):
        patch_labels(["star"], ["red"], np.zeros((1, 6, 6), bool), patch_size=4)


def test_patch_batch_shapes_and_labels():
    frames, shapes, colours = patch_batch(np.random.default_rng(0), 3, 64, 8)
    assert frames.shape == (3, 3, 64, 64) and shapes.shape == colours.shape == (3, 64)
    assert (
        shapes.dtype == torch.int64
        and (shapes != BACKGROUND_SHAPE).any()
        and (shapes == BACKGROUND_SHAPE).any()
    )
    # a patch is an object patch for the shape label exactly when it is for the colour label
    assert torch.equal(shapes == BACKGROUND_SHAPE, colours == BACKGROUND_COLOUR)


def test_pretrained_encoder_loads_through_pretrained_vit_and_learns(tmp_path):
    """The saved ViT initialises the model through pretrained.vit; a short run beats chance on shapes."""
    out = tmp_path / "vit.pth"
    cmd = [sys.executable, "tools/pretrain_vision.py", "--out", str(out), "--minutes", "0"]
    cmd += ["--max-steps", "150", "--batch-size", "16", "--no-progress"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["steps"] == 150
    # colour is read off the pixels and learned first (chance 1/7); shapes take about 1000 steps (chance 1/6)
    assert summary["colour_accuracy"] > 0.6 and 0.0 <= summary["shape_accuracy"] <= 1.0
    cfg = locater.load_config("configs/synthetic/train.yaml", [f"pretrained.vit={out}"])
    from locater.pretrained import load_imagenet_vit

    model = load_imagenet_vit(locater.build_model(cfg), out)
    saved = torch.load(out, weights_only=True)
    assert torch.equal(model.vision_encoder.vit.blocks[1].mlp.fc2.weight, saved["blocks.1.mlp.fc2.weight"])
    bad = subprocess.run([*cmd[:4], "--minutes", "0", "--max-steps", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "budget" in bad.stderr
