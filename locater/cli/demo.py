"""Segment a video for one or more sentences with Locater (official checkpoints or ours).

  python tools/demo.py --checkpoint CKPT --video FILE_OR_FRAME_DIR --text "a man in red" [--text "..."] --out DIR

Reads any video OpenCV decodes (mp4, avi, ...) or a folder of frames (natural name order), of any size, in one
streaming pass for all sentences (constant memory). Writes into --out:

  overlay.mp4                       the video with one colour per sentence and a legend
  masks/sentence_<k>/<frame>.png    binary masks (0/255) at the original resolution; k = 0-based sentence index,
                                    frame = 1-based frame number, 5 digits (00001.png)
  summary.json                      sentences, colours, frame count and size, frame rate, timings

and prints the frames/s. --live segments a stream whose end is unknown (a camera index, a URL, - for standard
input, a named pipe) causally and writes each frame's outputs as it arrives (overlay.mjpeg instead of overlay.mp4;
docs/demo.md#live-streams). --out must be a new or empty folder (--overwrite clears an earlier run's outputs first),
so its files always come from one run; summary.json is written last, whole, once everything else is complete:
a folder without it holds no finished result. Exit codes: docs/exit-codes.md (2 bad input, 4 disk full or
permission, 130 interrupted).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from locater.cli.demo_live import add_live_arguments, check_live_arguments, run_live
from locater.cli.demo_run import RunClock, demo_sentences, load_segmenter, mask_dirs, write_frame_outputs
from locater.cli.entry import DEBUG_HELP, add_trust_checkpoint_flag, command
from locater.cli.output_dir import prepare_output_dir
from locater.files import write_json_atomic
from locater.video_io import (
    OverlayVideoWriter,
    mask_colors,
    open_frames,
)

DEFAULT_FPS = 25.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=32),
        allow_abbrev=False,
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="official checkpoint or ours")
    parser.add_argument(
        "--video",
        required=True,
        help="video file or folder of frames; with --live also a camera index, a URL or - (standard input)",
    )
    parser.add_argument(
        "--text", action="append", required=True, help="a sentence; repeat for several (one pass for all)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="clear this demo's earlier outputs in --out (overlay.mp4, masks/, summary.json) first",
    )
    parser.add_argument(
        "--max-frames", type=int, default=None, help="segment only the first N frames (default: all)"
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help=f"frame rate of overlay.mp4 (default: the video's; {DEFAULT_FPS:g} for a frame folder)",
    )
    add_trust_checkpoint_flag(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument(
        "--amp",
        nargs="?",
        const="on",
        default="auto",  # docs/benchmarks.md: 1.8x on a CPU with bf16 units, masks within a few pixels
        choices=("off", "on", "auto"),
        help="bfloat16 autocast: auto (on where the device computes bf16 natively: GPUs from Ampere on, CPUs with "
        "AVX512-BF16, AMX or Arm BF16; float32 elsewhere), on (also a bare --amp) or off (default: auto)",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="mask probability threshold (default: 0.5)"
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the mask colours (default: 0.5)")
    parser.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    parser.add_argument("--no-masks", action="store_true", help="do not write the PNG masks")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument(
        "overrides", nargs="*", help="config overrides key=value (e.g. model.global_memory.num_frames=5)"
    )
    add_live_arguments(parser)
    args = parser.parse_intermixed_args(argv)
    check_live_arguments(parser, args)
    if args.max_frames is not None and args.max_frames <= 0:
        parser.error("--max-frames must be positive")
    if args.fps is not None and args.fps <= 0:
        parser.error("--fps must be positive")
    if not 0.0 <= args.alpha <= 1.0:
        parser.error("--alpha must lie in [0, 1]")
    if not 0.0 < args.threshold < 1.0:
        parser.error(f"--threshold must lie in (0, 1) (a mask probability), got {args.threshold:g}")
    if args.no_masks and args.no_overlay:
        parser.error("--no-masks and --no-overlay together leave nothing to write")
    return args


DEMO_OUTPUTS = ("overlay.mp4", "masks", "summary.json")


def run(args: argparse.Namespace) -> dict:
    """Segment the video and write the outputs; returns the summary written to summary.json."""
    reader = open_frames(args.video)
    num_frames = reader.num_frames if args.max_frames is None else min(reader.num_frames, args.max_frames)
    fps = args.fps or reader.fps or DEFAULT_FPS
    height, width = reader.frame_size
    segmenter, load_seconds = load_segmenter(args)
    sentences = demo_sentences(args)
    colors = mask_colors(len(sentences))
    prepare_output_dir(args.out, DEMO_OUTPUTS, overwrite=args.overwrite, flag="--out", last="summary.json")
    dirs = mask_dirs(args.out, len(sentences))
    overlay_path = args.out / "overlay.mp4"
    writer = None if args.no_overlay else OverlayVideoWriter(overlay_path, fps, (height, width))
    bar = tqdm(total=num_frames, unit="frame", disable=args.no_progress, dynamic_ncols=True)
    clock = RunClock()
    finished = False
    try:
        results = segmenter.segment(reader, sentences, max_frames=args.max_frames)
        clock.run(
            results,
            lambda result: write_frame_outputs(result, args, sentences, colors, writer, dirs),
            lambda frames: bar.update(1),
        )
        if writer is not None:
            writer.close()  # checks the file holds every frame written
        finished = True
    finally:
        bar.close()
        if writer is not None and not finished:
            with contextlib.suppress(Exception):  # the failure that got us here is the one to report
                writer.close()
            overlay_path.unlink(missing_ok=True)  # an unplayable, truncated overlay is worse than none
    summary = {
        "video": str(args.video),
        "checkpoint": str(args.checkpoint),
        "sentences": sentences,
        "colors_rgb": [list(c) for c in colors],
        "mask_dirs": [str(d.relative_to(args.out)) for d in dirs] if not args.no_masks else [],
        "overlay": None if writer is None else str(overlay_path.relative_to(args.out)),
        "overlay_size": None if writer is None else list(writer.video_size),
        "frames": clock.frames,
        "frame_size": [height, width],
        "fps": fps,
        "device": str(segmenter.device),
        "amp": segmenter.amp,  # the decision (--amp auto: whether this device got bf16)
        **clock.summary(load_seconds),
    }
    write_json_atomic(args.out / "summary.json", summary, indent=2)  # last: it marks a complete run
    return summary


@command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = run_live(args) if args.live else run(args)
    print(
        f"{summary['frames']} frames ({summary['frame_size'][1]}x{summary['frame_size'][0]}) x "
        f"{len(summary['sentences'])} sentences on {summary['device']}: {summary['frames_per_second']:.2f} frames/s "
        f"end to end, {summary['segment_frames_per_second']:.2f} frames/s decoding + model "
        f"({summary['total_seconds']:.1f} s, of which writing outputs {summary['write_seconds']:.1f} s)"
    )
    print(f"outputs: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
