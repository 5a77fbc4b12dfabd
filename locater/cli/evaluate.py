"""Evaluate Locater (ours or official checkpoints) on A2D-S, A2D-S+, JHMDB-S or any layout-3.1 split.

  python tools/evaluate.py --config configs/a2d/norm.yaml --checkpoint CKPT [key=value ...]
  python tools/evaluate.py --dataset A2D --testing-type NORM --snapshot CKPT [--data-root DIR]
  python tools/evaluate.py --config configs/ytvos/valid.yaml --checkpoint CKPT      (Ref-YouTube-VOS valid: submission.zip)
  python tools/evaluate.py --config configs/ytvos/local_val.yaml --checkpoint CKPT  (J&F, held-out train videos)
  python tools/evaluate.py --config configs/davis17/val.yaml --checkpoint CKPT     (Ref-DAVIS17 J&F)
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

from locater.cli.entry import DEBUG_HELP, add_trust_checkpoint_flag, command
from locater.cli.output_dir import prepare_output_dir
from locater.config import ConfigError, load_config, save_config
from locater.data.layout import KINDED_DATASETS, TESTING_TYPES
from locater.data.ytvos import YTVOSSplit
from locater.engine import distributed
from locater.engine.amp import resolve_amp
from locater.engine.cpu_memory import retain_freed_memory
from locater.engine.evaluator import (
    evaluate_split,
    live_settings,
    resolve_eval_splits,
    write_ytvos_submission,
)
from locater.engine.jf_report import JF_OUTPUTS
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
    *JF_OUTPUTS,  # J&F runs: Ref-YouTube-VOS local validation, Ref-DAVIS17
)

logger = logging.getLogger(__name__)


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
    add_trust_checkpoint_flag(parser)
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


def _precision(cfg, info) -> str:
    """What ``eval.amp`` (true, false or auto) ran as on this device: ``"bf16 autocast"`` or ``"float32"``."""
    return "bf16 autocast" if resolve_amp(cfg.eval.amp, info.device) else "float32"


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
    logger.info("eval.amp=%s on %s: %s", cfg.eval.amp, info.device, _precision(cfg, info))
    if cfg.eval.dataset == "DAVIS17" or (cfg.eval.dataset == "YTVOS" and cfg.eval.ytvos_split == "local_val"):
        return _jf_evaluation(args, cfg, model, info)
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
                    precision=_precision(cfg, info),
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
            live=live_settings(cfg),
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
            "precision": _precision(cfg, info),
        }
        write_json_atomic(output_dir / "submission.json", summary, indent=2)  # last: marks the run done
        print(f"wrote {result.zip_path}: {result.num_masks} masks of {result.num_samples} expressions")
        print(f"outputs: {output_dir}")
    return 0  # the process group is torn down by @command


def _jf_split(cfg):
    """The reader, its record groups and averaged columns, and the run's name of a J&F evaluation."""
    from locater.data.ref_davis import SENTENCE_SETS, RefDAVIS
    from locater.data.ytvos import YTVOSError
    from locater.data.ytvos_local_val import split_local_val
    from locater.engine.jf_report import DAVIS_AVERAGES

    section = cfg.eval
    if section.dataset == "DAVIS17":
        split = RefDAVIS.open(section.data_root, section.davis_split, unsupervised=section.davis_unsupervised)
        groups = [sentence_set.name for sentence_set in SENTENCE_SETS]
        return split, split.group, groups, DAVIS_AVERAGES, f"davis17-{section.davis_split}"
    train = YTVOSSplit.open(section.data_root, "train")
    _, held_out = split_local_val(train.videos())
    if not held_out:
        raise YTVOSError(
            f"{train.meta_file}: none of its {len(train.videos())} videos is in the local validation split"
        )
    split = train.subset(held_out)
    split.check_referred_objects()  # every annotation read once: a missing or wrong-size file fails now
    return split, lambda video, expression: "local_val", ["local_val"], None, "ytvos-local_val"


def _jf_evaluation(args: argparse.Namespace, cfg, model, info) -> int:
    """Ref-YouTube-VOS local validation (``eval.ytvos_split=local_val``) or Ref-DAVIS17: J&F per group and
    protocol, per-expression files and the tables (docs/evaluation.md)."""
    from locater.engine.jf_evaluation import evaluate_jf
    from locater.engine.jf_report import jf_markdown, summarise, write_jf_outputs

    section = cfg.eval
    davis = section.dataset == "DAVIS17"
    unsupervised = davis and section.davis_unsupervised
    created = None
    try:
        split, group, groups, averages, name = _jf_split(cfg)
        output_dir, created = _output_dir(args, info, name)
        if info.is_main:
            save_config(cfg, output_dir / "config.yaml")  # before metrics.json, which marks a finished run
        result = evaluate_jf(
            model,
            split,
            info.device,
            group=group,
            unsupervised=unsupervised,
            amp=section.amp,
            save_masks_dir=output_dir / "masks" if section.save_masks else None,
            progress=not args.no_progress,
            max_videos=section.max_videos or None,
            prefetch=section.prefetch,
            videos_per_batch=section.videos_per_batch,
            live=live_settings(cfg),
        )
        protocols = {"referring": summarise(result.records, groups, averages)}
        if davis:
            protocols["semi_supervised_toolkit"] = summarise(
                result.records, groups, averages, skip_first_last=True
            )
        if unsupervised:
            protocols["unsupervised_toolkit"] = summarise(result.unsupervised_records, groups, averages)
        table = jf_markdown(protocols)
        if info.is_main:
            write_jf_outputs(output_dir, result.records, result.unsupervised_records, result.matching)
            write_text_atomic(output_dir / "metrics.md", table)
            payload = {
                **protocols,
                "checkpoint": str(args.checkpoint),
                "dataset": section.dataset,
                "split": section.davis_split if davis else "local_val",
                "num_samples": result.num_samples,
                "frames_processed": result.frames_processed,
                "vision_encoder_passes": result.vision_passes,
                "seconds": round(result.seconds, 2),
                "world_size": info.world_size,
                "precision": _precision(cfg, info),
            }
            write_json_atomic(output_dir / "metrics.json", payload, indent=2)  # last: marks the run done
    except BaseException:
        _remove_created(created)  # a folder this run made goes again, partial outputs and all
        raise
    if info.is_main:
        print(table)
        print(f"outputs: {output_dir}")
    return 0  # the process group is torn down by @command


if __name__ == "__main__":
    sys.exit(main())
