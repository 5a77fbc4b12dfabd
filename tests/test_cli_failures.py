"""Every command ends a failure it can name with one line and a documented exit code (docs/exit-codes.md); output
folders hold one run's files; summaries are written last."""

import errno
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers_data import make_checkpoint, make_split

from locater.checkpoint import CheckpointError
from locater.cli import demo, evaluate
from locater.cli.entry import command
from locater.cli.output_dir import OutputFolderError, prepare_output_dir
from locater.errors import (
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NON_FINITE,
    EXIT_OUTPUT,
    OutputError,
    write_failure,
)

pytestmark = pytest.mark.hardening


# ------------------------------------------------------------------------------------------------ the wrapper
def _raising(error):
    @command
    def main(argv=None):
        raise error

    return main


@pytest.mark.parametrize(
    "error,code,text",
    [
        (CheckpointError("ckpt.pt: cannot read checkpoint"), EXIT_BAD_INPUT, "error: ckpt.pt: cannot read"),
        (ValueError("eval.max_videos must be >= 0"), EXIT_BAD_INPUT, "error: eval.max_videos must be >= 0"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "in.yaml"), EXIT_BAD_INPUT, "in.yaml"),
        (OSError(errno.ENOSPC, "No space left on device", "out/x.png"), EXIT_OUTPUT, "(ENOSPC)"),
        (PermissionError(errno.EACCES, "Permission denied", "out"), EXIT_OUTPUT, "out: permission denied"),
        (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted"),
        (ZeroDivisionError("division by zero"), EXIT_INTERNAL, "internal error: ZeroDivisionError"),
    ],
)
def test_a_failure_is_one_line_and_its_exit_code(capsys, monkeypatch, error, code, text):
    monkeypatch.delenv("LOCATER_DEBUG", raising=False)
    assert _raising(error)([]) == code
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert code in EXIT_CODES  # every code a command can return is in the documented table


def test_debug_flag_and_environment_show_the_traceback(capsys, monkeypatch):
    monkeypatch.delenv("LOCATER_DEBUG", raising=False)
    seen = []

    @command
    def main(argv=None):
        seen.append(list(argv))
        raise ZeroDivisionError("division by zero")

    assert main(["--debug", "x=1"]) == EXIT_INTERNAL
    assert seen == [["x=1"]]  # the flag is the wrapper's, not the command's
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("LOCATER_DEBUG", "1")
    assert main([]) == EXIT_INTERNAL
    assert "Traceback" in capsys.readouterr().err


def test_a_write_failure_hidden_by_torch_names_the_file_and_enospc():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as cause:
            raise RuntimeError("[enforce fail at inline_container.cc:672] file write failed") from cause
    except RuntimeError as wrapped:
        error = write_failure("runs/x/checkpoints/step_00000010.pt", wrapped)
    assert isinstance(error, OutputError) and error.exit_code == EXIT_OUTPUT
    assert str(error) == "cannot write runs/x/checkpoints/step_00000010.pt: no space left on device (ENOSPC)"


