"""Write the Ref-YouTube-VOS local validation list of a release: its held-out train video ids, one a line.

python tools/data/ytvos_local_val.py --root datasets/ref-youtube-vos --out local_val_videos.txt

The split is a rule on the video id (locater/data/ytvos_local_val.py: about 5 % of the videos), applied by training
(train.data.ytvos_exclude_local_val) and by the evaluation (eval.ytvos_split=local_val) themselves; the list is for
reading, comparing and citing. It is not committed to the repository because the release is not ours to copy.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from locater.cli.entry import DEBUG_HELP, command
from locater.data.ytvos import YTVOSSplit
from locater.data.ytvos_local_val import write_local_val_list


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", required=True, type=Path, help="Ref-YouTube-VOS folder (train/, meta_expressions/)"
    )
    parser.add_argument("--out", required=True, type=Path, help="the list file to write")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    split = YTVOSSplit.open(args.root, "train")
    videos = split.videos()
    held_out = write_local_val_list(videos, args.out, split.meta_file)
    expressions = sum(len(videos[video]) for video in held_out)
    print(
        f"local validation: {len(held_out)} of {len(videos)} train videos, {expressions} expressions: {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
