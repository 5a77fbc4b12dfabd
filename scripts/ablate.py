"""Train and evaluate config variants, then write a comparison table (markdown, CSV) and a bar chart (PNG).

  python scripts/ablate.py --config configs/synthetic/train.yaml --grid configs/synthetic/ablations/grid.yaml
  python scripts/ablate.py --config configs/synthetic/train.yaml --grid grid.yaml --out runs/ablate train.max_minutes=5

The grid file (YAML)::

    variants:                          # name -> list of edits: dotted key=value strings and/or override files
      full: []
      no_local_memory: [configs/synthetic/ablations/no_local_memory.yaml]
      local_memory_1: [model.local_memory.size=1.0]
    overrides: [train.max_minutes=5]   # optional: edits applied to every variant (before its own)
    evaluate: []                       # optional: splits (eval config paths or mappings); default validation.splits
    metrics: [mean_iou, overall_iou]   # optional: columns of the table (the chart shows the first)

An override file is a config file: its keys (except _base_ and output_dir) are applied on top of the base config.
Each variant trains into <out>/<variant>/ (skipped when its last.pt exists, unless --retrain), then its last.pt is
evaluated on every split. Outputs: <out>/ablation.md, ablation.csv, ablation.png, ablation.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from locater.config import Config, ConfigError, load_config, merge_dicts
from locater.engine import distributed

DEFAULT_METRICS = ["mean_iou", "overall_iou"]


def read_grid(path: Path) -> dict:
    """The grid file, checked: ``variants`` (name -> list of edits), ``overrides``, ``evaluate``, ``metrics``."""
    if not path.is_file():
        raise ConfigError(f"grid file not found: {path}")
    grid = yaml.safe_load(path.read_text()) or {}
    unknown = set(grid) - {"variants", "overrides", "evaluate", "metrics"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown keys {sorted(unknown)} (expected variants, overrides, evaluate, metrics)"
        )
    variants = grid.get("variants")
    if not isinstance(variants, Mapping) or not variants:
        raise ConfigError(f"{path}: 'variants' must map variant names to lists of edits")
    for name, edits in variants.items():
        if not isinstance(edits, list) or not all(isinstance(e, str) for e in edits):
            raise ConfigError(
                f"{path}: variant {name!r} must be a list of key=value strings or override files"
            )
        if "/" in str(name) or not str(name).strip():
            raise ConfigError(f"{path}: variant name {name!r} must be a plain folder name")
    return {
        "variants": {str(k): list(v or []) for k, v in variants.items()},
        "overrides": list(grid.get("overrides") or []),
        "evaluate": list(grid.get("evaluate") or []),
        "metrics": list(grid.get("metrics") or DEFAULT_METRICS),
    }


def compose_config(base: str | Path, edits: list[str], output_dir: Path) -> Config:
    """The base config with override files merged and ``key=value`` edits applied, training into ``output_dir``."""
    data = load_config(base).to_dict()
    dotted = []
    for edit in edits:
        if "=" in edit:
            dotted.append(edit)
            continue
        path = Path(edit)
        if not path.is_file():
            raise ConfigError(f"override {edit!r} is neither key=value nor an existing config file")
        update = yaml.safe_load(path.read_text()) or {}
        if not isinstance(update, Mapping):
            raise ConfigError(f"{path}: an override file must hold a mapping")
        data = merge_dicts(data, {k: v for k, v in update.items() if k not in ("_base_", "output_dir")})
    return load_config(data, [*dotted, f"output_dir={output_dir}"])


def evaluate_variant(cfg: Config, checkpoint: Path, splits: list, metrics: list[str]) -> dict[str, dict]:
    """``{split: {metric: value}}`` of one trained variant."""
    from locater.engine.evaluator import evaluate_split
    from locater.engine.loading import load_model_for_inference
    from locater.engine.trainer import resolve_validation_splits

    info = distributed.init_distributed(cfg.device)
    model, _ = load_model_for_inference(checkpoint, cfg, info.device)
    eval_cfg = load_config(cfg.to_dict(), [f"validation.splits={json.dumps(splits)}"]) if splits else cfg
    results = {}
    for split in resolve_validation_splits(eval_cfg):
        values = evaluate_split(model, split.cfg, info.device, progress=False)
        missing = [m for m in metrics if m not in values]
        if missing:
            raise KeyError(f"metrics {missing} are not computed by the evaluator (have {sorted(values)})")
        results[split.name] = {m: float(values[m]) for m in metrics}
    return results


def write_outputs(results: dict[str, dict[str, dict]], metrics: list[str], out: Path) -> list[Path]:
    """ablation.md, ablation.csv, ablation.json and ablation.png (grouped bars of the first metric per split)."""
    out.mkdir(parents=True, exist_ok=True)
    splits = list(next(iter(results.values())))
    header = ["variant"] + [f"{split} {metric}" for split in splits for metric in metrics]
    rows = [
        [variant] + [f"{100 * values[split][metric]:.2f}" for split in splits for metric in metrics]
        for variant, values in results.items()
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    md = out / "ablation.md"
    md.write_text("Metrics in %.\n\n" + "\n".join(lines) + "\n")
    csv_path = out / "ablation.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["variant", "split", *metrics])
        for variant, values in results.items():
            for split in splits:
                writer.writerow([variant, split, *(f"{values[split][m]:.6f}" for m in metrics)])
    json_path = out / "ablation.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    png = out / "ablation.png"
    _bar_chart(results, splits, metrics[0], png)
    return [md, csv_path, json_path, png]


def _bar_chart(results: dict, splits: list[str], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(results)
    width = 0.8 / len(variants)
    figure, axes = plt.subplots(figsize=(1.6 + 1.4 * len(splits) + 0.2 * len(variants), 3.6))
    for i, variant in enumerate(variants):
        xs = [s + (i - (len(variants) - 1) / 2) * width for s in range(len(splits))]
        axes.bar(xs, [100 * results[variant][s][metric] for s in splits], width, label=variant)
    axes.set_xticks(range(len(splits)), splits)
    axes.set_ylabel(f"{metric} (%)")
    axes.set_ylim(0, 100)
    axes.legend(fontsize=8, ncols=2)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/ablate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="base training config")
    parser.add_argument("--grid", required=True, type=Path, help="grid file (see above)")
    parser.add_argument("--out", type=Path, default=Path("runs/ablate"), help="(default: runs/ablate)")
    parser.add_argument("--retrain", action="store_true", help="train even when a variant's last.pt exists")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="edits applied to every variant last"
    )
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from locater.engine.trainer import train

    try:
        grid = read_grid(args.grid)
        results = {}
        for variant, edits in grid["variants"].items():
            out = args.out / variant
            cfg = compose_config(args.config, [*grid["overrides"], *edits, *args.overrides], out)
            last = out / "checkpoints" / "last.pt"
            if args.retrain or not last.is_file():
                print(f"[{variant}] training into {out}", flush=True)
                train(cfg)
            else:
                print(f"[{variant}] {last} exists: evaluating it (--retrain to train again)", flush=True)
            results[variant] = evaluate_variant(cfg, last, grid["evaluate"], grid["metrics"])
            print(f"[{variant}] {json.dumps(results[variant])}", flush=True)
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if distributed.is_main_process():
        if not any(results.values()):
            print(
                "error: no split to evaluate (set 'evaluate' in the grid or validation.splits)",
                file=sys.stderr,
            )
            return 2
        paths = write_outputs(results, grid["metrics"], args.out)
        print((args.out / "ablation.md").read_text())
        print("wrote " + ", ".join(str(p) for p in paths))
    distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
