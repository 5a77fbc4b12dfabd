"""A2D-Sentences release -> layout 3.1: end to end on a fake release, resuming, never overwriting, bad input."""

import json
import runpy
import shutil
import sys

import numpy as np
import pytest
from fake_releases import A2D_RED_ROWS, A2D_SIZE, make_fake_a2d, write_a2d_h5

from locater.data.layout import LayoutSplit
from locater.data.releases import a2d as a2d_release
from locater.data.releases.a2d import ReleaseError, object_ids, prepare_a2d, read_frame_annotation


def run_script(monkeypatch, script, *args):
    monkeypatch.setattr(sys, "argv", [script, *args])
    with pytest.raises(SystemExit) as finished:  # the wrapper exits with the command's code
        runpy.run_path(script, run_name="__main__")
    assert finished.value.code == 0


@pytest.fixture
def fake(tmp_path):
    return make_fake_a2d(tmp_path / "A2D")


def test_command_line_converts_test_and_train_splits(fake, tmp_path, monkeypatch, capsys):
    out = tmp_path / "datasets"
    run_script(monkeypatch, "tools/data/prepare_a2d.py", "--root", str(fake.root), "--out", str(out))
    printed = capsys.readouterr().out
    assert "expected counts: 3782 videos, 6655 sentences" in printed
    assert "WARNING: Release/videoset.csv has 4 videos, expected 3782" in printed
    assert "WARNING: a2d_annotation.txt has 6 sentence rows, expected 6655" in printed
    assert "NORM: " in printed and "2 videos, 3 expressions, 7 labelled frames" in printed

    norm = LayoutSplit.open(out / "A2D_SUBSET" / "NORM")
    assert norm.frame_counts == {"vidTestA": 6, "vidTestB": 5}  # the missed video is dropped
    got = {(s.video, s.expression): (s.sentence, s.labels) for s in norm.samples}
    assert got == {  # the "1 (copy)" row is dropped; labels = annotated frames where the instance has a mask
        ("vidTestA", "1"): ("man on the left walking", ["00002", "00004"]),
        ("vidTestA", "2"): ("the woman on the right", ["00002", "00004", "00005"]),
        ("vidTestB", "1"): ("a red ball rolling", ["00001", "00003"]),
    }
    for sample in norm.samples:
        assert sample.frames == [f"{f:05d}" for f in range(1, fake.num_frames[sample.video] + 1)]
        for label in sample.labels:  # transposed back: H x W, single-instance (W x H) files included
            expected = fake.masks[(sample.video, int(sample.expression), int(label))]
            np.testing.assert_array_equal(norm.load_mask(sample.video, sample.expression, label), expected)
    for video, count in fake.num_frames.items():
        if video in norm.frame_counts:  # frame k of the clip is 0000k.png (h5 names are 1-indexed)
            frames = [norm.load_frame(video, f"{f:05d}").astype(float) for f in range(1, count + 1)]
            levels = [frame[A2D_RED_ROWS + 4 :].mean() for frame in frames]
            expected = [fake.brightness(video, f) for f in range(1, count + 1)]
            np.testing.assert_allclose(levels, expected, atol=6)
            red_band = frames[0][: A2D_RED_ROWS - 4].mean(axis=(0, 1))  # RGB order, right way up
            assert frames[0].shape == (*A2D_SIZE, 3) and red_band[0] > 200 and red_band[2] < 60

    train = LayoutSplit.open(out / "A2D_SUBSET" / "train")
    assert train.expressions_file.name == "A2D_train_expressions.json"
    assert [(s.video, s.expression, s.labels) for s in train.samples] == [("vidTrain", "1", ["00003"])]

    instances = json.loads((out / "A2D_SUBSET" / "NORM" / "A2D_instances.json").read_text())
    assert instances["vidTestA"]["annotated_frames"] == ["00002", "00004", "00005"]
    assert instances["vidTestA"]["instances"]["3"] == {"actor_action": 78, "frames": ["00002"]}  # no sentence
    assert instances["vidTestB"]["instances"]["1"]["actor_action"] is None  # no id field in its h5 files
    assert not list((out / "A2D_SUBSET").glob("*.partial"))


def test_interrupted_run_resumes_and_keeps_finished_videos(fake, tmp_path, monkeypatch):
    out = tmp_path / "datasets"
    real_extract = a2d_release.extract_frames
    decoded = []

    def failing_second(clip, frame_dir):
        decoded.append(clip.stem)
        if len(decoded) == 2:
            raise KeyboardInterrupt
        return real_extract(clip, frame_dir)

    monkeypatch.setattr(a2d_release, "extract_frames", failing_second)
    with pytest.raises(KeyboardInterrupt):
        prepare_a2d(fake.root, out, splits=["test"])
    assert not (out / "A2D_SUBSET" / "NORM").exists()
    assert (out / "A2D_SUBSET" / "NORM.partial" / ".done" / "vidTestA.json").is_file()

    decoded.clear()
    monkeypatch.setattr(
        a2d_release, "extract_frames", lambda c, d: (decoded.append(c.stem), real_extract(c, d))[1]
    )
    summaries, _ = prepare_a2d(fake.root, out, splits=["test"])
    assert decoded == ["vidTestB"]  # vidTestA was not decoded again
    assert summaries[0].resumed_videos == 1 and summaries[0].expressions == 3
    assert not (out / "A2D_SUBSET" / "NORM.partial").exists()
    split = LayoutSplit.open(out / "A2D_SUBSET" / "NORM")
    assert len(split.samples) == 3 and len(list((split.root / "allPngs320H" / "vidTestA").iterdir())) == 6
    assert not list((split.root / "allPngs320H").glob(".*"))  # no temporary frame folder left


