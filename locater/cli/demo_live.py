"""``tools/demo.py --live``: segment a stream whose end is unknown, writing each frame's outputs as it arrives.

The source is a camera index, a URL (``rtsp://``, ``http://``, ``https://`` ...), ``-`` (standard input), a named
pipe, or a video file or frame folder read as if it were live. The segmenter runs in the causal live mode
(:mod:`locater.live`). Into ``--out``, per frame as it is segmented:

  masks/sentence_<k>/<frame>.png   binary masks (0/255), each written whole (a reader never sees half a file)
  overlay.mjpeg                     the overlay appended as one JPEG per frame and flushed: playable while it grows

and at the end, also after Ctrl-C (then with ``"interrupted": true``, and exit code 130), ``summary.json``. The
frames/s is printed every ``--report-every`` seconds.
"""

from __future__ import annotations

import argparse
import time

from locater.cli.demo_run import RunClock, demo_sentences, load_segmenter, mask_dirs, write_frame_outputs
from locater.cli.output_dir import prepare_output_dir
from locater.errors import InterruptedRun
from locater.files import write_json_atomic
from locater.live import LiveSettings
from locater.video_io import mask_colors, open_frames
from locater.video_stream import (
    CaptureReader,
    MjpegStreamWriter,
    describe_source,
    is_stream_source,
    stream_source_from_text,
)

LIVE_OUTPUTS = ("overlay.mjpeg", "masks", "summary.json")


class _RateReport:
    """Prints the frames/s every ``every`` seconds (overall and since the last line)."""

    def __init__(self, every: float, enabled: bool) -> None:
        self.every = every
        self.enabled = enabled and every > 0
        self.start = self.last = time.perf_counter()
        self.last_frames = 0

    def update(self, frames: int) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < self.every:
            return
        overall = frames / max(now - self.start, 1e-9)
        recent = (frames - self.last_frames) / max(now - self.last, 1e-9)
        print(
            f"{frames} frames, {overall:.2f} frames/s ({recent:.2f} over the last {now - self.last:.0f} s)",
            flush=True,
        )
        self.last, self.last_frames = now, frames


def open_live_source(text: str, read_timeout: float):
    """The reader of ``--video`` in the live mode: a stream (camera, URL, ``-``, pipe) or a file or folder."""
    source = stream_source_from_text(text)
    if is_stream_source(source):
        return CaptureReader(source, read_timeout)
    return open_frames(source)


def run_live(args: argparse.Namespace) -> dict:
    """Segment the stream and write the outputs frame by frame; returns the summary written to summary.json.

    Raises:
        InterruptedRun: Ctrl-C or SIGTERM, after the summary of the frames done was written.
    """
    reader = open_live_source(args.video, args.read_timeout)  # a bad source fails before the model loads
    settings = LiveSettings(refresh_every=args.live_refresh_every, reservoir=args.live_reservoir)
    segmenter, load_seconds = load_segmenter(args)
    sentences = demo_sentences(args)
    colors = mask_colors(len(sentences))
    prepare_output_dir(args.out, LIVE_OUTPUTS, overwrite=args.overwrite, flag="--out", last="summary.json")
    dirs = mask_dirs(args.out, len(sentences))
    for mask_dir in [] if args.no_masks else dirs:
        mask_dir.mkdir(parents=True, exist_ok=True)
    overlay_path = args.out / "overlay.mjpeg"
    writer = None if args.no_overlay else MjpegStreamWriter(overlay_path)
    report = _RateReport(args.report_every, not args.no_progress)
    frame_size, interrupted = None, False
    clock = RunClock()

    def write(result) -> None:
        nonlocal frame_size
        frame_size = list(result.frame.shape[:2])
        write_frame_outputs(result, args, sentences, colors, writer, dirs, atomic=True)

    results = segmenter.segment(
        reader,
        sentences,
        max_frames=args.max_frames,
        live=True,
        live_settings=settings,
        read_timeout=args.read_timeout,
    )
    try:
        clock.run(results, write, report.update)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        results.close()  # releases the source and the reading thread
        if writer is not None:
            writer.close()
    summary = {
        "video": describe_source(stream_source_from_text(args.video)),
        "live": {"refresh_every": settings.refresh_every, "reservoir": settings.reservoir},
        "interrupted": interrupted,
        "checkpoint": str(args.checkpoint),
        "sentences": sentences,
        "colors_rgb": [list(c) for c in colors],
        "mask_dirs": [str(d.relative_to(args.out)) for d in dirs] if not args.no_masks else [],
        "overlay": None if writer is None else str(overlay_path.relative_to(args.out)),
        "frames": clock.frames,
        "frame_size": frame_size,
        "fps": args.fps or reader.fps,
        "device": str(segmenter.device),
        "amp": segmenter.amp,
        **clock.summary(load_seconds),
    }
    write_json_atomic(args.out / "summary.json", summary, indent=2)  # last: it marks a finished run
    if interrupted:
        raise InterruptedRun(
            f"interrupted after {clock.frames} frames; {args.out} holds their outputs and summary.json"
        )
    return summary


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's flags of the live mode."""
    group = parser.add_argument_group("live mode (a stream whose end is unknown; docs/demo.md#live-streams)")
    group.add_argument(
        "--live",
        action="store_true",
        help="causal mode: --video may be a camera index, a URL (rtsp://, http://, https://), - (standard input) or "
        "a named pipe; outputs are written as frames arrive (overlay.mjpeg instead of overlay.mp4)",
    )
    defaults = LiveSettings()
    group.add_argument(
        "--live-refresh-every",
        type=int,
        default=defaults.refresh_every,
        help=f"rebuild the global memory every N frames (default: {defaults.refresh_every})",
    )
    group.add_argument(
        "--live-reservoir",
        type=int,
        default=defaults.reservoir,
        help=f"frames kept to choose the global memory from (default: {defaults.reservoir})",
    )
    group.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        help="seconds a stream may take to open or to send a frame before it counts as stalled (0: none; "
        "default: 10)",
    )
    group.add_argument(
        "--report-every", type=float, default=5.0, help="seconds between frames/s lines (default: 5)"
    )


def check_live_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse the live flags' bad values (and stream sources without ``--live``) with the parser's error."""
    if args.live_refresh_every < 1:
        parser.error("--live-refresh-every must be a positive number of frames")
    if args.live_reservoir < 1:
        parser.error("--live-reservoir must be a positive number of frames")
    if args.read_timeout < 0:
        parser.error("--read-timeout must be >= 0 seconds (0: no limit)")
    if args.report_every < 0:
        parser.error("--report-every must be >= 0 seconds")
    source = stream_source_from_text(args.video)
    if not args.live and is_stream_source(source):
        parser.error(f"--video {describe_source(source)} is a stream whose end is unknown: add --live")
