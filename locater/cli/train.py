"""Train Locater with our recipe, as a plain process (CPU or one GPU) or under torchrun (DDP).

  python tools/train.py --config configs/synthetic/train.yaml
  python tools/train.py --config configs/synthetic/train.yaml train.max_steps=300 output_dir=runs/short
  torchrun --nproc_per_node=4 tools/train.py --config configs/a2d/train.yaml output_dir=runs/a2d
  python tools/train.py --config configs/a2d/train.yaml output_dir=runs/a2d resume=auto

Every key of the config (locater/defaults/*.yaml) can be overridden as a dotted key=value (values are YAML).
Writes <output_dir>/config.yaml, checkpoints/{step_*.pt,last.pt,best.pt}, tensorboard/, log.jsonl and
summary.json (written whole, last). Exit codes (docs/exit-codes.md): 0 done (or stopped by stop_at_step /
max_minutes: resume=auto continues), 1 non-finite loss, 2 bad config or input, 4 disk full or permission (the
previous checkpoint stays valid), 130 interrupted (Ctrl-C: nothing half-written; resume=auto continues).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from locater.cli.entry import DEBUG_HELP, add_trust_checkpoint_flag, command
from locater.config import load_config
from locater.engine import distributed
from locater.engine.trainer import train
from locater.files import write_json_atomic


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
    add_trust_checkpoint_flag(
        parser,
        "read a checkpoint (init or resume) that needs full unpickling (it can run code): only files you trust",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return parser


@command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, args.overrides)
    result = train(cfg, trust_checkpoint=args.trust_checkpoint)
    if distributed.is_main_process():
        summary = dataclasses.asdict(result)
        write_json_atomic(Path(cfg.output_dir) / "summary.json", summary, indent=2)
        print(json.dumps(summary, indent=2))
    return 0  # the process group is torn down by @command


if __name__ == "__main__":
    sys.exit(main())
