"""Our start/step against logits that the official Locater code produced (tests/dev/official_parity.py).

The references hold, per configuration, the official per-frame logits for deterministic weights
(locater.testing.seeded_official_state_dict) and a deterministic video (locater.testing.seeded_video), through
the memory fill, the mean-token padding and the gated updates.
"""

from pathlib import Path

import pytest
import torch

import locater
from locater.data.indices import global_frame_numbers
from locater.preprocess import preprocess_frames
from locater.testing import seeded_official_state_dict, seeded_video

REFERENCES = sorted((Path(__file__).parent / "data" / "official_parity").glob("*.pt"))


def test_references_are_present():
    assert {p.stem for p in REFERENCES} >= {"default_320", "small_64_k2", "pad_96_k1", "whole_48_batch2"}


@pytest.mark.parametrize("reference_path", REFERENCES, ids=[p.stem for p in REFERENCES])
@pytest.mark.slow
def test_matches_the_official_code(reference_path):
    reference = torch.load(reference_path)
    arguments, num_global_frames = reference["arguments"], reference["N1"]
    state = seeded_official_state_dict(reference["shapes"], reference["seed"])
    model = locater.from_official(
        state,
        global_mem_size=arguments["global_mem_size"],
        local_mem_size=arguments["local_mem_size"],
        N1=num_global_frames,
    )
    assert model.image_size == (arguments["img_dim"],) * 2
    assert len(model.fusion) == arguments["K"]
    assert len(model.vision_encoder.vit.blocks) == arguments["vision_depth"]
    frames = preprocess_frames(
        seeded_video(reference["num_frames"], arguments["img_dim"], reference["seed"]), arguments["img_dim"]
    )
    glob = frames[[n - 1 for n in global_frame_numbers(len(frames), num_global_frames)]][None]
    stride = reference["stride"]
    with torch.inference_mode():
        memory = model.start(glob, reference["input_ids"])
        for t, frame in enumerate(frames):
            logits, memory = model.step(frame[None], memory)
            expected = reference["logits"][t]
            difference = (logits[:, 0, ::stride, ::stride] - expected).abs().max().item()
            assert difference <= 1e-3, f"frame {t}: max abs difference {difference:.3e}"
            # the full-resolution masks agree too (a pixel whose logit sits within float noise of 0 may flip)
            positive = (logits[:, 0] > 0).sum(dim=(-1, -2))
            assert (positive - reference["positive_pixels"][t]).abs().max() <= 2
