"""Validate layout-3.1 splits and list every problem found.

``python -m locater.data.check ROOT_OR_SPLIT_DIR`` checks one split folder, or every split found under a data
root (any folder holding a ``*_expressions.json``). It prints the counts of each split and every problem:
malformed JSON, empty sentences, labels not in the frames, count dict disagreeing with the frames, missing or
corrupt frame and mask files, masks whose size differs from their frame, video or expression ids that are not
plain file names (``../x`` would read and write outside the data and output folders). Exit code 1 if any
problem; 2 when the path is not a folder or holds no split.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from locater.cli.entry import DEBUG_HELP, command
from locater.data.frames import DataError, image_size, read_rgb
from locater.data.layout import LayoutError, LayoutSplit, read_mask_file

logger = logging.getLogger(__name__)


@dataclass
class SplitReport:
    """What :func:`check_split` found in one split folder."""

    root: Path
    num_videos: int = 0
    num_expressions: int = 0
    num_labelled_frames: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def find_splits(path: str | Path) -> list[Path]:
    """``path`` itself if it holds a ``*_expressions.json``, otherwise every such folder below it (sorted)."""
    path = Path(path)
    if not path.is_dir():
        raise LayoutError(f"folder not found: {path}")
    if any(path.glob("*_expressions.json")):
        return [path]
    return sorted({p.parent for p in path.rglob("*_expressions.json")})


def check_split(split_dir: str | Path, num_global_frames: int = 3, decode: bool = False) -> SplitReport:
    """Check one split folder.

    Args:
        split_dir: a layout-3.1 split folder.
        num_global_frames: number of global frames whose files must exist (the global-memory rule, from the count dict).
        decode: decode every frame (slow); by default PNG headers are read and only labelled frames decoded
            when they are not PNG.
    """
    split = LayoutSplit.open(split_dir, strict=False)
    report = SplitReport(root=split.root, problems=list(split.problems))
    grouped = split.videos()
    report.num_videos = len(grouped)
    report.num_expressions = len(split.samples)
    report.num_labelled_frames = sum(len(s.labels) for s in split.samples)
    for video, samples in grouped.items():
        report.problems.extend(_check_video(split, video, samples, num_global_frames, decode))
    return report


def _check_video(
    split: LayoutSplit, video: str, samples: list, num_global_frames: int, decode: bool
) -> list[str]:
    folder = split.frame_dir(video)
    if not folder.is_dir():
        return [f"{folder}: frame folder of video {video!r} missing"]
    problems: list[str] = []
    count = split.frame_counts.get(video)
    on_disk = len(list(folder.glob("*.png")))
    if count is not None and on_disk != count:
        problems.append(f"{folder}: holds {on_disk} PNG frames but {split.counts_file.name} says {count}")
    sizes: dict[str, tuple[int, int] | None] = {}

    def frame_size(frame: str) -> tuple[int, int] | None:
        if frame not in sizes:
            path = split.frame_path(video, frame)
            try:
                sizes[frame] = read_rgb(path).shape[:2] if decode else image_size(path)
            except DataError as error:
                sizes[frame] = None
                problems.append(str(error))
        return sizes[frame]

    needed = list(samples[0].frames)
    if count:
        try:
            needed += split.global_frames(samples[0], num_global_frames)
        except ValueError as error:
            problems.append(f"{folder}: {error}")
    for frame in dict.fromkeys(needed):
        frame_size(frame)
    for sample in samples:
        for frame in sample.labels:
            path = split.mask_path(video, sample.expression, frame)
            try:
                mask = read_mask_file(path)
            except LayoutError as error:
                problems.append(str(error))
                continue
            size = frame_size(frame)
            if size is not None and tuple(mask.shape) != tuple(size):
                problems.append(
                    f"{path}: mask is {mask.shape[0]} x {mask.shape[1]}, its frame is {size[0]} x {size[1]}"
                )
    return problems


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m locater.data.check",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("path", help="a split folder, or a data root to search for split folders")
    parser.add_argument(
        "--num-global",
        dest="num_global_frames",
        type=int,
        default=3,
        help="global frames per video that must exist",
    )
    parser.add_argument(
        "--decode", action="store_true", help="decode every frame instead of reading PNG headers"
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    if args.num_global_frames < 0:
        parser.error(f"--num-global must be >= 0, got {args.num_global_frames}")
    splits = find_splits(args.path)  # LayoutError (exit 2) when the folder is missing
    if not splits:
        raise LayoutError(f"no split (folder with a *_expressions.json) under {args.path}")
    total = 0
    for split_dir in splits:
        try:
            report = check_split(split_dir, args.num_global_frames, args.decode)
        except DataError as error:  # LayoutError, UnsafePathError: listed with the split's other problems
            report = SplitReport(root=Path(split_dir), problems=[str(error)])
        print(
            f"{report.root}: {report.num_videos} videos, {report.num_expressions} expressions, "
            f"{report.num_labelled_frames} labelled frames, {_plural(len(report.problems), 'problem')}"
        )
        for problem in report.problems:
            print(f"  problem: {problem}")
        total += len(report.problems)
    print("OK" if total == 0 else f"FAILED: {_plural(total, 'problem')} in {_plural(len(splits), 'split')}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
