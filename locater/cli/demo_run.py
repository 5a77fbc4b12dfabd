"""What ``tools/demo.py`` and ``tools/demo.py --live`` share: the segmenter, the sentences, the mask folders, one
frame's outputs, and the run's timing."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from locater.data.frames import encode_png, write_png
from locater.files import write_bytes_atomic
from locater.inference import SegmentedFrame, VideoSegmenter
from locater.video_io import VideoError, overlay_with_legend


def load_segmenter(args: argparse.Namespace) -> tuple[VideoSegmenter, float]:
    """The segmenter the demo's flags name, and the seconds its loading took."""
    start = time.perf_counter()
    segmenter = VideoSegmenter.from_checkpoint(
        args.checkpoint,
        device=args.device,
        overrides=args.overrides,
        amp=args.amp,
        threshold=args.threshold,
        trust_checkpoint=args.trust_checkpoint,
    )
    return segmenter, time.perf_counter() - start


def demo_sentences(args: argparse.Namespace) -> list[str]:
    """The ``--text`` sentences; :class:`VideoError` for an empty one."""
    sentences = list(args.text)
    empty = [k for k, sentence in enumerate(sentences) if not sentence.strip()]
    if empty:
        raise VideoError(f"--text number {empty[0] + 1} is empty: give a sentence describing the object")
    return sentences


def mask_dirs(out: Path, count: int) -> list[Path]:
    """``out/masks/sentence_<k>`` for each of ``count`` sentences."""
    return [out / "masks" / f"sentence_{k}" for k in range(count)]


def write_frame_outputs(
    result: SegmentedFrame,
    args: argparse.Namespace,
    sentences: Sequence[str],
    colors: Sequence[tuple[int, int, int]],
    writer,
    dirs: Sequence[Path],
    *,
    atomic: bool = False,
) -> None:
    """One frame's overlay (to ``writer``, unless ``None``) and masks (0/255 PNGs, unless ``--no-masks``).

    ``atomic`` writes each mask whole under its final name (the live mode: a reader may look while it runs).
    """
    masks = result.masks.numpy()
    if writer is not None:
        writer.write(overlay_with_legend(result.frame, masks, sentences, colors, args.alpha))
    if args.no_masks:
        return
    for mask_dir, mask in zip(dirs, masks):
        path = mask_dir / f"{result.index + 1:05d}.png"
        image = mask.astype("uint8") * 255
        if atomic:
            write_bytes_atomic(path, encode_png(image))
        else:
            write_png(path, image)


@dataclass
class RunClock:
    """Frames done and where the time went: segmenting (pulling the next result) and writing the outputs."""

    frames: int = 0
    segment_seconds: float = 0.0
    write_seconds: float = 0.0
    start: float = field(default_factory=time.perf_counter)

    def run(
        self,
        results: Iterator[SegmentedFrame],
        write: Callable[[SegmentedFrame], None],
        on_frame: Callable[[int], None],
    ) -> None:
        """Pull every result, ``write`` it, then call ``on_frame(frames done)``; the counts stay up to date if an
        exception (Ctrl-C included) stops the loop."""
        while True:
            tick = time.perf_counter()
            result = next(results, None)
            self.segment_seconds += time.perf_counter() - tick
            if result is None:
                return
            tick = time.perf_counter()
            write(result)
            self.write_seconds += time.perf_counter() - tick
            self.frames += 1
            on_frame(self.frames)

    def summary(self, load_seconds: float) -> dict:
        """The timing fields of ``summary.json``, the total counted from the clock's start until now."""
        total_seconds = time.perf_counter() - self.start
        return {
            "load_seconds": round(load_seconds, 3),
            "segment_seconds": round(self.segment_seconds, 3),
            "write_seconds": round(self.write_seconds, 3),
            "total_seconds": round(total_seconds, 3),
            "frames_per_second": round(self.frames / max(total_seconds, 1e-9), 3),
            "segment_frames_per_second": round(self.frames / max(self.segment_seconds, 1e-9), 3),
        }
