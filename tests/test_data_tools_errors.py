"""The data tools end with a named one-line error and an exit code, and refuse out-of-range options up front.

``make_synthetic``, ``prepare_a2d``, ``prepare_jhmdb``, ``build_a2d_plus`` and ``python -m locater.data.check``
used to end a failure with a raw traceback and exit 1, and ``make_synthetic --size 100000`` tried to allocate
hundreds of GiB. A ground-truth mask of another size than its frame used to be resized and scored silently.
"""

import json

import cv2
import numpy as np
import pytest
import torch
from helpers_data import make_split
from PIL import Image

from locater.cli import build_a2d_plus, make_synthetic, prepare_a2d, prepare_jhmdb
from locater.data import check
from locater.data.layout import LayoutError, LayoutSplit
from locater.data.ytvos import YTVOSError, YTVOSSplit
from locater.engine.evaluator import evaluate_layout_split

pytestmark = pytest.mark.hardening

TOOLS = [make_synthetic.main, prepare_a2d.main, prepare_jhmdb.main, build_a2d_plus.main, check.main]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    # restored after each test: ``--debug`` sets LOCATER_DEBUG for child processes
    monkeypatch.delenv("LOCATER_DEBUG", raising=False)


def _refused(main, argv, capsys) -> str:
    """Run ``main(argv)``, expect argparse's exit 2, return stderr."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--size", "100000"], "--size must be between 16 and 1024 pixels, got 100000"),
        (["--size", "8"], "--size must be between 16 and 1024 pixels, got 8"),
        (["--num-train", "-1"], "--num-train must be >= 0 (0: no train split), got -1"),
        (["--num-test", "0"], "--num-test must be >= 1 (videos per test split), got 0"),
        (["--workers", "0"], "--workers must be >= 1 (1: in this process), got 0"),
        (["--seed", "-3"], "--seed must be >= 0, got -3"),
        (["--train-mix", "0", "0", "0", "0"], "--train-mix needs 4 weights >= 0, not all 0"),
    ],
)
def test_make_synthetic_bounds(argv, message, tmp_path, capsys):
    err = _refused(make_synthetic.main, ["--out", str(tmp_path / "syn"), *argv], capsys)
    assert message in err
    assert not (tmp_path / "syn").exists()


@pytest.mark.parametrize("main", [prepare_a2d.main, prepare_jhmdb.main])
def test_converter_workers_bound(main, tmp_path, capsys):
    err = _refused(main, ["--root", str(tmp_path), "--out", str(tmp_path / "out"), "--workers", "0"], capsys)
    assert "--workers must be >= 1 (1: in this process), got 0" in err


def test_prepare_jhmdb_bounds(tmp_path, capsys):
    base = ["--root", str(tmp_path), "--make-scored-list", str(tmp_path / "list.json")]
    assert "--seed must be >= 0, got -1" in _refused(prepare_jhmdb.main, [*base, "--seed", "-1"], capsys)
    err = _refused(prepare_jhmdb.main, [*base, "--frames-per-video", "0"], capsys)
    assert "--frames-per-video must be >= 1, got 0" in err


def test_check_bound(tmp_path, capsys):
    assert "--num-global must be >= 0" in _refused(check.main, [str(tmp_path), "--num-global", "-1"], capsys)


@pytest.mark.parametrize(
    "main, argv, message",
    [
        (prepare_a2d.main, ["--root", "{missing}", "--out", "{out}"], "A2D-Sentences folder not found: "),
        (prepare_jhmdb.main, ["--root", "{missing}", "--out", "{out}"], "JHMDB-Sentences folder not found: "),
        (build_a2d_plus.main, ["--a2d", "{missing}", "--out", "{out}"], "split folder not found: "),
        (check.main, ["{missing}"], "folder not found: "),
    ],
)
def test_failure_is_one_named_line(main, argv, message, tmp_path, capsys):
    missing, out = tmp_path / "missing", tmp_path / "out"
    code = main([arg.format(missing=missing, out=out) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"error: {message}{missing}") and "Traceback" not in err
    assert not out.exists()


def test_make_synthetic_failure_is_named(tmp_path, capsys):
    (tmp_path / "NORM").mkdir()
    (tmp_path / "NORM" / "keep.txt").write_text("not ours")
    argv = ["--out", str(tmp_path), "--num-train", "0", "--num-test", "1", "--size", "16", "--workers", "1"]
    assert make_synthetic.main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {tmp_path / 'NORM'}: exists and is not a synthetic split (no scenes.json); not overwriting it"
    ]
    assert (tmp_path / "NORM" / "keep.txt").is_file()


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert prepare_a2d.main(["--root", str(tmp_path / "missing"), "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ReleaseError" in err
    assert err.rstrip().splitlines()[-1].startswith("error: A2D-Sentences folder not found: ")


@pytest.mark.parametrize("main", TOOLS)
def test_help_lists_debug(main, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0 and "--debug" in capsys.readouterr().out


def test_wrong_size_ground_truth_is_named(tmp_path, tiny_model):
    split_dir = make_split(tmp_path, num_videos=1, num_frames=5, size=16)  # frames are 16 x 24
    split = LayoutSplit.open(split_dir)
    sample = split.samples[0]
    mask_file = split.mask_path(sample.video, sample.expression, sample.labels[0])
    torch.save(torch.ones(12, 20, dtype=torch.uint8), mask_file)
    frame_file = split.frame_path(sample.video, sample.labels[0])
    expected = f"{mask_file}: mask is 12 x 20 \\(H x W\\), its frame {frame_file} is 16 x 24"
    with pytest.raises(LayoutError, match=expected):
        split.load_mask(sample.video, sample.expression, sample.labels[0])
    with pytest.raises(LayoutError, match=expected):
        evaluate_layout_split(tiny_model, split, torch.device("cpu"), progress=False)
    assert split.load_mask(sample.video, sample.expression, sample.labels[1]).shape == (16, 24)


def test_wrong_size_ytvos_annotation_is_named(tmp_path):
    video = tmp_path / "train" / "JPEGImages" / "v0"
    video.mkdir(parents=True)
    cv2.imwrite(str(video / "00000.jpg"), np.zeros((8, 10, 3), np.uint8))
    annotation = tmp_path / "train" / "Annotations" / "v0" / "00000.png"
    annotation.parent.mkdir(parents=True)
    Image.fromarray(np.ones((6, 10), np.uint8), mode="L").save(annotation)
    meta = {"videos": {"v0": {"expressions": {"0": {"exp": "a cat", "obj_id": "1"}}, "frames": ["00000"]}}}
    (tmp_path / "meta_expressions" / "train").mkdir(parents=True)
    (tmp_path / "meta_expressions" / "train" / "meta_expressions.json").write_text(json.dumps(meta))
    split = YTVOSSplit.open(tmp_path, "train")
    with pytest.raises(
        YTVOSError, match=f"{annotation}: annotation is 6 x 10 \\(H x W\\), its frame .*00000.jpg is 8 x 10"
    ):
        split.load_mask("v0", "0", "00000")
