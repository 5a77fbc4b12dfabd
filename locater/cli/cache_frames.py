"""Decode the training frames of a config's split once into a frame cache (train.data.frame_cache).

python tools/data/cache_frames.py --config configs/a2d/train.yaml --out datasets/A2D_cache/train --workers 8
python tools/data/cache_frames.py --config configs/a2d/train.yaml train.data.frame_cache=datasets/A2D_cache/train

The cache holds every frame training can read (the frames the split's samples list and those their global memory
can draw from), decoded to uint8 RGB at its own size (400 KiB a 320 x 427 frame, 1.6x the A2D-like PNGs of
tools/benchmark.py --data); training with train.data.frame_cache=DIR then reads them without decoding and gives
the same samples. Running it again brings a cache up to date: entries whose source files are unchanged are kept.
docs/training.md#decoded-frame-cache says when it pays.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from locater.cli.entry import DEBUG_HELP, command


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="training config (train.data.source layout or ytvos)")
    parser.add_argument(
        "--out", type=Path, help="cache folder (default: the config's train.data.frame_cache)"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes decoding in parallel (default: 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("overrides", nargs="*", help="config edits key=value")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import locater
    from locater.data.frame_cache import build_frame_cache, cache_size_bytes
    from locater.engine.sampler import build_train_source

    cfg = locater.load_config(args.config, args.overrides)
    out = args.out or cfg.train.data.frame_cache
    if out is None:
        parser.error("give --out DIR or set train.data.frame_cache in the config")
    source = build_train_source(cfg)
    start = time.perf_counter()
    report = build_frame_cache(source, out, workers=args.workers, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    print(
        f"frame cache {out}: {report.built} videos decoded ({report.frames_written} frames, "
        f"{report.bytes_written / 2**20:.1f} MiB), {report.up_to_date} already up to date; "
        f"{cache_size_bytes(out) / 2**20:.1f} MiB in all; {seconds:.1f} s"
    )
    print(f"train with: train.data.frame_cache={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
