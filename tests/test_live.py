"""The causal live mode: the reservoir and its schedule, live vs standard where they must agree, no frame read
before its turn (segmenter and evaluator), a real MJPEG stream over HTTP on 127.0.0.1 read through OpenCV with flat
memory, stream errors, and ``tools/demo.py --live`` end to end (HTTP, standard input, Ctrl-C)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers_data import make_checkpoint, make_split
from mjpeg_server import MjpegServer, mjpeg_bytes, stamped_index, synthetic_scene

import locater
from locater import inference
from locater.cli import demo
from locater.config import load_config
from locater.data.layout import LayoutSplit
from locater.engine.evaluator import EvalSplit, evaluate_layout_split, evaluate_split, frames_to_process
from locater.inference import VideoSegmenter
from locater.live import (
    DEFAULT_REFRESH_EVERY,
    DEFAULT_RESERVOIR,
    FrameReservoir,
    LiveMemory,
    LiveSettings,
    refresh_due,
)
from locater.video_io import VideoError
from locater.video_stream import CaptureReader, MjpegStreamWriter, is_stream_source, stream_source_from_text

CPU = torch.device("cpu")


def _model(*overrides):
    torch.manual_seed(0)
    return locater.build_model(load_config("configs/model/tiny.yaml", list(overrides))).eval()


def _video(count, height=40, width=50, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def _state_bytes(state):
    tensors = [state.words, state.global_memory, state.local_memory]
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def _rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------ the mechanism
def test_refresh_schedule_doubles_then_follows_the_interval():
    due = [n for n in range(1, 201) if refresh_due(n, 50)]
    assert due == [1, 2, 4, 8, 16, 32, 50, 100, 150, 200]
    assert [n for n in range(1, 10) if refresh_due(n, 1)] == list(range(1, 10))
    assert LiveSettings() == LiveSettings(DEFAULT_REFRESH_EVERY, DEFAULT_RESERVOIR)
    defaults = load_config().eval  # the config keys and the library agree
    assert (defaults.live, defaults.live_refresh_every, defaults.live_reservoir) == (False, 50, 16)
    with pytest.raises(ValueError, match="refresh_every"):
        LiveSettings(refresh_every=0)
    with pytest.raises(ValueError, match="reservoir"):
        LiveSettings(reservoir=0)


def test_reservoir_spans_the_stream_evenly_in_constant_memory():
    reservoir = FrameReservoir(5)
    sizes = []
    for index in range(1000):
        reservoir.offer(index, torch.full((2, 3, 4), float(index)))
        kept = reservoir.indices
        assert len(kept) <= 5 and kept[0] == 0
        assert all(b - a == reservoir.stride for a, b in zip(kept, kept[1:]))  # evenly spaced
        assert index - kept[-1] < reservoir.stride  # the newest kept frame is at most one stride back
        if index >= 8:
            assert kept[-1] >= index // 2  # spans the whole stream so far
        sizes.append(reservoir.nbytes)
    assert set(sizes) == {5 * 2 * 3 * 4 * 4}  # one buffer of 5 slots from the first frame on
    chosen, tokens = reservoir.choose(3)
    assert tokens.shape == (2, 3, 3, 4) and tokens[0, :, 0, 0].tolist() == [float(i) for i in chosen]
    assert chosen == sorted(chosen) and set(chosen) <= set(reservoir.indices)
    reservoir.select_videos(torch.tensor([1]))
    assert reservoir.choose(3)[1].shape == (1, 3, 3, 4)
    with pytest.raises(ValueError, match="in order"):
        reservoir.offer(3, torch.zeros(1, 3, 4))


def test_live_equals_standard_on_the_video_cut_where_the_design_says_so():
    """Without a local memory a frame's output depends on the frame and the global memory only: live frame t with a
    rebuild at t (every frame here, the reservoir holding them all) equals the standard mode on the video cut after
    t. With a local memory, frame 0 still does (the first frame repeated is the whole video so far)."""
    video = _video(12)
    segmenter = VideoSegmenter(_model("model.local_memory.size=0"), device="cpu", prefetch=0)
    live = list(segmenter.segment(video, "the thing", live=True, live_settings=LiveSettings(1, 16)))
    for t in (0, 1, 4, 7, 11):
        cut = list(segmenter.segment(video, "the thing", max_frames=t + 1))[-1]
        assert live[t].global_frames == cut.global_frames
        assert torch.equal(live[t].probabilities, cut.probabilities)
    assert live[11].global_frames == (1, 5, 9)  # the official rule over 12 frames
    standard = list(segmenter.segment(video, "the thing"))
    assert not torch.equal(live[2].probabilities, standard[2].probabilities)  # the test can tell them apart

    segmenter = VideoSegmenter(_model(), device="cpu", prefetch=0)
    live = list(segmenter.segment(video, ["the thing", "a dog"], live=True))
    cut = list(segmenter.segment(video, ["the thing", "a dog"], max_frames=1))
    assert torch.equal(live[0].probabilities, cut[0].probabilities)
    # the default schedule rebuilds before the frames that make 1, 2, 4, 8 seen, each time from the frames so far
    assert [r.global_frames for r in live[:9]] == [
        (0, 0, 0),
        (0, 0, 1),
        (0, 0, 1),
        (0, 1, 2),
        (0, 1, 2),
        (0, 1, 2),
        (0, 1, 2),
        (0, 2, 4),  # 8 frames: step 2, 1-indexed frames 1, 3, 5
        (0, 2, 4),
    ]


def test_model_without_global_memory_runs_live_exactly_as_standard():
    video = _video(6)
    segmenter = VideoSegmenter(_model("model.global_memory.size=0"), device="cpu")
    live = list(segmenter.segment(video, "the thing", live=True))
    standard = list(segmenter.segment(video, "the thing"))
    assert all(torch.equal(a.probabilities, b.probabilities) for a, b in zip(live, standard))


def test_refresh_keeps_the_local_memory_and_replaces_the_global_memory():
    model = _model()
    ids = locater.tokenize(["the thing"])
    frames = torch.randn(4, 1, 3, 64, 64)
    with torch.inference_mode():
        state = model.start(frames[:3].transpose(0, 1), ids)
        _, state = model.step(frames[0], state)
        refreshed = model.refresh_global_memory(state, model.encode_frames(frames[1:4, 0])[None])
    assert refreshed.local_memory is state.local_memory and refreshed.words is state.words
    assert refreshed.num_frames == state.num_frames == 1
    assert not torch.equal(refreshed.global_memory, state.global_memory)
    with torch.inference_mode():  # start_encoded on the encoded frames is start on the frames
        again = model.start_encoded(model.encode_frames(frames[:3, 0])[None], ids)
    torch.testing.assert_close(
        again.global_memory, model.start(frames[:3].transpose(0, 1), ids).global_memory
    )
    with pytest.raises(ValueError, match="reservoir"):
        LiveMemory(model, ids, settings=LiveSettings(reservoir=2))  # fewer than N1 = 3


def test_pushed_frames_give_what_the_live_stream_gives():
    """start_live (a webcam callback, a UI) and segment(live=True) are one per-frame step."""
    video = _video(10)
    segmenter = VideoSegmenter(_model(), device="cpu")
    settings = LiveSettings(refresh_every=3, reservoir=4)
    streamed = list(segmenter.segment(iter(video), ["the thing", "a dog"], live=True, live_settings=settings))
    session = segmenter.start_live(["the thing", "a dog"], settings)
    for frame, expected in zip(video, streamed):
        pushed = session.push(frame)
        assert pushed.index == expected.index and pushed.global_frames == expected.global_frames
        assert torch.equal(pushed.probabilities, expected.probabilities)
    assert session.frames_done == 10 and session.global_frames == (0, 4, 8)
    with pytest.raises(ValueError, match="frame 10: expected an H x W x 3 uint8 RGB array"):
        session.push(video[0].astype(np.float32))


# ------------------------------------------------------------------------------------- no frame before its turn
def test_live_segmenter_reads_no_frame_before_its_turn():
    video = _video(20)
    pulled = []

    def frames():
        for index, frame in enumerate(video):
            pulled.append(index)
            yield frame

    segmenter = VideoSegmenter(_model(), device="cpu", prefetch=0)
    for result in segmenter.segment(frames(), "the thing", live=True, live_settings=LiveSettings(4, 4)):
        assert pulled[-1] == result.index  # frame t was the last frame read when frame t's result came out
        assert max(result.global_frames) <= result.index
    assert pulled == list(range(20))


class _StrictSplit:
    """A split that raises when a frame is read before every earlier frame of its video went through ``step``, or
    out of order: what the live evaluation must never do."""

    def __init__(self, split: LayoutSplit, model) -> None:
        self.split = split
        self.steps = self.loads = 0
        self.order = {video: frames_to_process(samples, False) for video, samples in split.videos().items()}
        self.last: dict[str, int] = {}
        step = model.step

        def counted_step(*args, **kwargs):
            self.steps += 1
            return step(*args, **kwargs)

        model.step = counted_step

    def load_frame(self, video, frame):
        position = self.order[video].index(frame)
        if self.loads != self.steps or position != self.last.get(video, -1) + 1:
            raise AssertionError(
                f"{video} frame {frame} read before its turn ({self.loads} read, {self.steps} stepped)"
            )
        self.loads += 1
        self.last[video] = position
        return self.split.load_frame(video, frame)

    def __getattr__(self, name):
        return getattr(self.split, name)


def test_live_evaluation_reads_no_frame_before_its_turn(tmp_path):
    split = LayoutSplit.open(make_split(tmp_path, num_videos=2))
    model = _model()
    live = evaluate_layout_split(
        model, _StrictSplit(split, model), CPU, progress=False, prefetch=0, live=LiveSettings(), coco=False
    )
    assert live.records and live.vision_passes == live.frames_processed  # kept frames cost no vision pass
    model = _model()
    with pytest.raises(
        AssertionError, match="before its turn"
    ):  # the standard mode reads its global frames first
        evaluate_layout_split(model, _StrictSplit(split, model), CPU, progress=False, prefetch=0, coco=False)


def test_live_evaluation_from_the_config_and_in_lockstep(tmp_path):
    split_dir = make_split(tmp_path, num_videos=3)
    model = _model()
    cfg = load_config(None, [f"eval.split_dir={split_dir}", "eval.live=true", "eval.coco_ap=false"])
    one = evaluate_split(model, cfg, EvalSplit("NORM", split_dir), CPU, progress=False)
    cfg = load_config(cfg, ["eval.videos_per_batch=3"])
    three = evaluate_split(model, cfg, EvalSplit("NORM", split_dir), CPU, progress=False)
    assert [r.key for r in one.records] == [
        r.key for r in three.records
    ]  # videos leave the batch as they end
    for a, b in zip(one.records, three.records):
        assert abs(a.intersection - b.intersection) <= 2 and abs(a.union - b.union) <= 2
    standard = evaluate_split(model, load_config(cfg, ["eval.live=false"]), EvalSplit("NORM", split_dir), CPU)
    assert standard.vision_passes == standard.frames_processed + 3 * model.num_global_frames
    assert one.vision_passes == one.frames_processed


# ------------------------------------------------------------------------------------------------ streams
def test_http_mjpeg_stream_through_opencv_in_order_with_flat_memory(monkeypatch):
    """A few hundred frames of a moving synthetic scene, served over HTTP as MJPEG on 127.0.0.1 and read by
    cv2.VideoCapture, through the live segmenter: every frame in order, the reservoir and the state of constant
    size, resident memory flat."""
    sizes = []

    class Recording(LiveMemory):
        def step(self, frames, state):
            logits, state = super().step(frames, state)
            sizes.append((self.nbytes, _state_bytes(state)))
            return logits, state

    monkeypatch.setattr(inference, "LiveMemory", Recording)
    count = 300
    segmenter = VideoSegmenter(_model(), device="cpu")
    rss, indices = [], []
    with MjpegServer(synthetic_scene(), count) as server:
        settings = LiveSettings(refresh_every=25, reservoir=8)
        for result in segmenter.segment(
            server.url, ["the circle", "the star"], live=True, live_settings=settings
        ):
            indices.append(stamped_index(result.frame))
            assert result.index == indices[-1] and max(result.global_frames) <= result.index
            assert result.masks.shape == (2, 240, 320)
            rss.append(_rss_bytes())
    assert indices == list(range(count))
    assert len(sizes) == count and len(set(sizes[1:])) == 1  # the local memory is full after 2 frames
    assert sizes[0][0] == sizes[-1][0] == 8 * 17 * 64 * 4  # 8 slots of 17 tokens x 64 floats from the start
    warm = rss[50:175]
    late = rss[175:]
    assert max(late) - max(warm) < 16 * 2**20, (max(warm), max(late))  # holding the frames would add 69 MB


def test_stream_sources_and_their_errors(tmp_path):
    assert stream_source_from_text("0") == 0 and stream_source_from_text("http://x/y") == "http://x/y"
    assert is_stream_source(0) and is_stream_source("-") and is_stream_source("rtsp://h/s")
    assert not is_stream_source(True) and not is_stream_source(str(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert is_stream_source(fifo)
    bad = f"http://127.0.0.1:{_closed_port()}/stream.mjpg"
    with pytest.raises(VideoError, match=f"{bad}: OpenCV cannot open this stream"):
        CaptureReader(bad, timeout=2)
    segmenter = VideoSegmenter(_model(), device="cpu")
    with pytest.raises(VideoError, match="is a stream whose end is unknown: segment it in the live mode"):
        list(segmenter.segment(bad, "the thing"))
    with pytest.raises(VideoError, match="camera 0 is a stream"):
        list(segmenter.segment(0, "the thing"))
    with MjpegServer(synthetic_scene((48, 64)), 100, stall_after=5) as server:
        results = []
        with pytest.raises(VideoError, match=r"stopped delivering frames: none for \d\.\d s after frame 5"):
            for result in segmenter.segment(server.url, "the thing", live=True, read_timeout=1.0):
                results.append(result.index)
        assert results == [0, 1, 2, 3, 4]
    with MjpegServer(synthetic_scene((48, 64)), 100) as server:  # max_frames ends a stream cleanly
        assert len(list(segmenter.segment(server.url, "the thing", live=True, max_frames=7))) == 7


def test_mjpeg_writer_file_is_readable_while_it_grows(tmp_path):
    frame = synthetic_scene((48, 64))
    path = tmp_path / "overlay.mjpeg"
    with MjpegStreamWriter(path) as writer:
        for index in range(6):
            writer.write(frame(index))
            capture = cv2.VideoCapture(str(path))  # another reader, while the writer is open
            seen = []
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                seen.append(stamped_index(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            capture.release()
            assert seen == list(range(index + 1))
        with pytest.raises(VideoError, match="the first was 64x48"):
            writer.write(np.zeros((10, 10, 3), np.uint8))


# --------------------------------------------------------------------------------------------------- demo
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("live") / "tiny.pt")


def _demo_args(checkpoint, video, out, *extra):
    return ["--checkpoint", str(checkpoint), "--video", video, "--text", "the circle", "--text", "the star",
            "--out", str(out), "--live", "--no-progress", *extra]  # fmt: skip


def _mjpeg_frames(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            return frames
        frames.append(bgr)


def test_demo_live_on_an_http_stream_writes_each_frame_as_it_arrives(checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "out"
    progress = []
    segment = VideoSegmenter.segment

    def watched(self, *args, **kwargs):  # before frame k comes out, frames 0..k-1 are on disk, whole
        for result in segment(self, *args, **kwargs):
            on_disk = len(list((out / "masks" / "sentence_1").glob("*.png")))
            progress.append((result.index, on_disk, len(_mjpeg_frames(out / "overlay.mjpeg"))))
            yield result

    monkeypatch.setattr(VideoSegmenter, "segment", watched)
    with MjpegServer(synthetic_scene((60, 80)), 200) as server:
        code = demo.main(
            _demo_args(checkpoint, server.url, out, "--max-frames", "30", "--live-refresh-every", "8")
        )
    assert code == 0
    assert progress == [(k, k, k) for k in range(30)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 30 and summary["interrupted"] is False and summary["frame_size"] == [60, 80]
    assert summary["live"] == {"refresh_every": 8, "reservoir": 16} and summary["video"] == server.url
    overlay = _mjpeg_frames(out / "overlay.mjpeg")
    assert len(overlay) == 30 and overlay[0].shape == (60, 80, 3)
    assert sorted(p.name for p in (out / "masks" / "sentence_0").iterdir())[-1] == "00030.png"


def test_demo_live_ctrl_c_keeps_what_was_written_and_exits_130(checkpoint, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    segment = VideoSegmenter.segment

    def interrupted(self, *args, **kwargs):
        for result in segment(self, *args, **kwargs):
            if result.index == 12:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(VideoSegmenter, "segment", interrupted)
    with MjpegServer(synthetic_scene((60, 80)), 200) as server:
        args = _demo_args(checkpoint, server.url, out, "--report-every", "0.000001")
        args.remove("--no-progress")
        code = demo.main(args)
    assert code == 130
    printed = capsys.readouterr()
    assert "interrupted after 12 frames" in printed.err
    assert "11 frames, " in printed.out and " frames/s (" in printed.out  # the periodic frames/s line
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["frames"] == 12
    assert len(_mjpeg_frames(out / "overlay.mjpeg")) == 12
    assert len(list((out / "masks" / "sentence_0").glob("*.png"))) == 12


def test_demo_refuses_streams_without_live_and_names_a_bad_url(checkpoint, tmp_path, capsys):
    bad = f"http://127.0.0.1:{_closed_port()}/cam"
    args = _demo_args(checkpoint, bad, tmp_path / "a", "--read-timeout", "2")
    assert demo.main(args) == 2
    assert f"error: {bad}: OpenCV cannot open this stream" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()  # the source is opened before anything is written
    args.remove("--live")
    with pytest.raises(SystemExit) as exit_info:
        demo.main(args)
    assert exit_info.value.code == 2
    assert "is a stream whose end is unknown: add --live" in capsys.readouterr().err


def test_demo_live_reads_standard_input(checkpoint, tmp_path):
    """``ffmpeg ... -f mjpeg - | tools/demo.py --live --video -``: the tool as a process, frames on its stdin."""
    out = tmp_path / "out"
    data = mjpeg_bytes(synthetic_scene((48, 64)), 25)
    result = subprocess.run(
        [sys.executable, "tools/demo.py", *_demo_args(checkpoint, "-", out, "--no-overlay")],
        input=data,
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 25 and summary["video"] == "standard input" and summary["overlay"] is None
    assert len(list((Path(out) / "masks" / "sentence_1").glob("*.png"))) == 25
