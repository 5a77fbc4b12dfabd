"""The browser app without a browser (locater.app.session, .examples, locater.cli.app): the messages for bad input,
the masks zip equal to VideoSegmenter's masks, webcam frames through the live mode, the example videos, the
command's flags; and that ``import locater`` never needs Gradio."""

import json
import socket
import subprocess
import sys
import zipfile

import cv2
import numpy as np
import pytest
from app_fixtures import (
    SENTENCES,
    contrast_checkpoint,
    reference_masks,
    synthetic_frames,
    write_video,
    zip_masks,
)

from locater.app import examples
from locater.app.session import (
    MAX_SENTENCES,
    AppInputError,
    AppSession,
    NoCheckpointError,
    open_upload,
    parse_sentences,
)
from locater.checkpoint import CheckpointError
from locater.cli import app as app_cli
from locater.data.synthetic import generate_video
from locater.data.synthetic.files import video_seed
from locater.inference import VideoSegmenter
from locater.video_io import VideoError, VideoFileReader


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    video = write_video(root / "small clip.mp4", synthetic_frames())
    checkpoint = contrast_checkpoint(root / "tiny.pt", video)
    return {
        "root": root,
        "video": video,
        "short": write_video(root / "short.mp4", synthetic_frames(num_frames=2)),
        "checkpoint": checkpoint,
        "masks": reference_masks(checkpoint, video),
    }


@pytest.fixture(scope="module")
def session(assets):
    root = assets["root"]
    return AppSession.from_checkpoint(
        assets["checkpoint"], root / "work", root / "examples", device="cpu", amp="off", keep_results=2
    )


# ------------------------------------------------------------------------------------------------ sentences
def test_sentences_one_per_line_and_the_refusals():
    assert parse_sentences("  the red circle \nthe blue star\n\n") == ["the red circle", "the blue star"]
    for text in ("", "   \n \n", None):
        with pytest.raises(AppInputError, match="type a sentence describing the object"):
            parse_sentences(text)
    with pytest.raises(AppInputError, match="sentence line 2 is empty"):
        parse_sentences("the red circle\n   \nthe blue star")
    with pytest.raises(AppInputError, match=f"at most {MAX_SENTENCES}"):
        parse_sentences("\n".join(f"object {i}" for i in range(MAX_SENTENCES + 1)))


# ------------------------------------------------------------------------------------------------ uploads
def test_not_a_video_broken_empty_and_too_long_uploads_are_named(tmp_path, assets):
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    with pytest.raises(AppInputError, match=r"notes\.txt: not a video; upload a video file \(\.mp4"):
        open_upload(text, tmp_path, 100)
    broken = tmp_path / "upload-4f2a" / "holiday.mp4"
    broken.parent.mkdir()
    broken.write_bytes(b"\x00garbage, not an mp4\n" * 40)
    with pytest.raises(VideoError) as caught:
        open_upload(broken, tmp_path, 100)
    # the message names the file as the user knows it, not the server's temporary path
    assert str(caught.value) == "holiday.mp4: OpenCV cannot open this file as a video"
    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 8.0, (64, 64))
    writer.release()
    with pytest.raises(VideoError, match=r"^empty\.avi: no frame could be decoded$"):
        open_upload(empty, tmp_path, 100)
    with pytest.raises(AppInputError) as caught:
        open_upload(assets["video"], tmp_path, 5)
    assert str(caught.value).startswith(
        "small clip.mp4: 6 frames (0:00:01 at 8 frames/s); this app segments at most 5"
    )
    assert "--max-frames" in str(caught.value)
    assert open_upload(assets["video"], tmp_path, 6).num_frames == 6


def test_zip_of_frames_and_its_refusals(tmp_path):
    frames = synthetic_frames(num_frames=4)
    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for index in (10, 9, 2, 1):  # natural order, not the archive's
            _, png = cv2.imencode(".png", cv2.cvtColor(frames[[10, 9, 2, 1].index(index)], cv2.COLOR_RGB2BGR))
            out.writestr(f"clip/frame{index}.png", png.tobytes())
        out.writestr("clip/README.txt", "ignored")
        out.writestr("__MACOSX/clip/._frame1.png", "ignored")
    reader = open_upload(archive, tmp_path / "work", 10)
    assert reader.num_frames == 4 and [p.name for p in reader.files] == [
        f"frame{i}.png" for i in (1, 2, 9, 10)
    ]
    assert np.array_equal(reader.read(3), frames[0])  # frame10.png
    with pytest.raises(AppInputError, match=r"frames\.zip: 4 frames; this app segments at most 3"):
        open_upload(archive, tmp_path / "work2", 3)
    no_frames = tmp_path / "no frames.zip"
    with zipfile.ZipFile(no_frames, "w") as out:
        out.writestr("notes.txt", "hello")
    with pytest.raises(AppInputError, match=r"no frames\.zip: the zip holds no image files"):
        open_upload(no_frames, tmp_path / "work3", 10)
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as out:
        out.writestr("a/1.png", b"x")
        out.writestr("b/1.png", b"x")
    with pytest.raises(AppInputError, match="frames in several folders of the zip"):
        open_upload(two, tmp_path / "work4", 10)
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK not really")
    with pytest.raises(AppInputError, match=r"fake\.zip: not a zip archive"):
        open_upload(fake, tmp_path / "work5", 10)


