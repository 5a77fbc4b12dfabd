"""Convert the original A2D-Sentences release into layout 3.1: A2D_SUBSET/NORM (test) and A2D_SUBSET/train.

python tools/data/prepare_a2d.py --root A2D_SENTENCES_DIR --out datasets/

Resumable: rerun the same command after an interruption; finished videos are kept, finished splits skipped.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from locater.cli.entry import DEBUG_HELP, command
from locater.data.releases.a2d import EXPECTED_SENTENCES, EXPECTED_VIDEOS, SPLITS, prepare_a2d


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, description kept as written."""


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--root", required=True, help="A2D-Sentences folder (Release/ and text_annotations/)")
    parser.add_argument("--out", default="datasets", help="data root; writes <out>/A2D_SUBSET/{NORM,train}")
    parser.add_argument(
        "--splits", nargs="+", choices=sorted(SPLITS), default=["test", "train"], help="splits to convert"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes converting videos in parallel")
    parser.add_argument("--overwrite", action="store_true", help="rebuild splits that are already complete")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1 (1: in this process), got {args.workers}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tic = time.perf_counter()
    summaries, warnings = prepare_a2d(args.root, args.out, args.splits, args.workers, args.overwrite)
    print(f"expected counts: {EXPECTED_VIDEOS} videos, {EXPECTED_SENTENCES} sentences")
    for warning in warnings:
        print(f"WARNING: {warning}")
    for summary in summaries:
        print(summary.line())
    print(f"done in {time.perf_counter() - tic:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
