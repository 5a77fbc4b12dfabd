"""A2D-S+ builder: MUL / SPAT / TEMP selection rules, empty TEMP masks, layout 3.1 output, bad input."""

import json
import os
import runpy
import sys

import numpy as np
import pytest
from fake_releases import make_fake_a2d

from locater.data.layout import LayoutError, LayoutSplit, LayoutWriter, resolve_split_dir
from locater.data.releases.a2d import INSTANCES_FILE, ReleaseError, prepare_a2d
from locater.data.releases.a2d_plus import (
    actor_from_sentence,
    build_a2d_plus,
    is_spatial,
    is_temporal,
)


@pytest.fixture
def norm(tmp_path):
    fake = make_fake_a2d(tmp_path / "A2D")
    prepare_a2d(fake.root, tmp_path / "datasets", splits=["test"])
    return tmp_path / "datasets" / "A2D_SUBSET" / "NORM"


def test_command_line_builds_the_three_subsets(norm, tmp_path, monkeypatch, capsys):
    out = tmp_path / "datasets"
    monkeypatch.setattr(sys, "argv", ["tools/data/build_a2d_plus.py", "--a2d", str(norm), "--out", str(out)])
    with pytest.raises(SystemExit) as finished:  # the wrapper exits with the command's code
        runpy.run_path("tools/data/build_a2d_plus.py", run_name="__main__")
    assert finished.value.code == 0
    printed = capsys.readouterr().out
    assert "MUL          1            2                5" in printed  # subset sizes are printed
    assert "TEMP         1            1                3" in printed

    source = LayoutSplit.open(norm)
    subsets = {
        kind: LayoutSplit.open(resolve_split_dir(out, "A2D", kind)) for kind in ("MUL", "SPAT", "TEMP")
    }
    # vidTestA: two adults (h5 labels 18, 11) -> MUL; vidTestB: one ball -> not MUL
    assert [(s.video, s.expression) for s in subsets["MUL"].samples] == [("vidTestA", "1"), ("vidTestA", "2")]
    assert [s.expression for s in subsets["SPAT"].samples] == ["1", "2"]  # "on the left" / "on the right"
    assert [s.expression for s in subsets["TEMP"].samples] == [
        "1"
    ]  # "walking"; "the woman on the right" has no cue
    norm_sample = next(s for s in source.samples if (s.video, s.expression) == ("vidTestA", "1"))
    for kind in ("MUL", "SPAT"):
        sample = subsets[kind].samples[0]
        assert sample.labels == norm_sample.labels and sample.frames == norm_sample.frames
        assert subsets[kind].frame_counts == {"vidTestA": 6}
    temp = subsets["TEMP"]
    sample = temp.samples[0]
    assert sample.labels == ["00002", "00004", "00005"]  # every annotated frame of the video
    assert sample.frames == [f"{f:05d}" for f in range(1, 7)]
    for label in norm_sample.labels:
        np.testing.assert_array_equal(
            temp.load_mask("vidTestA", "1", label), source.load_mask("vidTestA", "1", label)
        )
    empty = temp.load_mask("vidTestA", "1", "00005")  # instance 1 has no mask there: scored as empty
    assert empty.shape == (48, 64) and not empty.any()
    assert os.path.samefile(temp.frame_path("vidTestA", "00003"), source.frame_path("vidTestA", "00003"))


def _norm_without_instances(root, videos):
    """A NORM split made by hand (no A2D_instances.json): {video: [(obj, sentence, labels)]}."""
    writer = LayoutWriter(root, "A2D_NORM_test_expressions.json")
    for video, expressions in videos.items():
        writer.add_video(video, 4)
        for frame in range(1, 5):
            writer.write_frame(video, frame, np.full((8, 10, 3), 9 * frame, np.uint8))
        for obj, sentence, labels in expressions:
            writer.add_expression(video, obj, sentence, labels)
            for frame in labels:
                writer.write_mask(video, obj, frame, np.ones((8, 10), bool))
    writer.close()
    return root