# ------------------------------------------------------------------------------------------------ runs
def test_run_writes_the_segmenters_masks_and_a_playable_overlay(session, assets):
    calls = []
    result = session.run(
        assets["video"], "\n".join(SENTENCES), progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(k, 6) for k in range(1, 7)]
    assert (result.frames, result.frame_size, result.sentences) == (6, (128, 128), SENTENCES)
    assert result.describe().startswith("6 frames processed (128x128, 2 sentences) in ")
    assert "frames/s on cpu" in result.describe()
    index, masks = zip_masks(result.masks_zip.read_bytes())
    assert index["sentences"] == list(SENTENCES) and index["folders"] == ["sentence_0", "sentence_1"]
    assert (index["video"], index["frames"], index["frame_size"]) == ("small clip.mp4", 6, [128, 128])
    assert np.array_equal(masks, assets["masks"])
    assert 0.05 < masks.mean() < 0.95 and all(0 < m.mean() < 1 for m in masks)  # non-trivial masks
    overlay = VideoFileReader(result.overlay)
    assert result.overlay.suffix == ".webm" and overlay.num_frames == 6 and overlay.frame_size == (128, 128)
    # the legend's colour swatch of the first sentence is drawn in the top-left corner
    assert np.abs(overlay.read(0)[8:12, 4:8].astype(int) - (230, 25, 75)).mean() < 40


def test_a_zip_of_frames_gives_the_masks_of_the_frames(session, assets, tmp_path):
    frames = synthetic_frames(num_frames=3)
    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for index, frame in enumerate(frames, start=1):
            out.writestr(
                f"{index:03d}.png", cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))[1].tobytes()
            )
    result = session.run(archive, SENTENCES[0])
    _, masks = zip_masks(result.masks_zip.read_bytes())
    segmenter = session.segmenter
    expected = np.stack([r.masks.numpy() for r in segmenter.segment(frames, [SENTENCES[0]])], axis=1)
    assert np.array_equal(masks, expected)  # lossless frames: exactly the frames' masks
    assert not (result.masks_zip.parent / "frames").exists()  # the extracted frames are removed


def test_failed_runs_leave_nothing_and_old_runs_are_pruned(session, assets, tmp_path):
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"\x1a\x45\xdf\xa3 broken")
    before = set(session.work_dir.glob("run-*"))
    with pytest.raises(VideoError, match=r"^broken\.webm: OpenCV cannot open this file as a video$"):
        session.run(broken, "the green disk")
    with pytest.raises(AppInputError, match="sentence line 2 is empty"):
        session.run(assets["video"], "a\n\nb")
    with pytest.raises(AppInputError, match="choose an example video or upload"):
        session.run(None, "the green disk")
    mixed = tmp_path / "mixed.zip"  # the third frame has another size: found while streaming, after 2 frames
    with zipfile.ZipFile(mixed, "w") as out:
        for index, side in enumerate((64, 64, 32), start=1):
            out.writestr(
                f"{index}.png", cv2.imencode(".png", np.zeros((side, side, 3), np.uint8))[1].tobytes()
            )
    with pytest.raises(
        VideoError, match=r"^mixed\.zip/3\.png: frame is 32x32, the first frame 1\.png is 64x64"
    ):
        session.run(mixed, "the green disk")
    assert set(session.work_dir.glob("run-*")) <= before  # no overlay, zip or frames left behind
    session.run(assets["short"], "the green disk")
    session.run(assets["short"], "the green disk")
    assert len(list(session.work_dir.glob("run-*"))) == 2  # keep_results


def test_without_a_checkpoint_the_page_names_the_command(tmp_path):
    session = AppSession.from_checkpoint(
        None, tmp_path / "work", tmp_path / "examples", default_checkpoint=tmp_path / "runs" / "last.pt"
    )
    assert not session.ready
    assert "bash scripts/quickstart.sh" in session.describe() and "--checkpoint PATH" in session.describe()
    with pytest.raises(NoCheckpointError, match="bash scripts/quickstart.sh"):
        session.run(tmp_path / "video.mp4", "the green disk")
    with pytest.raises(NoCheckpointError):
        session.webcam("the green disk")
    with pytest.raises(
        CheckpointError, match="missing.pt"
    ):  # a checkpoint named but absent: an error at once
        AppSession.from_checkpoint(tmp_path / "missing.pt", tmp_path / "work", tmp_path / "examples")