def test_a_finished_split_is_never_replaced_by_a_partial_one(fake, tmp_path, monkeypatch):
    out = tmp_path / "datasets"
    prepare_a2d(fake.root, out, splits=["test"])
    norm = out / "A2D_SUBSET" / "NORM"
    (norm / "sentinel").write_text("first run")
    summaries, _ = prepare_a2d(fake.root, out, splits=["test"])
    assert summaries[0].status == "already complete (skipped)" and (norm / "sentinel").exists()

    def broken(clip, frame_dir):
        raise ReleaseError(f"{clip}: broken")

    with monkeypatch.context() as patch:
        patch.setattr(a2d_release, "extract_frames", broken)
        with pytest.raises(ReleaseError):
            prepare_a2d(fake.root, out, splits=["test"], overwrite=True)
    assert (norm / "sentinel").exists() and len(LayoutSplit.open(norm).samples) == 3
    prepare_a2d(fake.root, out, splits=["test"], overwrite=True)
    assert not (norm / "sentinel").exists() and len(LayoutSplit.open(norm).samples) == 3


def test_workers_give_the_same_output(fake, tmp_path):
    prepare_a2d(fake.root, tmp_path / "one", splits=["test"], workers=1)
    prepare_a2d(fake.root, tmp_path / "two", splits=["test"], workers=2)
    for name in ("A2D_NORM_test_expressions.json", "A2D_instances.json", "mask/vidTestA_2_00005.pth"):
        one = (tmp_path / "one" / "A2D_SUBSET" / "NORM" / name).read_bytes()
        assert one == (tmp_path / "two" / "A2D_SUBSET" / "NORM" / name).read_bytes()


def _append(path, text):
    path.write_text(path.read_text() + text)


def _replace_h5_mask(root):
    path = root / "text_annotations/a2d_annotation_with_instances/vidTestB/00001.h5"
    write_a2d_h5(path, {1: np.ones((40, 64), bool)})
    return path


BAD_INPUTS = {
    "missing h5 folder": (
        lambda r: shutil.rmtree(r / "text_annotations/a2d_annotation_with_instances/vidTestB"),
        "annotation folder missing",
        "a2d_annotation_with_instances/vidTestB",
    ),
    "missing clip": (
        lambda r: (r / "Release/clips320H/vidTestB.mp4").unlink(),
        "clip missing",
        "clips320H/vidTestB.mp4",
    ),
    "missing sentence file": (
        lambda r: (r / "text_annotations/a2d_annotation.txt").unlink(),
        "sentence file missing",
        "a2d_annotation.txt",
    ),
    "short videoset row": (
        lambda r: _append(r / "Release/videoset.csv", "vidX,11,0\n"),
        "line 5",
        "videoset.csv",
    ),
    "bad subset": (
        lambda r: _append(r / "Release/videoset.csv", "vidX,11,0,0,48,64,5,1,7\n"),
        "subset '7'",
        "videoset.csv",
    ),
    "bad instance id": (
        lambda r: _append(r / "text_annotations/a2d_annotation.txt", "vidTestB,two,a ball\n"),
        "instance id 'two' is not an integer",
        "a2d_annotation.txt: line 8",
    ),
    "empty expression": (
        lambda r: _append(r / "text_annotations/a2d_annotation.txt", "vidTestB,2,  \n"),
        "expression with no text",
        "a2d_annotation.txt: line 8",
    ),
    "unknown video": (
        lambda r: _append(r / "text_annotations/a2d_annotation.txt", "vidNope,1,a cat\n"),
        "not in Release/videoset.csv",
        "a2d_annotation.txt: line 8",
    ),
    "mask size differs from frame": (_replace_h5_mask, "is 40 x 64 (H x W)", "vidTestB/00001.h5"),
    "h5 without reMask": (
        lambda r: _strip_field(
            r / "text_annotations/a2d_annotation_with_instances/vidTestB/00003.h5", "reMask"
        ),
        "no reMask field",
        "vidTestB/00003.h5",
    ),
    "annotation past the clip": (
        lambda r: write_a2d_h5(
            r / "text_annotations/a2d_annotation_with_instances/vidTestB/00009.h5",
            {1: np.ones(A2D_SIZE, bool)},
        ),
        "annotated frame 9 is past the 5 frames",
        "vidTestB/00009.h5",
    ),
}


def _strip_field(path, name):
    import h5py

    with h5py.File(path, "a") as handle:
        del handle[name]


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_release_gives_an_error_naming_the_file(case, fake, tmp_path):
    damage, message, where = BAD_INPUTS[case]
    damage(fake.root)
    with pytest.raises(ReleaseError) as error:
        prepare_a2d(fake.root, tmp_path / "datasets", splits=["test"])
    assert message in str(error.value) and where in str(error.value)
    assert not (tmp_path / "datasets" / "A2D_SUBSET" / "NORM").exists()


def test_single_instance_file_and_repeated_instances(tmp_path):
    mask = np.zeros(A2D_SIZE, bool)
    mask[3:9, 40:60] = True
    write_a2d_h5(tmp_path / "00007.h5", {4: mask}, {4: 52})
    annotation = read_frame_annotation(tmp_path / "00007.h5")
    assert annotation.frame == 7 and annotation.actor_action == {4: 52}
    np.testing.assert_array_equal(annotation.masks[4], mask)

    sentences = [
        a2d_release.A2DSentence("v", i, t, n) for n, (i, t) in enumerate([(1, "a"), (2, "b"), (1, "c")])
    ]
    assert [obj for obj, _ in object_ids(sentences)] == ["1", "2", "1_2"]