def test_without_instance_file_sentences_give_the_actor_classes(tmp_path, caplog):
    norm = _norm_without_instances(
        tmp_path / "A2D_SUBSET" / "NORM",
        {
            "dogs": [("1", "the puppy on the left", [1, 3]), ("2", "a brown dog jumping", [2])],
            "mixed": [("1", "a man on the left", [1]), ("2", "a dog on the right", [1])],
            "players": [("1", "basketball player running", [2]), ("2", "a woman in red walking", [4])],
        },
    )
    summaries, selection = build_a2d_plus(norm, tmp_path)
    assert "A2D_instances.json not found" in caplog.text
    assert [(s.video, s.expression) for s in selection.subsets["MUL"]] == [
        ("dogs", "1"),
        ("dogs", "2"),
        ("players", "1"),
        ("players", "2"),
    ]
    assert [(s.video, s.expression) for s in selection.subsets["SPAT"]] == [("dogs", "1")]
    temp = LayoutSplit.open(tmp_path / "A2D_SUBSET" / "TEMP")
    labels = {(s.video, s.expression): s.labels for s in temp.samples}
    # without the instance file the annotated frames are the union of the video's labels
    assert labels == {
        ("dogs", "2"): ["00001", "00002", "00003"],
        ("players", "1"): ["00002", "00004"],
        ("players", "2"): ["00002", "00004"],
    }
    assert not temp.load_mask("dogs", "2", "00001").any() and temp.load_mask("dogs", "2", "00002").all()
    assert {s.name: s.expressions for s in summaries} == {"MUL": 4, "SPAT": 1, "TEMP": 3}


def test_h5_labels_win_and_unlabelled_instances_fall_back_to_sentences(tmp_path):
    norm = _norm_without_instances(
        tmp_path / "NORM",
        {
            "v1": [("1", "a man walking", [1]), ("2", "the cat on the left", [2])],
            "v2": [("1", "a small bird flying", [1])],
        },
    )
    (norm / INSTANCES_FILE).write_text(
        json.dumps(
            {
                # instance 2 says "cat" but its h5 label 11 (adult) wins: two adults
                "v1": {"annotated_frames": ["00001", "00002"], "instances": {
                    "1": {"actor_action": None, "frames": ["00001"]},
                    "2": {"actor_action": 11, "frames": ["00002"]},
                }},
                # an unnamed, unlabelled instance is of unknown class and matches nobody
                "v2": {"annotated_frames": ["00001"], "instances": {
                    "1": {"actor_action": None, "frames": ["00001"]},
                    "5": {"actor_action": None, "frames": ["00001"]},
                }},
            }
        )
    )  # fmt: skip
    _, selection = build_a2d_plus(norm, tmp_path)
    assert [(s.video, s.expression) for s in selection.subsets["MUL"]] == [("v1", "1"), ("v1", "2")]


def test_word_rules():
    assert (
        actor_from_sentence("Basketball player dribbling the ball") == "adult"
    )  # head noun, not "basketball"
    assert actor_from_sentence("a dog chasing a cat") == "dog"
    assert actor_from_sentence("a toddler crawling") == "baby"
    assert actor_from_sentence("something red moving") is None
    assert is_spatial("the man next to the car") and is_spatial("the leftmost bird")
    assert not is_spatial("a man lying on his back") and not is_spatial("a righteous man")
    assert is_temporal("a bird flies away") and is_temporal("the man who stops and then sits")
    assert not is_temporal("the red car on the left")


def test_finished_subsets_are_kept_unless_overwritten(norm, tmp_path):
    out = tmp_path / "datasets"
    build_a2d_plus(norm, out)
    (out / "A2D_SUBSET" / "MUL" / "sentinel").write_text("x")
    summaries, _ = build_a2d_plus(norm, out)
    assert {s.status for s in summaries} == {"already complete (skipped)"}
    assert (out / "A2D_SUBSET" / "MUL" / "sentinel").exists()
    build_a2d_plus(norm, out, overwrite=True)
    assert not (out / "A2D_SUBSET" / "MUL" / "sentinel").exists()
    assert len(LayoutSplit.open(out / "A2D_SUBSET" / "MUL").samples) == 2


def test_bad_input_names_the_file(norm, tmp_path):
    (norm / INSTANCES_FILE).write_text("{not json")
    with pytest.raises(ReleaseError, match=f"{INSTANCES_FILE}: malformed JSON"):
        build_a2d_plus(norm, tmp_path / "out")
    (norm / "A2D_NORM_test_expressions.json").write_text("[1,")
    with pytest.raises(LayoutError, match="A2D_NORM_test_expressions.json: malformed JSON"):
        build_a2d_plus(norm, tmp_path / "out")
    assert not (tmp_path / "out" / "A2D_SUBSET").exists()
