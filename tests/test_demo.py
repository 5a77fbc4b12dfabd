"""tools/demo.py and locater.video_io on a short generated mp4 and on a frame folder."""

import json
import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import locater
from locater.cli import demo
from locater.config import load_config
from locater.video_io import (
    FrameFolderReader,
    OverlayVideoWriter,
    VideoError,
    VideoFileReader,
    draw_legend,
    mask_colors,
    overlay_masks,
)

HEADS = ["model.vision.num_heads=4", "model.fusion.num_heads=4", "model.memory_heads=4"]


def _frame(index, height, width):
    """A frame whose brightness encodes its index (survives lossy coding), with a moving square."""
    frame = np.full((height, width, 3), 10 + 20 * index, np.uint8)
    frame[4:14, 2 + 2 * index : 12 + 2 * index] = (250, 40, 40)
    return frame


def _write_video(path, count, height, width, fps=8.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for i in range(count):
        writer.write(cv2.cvtColor(_frame(i, height, width), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _decode_all(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames, capture.get(cv2.CAP_PROP_FPS)
        frames.append(frame)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    cfg = load_config("configs/model/tiny.yaml")
    torch.manual_seed(0)
    model = locater.build_model(cfg).eval()
    ours = root / "ours.pt"
    torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, ours)
    return {"ours": ours, "official": locater.export_official(model, root / "official.pth")}


# -------------------------------------------------------------------------------------------------- video_io
def test_video_file_reader_counts_seeks_and_streams(tmp_path):
    path = _write_video(tmp_path / "clip.mp4", 12, 48, 64)
    reader = VideoFileReader(path)
    assert (reader.num_frames, reader.frame_size, reader.fps) == (12, (48, 64), 8.0)
    streamed = list(reader.frames())
    assert len(streamed) == 12 and streamed[0].dtype == np.uint8 and streamed[0].shape == (48, 64, 3)
    for index in (0, 5, 11):
        assert np.array_equal(reader.read(index), streamed[index])  # seeking lands on the right frame
        assert abs(float(streamed[index][30:, :, 1].mean()) - (10 + 20 * index)) < 3
    assert len(list(reader.frames(4, 7))) == 3
    with pytest.raises(VideoError, match="frame 12 out of range"):
        reader.read(12)


@pytest.mark.parametrize("suffix,codec", [("mp4", "mp4v"), ("avi", "MJPG")])
def test_a_one_frame_video_file_is_read(tmp_path, suffix, codec):
    """Counting grabs past the end; a one-frame file then cannot seek back, so frame 0 comes from a new capture."""
    path = tmp_path / f"one.{suffix}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 5.0, (40, 24))
    writer.write(cv2.cvtColor(_frame(3, 24, 40), cv2.COLOR_RGB2BGR))
    writer.release()
    reader = VideoFileReader(path)
    assert (reader.num_frames, reader.frame_size) == (1, (24, 40))
    frames = list(reader.frames())
    assert len(frames) == 1 and np.array_equal(reader.read(0), frames[0])
    assert abs(float(frames[0][16:, :, 1].mean()) - 70) < 4  # the background of frame 3: 10 + 20 * 3


@pytest.mark.parametrize("reported", [999, 5])
def test_a_wrong_container_frame_count_is_replaced_by_counting(tmp_path, monkeypatch, caplog, reported):
    path = _write_video(tmp_path / "clip.mp4", 9, 32, 32)

    real_capture = cv2.VideoCapture

    class LyingCapture:  # wraps OpenCV's capture (subclassing the extension type is not safe)
        def __init__(self, *args):
            self.capture = real_capture(*args)

        def get(self, prop):
            return float(reported) if prop == cv2.CAP_PROP_FRAME_COUNT else self.capture.get(prop)

        def __getattr__(self, name):
            return getattr(self.capture, name)

    monkeypatch.setattr(cv2, "VideoCapture", LyingCapture)
    with caplog.at_level(logging.WARNING):
        assert VideoFileReader(path).num_frames == 9
    assert f"reports {reported} frames, 9 decode" in caplog.text


def test_frame_folder_reader_order_and_errors(tmp_path, caplog):
    folder = tmp_path / "frames"
    folder.mkdir()
    for number in (1, 2, 10):
        cv2.imwrite(str(folder / f"f{number}.png"), np.full((8, 10, 3), number, np.uint8))
    (folder / "notes.txt").write_text("not a frame")
    with caplog.at_level(logging.WARNING):
        reader = FrameFolderReader(folder)
    assert "notes.txt" in caplog.text
    assert [p.name for p in reader.files] == ["f1.png", "f2.png", "f10.png"]
    assert [int(f[0, 0, 0]) for f in reader.frames()] == [1, 2, 10]
    cv2.imwrite(str(folder / "f11.png"), np.zeros((9, 10, 3), np.uint8))
    with pytest.raises(VideoError, match="f11.png: frame is 10x9"):
        list(FrameFolderReader(folder).frames())
    (folder / "f12.png").write_bytes(b"broken")
    with pytest.raises(VideoError, match="f12.png: cannot decode"):
        FrameFolderReader(folder).read(4)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match="no image files"):
        FrameFolderReader(empty)


def test_overlay_colours_masks_and_draws_a_legend():
    frame = np.full((120, 160, 3), 100, np.uint8)
    masks = np.zeros((2, 120, 160), bool)
    masks[0, 60:100, 20:60] = True
    masks[1, 60:100, 100:140] = True
    colors = mask_colors(2)
    out = overlay_masks(frame, masks, colors, alpha=0.5)
    assert tuple(out[80, 40]) == tuple(round(0.5 * 100 + 0.5 * c) for c in colors[0])
    assert tuple(out[80, 120]) == tuple(round(0.5 * 100 + 0.5 * c) for c in colors[1])
    assert tuple(out[110, 80]) == (100, 100, 100)
    with_legend = draw_legend(out.copy(), ["a man", "the red dog"], colors)
    assert not np.array_equal(with_legend[:30, :60], out[:30, :60])
    assert np.array_equal(with_legend[60:], out[60:])
    assert len(set(mask_colors(14))) == 14


def test_overlay_writer_keeps_even_sizes(tmp_path):
    with OverlayVideoWriter(tmp_path / "o.mp4", 5.0, (45, 63)) as writer:
        for i in range(3):
            writer.write(_frame(i, 45, 63))
        with pytest.raises(VideoError, match="expected uint8"):
            writer.write(np.zeros((44, 62, 3), np.uint8))
    frames, fps = _decode_all(tmp_path / "o.mp4")
    assert len(frames) == 3 and frames[0].shape == (44, 62, 3) and fps == 5.0


# ------------------------------------------------------------------------------------------------------ demo
def _mask_files(out, sentence):
    return sorted((out / "masks" / f"sentence_{sentence}").glob("*.png"))


@pytest.mark.slow
def test_demo_on_a_generated_mp4(tmp_path, checkpoints):
    video = _write_video(tmp_path / "clip.mp4", 6, 46, 60, fps=6.0)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "tools/demo.py",
            "--checkpoint",
            str(checkpoints["ours"]),
            "--video",
            str(video),
            "--text",
            "a red square",
            "--text",
            "the grey background",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "frames/s" in result.stdout
    frames, fps = _decode_all(out / "overlay.mp4")
    assert len(frames) == 6 and frames[0].shape == (46, 60, 3) and fps == 6.0
    for sentence in (0, 1):
        files = _mask_files(out, sentence)
        assert [f.name for f in files] == [f"{i:05d}.png" for i in range(1, 7)]
        mask = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (46, 60) and set(np.unique(mask)) <= {0, 255}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 6 and summary["sentences"] == ["a red square", "the grey background"]
    assert summary["frames_per_second"] > 0


def test_demo_on_a_frame_folder_with_official_weights(tmp_path, checkpoints, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(7):
        cv2.imwrite(str(folder / f"{i + 1:05d}.jpg"), cv2.cvtColor(_frame(i, 37, 51), cv2.COLOR_RGB2BGR))
    runs = {}
    for name in ("ours", "official"):
        out = tmp_path / name
        args = ["--checkpoint", str(checkpoints[name]), "--video", str(folder), "--text", "a red square"]
        args += ["--out", str(out), "--max-frames", "5", "--fps", "4", "--device", "cpu", "--no-progress"]
        assert demo.main(args + (HEADS if name == "official" else [])) == 0
        assert "5 frames (51x37) x 1 sentences" in capsys.readouterr().out
        files = _mask_files(out, 0)
        assert len(files) == 5
        runs[name] = [cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in files]
        assert all(m.shape == (37, 51) for m in runs[name])
        frames, fps = _decode_all(out / "overlay.mp4")
        assert len(frames) == 5 and frames[0].shape == (36, 50, 3) and fps == 4.0  # 4:2:0 needs even sizes
    assert all(np.array_equal(a, b) for a, b in zip(runs["ours"], runs["official"]))


def test_demo_reports_bad_input(tmp_path, checkpoints, capsys):
    args = ["--checkpoint", str(checkpoints["ours"]), "--text", "a man", "--out", str(tmp_path / "o")]
    assert demo.main(args + ["--video", str(tmp_path / "missing.mp4"), "--no-progress"]) == 2
    assert "video file or frame folder not found" in capsys.readouterr().err
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    assert demo.main(args + ["--video", str(tmp_path / "bad.mp4"), "--no-progress"]) == 2
    assert "bad.mp4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.main(args + ["--video", str(tmp_path), "--max-frames", "0"])
    video = _write_video(tmp_path / "clip.mp4", 3, 24, 32)
    assert demo.main(args + ["--video", str(video), "--device", "bogus", "--no-progress"]) == 2
    assert "unknown device 'bogus'" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("x")
    out_is_file = [
        "--checkpoint",
        str(checkpoints["ours"]),
        "--text",
        "a man",
        "--out",
        str(tmp_path / "a_file"),
    ]
    assert demo.main(out_is_file + ["--video", str(video), "--no-progress"]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_a_failed_demo_leaves_no_truncated_overlay(tmp_path, checkpoints, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i:03d}.png"), _frame(i, 24, 32))
    (folder / "003.png").write_bytes(b"broken")  # decoded after the first frames were written
    out = tmp_path / "o"
    args = [
        "--checkpoint",
        str(checkpoints["ours"]),
        "--text",
        "a man",
        "--out",
        str(out),
        "--video",
        str(folder),
    ]
    assert demo.main(args + ["--no-progress"]) == 2
    assert "003.png" in capsys.readouterr().err
    assert not (out / "overlay.mp4").exists()
