"""Pre-train the small synthetic model's vision encoder on patch labels (shape and colour of the object under
each patch), its stand-in for the ImageNet ViT that the released model starts from. Single process, CPU is fine.

  python tools/pretrain_vision.py --config configs/synthetic/model.yaml --out runs/vision/vit.pth --minutes 1.5
  python tools/train.py --config configs/synthetic/train.yaml pretrained.vit=runs/vision/vit.pth ...
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from locater.config import ConfigError, load_config
from locater.engine.vision_pretraining import pretrain_vision_encoder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--config", type=Path, default=Path("configs/synthetic/model.yaml"))
    parser.add_argument("--out", type=Path, required=True, help="ViT state dict to write (.pth)")
    parser.add_argument("--minutes", type=float, default=1.5, help="time budget (0: none)")
    parser.add_argument("--max-steps", type=int, default=0, help="step budget (0: none)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    try:
        cfg = load_config(args.config, args.overrides)
        summary = pretrain_vision_encoder(
            cfg,
            args.out,
            minutes=args.minutes,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
