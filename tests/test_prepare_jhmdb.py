"""JHMDB-Sentences release -> layout 3.1 (JHMDB flavour): frames, puppet masks, scored-frame options, bad input."""

import json
import os
import runpy
import sys

import numpy as np
import pytest
import scipy.io
import torch
from fake_releases import JHMDB_SIZE, make_fake_jhmdb, mttr_metadata

from locater.data.layout import LayoutSplit
from locater.data.releases import jhmdb as jhmdb_release
from locater.data.releases.a2d import ReleaseError
from locater.data.releases.jhmdb import make_scored_frames, prepare_jhmdb

VIDEOS = ["brush_hair/Hair_brushing_u_nm", "catch/Catch_the_ball_f_cm", "catch/Catch_me_if_you_can"]
USABLE = {VIDEOS[0]: 5, VIDEOS[1]: 4, VIDEOS[2]: 5}  # min(frames, masks)


def run_script(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["tools/data/prepare_jhmdb.py", *args])
    with pytest.raises(SystemExit) as finished:  # the wrapper exits with the command's code
        runpy.run_path("tools/data/prepare_jhmdb.py", run_name="__main__")
    assert finished.value.code == 0


@pytest.fixture
def fake(tmp_path):
    return make_fake_jhmdb(tmp_path / "JHMDB_release")


def test_command_line_scores_every_frame_with_a_mask(fake, tmp_path, monkeypatch, capsys):
    out = tmp_path / "datasets"
    run_script(monkeypatch, "--root", str(fake.root), "--out", str(out))
    assert "JHMDB: " in capsys.readouterr().out
    split = LayoutSplit.open(out / "JHMDB")
    assert split.flavour == "jhmdb" and split.frame_counts == USABLE
    assert torch.load(out / "JHMDB" / "vid_frames_dict.pth") == {
        "brush_hair": {"Hair_brushing_u_nm": 5},
        "catch": {"Catch_the_ball_f_cm": 4, "Catch_me_if_you_can": 5},
    }
    assert [(s.video, s.expression, s.sentence) for s in split.samples] == [
        (VIDEOS[0], "0", "a woman brushing her hair"),
        (VIDEOS[1], "0", "man catching a ball"),
        (VIDEOS[2], "0", "a boy catches a frisbee"),
    ]
    for sample in split.samples:
        expected = [f"{f:05d}" for f in range(1, USABLE[sample.video] + 1)]
        assert sample.frames == expected and sample.labels == expected
        for label in sample.labels:
            np.testing.assert_array_equal(
                split.load_mask(sample.video, "0", label), fake.masks[sample.video][int(label) - 1]
            )
    assert (out / "JHMDB" / "mask" / "brush_hair_Hair_brushing_u_nm_0_00005.pth").is_file()
    frame_dir = out / "JHMDB" / "images" / VIDEOS[0]
    assert sorted(p.name for p in frame_dir.iterdir()) == [f"{f:05d}.png" for f in range(1, 6)]  # 6th dropped
    source = fake.root / "Rename_Images" / VIDEOS[0] / "00003.png"
    assert (frame_dir / "00003.png").read_bytes() == source.read_bytes()  # linked or copied, never re-encoded
    assert os.path.samefile(frame_dir / "00003.png", source)  # same file system here: hard link


def test_our_scored_list_is_generated_from_a_seed_and_used(fake, tmp_path, monkeypatch):
    listed = tmp_path / "data" / "jhmdb_scored_frames.json"
    run_script(monkeypatch, "--root", str(fake.root), "--make-scored-list", str(listed), "--seed", "0")
    data = json.loads(listed.read_text())
    assert data["seed"] == 0 and data["frames_per_video"] == 3 and sorted(data["videos"]) == sorted(VIDEOS)
    for video, frames in data["videos"].items():
        assert len(frames) == 3 == len(set(frames)) and frames == sorted(frames)
        assert 1 <= frames[0] and frames[-1] <= USABLE[video]
    assert make_scored_frames(USABLE, seed=0) == data  # fixed seed: the same list again
    assert make_scored_frames(USABLE, seed=1)["videos"] != data["videos"]
    subset = make_scored_frames({VIDEOS[0]: 5}, seed=0)["videos"]  # a video's frames ignore the others
    assert subset[VIDEOS[0]] == data["videos"][VIDEOS[0]]

    summary = prepare_jhmdb(fake.root, tmp_path / "datasets", scored=listed)
    assert summary.labelled_frames == 9
    split = LayoutSplit.open(tmp_path / "datasets" / "JHMDB")
    for sample in split.samples:
        assert [int(f) for f in sample.labels] == data["videos"][sample.video]
        assert len(sample.frames) == USABLE[sample.video]  # the model still runs over every frame
    assert len(list((split.root / "mask").iterdir())) == 9
    conversion = json.loads((split.root / "conversion.json").read_text())
    assert conversion["scored_frames"] == str(listed) and len(conversion["sha256"]) == 16


def test_mttr_samples_metadata_is_accepted(fake, tmp_path):
    chosen = {VIDEOS[0]: [1, 3, 5], VIDEOS[1]: [2, 3, 4], VIDEOS[2]: [1, 2, 4]}
    path = tmp_path / "jhmdb_sentences_samples_metadata.json"
    path.write_text(json.dumps(mttr_metadata(fake, chosen)))
    prepare_jhmdb(fake.root, tmp_path / "datasets", scored=path)
    split = LayoutSplit.open(tmp_path / "datasets" / "JHMDB")
    assert {s.video: [int(f) for f in s.labels] for s in split.samples} == chosen


