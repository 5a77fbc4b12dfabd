"""Build A2D-S+ (MUL, SPAT, TEMP) in layout 3.1 from the A2D-Sentences test split (A2D_SUBSET/NORM).

python tools/data/build_a2d_plus.py --a2d datasets/A2D_SUBSET/NORM --out datasets/

The selection rules are ours (the paper's are not public); they live in locater/data/releases/a2d_plus.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from locater.cli.entry import DEBUG_HELP, command
from locater.data.releases.a2d_plus import build_a2d_plus


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, description kept as written."""


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--a2d", default="datasets/A2D_SUBSET/NORM", help="the NORM split (layout 3.1)")
    parser.add_argument(
        "--out", default="datasets", help="data root; writes <out>/A2D_SUBSET/{MUL,SPAT,TEMP}"
    )
    parser.add_argument("--overwrite", action="store_true", help="rebuild subsets that are already complete")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tic = time.perf_counter()
    summaries, selection = build_a2d_plus(args.a2d, args.out, args.overwrite)
    print(f"{'subset':<6} {'videos':>7} {'expressions':>12} {'labelled frames':>16}")
    for subset, expressions in selection.subsets.items():
        videos = len({s.video for s in expressions})
        frames = next(s.labelled_frames for s in summaries if s.name == subset)
        shown = frames if next(s.status for s in summaries if s.name == subset) == "written" else "-"
        print(f"{subset:<6} {videos:>7} {len(expressions):>12} {shown:>16}")
    if selection.unknown_actor:
        print(f"{selection.unknown_actor} expressions of unknown actor class were left out of MUL")
    for summary in summaries:
        print(summary.line())
    print(f"done in {time.perf_counter() - tic:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
