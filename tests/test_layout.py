import json

import numpy as np
import pytest
import torch

from locater.data.indices import global_frame_numbers, random_global_frame_numbers
from locater.data.layout import LayoutError, LayoutSplit, LayoutWriter, fix_sentence, resolve_split_dir


def _write(
    split_dir,
    name="A2D_NORM_test_expressions.json",
    flavour="a2d",
    video="v1",
    sentence="the peson in red is standing",
):
    writer = LayoutWriter(split_dir, name, flavour)
    writer.add_video(video, 10)
    for f in range(1, 11):
        writer.write_frame(video, f, np.full((6, 8, 3), f, np.uint8))
    writer.add_expression(video, "3", sentence, [4, 2])
    writer.write_mask(video, "3", 2, np.eye(6, 8, dtype=bool))
    writer.write_mask(video, "3", 4, np.zeros((6, 8), bool))
    writer.close()


def test_round_trip_a2d(tmp_path):
    _write(tmp_path / "A2D_SUBSET" / "NORM")
    split = LayoutSplit.open(resolve_split_dir(tmp_path, "A2D", "NORM"))
    (sample,) = split.samples
    assert sample.sentence == "the person in red is standing"  # official fix applied
    assert sample.frames == [f"{i:05d}" for i in range(1, 11)] and sample.labels == ["00002", "00004"]
    assert split.global_frames(sample, 3) == ["00002", "00005", "00008"]
    assert (
        split.load_frame("v1", "00003").shape == (6, 8, 3) and split.load_frame("v1", "00003")[0, 0, 0] == 3
    )
    assert split.load_mask("v1", "3", "00002").sum() == 6
    assert (tmp_path / "A2D_SUBSET/NORM/mask/v1_3_00002.pth").is_file()
    assert torch.load(tmp_path / "A2D_SUBSET/NORM/vid_frame_dict.pth") == {"v1": 10}


def test_official_spellings_are_accepted(tmp_path):
    _write(tmp_path / "A2D_SUBSET" / "A2D_TEMP", "A2D_TEMP_test_expressions.json")
    (tmp_path / "A2D_SUBSET/A2D_TEMP/vid_frame_dict.pth").rename(
        tmp_path / "A2D_SUBSET/A2D_TEMP/vid_frames_dict.pth"
    )
    split = LayoutSplit.open(resolve_split_dir(tmp_path, "A2D", "temp"))
    assert split.samples[0].num_frames == 10


def test_jhmdb_flavour(tmp_path):
    _write(
        tmp_path / "JHMDB", "JHMDB_test_expressions.json", "jhmdb", "brush_hair/clip_a", "a man brushing hair"
    )
    assert torch.load(tmp_path / "JHMDB/vid_frames_dict.pth") == {"brush_hair": {"clip_a": 10}}
    split = LayoutSplit.open(resolve_split_dir(tmp_path, "JHMDB"))
    assert split.flavour == "jhmdb" and split.samples[0].video == "brush_hair/clip_a"
    assert (tmp_path / "JHMDB/mask/brush_hair_clip_a_3_00002.pth").is_file()
    assert split.load_frame("brush_hair/clip_a", "00001").shape == (6, 8, 3)


def test_global_frame_rule():
    assert global_frame_numbers(10, 3) == [2, 5, 8]
    assert global_frame_numbers(7, 2) == [2, 5]
    rng = np.random.default_rng(0)
    for _ in range(20):
        picks = random_global_frame_numbers(10, 3, rng)
        assert 1 <= picks[0] <= 3 and 4 <= picks[1] <= 6 and 7 <= picks[2] <= 9


def test_fix_sentence_lowercases():
    assert fix_sentence("Solder crawling on the ground") == "soldier crawling on the ground"
    assert fix_sentence("A Man") == "a man"


def test_clear_errors(tmp_path):
    with pytest.raises(LayoutError, match="expected layout"):
        resolve_split_dir(tmp_path, "A2D", "NORM")
    split_dir = tmp_path / "s"
    _write(split_dir)
    (split_dir / "A2D_NORM_test_expressions.json").write_text("{not json")
    with pytest.raises(LayoutError, match="A2D_NORM_test_expressions.json: malformed JSON"):
        LayoutSplit.open(split_dir)
    _write(split_dir)
    data = json.loads((split_dir / "A2D_NORM_test_expressions.json").read_text())
    data["v1"]["expressions"]["3"]["exp"] = "  "
    (split_dir / "A2D_NORM_test_expressions.json").write_text(json.dumps(data))
    with pytest.raises(LayoutError, match="empty sentence"):
        LayoutSplit.open(split_dir)
    _write(split_dir)
    split = LayoutSplit.open(split_dir)
    (split_dir / "allPngs320H/v1/00003.png").write_bytes(b"garbage")
    with pytest.raises(LayoutError, match="00003.png: cannot decode"):
        split.load_frame("v1", "00003")
    with pytest.raises(LayoutError, match="mask file missing: .*v1_3_00009.pth"):
        split.load_mask("v1", "3", "00009")
