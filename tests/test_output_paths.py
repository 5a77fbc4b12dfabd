"""Ids read from data files never make a path or a zip member leave its root.

A video id such as ``../../escape`` in an expressions file, a Ref-YouTube-VOS meta file or an A2D
``videoset.csv`` used to write outside ``--output-dir`` (saved masks), into ``Annotations/../..`` zip members or
outside the converter's output; a symlink inside the output folder did the same. Each is now a named
:class:`UnsafePathError` (exit code 2) and nothing is written outside the root.
"""

import json
import zipfile

import cv2
import numpy as np
import pytest
import torch
from fake_releases import make_fake_a2d, make_fake_jhmdb
from helpers_data import make_split

from locater.data.check import main as check_main
from locater.data.frames import DataError, UnsafePathError
from locater.data.layout import LayoutSplit
from locater.data.releases.a2d import prepare_a2d
from locater.data.releases.jhmdb import prepare_jhmdb
from locater.data.ytvos import SubmissionWriter, YTVOSSplit
from locater.engine.evaluator import evaluate_layout_split
from locater.paths import contained_path, id_parts, safe_archive_name, safe_component

pytestmark = pytest.mark.hardening

BAD = "../../escape"


def _tree(root):
    """Every path below ``root``, relative, sorted (what a run left on the file system)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _rename_video(split_dir, old, new):
    """Give video ``old`` of a layout split the id ``new`` in its expressions file and count dict."""
    path = next(split_dir.glob("*_expressions.json"))
    data = json.loads(path.read_text())
    data = {new if video == old else video: entry for video, entry in data.items()}
    path.write_text(json.dumps(data))
    counts = torch.load(split_dir / "vid_frame_dict.pth")
    torch.save(
        {new if video == old else video: n for video, n in counts.items()}, split_dir / "vid_frame_dict.pth"
    )
    return path


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a\x00b", "C:x", "/etc"])
def test_helpers_refuse_what_is_not_a_plain_name(name, tmp_path):
    with pytest.raises(UnsafePathError, match="ids.json: unsafe video id"):
        safe_component(name, "video id", "ids.json")
    assert issubclass(UnsafePathError, DataError) and UnsafePathError.exit_code == 2
    if name not in ("a/b", "/etc"):  # "a/b" is a valid action/video id; "/etc" has an empty first part
        with pytest.raises(UnsafePathError):
            id_parts(name, "video id", "ids.json")
    with pytest.raises(UnsafePathError):
        safe_archive_name("Annotations", "..", "00000.png", source="meta.json")
    assert safe_archive_name("Annotations", "v0", "1", "00000.png") == "Annotations/v0/1/00000.png"
    assert contained_path(tmp_path, "catch/Catch_me", "0") == tmp_path / "catch" / "Catch_me" / "0"
    with pytest.raises(UnsafePathError, match="'catch/\\.\\./\\.\\./x'"):
        contained_path(tmp_path, "catch/../../x", source="ids.json")


def test_contained_path_refuses_a_symlink_out(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "vid").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(UnsafePathError, match="outside .*out"):
        contained_path(tmp_path / "out", "vid", "0", "00001.png", source="x.json")


def test_layout_reader_refuses_a_dotdot_id_at_open(tmp_path):
    split_dir = make_split(tmp_path, num_videos=1, num_frames=5, size=16)
    path = _rename_video(split_dir, "vid00", BAD)
    with pytest.raises(UnsafePathError, match=f"{path.name}: unsafe video id '{BAD}'"):
        LayoutSplit.open(split_dir)
    data = json.loads(path.read_text())
    data = {"vid00": data[BAD]}
    data["vid00"]["expressions"]["../x"] = data["vid00"]["expressions"].pop("0")
    path.write_text(json.dumps(data))
    _rename_video(split_dir, BAD, "vid00")
    with pytest.raises(UnsafePathError, match="video 'vid00': unsafe expression id '../x'"):
        LayoutSplit.open(split_dir)


def test_evaluator_save_masks_stay_in_the_output_folder(tmp_path, tiny_model):
    split_dir = make_split(tmp_path / "data", num_videos=1, num_frames=5, size=16)
    out = tmp_path / "out"
    # the reader refuses such an id; a split object holding one anyway (a reader of another format, a bug) must
    # still not make the evaluator write outside ``out``
    split = LayoutSplit.open(split_dir)
    load_frame, load_mask = split.load_frame, split.load_mask
    for sample in split.samples:
        sample.video = BAD
    split.load_frame = lambda video, frame: load_frame("vid00", frame)
    split.load_mask = lambda video, expression, frame: load_mask("vid00", expression, frame)
    with pytest.raises(UnsafePathError, match=f"_expressions.json: unsafe video or expression id '{BAD}'"):
        evaluate_layout_split(
            tiny_model, split, torch.device("cpu"), save_masks_dir=out / "masks", progress=False
        )
    assert {p.split("/")[0] for p in _tree(tmp_path)} <= {"data", "out"}
    assert not (tmp_path / "escape").exists() and not list(out.rglob("*.png"))

    # a symlink planted in the output folder is not followed out of it either
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "masks" / "vid00").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="outside"):
        evaluate_layout_split(
            tiny_model,
            LayoutSplit.open(split_dir),
            torch.device("cpu"),
            save_masks_dir=out / "masks",
            progress=False,
        )
    assert _tree(elsewhere) == []


def _fake_ytvos_valid(root, video="v0"):
    """A Ref-YouTube-VOS ``valid`` split: one video of two 8 x 10 frames, one expression."""
    frames = ["00000", "00005"]
    for frame in frames:
        (root / "valid" / "JPEGImages" / "v0").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(
            str(root / "valid" / "JPEGImages" / "v0" / f"{frame}.jpg"), np.zeros((8, 10, 3), np.uint8)
        )
    meta = {"videos": {video: {"expressions": {"0": {"exp": "a cat"}}, "frames": frames}}}
    (root / "meta_expressions" / "valid").mkdir(parents=True, exist_ok=True)
    path = root / "meta_expressions" / "valid" / "meta_expressions.json"
    path.write_text(json.dumps(meta))
    return path


def test_submission_zip_members_stay_under_annotations(tmp_path):
    meta = _fake_ytvos_valid(tmp_path / "ytvos", video=BAD)
    with pytest.raises(UnsafePathError, match=f"meta_expressions.json: unsafe video id '{BAD}'"):
        YTVOSSplit.open(tmp_path / "ytvos", "valid")
    meta.write_text(meta.read_text().replace(json.dumps(BAD), '"v0"'))
    split = YTVOSSplit.open(tmp_path / "ytvos", "valid")
    for sample in split.samples:  # a split object holding such an id anyway: the writer refuses the member
        sample.video = BAD
    zip_path = tmp_path / "out" / "submission.zip"
    with pytest.raises(UnsafePathError, match=f"meta_expressions.json: unsafe id '{BAD}'"):
        with SubmissionWriter(zip_path, split) as writer:
            for frame in split.samples[0].frames:
                writer.add(BAD, "0", frame, np.ones((8, 10), bool))
    assert _tree(tmp_path / "out") == [] and not (tmp_path / "escape").exists()

    split = YTVOSSplit.open(tmp_path / "ytvos", "valid")
    with SubmissionWriter(zip_path, split) as writer:
        for frame in split.samples[0].frames:
            writer.add("v0", "0", frame, np.ones((8, 10), bool))
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.namelist() == ["Annotations/v0/0/00000.png", "Annotations/v0/0/00005.png"]


def test_a2d_converter_refuses_a_dotdot_video_id(tmp_path):
    fake = make_fake_a2d(tmp_path / "A2D")
    videoset = fake.root / "Release" / "videoset.csv"
    videoset.write_text(videoset.read_text().replace("vidTestB,", f"{BAD},"))
    before = _tree(tmp_path)
    with pytest.raises(UnsafePathError, match=f"videoset.csv: line 2: unsafe video id '{BAD}'"):
        prepare_a2d(fake.root, tmp_path / "datasets")
    assert _tree(tmp_path) == before  # nothing written, inside the output or out of it


def test_jhmdb_converter_refuses_a_dotdot_video_name(tmp_path):
    fake = make_fake_jhmdb(tmp_path / "JHMDB_release")
    sentences = fake.root / "jhmdb_annotation.txt"
    sentences.write_text(sentences.read_text().replace("Catch_the_ball_f_cm,", "..,"))
    before = _tree(tmp_path)
    with pytest.raises(UnsafePathError, match="jhmdb_annotation.txt: line 3: unsafe video id '..'"):
        prepare_jhmdb(fake.root, tmp_path / "datasets")
    assert _tree(tmp_path) == before


def test_checker_reports_unsafe_ids(tmp_path, capsys):
    split_dir = make_split(tmp_path, num_videos=2, num_frames=5, size=16)
    _rename_video(split_dir, "vid00", BAD)
    assert check_main([str(split_dir)]) == 1
    out = capsys.readouterr().out
    assert f"problem: {split_dir / 'A2D_NORM_test_expressions.json'}: unsafe video id '{BAD}'" in out
    assert "FAILED: 1 problem in 1 split" in out and "OK" not in out.splitlines()[-1]
