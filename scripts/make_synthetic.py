"""Generate the synthetic referring-video benchmark (train + NORM/MUL/SPAT/TEMP) in layout 3.1.

python scripts/make_synthetic.py --out datasets/synthetic --seed 0
"""

from __future__ import annotations

import argparse
import time

from locater.data.synthetic import KINDS, generate_benchmark, validate_split


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", default="datasets/synthetic", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=400, help="training videos (all four kinds mixed)")
    parser.add_argument("--num-test", type=int, default=50, help="videos per test split")
    parser.add_argument("--size", type=int, default=96, help="frame side in pixels")
    parser.add_argument(
        "--train-mix",
        nargs=4,
        type=float,
        default=[1, 1, 1, 1],
        metavar=KINDS,
        help="kind proportions in train",
    )
    args = parser.parse_args()
    tic = time.perf_counter()
    paths = generate_benchmark(
        args.out, args.seed, args.num_train, args.num_test, args.size, dict(zip(KINDS, args.train_mix))
    )
    for split, path in paths.items():
        print(f"{split:>5}: {path}  ({validate_split(path, args.size)} expressions validated)")
    print(f"done in {time.perf_counter() - tic:.1f}s")


if __name__ == "__main__":
    main()
