"""Generate the synthetic referring-video benchmark (train + NORM/MUL/SPAT/TEMP test splits) in layout 3.1.

  python tools/data/make_synthetic.py --out datasets/synthetic --seed 0
  python tools/data/make_synthetic.py --out datasets/synthetic --size 64 --num-train 0

Every split is re-validated from its scenes.json after writing; the same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from locater.cli.entry import DEBUG_HELP, command
from locater.data.synthetic import KINDS, generate_benchmark, validate_split

MIN_SIZE = 16  # the generator's minimum frame side (objects must fit and stay visible)
MAX_SIZE = 1024  # a 24-frame video with its masks then needs a few hundred MB in each worker


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, description kept as written."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument(
        "--out", default="datasets/synthetic", help="output folder (one sub-folder per split)"
    )
    parser.add_argument("--seed", type=int, default=0, help="benchmark seed")
    parser.add_argument(
        "--num-train", type=int, default=400, help="training videos, kinds mixed (0: no train)"
    )
    parser.add_argument("--num-test", type=int, default=50, help="videos per test split")
    parser.add_argument("--size", type=int, default=96, help=f"frame side in pixels ({MIN_SIZE}..{MAX_SIZE})")
    parser.add_argument(
        "--train-mix",
        nargs=4,
        type=float,
        default=[1.0, 1.0, 1.0, 1.0],
        metavar=KINDS,
        help="proportions of NORM, MUL, SPAT and TEMP videos in train",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 8),
        help="processes (the output does not depend on it)",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    # checked here: out-of-range values used to fail deep inside (or try to allocate hundreds of GiB)
    if not MIN_SIZE <= args.size <= MAX_SIZE:
        parser.error(f"--size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {args.size}")
    if args.num_train < 0:
        parser.error(f"--num-train must be >= 0 (0: no train split), got {args.num_train}")
    if args.num_test < 1:
        parser.error(f"--num-test must be >= 1 (videos per test split), got {args.num_test}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1 (1: in this process), got {args.workers}")
    if any(w < 0 for w in args.train_mix) or not sum(args.train_mix) > 0:
        parser.error(f"--train-mix needs 4 weights >= 0, not all 0, got {args.train_mix}")
    return args


@command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    paths = generate_benchmark(
        args.out,
        seed=args.seed,
        num_train=args.num_train,
        num_test=args.num_test,
        size=args.size,
        mix=dict(zip(KINDS, args.train_mix, strict=True)),
        workers=args.workers,
    )
    for split, path in paths.items():
        print(f"{split:>5}: {path}  ({validate_split(path)} expressions validated)")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
