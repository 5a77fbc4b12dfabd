"""Pre-train the small synthetic model's vision encoder on patch labels (shape and colour of the object under
each patch), its stand-in for the ImageNet ViT that the released model starts from. Single process, CPU is fine.

  python tools/pretrain_vision.py --config configs/synthetic/model.yaml --out runs/vision/vit.pth
  python tools/pretrain_vision.py --config configs/synthetic/model.yaml --out runs/vision/vit.pth pretrain_vision.max_steps=500
  python tools/train.py --config configs/synthetic/train.yaml pretrained.vit=runs/vision/vit.pth ...
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from locater.cli.entry import DEBUG_HELP, command
from locater.config import ConfigError, load_config
from locater.engine.vision_pretraining import pretrain_vision_encoder
from locater.errors import EXIT_NON_FINITE
from locater.files import write_json_atomic


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--config", type=Path, default=Path("configs/synthetic/model.yaml"))
    parser.add_argument("--out", type=Path, required=True, help="ViT state dict to write (.pth)")
    # each flag, when given, wins over its key of the config's pretrain_vision section
    parser.add_argument(
        "--minutes", type=float, default=None, help="time guard (0: none; pretrain_vision.max_minutes)"
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="step count (0: none; pretrain_vision.max_steps)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="(pretrain_vision.batch_size)")
    parser.add_argument("--lr", type=float, default=None, help="(pretrain_vision.lr)")
    parser.add_argument("--seed", type=int, default=None, help="(pretrain_vision.seed)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        section = cfg.pretrain_vision
        pick = lambda flag, key: section[key] if flag is None else flag  # noqa: E731
        batch_size = pick(args.batch_size, "batch_size")
        if batch_size < 1:
            raise ConfigError(f"the batch size must be >= 1, got {batch_size}")
        summary = pretrain_vision_encoder(
            cfg,
            args.out,
            minutes=pick(args.minutes, "max_minutes"),
            max_steps=pick(args.max_steps, "max_steps"),
            batch_size=batch_size,
            lr=pick(args.lr, "lr"),
            seed=pick(args.seed, "seed"),
            progress=not args.no_progress,
        )
    except FloatingPointError as error:  # a non-finite loss, the same code as training's
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NON_FINITE
    write_json_atomic(args.out.with_suffix(".json"), summary, indent=2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