def test_the_exit_code_table_in_the_docs_matches_the_code():
    page = Path("docs/exit-codes.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} |" in page, code
    assert EXIT_NON_FINITE == 1 and EXIT_BAD_INPUT == 2


# ----------------------------------------------------------------------------------------- output folders
def test_output_folder_is_new_or_empty_or_cleared_of_our_outputs_only(tmp_path):
    out = tmp_path / "out"
    assert prepare_output_dir(out, ["a.json", "masks"], overwrite=False) == out and out.is_dir()
    (out / "a.json").write_text("{}")
    (out / "masks").mkdir()
    (out / "masks" / "1.png").write_bytes(b"x")
    with pytest.raises(OutputFolderError, match="not empty .*--overwrite"):
        prepare_output_dir(out, ["a.json", "masks"], overwrite=False)
    prepare_output_dir(out, ["a.json", "masks"], overwrite=True)
    assert list(out.iterdir()) == []
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="does not write \\(notes.txt\\)"):
        prepare_output_dir(out, ["a.json", "masks"], overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"  # never deleted
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="not a folder"):
        prepare_output_dir(tmp_path / "file", [], overwrite=True)


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_failures")
    folder = root / "frames"
    folder.mkdir()
    for i in range(6):
        frame = np.full((24, 32, 3), 20 * i, np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    return {"video": folder, "ckpt": make_checkpoint(root / "tiny.pt")}


def _demo_args(inputs, out, *texts, extra=()):
    args = ["--checkpoint", str(inputs["ckpt"]), "--video", str(inputs["video"]), "--out", str(out)]
    for text in texts:
        args += ["--text", text]
    return [*args, "--device", "cpu", "--no-progress", *extra]


def test_demo_refuses_a_used_folder_and_overwrite_leaves_one_runs_files(tmp_path, demo_inputs, capsys):
    out = tmp_path / "out"
    assert demo.main(_demo_args(demo_inputs, out, "a", "b", "c")) == 0
    capsys.readouterr()
    assert demo.main(_demo_args(demo_inputs, out, "a", extra=["--max-frames", "3"])) == EXIT_BAD_INPUT
    assert "not empty" in capsys.readouterr().err
    assert demo.main(_demo_args(demo_inputs, out, "a", extra=["--max-frames", "3", "--overwrite"])) == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["sentence_0"]  # no stale sentence_1, _2
    assert len(list((out / "masks" / "sentence_0").iterdir())) == 3  # no stale frames 4-6
    assert json.loads((out / "summary.json").read_text())["frames"] == 3


def test_demo_rejects_bad_flags_and_empty_sentences(tmp_path, demo_inputs, capsys):
    for extra in (["--threshold", "7"], ["--threshold", "0"], ["--no-masks", "--no-overlay"]):
        with pytest.raises(SystemExit) as exit_info:
            demo.main(_demo_args(demo_inputs, tmp_path / "o", "a", extra=extra))
        assert exit_info.value.code == EXIT_BAD_INPUT
    assert "--threshold must lie in (0, 1)" in capsys.readouterr().err
    assert demo.main(_demo_args(demo_inputs, tmp_path / "o", "a", "  ")) == EXIT_BAD_INPUT
    assert "--text number 2 is empty" in capsys.readouterr().err


def test_demo_on_a_full_disk_names_the_file_and_leaves_no_summary(tmp_path, demo_inputs, capsys, monkeypatch):
    out = tmp_path / "out"
    real_write_bytes = Path.write_bytes
    written = []

    def write_bytes(self, data):
        if self.suffix == ".png" and "masks" in self.parts:
            written.append(self)
            if len(written) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    assert demo.main(_demo_args(demo_inputs, out, "a")) == EXIT_OUTPUT
    err = capsys.readouterr().err
    assert f"cannot write {written[-1]}: no space left on device (ENOSPC)" in err and "Traceback" not in err
    assert not (out / "summary.json").exists() and not (out / "overlay.mp4").exists()


def test_evaluator_refuses_a_used_folder_unless_overwrite(tmp_path, capsys):
    split = make_split(tmp_path, num_videos=1, size=32)
    ckpt = make_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "out"
    out.mkdir()
    (out / "masks").mkdir()
    (out / "masks" / "stale.png").write_bytes(b"x")
    args = ["--config", "configs/model/tiny.yaml", "--checkpoint", str(ckpt), f"eval.split_dir={split}"]
    args += ["--output-dir", str(out), "--no-progress"]
    assert evaluate.main(args) == EXIT_BAD_INPUT
    assert "not empty (masks)" in capsys.readouterr().err
    assert evaluate.main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "metrics.json",
        "metrics.md",
        "per_frame.csv",
    ]
    (out / "mine.txt").write_text("x")
    assert evaluate.main([*args, "--overwrite"]) == EXIT_BAD_INPUT
    assert "does not write (mine.txt)" in capsys.readouterr().err


@pytest.mark.slow
def test_a_tool_run_as_a_process_prints_one_line_and_exits_with_the_code(tmp_path):
    """The console commands go through the same wrapper: a missing config is exit 2, one line, no traceback."""
    result = subprocess.run(
        [sys.executable, "tools/train.py", "--config", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert "missing.yaml" in result.stderr and "Traceback" not in result.stderr
