"""Evaluate Locater (ours or official checkpoints) on A2D-S, A2D-S+, JHMDB-S or any layout-3.1 split.

  python tools/evaluate.py --config configs/a2d/norm.yaml --checkpoint CKPT [key=value ...]
  python tools/evaluate.py --dataset A2D --testing-type NORM --snapshot CKPT [--data-root DIR]
  python tools/evaluate.py --config configs/ytvos.yaml --checkpoint CKPT      (Ref-YouTube-VOS valid: submission.zip)
  torchrun --nproc_per_node=N tools/evaluate.py ...            (NCCL on GPUs, gloo on the CPU)

Writes metrics.json, metrics.md, per_frame.csv and config.yaml (and masks/ with --save-masks) into the output
directory, and prints the table. --output-dir must be new or empty (--overwrite replaces an earlier evaluation's
outputs); each metrics.json / submission.json is written whole and last, so a folder without it holds no finished
result. Exit codes: docs/exit-codes.md (2 bad input, 4 disk full or permission, 130 interrupted).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from locater.cli.entry import DEBUG_HELP, command
from locater.cli.output_dir import prepare_output_dir
from locater.config import ConfigError, load_config, save_config
from locater.data.layout import KINDED_DATASETS, TESTING_TYPES
from locater.data.ytvos import YTVOSSplit
from locater.engine import distributed
from locater.engine.cpu_memory import retain_freed_memory
from locater.engine.evaluator import evaluate_split, resolve_eval_splits, write_ytvos_submission
from locater.engine.metrics import markdown_table, write_per_frame_csv
from locater.errors import LocaterError
from locater.files import write_json_atomic, write_text_atomic
from locater.model.loading import load_model

# what an evaluation writes directly into its output folder (one sub-folder per testing type for ALL)
EVAL_OUTPUTS = (
    "metrics.json",
    "metrics.md",
    "per_frame.csv",
    "config.yaml",
    "masks",
    "submission.zip",
    "submission.json",
    *(kind.lower() for kind in TESTING_TYPES),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--config", type=Path, help="YAML config (e.g. configs/a2d/norm.yaml)")
    parser.add_argument("--checkpoint", "--snapshot", dest="checkpoint", type=Path, help="ours or official")
    parser.add_argument(
        "--dataset",
        help="official form: A2D or JHMDB (also SYN: the synthetic benchmark; YTVOS: valid-set submission)",
    )
    parser.add_argument("--testing-type", help="official form: NORM, MUL, SPAT, TEMP or ALL")
    parser.add_argument(
        "--data-root", help="official form: folder holding A2D_SUBSET/ and JHMDB/ (YTVOS: the dataset folder)"
    )
    parser.add_argument(
        "--output-dir", type=Path, help="new or empty (default: a new folder under runs/eval/)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier evaluation's outputs in --output-dir"
    )
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="read a checkpoint that needs full unpickling (it can run code): only for files you trust",
    )
    parser.add_argument(
        "--save-masks", action="store_true", help="write masks/<video>/<expression>/<frame>.png"
    )
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: config's device)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. eval.max_videos=5)")
    args = parser.parse_intermixed_args(argv)
    if args.checkpoint is None:
        parser.error("--checkpoint (or --snapshot) is required")
    if args.config is None and args.dataset is None:
        parser.error("give --config FILE, or the official form --dataset {A2D,JHMDB} --testing-type TYPE")
    return args


def build_config(args: argparse.Namespace):
    """The config of the run: ``--config`` (or the defaults) <- the official-form flags <- the overrides. Choices
    (dataset, testing type in any case) are checked by :func:`locater.config.load_config`."""
    overrides = list(args.overrides)
    if args.dataset is not None:
        overrides.append(f"eval.dataset={json.dumps(args.dataset)}")  # quoted: always a string
    if args.testing_type is not None:  # also in the config form (same as eval.testing_type=...)
        overrides.append(f"eval.testing_type={json.dumps(args.testing_type)}")
    if args.data_root is not None:
        overrides.append(f"eval.data_root={args.data_root}")
    if args.save_masks:
        overrides.append("eval.save_masks=true")
    if args.device is not None:
        overrides.append(f"device={args.device}")
    cfg = load_config(args.config, overrides)
    if args.dataset is not None and args.testing_type is None and cfg.eval.dataset in KINDED_DATASETS:
        raise ConfigError(f"--dataset {cfg.eval.dataset} needs --testing-type (NORM, MUL, SPAT, TEMP or ALL)")
    return cfg


def _model_overrides(overrides: list[str]) -> list[str]:
    """The ``model.*`` entries of the command-line overrides."""
    return [item for item in overrides if item.split("=", 1)[0].strip().split(".")[0] == "model"]


def _new_output_dir(name: str) -> Path:
    """A folder ``runs/eval/<name>-<time>`` that no other run uses, created here (``-2``, ``-3`` ... appended if
    taken)."""
    base = Path("runs/eval") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = base if attempt == 1 else base.with_name(f"{base.name}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise ConfigError(f"cannot find a free output folder next to {base}; pass --output-dir")


def _output_dir(args: argparse.Namespace, info, name: str) -> tuple[Path, Path | None]:
    """``--output-dir`` (checked by :func:`prepare_output_dir`), or a new folder from :func:`_new_output_dir`, made
    by rank 0; every rank gets the same path, or the same refusal. Also returns the folder when this process
    created it (to remove again if the run fails before writing)."""
    created, problem = None, None
    if info.is_main:
        try:
            if args.output_dir is None:
                created = _new_output_dir(name)
            else:
                existed = args.output_dir.exists()
                prepare_output_dir(
                    args.output_dir, EVAL_OUTPUTS, overwrite=args.overwrite, last="metrics.json"
                )
                created = None if existed else args.output_dir
        except LocaterError as error:
            problem = str(error)
    folder, problem = distributed.broadcast_object((str(args.output_dir or created), problem))
    if problem is not None:
        raise ConfigError(problem)
    return Path(folder), created


def _remove_created(folder: Path | None) -> None:
    """Remove a folder this run created, with the partial outputs in it (its config.yaml, the splits done so far):
    a failed evaluation leaves no folder that could pass for a result."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@command
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    cfg = build_config(args)
    info = distributed.init_distributed(cfg.device)
    retain_freed_memory()  # batched CPU evaluation spent a fifth to a quarter of its time faulting in pages
    trust = args.trust_checkpoint
    if args.config is None:
        # the official form has no model config: the checkpoint's own (ours: stored, official: inferred from the
        # tensors), with the model.* overrides; the run's config records it
        model = load_model(
            args.checkpoint, info.device, _model_overrides(args.overrides), trust_checkpoint=trust
        )
        cfg = load_config({**cfg.to_dict(), "model": model.model_config})
    else:
        model = load_model(args.checkpoint, info.device, cfg=cfg, trust_checkpoint=trust)
    if cfg.eval.dataset == "YTVOS":
        return _ytvos_submission(args, cfg, model, info)
    results, summary = {}, {}
    created = None  # the default output folder, once this run has made it
    try:
        splits = resolve_eval_splits(cfg)  # every folder found before the first evaluation
        name = (
            Path(cfg.eval.split_dir).resolve().name.lower()
            if cfg.eval.split_dir
            else f"{cfg.eval.dataset.lower()}-{cfg.eval.testing_type.lower()}"
        )
        output_dir, created = _output_dir(args, info, name)
        if info.is_main:
            save_config(
                cfg, output_dir / "config.yaml"
            )  # before any metrics.json, which marks a finished run
        for split in splits:
            split_out = output_dir / split.testing_type.lower() if len(splits) > 1 else output_dir
            result = evaluate_split(
                model, cfg, split, info.device, output_dir=split_out, progress=not args.no_progress
            )
            root = str(result.split_dir)
            name = f"{cfg.eval.dataset}-{split.testing_type}" if not cfg.eval.split_dir else root
            results[name] = result.metrics
            if info.is_main:
                split_out.mkdir(parents=True, exist_ok=True)
                payload = dict(result.metrics)
                payload.update(
                    checkpoint=str(args.checkpoint),
                    dataset=None if cfg.eval.split_dir else cfg.eval.dataset,  # split_dir: any split
                    split=split.testing_type if not cfg.eval.split_dir else root,
                    frames_processed=result.frames_processed,
                    vision_encoder_passes=result.vision_passes,
                    seconds=round(result.seconds, 2),
                    world_size=info.world_size,
                )
                write_text_atomic(split_out / "metrics.md", markdown_table({name: result.metrics}))
                write_per_frame_csv(result.records, split_out / "per_frame.csv")
                write_json_atomic(split_out / "metrics.json", payload, indent=2)  # last: marks the split done
                summary[name] = payload
    except BaseException:
        _remove_created(created)  # a folder this run made goes again, partial outputs and all
        raise
    if info.is_main:
        table = markdown_table(results)
        if len(splits) > 1:
            write_text_atomic(output_dir / "metrics.md", table)
            write_json_atomic(output_dir / "metrics.json", summary, indent=2)
        print(table)
        print(f"outputs: {output_dir}")
    return 0  # the process group is torn down by @command


