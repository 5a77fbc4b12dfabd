"""Generate the synthetic referring-video benchmark (train + NORM/MUL/SPAT/TEMP test splits) in layout 3.1.

  python tools/data/make_synthetic.py --out datasets/synthetic --seed 0
  python tools/data/make_synthetic.py --out datasets/synthetic --size 64 --num-train 0

Every split is re-validated from its scenes.json after writing; the same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import os
import time

from locater.data.synthetic import KINDS, generate_benchmark, validate_split


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
    parser.add_argument("--size", type=int, default=96, help="frame side in pixels")
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
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


if __name__ == "__main__":
    main()