# ------------------------------------------------------------------------------------------------ webcam
def test_webcam_frames_pushed_one_at_a_time_follow_the_live_mode(session):
    frames = synthetic_frames(num_frames=3)
    stream = session.webcam("\n".join(SENTENCES))
    pushed = [stream.push(frame) for frame in frames]
    expected = list(session.segmenter.segment(frames, list(SENTENCES), live=True))
    for (overlay, result), reference in zip(pushed, expected):
        assert overlay.shape == frames[0].shape and overlay.dtype == np.uint8
        assert torch_equal(result.masks, reference.masks)
        assert result.global_frames == reference.global_frames
    assert stream.frames == 3 and stream.describe().startswith("3 frames processed, ")
    assert stream.seconds_per_frame > 0 and "ms a frame on cpu" in stream.describe()
    frozen = frames[0].copy()
    frozen.flags.writeable = False  # a UI's read-only buffer
    assert stream.push(frozen)[1].masks.shape == (2, *frozen.shape[:2])
    with pytest.raises(AppInputError):
        session.webcam(" ")


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


# ------------------------------------------------------------------------------------------------ examples
def test_examples_are_the_benchmarks_first_test_videos_generated_once(tmp_path):
    labels = examples.example_labels()
    assert [label.split(":")[0] for label in labels] == ["NORM", "MUL", "SPAT", "TEMP"]
    example = examples.ensure_example(tmp_path, labels[2])
    video = generate_video("SPAT", video_seed(0, "SPAT", "SPAT", 0), examples.EXAMPLE_SIZE)
    assert example.sentences == tuple(e.sentence for e in video.expressions) and len(example.sentences) == 2
    reader = VideoFileReader(example.path)
    side = examples.EXAMPLE_SIZE * examples.EXAMPLE_SCALE
    assert (reader.num_frames, reader.frame_size, reader.fps) == (
        video.num_frames,
        (side, side),
        examples.EXAMPLE_FPS,
    )
    # the enlarged frame holds the benchmark's frame (up to the mp4 coding)
    small = reader.read(3)[:: examples.EXAMPLE_SCALE, :: examples.EXAMPLE_SCALE].astype(int)
    assert np.abs(small - video.frames[3]).mean() < 12
    stamp = example.path.stat().st_mtime_ns
    assert (
        examples.ensure_example(tmp_path, labels[2]) == example and example.path.stat().st_mtime_ns == stamp
    )
    assert json.loads(example.path.with_suffix(".json").read_text())["sentences"] == list(example.sentences)
    assert not list(tmp_path.glob(".*"))  # no partial file left
    with pytest.raises(ValueError, match="unknown example"):
        examples.ensure_example(tmp_path, "NORM: something else")


# ------------------------------------------------------------------------------------------------ command
def test_command_flags_build_the_session_and_bad_values_are_refused(tmp_path, assets, capsys):
    args = app_cli.parse_args(
        ["--checkpoint", str(assets["checkpoint"]), "--device", "cpu", "--max-frames", "40", "--alpha", "0.3",
         "--examples-dir", str(tmp_path / "ex"), "--amp", "off", "--threshold", "0.4"]
    )  # fmt: skip
    session = app_cli.make_session(args, tmp_path / "work")
    assert isinstance(session.segmenter, VideoSegmenter) and session.segmenter.threshold == 0.4
    assert (session.max_frames, session.alpha, session.examples_dir) == (40, 0.3, tmp_path / "ex")
    assert app_cli.default_examples_dir().parts[-2:] == ("locater", "app-examples")
    for flags, message in (
        (["--max-frames", "0"], "--max-frames must be positive"),
        (["--threshold", "1"], "--threshold must lie in (0, 1)"),
        (["--port", "70000"], "--port must lie in 1..65535"),
    ):
        with pytest.raises(SystemExit) as caught:
            app_cli.parse_args(flags)
        assert caught.value.code == 2 and message in capsys.readouterr().err
    with socket.socket() as busy:  # a port another server holds: refused before the model loads
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        code = app_cli.main(
            ["--checkpoint", str(assets["checkpoint"]), "--port", str(port), "--work-dir", str(tmp_path)]
        )
        assert (
            code == 2
            and f"--port {port} on --host 127.0.0.1: address already in use" in capsys.readouterr().err
        )
    code = app_cli.main(
        ["--checkpoint", str(tmp_path / "nowhere.pt"), "--port", str(port), "--work-dir", str(tmp_path)]
    )
    assert code == 2 and "nowhere.pt" in capsys.readouterr().err


def test_import_locater_never_needs_gradio():
    code = (
        "import sys, locater, locater.app, locater.app.session, locater.cli.app, locater.inference;"
        "assert 'gradio' not in sys.modules, 'gradio imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