def _ytvos_submission(args: argparse.Namespace, cfg, model, info) -> int:
    """Ref-YouTube-VOS valid: masks of every listed frame into <output_dir>/submission.zip (no metrics: the
    valid masks are not public; upload the zip to the challenge server)."""
    created = None
    try:
        split = YTVOSSplit.open(cfg.eval.data_root, "valid")
        output_dir, created = _output_dir(args, info, "ytvos-valid")
        result = write_ytvos_submission(
            model,
            split,
            info.device,
            output_dir / "submission.zip",
            amp=cfg.eval.amp,
            progress=not args.no_progress,
            max_videos=cfg.eval.max_videos or None,
            prefetch=cfg.eval.prefetch,
        )
    except BaseException:
        _remove_created(created)
        raise
    if info.is_main:
        save_config(cfg, output_dir / "config.yaml")
        summary = {
            "checkpoint": str(args.checkpoint),
            "dataset": "YTVOS",
            "split": "valid",
            "submission": str(result.zip_path),
            "num_samples": result.num_samples,
            "num_masks": result.num_masks,
            "frames_processed": result.frames_processed,
            "vision_encoder_passes": result.vision_passes,
            "seconds": round(result.seconds, 2),
            "world_size": info.world_size,
        }
        write_json_atomic(output_dir / "submission.json", summary, indent=2)  # last: marks the run done
        print(f"wrote {result.zip_path}: {result.num_masks} masks of {result.num_samples} expressions")
        print(f"outputs: {output_dir}")
    return 0  # the process group is torn down by @command


if __name__ == "__main__":
    sys.exit(main())
