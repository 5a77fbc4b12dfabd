"""Train Locater with our recipe, as a plain process (CPU or one GPU) or under torchrun (DDP).

  python tools/train.py --config configs/synthetic/train.yaml
  python tools/train.py --config configs/synthetic/train.yaml train.max_steps=300 output_dir=runs/short
  torchrun --nproc_per_node=4 tools/train.py --config configs/a2d/train.yaml output_dir=runs/a2d
  python tools/train.py --config configs/a2d/train.yaml output_dir=runs/a2d resume=auto

Every key of the config (locater/defaults/*.yaml) can be overridden as a dotted key=value (values are YAML).
Writes <output_dir>/config.yaml, checkpoints/{step_*.pt,last.pt,best.pt}, tensorboard/, log.jsonl and
summary.json. Exit codes: 0 done (or stopped by stop_at_step / max_minutes: resume=auto continues), 1 non-finite
loss, 2 bad config or input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from locater.checkpoint import CheckpointError
from locater.config import ConfigError, load_config
from locater.data.frames import DataError
from locater.engine import distributed
from locater.engine.trainer import NonFiniteLossError, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tools/train.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/synthetic/train.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config edits, e.g. train.max_steps=30 (default: none)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="(default: INFO)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        result = train(cfg)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        distributed.cleanup()
        return 1
    except (ConfigError, CheckpointError, DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        distributed.cleanup()
        return 2
    if distributed.is_main_process():
        summary = dataclasses.asdict(result)
        (Path(cfg.output_dir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
    distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
