import json

import numpy as np
import pytest
import torch

from locater.data.check import check_split
from locater.data.check import main as check_main
from locater.data.frames import read_rgb
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


@pytest.mark.parametrize(
    ("num_frames", "num_global", "segments"),
    [
        (10, 3, [{1, 2, 3}, {4, 5, 6}, {7, 8, 9}]),  # frame 10 is left over: step 10 // 3 = 3
        (7, 2, [{1, 2, 3}, {4, 5, 6}]),
        (8, 2, [{1, 2, 3, 4}, {5, 6, 7, 8}]),
        (3, 3, [{1}, {2}, {3}]),
        (5, 1, [{1, 2, 3, 4, 5}]),
    ],
)
def test_random_global_frames_cover_each_segment_and_only_it(num_frames, num_global, segments):
    """Draw i comes from segment i, and enough draws reach every frame of each segment."""
    rng = np.random.default_rng(0)
    seen = [set() for _ in segments]
    for _ in range(200):
        picks = random_global_frame_numbers(num_frames, num_global, rng)
        assert len(picks) == num_global
        for i, pick in enumerate(picks):
            assert pick in segments[i], (i, pick)
            seen[i].add(pick)
    assert seen == segments
    assert random_global_frame_numbers(num_frames, 0, rng) == []


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


def _two_video_split(split_dir):
    writer = LayoutWriter(split_dir, "SYN_TRAIN_expressions.json")
    for video, n in (("a", 6), ("b", 9)):
        writer.add_video(video, n, frames=list(range(1, n + 1)))
        for f in range(1, n + 1):
            writer.write_frame(video, f, np.full((5, 7, 3), 10 * f, np.uint8))
    writer.add_expression("a", "0", "The Dog", [1, 3])
    writer.add_expression("a", "1", "a cat", [2])
    writer.add_expression("b", "4", "a bird", [9, 5, 5])
    for video, obj, frames in (("a", "0", [1, 3]), ("a", "1", [2]), ("b", "4", [5, 9])):
        for f in frames:
            writer.write_mask(video, obj, f, np.ones((5, 7), bool))
    writer.close()


def test_counts_grouping_and_any_expressions_name(tmp_path):
    _two_video_split(tmp_path / "train")
    split = LayoutSplit.open(tmp_path / "train")
    assert len(split.samples) == 3 and split.frame_counts == {"a": 6, "b": 9}
    assert {v: [s.expression for s in ss] for v, ss in split.videos().items()} == {
        "a": ["0", "1"],
        "b": ["4"],
    }
    assert split.samples[0].sentence == "the dog" and split.samples[0].raw_sentence == "The Dog"
    assert split.samples[2].labels == ["00005", "00009"]  # sorted, unique
    assert split.global_frames(split.samples[2], 3) == ["00002", "00005", "00008"]
    rng = np.random.default_rng(1)
    # 9 frames, 3 segments of 3: one frame id from each of 1-3, 4-6, 7-9 (seeded, so exact)
    assert split.random_global_frames(split.samples[2], 3, rng) == ["00002", "00005", "00009"]


def test_png_writing_is_byte_deterministic(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    paths = [LayoutWriter(tmp_path / name, "X_expressions.json").write_frame("v", 1, image) for name in "ab"]
    assert paths[0].name == "00001.png" and paths[0].read_bytes() == paths[1].read_bytes()
    assert np.array_equal(read_rgb(paths[0]), image)


def test_expression_file_discovery_errors(tmp_path):
    _two_video_split(tmp_path / "s")
    (tmp_path / "s" / "OTHER_expressions.json").write_text("{}")
    with pytest.raises(LayoutError, match="several expression files"):
        LayoutSplit.open(tmp_path / "s")
    for path in (tmp_path / "s").glob("*_expressions.json"):
        path.unlink()
    with pytest.raises(LayoutError, match="no \\*_expressions.json"):
        LayoutSplit.open(tmp_path / "s")


def test_labels_outside_frames_and_missing_count(tmp_path):
    split_dir = tmp_path / "s"
    _write(split_dir)
    path = split_dir / "A2D_NORM_test_expressions.json"
    data = json.loads(path.read_text())
    data["v1"]["expressions"]["3"]["labels"].append("00042")
    data["v2"] = {"frames": ["00001"], "expressions": {"0": {"exp": "x", "labels": []}}}
    path.write_text(json.dumps(data))
    with pytest.raises(LayoutError, match="labels \\['00042'\\] not in the video's frames"):
        LayoutSplit.open(split_dir)
    lenient = LayoutSplit.open(split_dir, strict=False)
    assert len(lenient.problems) == 2 and "'v2': not in the frame-count file" in lenient.problems[1]
    with pytest.raises(LayoutError, match="unknown testing type"):
        resolve_split_dir(tmp_path, "A2D", "FOO")


def test_check_clean_split_and_root(tmp_path, capsys):
    _write(tmp_path / "A2D_SUBSET" / "NORM")
    _two_video_split(tmp_path / "train")
    assert check_main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "NORM: 1 videos, 1 expressions, 2 labelled frames, 0 problems" in out
    assert "train: 2 videos, 3 expressions, 5 labelled frames, 0 problems" in out and out.strip().endswith(
        "OK"
    )


def test_check_reports_every_injected_problem(tmp_path, capsys):
    split_dir = tmp_path / "NORM"
    _two_video_split(split_dir)
    (split_dir / "mask" / "a_0_00003.pth").unlink()  # missing mask
    torch.save(torch.ones(4, 7, dtype=torch.uint8), split_dir / "mask" / "b_4_00009.pth")  # wrong size
    (split_dir / "allPngs320H" / "b" / "00002.png").unlink()  # missing frame (also a global frame)
    path = split_dir / "SYN_TRAIN_expressions.json"
    data = json.loads(path.read_text())
    data["a"]["expressions"]["1"]["exp"] = ""  # empty sentence
    data["a"]["expressions"]["1"]["labels"].append("00099")  # label not in frames
    path.write_text(json.dumps(data))
    torch.save({"a": 7, "b": 9}, split_dir / "vid_frame_dict.pth")  # count disagrees with the frames
    report = check_split(split_dir)
    text = "\n".join(report.problems)
    assert "empty sentence" in text and "labels ['00099'] not in the video's frames" in text
    assert "mask file missing: " in text and "a_0_00003.pth" in text and "a_1_00099.pth" in text
    assert "b_4_00009.pth: mask is 4 x 7, its frame is 5 x 7" in text
    assert "frame file missing: " in text and "b/00002.png" in text
    assert "holds 6 PNG frames but vid_frame_dict.pth says 7" in text
    assert "holds 8 PNG frames but vid_frame_dict.pth says 9" in text  # from the removed frame
    assert len(report.problems) == 8, "\n".join(report.problems)
    assert check_main([str(split_dir)]) == 1
    out = capsys.readouterr().out
    assert out.count("  problem: ") == 8 and "FAILED: 8 problems" in out


def test_check_malformed_json(tmp_path, capsys):
    _write(tmp_path / "s")
    (tmp_path / "s" / "A2D_NORM_test_expressions.json").write_text("[1, 2")
    assert check_main([str(tmp_path / "s")]) == 1
    assert "malformed JSON" in capsys.readouterr().out
