"""Convert the original JHMDB-Sentences release into layout 3.1 (JHMDB flavour): <out>/JHMDB.

python tools/data/prepare_jhmdb.py --root JHMDB_DIR --out datasets/ [--scored-frames all|LIST.json]

Scored frames: "all" (every frame with a mask), our fixed list (make it once with
--make-scored-list data/jhmdb_scored_frames.json --seed 0) or MTTR's jhmdb_sentences_samples_metadata.json.
Resumable: rerun the same command after an interruption.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from locater.cli.entry import DEBUG_HELP, command
from locater.data.releases.jhmdb import FRAMES_PER_VIDEO, prepare_jhmdb, write_scored_list


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, description kept as written."""


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--root", required=True, help="JHMDB-Sentences folder (Rename_Images/, puppet_mask/, ...)"
    )
    parser.add_argument("--out", default="datasets", help="data root; writes <out>/JHMDB")
    parser.add_argument(
        "--scored-frames",
        default="all",
        help="'all', or a scored-frame list: ours or MTTR's samples metadata",
    )
    parser.add_argument(
        "--make-scored-list",
        metavar="PATH",
        help="write our scored-frame list to PATH and exit (no conversion)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --make-scored-list")
    parser.add_argument(
        "--frames-per-video", type=int, default=FRAMES_PER_VIDEO, help="for --make-scored-list"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes converting videos in parallel")
    parser.add_argument("--overwrite", action="store_true", help="rebuild a complete <out>/JHMDB")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1 (1: in this process), got {args.workers}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.frames_per_video < 1:
        parser.error(f"--frames-per-video must be >= 1, got {args.frames_per_video}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tic = time.perf_counter()
    if args.make_scored_list:
        count = write_scored_list(args.root, args.make_scored_list, args.seed, args.frames_per_video)
        print(f"scored-frame list: {args.make_scored_list} ({count} videos, seed {args.seed})")
    else:
        summary = prepare_jhmdb(args.root, args.out, args.scored_frames, args.workers, args.overwrite)
        print(f"scored frames: {args.scored_frames}")
        print(summary.line())
    print(f"done in {time.perf_counter() - tic:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
