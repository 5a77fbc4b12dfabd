"""Pre-training the small model's vision encoder on patch labels (tools/pretrain_vision.py)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import locater
from locater.data.synthetic.patches import BACKGROUND_COLOUR, BACKGROUND_SHAPE, patch_batch, patch_labels
from locater.data.synthetic.render import SHAPES
from locater.engine import vision_pretraining


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


# a vision encoder small enough to pre-train for a few dozen steps in seconds (4 x 4 tokens of width 32)
TINY_VISION = [
    "model.image_size=32",
    "model.embed_dim=32",
    "model.text.hidden_size=16",
    "model.vision.depth=1",
    "model.vision.num_heads=2",
    "model.fusion.num_heads=2",
    "model.memory_heads=2",
    "model.decoder_width=16",
    "model.decoder_refine=0",
]


def test_a_short_run_lowers_both_losses_and_beats_the_untrained_encoder(tmp_path, monkeypatch):
    """40 steps of a tiny encoder: the shape and colour losses of the training batches fall, and the held-out
    shape accuracy beats that of the same encoder after a single step (chance 1/6)."""
    cfg = locater.load_config("configs/synthetic/model.yaml", TINY_VISION)
    recorded = []
    original = vision_pretraining._losses

    def spy(encoder, heads, frames, shapes, colours):
        if encoder.training:  # a training batch: the two losses, computed here from their definition
            with torch.no_grad():
                shape_logits, colour_logits = heads(encoder(frames)[:, 1:])
                shape_loss = F.cross_entropy(
                    shape_logits.flatten(0, 1), shapes.flatten(), ignore_index=BACKGROUND_SHAPE
                )
                colour_loss = F.cross_entropy(colour_logits.flatten(0, 1), colours.flatten())
                recorded.append((shape_loss.item(), colour_loss.item()))
        return original(encoder, heads, frames, shapes, colours)

    monkeypatch.setattr(vision_pretraining, "_losses", spy)
    run = lambda steps: vision_pretraining.pretrain_vision_encoder(  # noqa: E731
        cfg, tmp_path / f"vit_{steps}.pth", minutes=0, max_steps=steps, batch_size=8, progress=False
    )
    untrained, trained = run(1), run(40)
    assert trained["steps"] == 40 and len(recorded) == 41
    losses = torch.tensor(recorded[1:])  # the 40-step run
    first, last = losses[:10].mean(0), losses[-10:].mean(0)
    assert last[0] < first[0] - 0.05, (first, last)  # shape
    assert last[1] < 0.6 * first[1], (first, last)  # colour
    assert trained["shape_accuracy"] > max(untrained["shape_accuracy"] + 0.05, 1 / 6), (untrained, trained)
    before = torch.load(tmp_path / "vit_1.pth", weights_only=True)
    after = torch.load(tmp_path / "vit_40.pth", weights_only=True)
    assert before.keys() == after.keys() and not torch.equal(
        before["blocks.0.mlp.fc2.weight"], after["blocks.0.mlp.fc2.weight"]
    )


@pytest.mark.slow
def test_pretrained_encoder_loads_through_pretrained_vit_and_learns(tmp_path):
    """The saved ViT initialises the model through pretrained.vit; a short run learns the colours."""
    out = tmp_path / "vit.pth"
    cmd = [sys.executable, "tools/pretrain_vision.py", "--out", str(out), "--minutes", "0"]
    cmd += ["--max-steps", "150", "--batch-size", "16", "--no-progress"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["steps"] == 150 and summary["out"] == str(out)
    assert set(summary) == {"steps", "minutes", "shape_accuracy", "colour_accuracy", "out"}
    # colour is read off the pixels and learned first (chance 1/7); shapes take about 1000 steps (chance 1/6),
    # so this run's shape accuracy is not a test (the shape loss falling is, in the tiny run above)
    assert summary["colour_accuracy"] > 0.6
    cfg = locater.load_config("configs/synthetic/train.yaml", [f"pretrained.vit={out}"])
    from locater.pretrained import load_imagenet_vit

    model = load_imagenet_vit(locater.build_model(cfg), out)
    saved = torch.load(out, weights_only=True)
    assert torch.equal(model.vision_encoder.vit.blocks[1].mlp.fc2.weight, saved["blocks.1.mlp.fc2.weight"])
    bad = subprocess.run([*cmd[:4], "--minutes", "0", "--max-steps", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "budget" in bad.stderr