def test_interrupted_run_resumes_with_the_same_options_only(fake, tmp_path, monkeypatch):
    out = tmp_path / "datasets"
    real = jhmdb_release.usable_frames
    calls = []

    def failing_second(video):
        calls.append(video.video_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(video)

    monkeypatch.setattr(jhmdb_release, "usable_frames", failing_second)
    with pytest.raises(KeyboardInterrupt):
        prepare_jhmdb(fake.root, out)
    assert not (out / "JHMDB").exists() and (out / "JHMDB.partial").is_dir()

    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(make_scored_frames(USABLE)))
    with pytest.raises(ReleaseError, match="other options"):
        prepare_jhmdb(fake.root, out, scored=listed)

    calls.clear()
    monkeypatch.setattr(jhmdb_release, "usable_frames", lambda v: (calls.append(v.video_id), real(v))[1])
    summary = prepare_jhmdb(fake.root, out)
    assert calls == VIDEOS[1:] and summary.resumed_videos == 1
    assert len(LayoutSplit.open(out / "JHMDB").samples) == 3 and not (out / "JHMDB.partial").exists()
    assert prepare_jhmdb(fake.root, out).status == "already complete (skipped)"


def _write_mat(path, masks_t_h_w):
    scipy.io.savemat(str(path), {"part_mask": np.moveaxis(masks_t_h_w, 0, 2).astype(np.uint8)})


def _append(path, text):
    path.write_text(path.read_text() + text)


BAD_INPUTS = {
    "missing mat file": (
        lambda r: (r / "puppet_mask" / VIDEOS[1] / "puppet_mask.mat").unlink(),
        "mask file missing",
        f"{VIDEOS[1]}/puppet_mask.mat",
    ),
    "mat without part_mask": (
        lambda r: scipy.io.savemat(
            str(r / "puppet_mask" / VIDEOS[1] / "puppet_mask.mat"), {"other": np.ones(3)}
        ),
        "no 'part_mask' variable",
        f"{VIDEOS[1]}/puppet_mask.mat",
    ),
    "missing frame": (
        lambda r: (r / "Rename_Images" / VIDEOS[2] / "00002.png").unlink(),
        "frame file missing",
        f"{VIDEOS[2]}/00002.png",
    ),
    "missing frame folder": (
        lambda r: _append(r / "jhmdb_annotation.txt", "Nowhere_video,a man\n"),
        "no frame folder",
        "jhmdb_annotation.txt: line 5",
    ),
    "mask size differs from frame": (
        lambda r: _write_mat(r / "puppet_mask" / VIDEOS[1] / "puppet_mask.mat", np.ones((4, 20, 32), bool)),
        "masks of",
        f"{VIDEOS[1]}/00001.png",
    ),
    "expression with no text": (
        lambda r: _append(r / "jhmdb_annotation.txt", "Other_video,   \n"),
        "expression with no text",
        "jhmdb_annotation.txt: line 5",
    ),
    "malformed row": (
        lambda r: _append(r / "jhmdb_annotation.txt", "a,b,c\n"),
        "expected 2 fields",
        "jhmdb_annotation.txt: line 5",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_release_gives_an_error_naming_the_file(case, fake, tmp_path):
    damage, message, where = BAD_INPUTS[case]
    damage(fake.root)
    with pytest.raises(ReleaseError) as error:
        prepare_jhmdb(fake.root, tmp_path / "datasets")
    assert message in str(error.value) and where in str(error.value)
    assert not (tmp_path / "datasets" / "JHMDB").exists()


BAD_LISTS = {
    "not JSON": ("[1, 2", "malformed JSON"),
    "neither format": ('{"videos": {}}', "neither our scored-frame list"),
    "short MTTR row": ('[["Hair_brushing_u_nm", "x/00001.png"]]', "row 0: expected [video_id"),
    "frame past the masks": (None, "scored frame 6 is past its 5 frames"),
    "unknown video": (
        '{"format": "locater-jhmdb-scored-frames", "videos": {"run/Elsewhere": [1]}}',
        "video 'run/Elsewhere' is not in the release",
    ),
    "video left out": (
        '{"format": "locater-jhmdb-scored-frames", "videos": {}}',
        "no scored frames for 3 video",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LISTS))
def test_bad_scored_frame_list_gives_an_error_naming_the_file(case, fake, tmp_path):
    text, message = BAD_LISTS[case]
    if text is None:
        data = make_scored_frames(USABLE)
        data["videos"][VIDEOS[0]] = [1, 2, 6]
        text = json.dumps(data)
    path = tmp_path / "list.json"
    path.write_text(text)
    with pytest.raises(ReleaseError) as error:
        prepare_jhmdb(fake.root, tmp_path / "datasets", scored=path)
    assert message in str(error.value)
    assert "list.json" in str(error.value)
    assert not (tmp_path / "datasets" / "JHMDB").exists()


def test_frame_size_is_checked_against_masks_of_the_right_orientation(fake):
    masks = jhmdb_release.read_puppet_masks(fake.root / "puppet_mask" / VIDEOS[0] / "puppet_mask.mat")
    assert masks.shape == (5, *JHMDB_SIZE) and masks.dtype == bool
    np.testing.assert_array_equal(masks, fake.masks[VIDEOS[0]])
