"""The memory experiment's results page, from a finished run of configs/synthetic/recipes/memory_experiment.yaml.

  python -m experiments.memory.write_report --run runs/memory_experiment --data datasets/synthetic \\
      --docs docs/experiments [--oracle-videos 40]

Writes ``DOCS/memory_results.md`` (the command, the machine, the wall time, the four splits per variant, TEMP by
the side of the twins' crossing, and the memory oracle: TEMP with each model's own vs the true masks in its local
memory), ``DOCS/memory_results.json`` (the recipe's results.json) and ``DOCS/memory_results.png`` (its chart).
The run must be complete: every variant evaluated (``RUN/VARIANT/eval.done.json``) and ``RUN/results.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from experiments.memory import memory_oracle, temp_crossing

RECIPE = "configs/synthetic/recipes/memory_experiment.yaml"


def _variants(run: Path) -> list[str]:
    results = run / "results.json"
    if not results.is_file():
        raise FileNotFoundError(
            f"{results}: missing; run the recipe to its end first (python tools/run_recipe.py {RECIPE})"
        )
    variants = list(json.loads(results.read_text()))
    for variant in variants:
        if not (run / variant / "eval.done.json").is_file():
            raise FileNotFoundError(
                f"{run / variant / 'eval.done.json'}: missing; variant {variant} is not evaluated"
            )
    return variants


def _final_stage(run: Path, variant: str) -> Path:
    """The resolved config of the variant's last training stage (whose weights the evaluation scored)."""
    from locater.recipes import load_recipe

    config = run / variant / f"{load_recipe(RECIPE).final_stage.name}.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: missing; variant {variant} has not finished its last stage")
    return config


def _wall_seconds(run: Path, variant: str) -> float:
    """Seconds from the variant's first step to its evaluation (the done files' times)."""
    times = [p.stat().st_mtime for p in (run / variant).glob("*.done.json")]
    configs = [p.stat().st_mtime for p in (run / variant).glob("*.yaml")]
    return max(times) - min(configs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run", type=Path, default=Path("runs/memory_experiment"), help="the recipe's output_dir"
    )
    parser.add_argument(
        "--data", type=Path, default=Path("datasets/synthetic"), help="the synthetic test splits"
    )
    parser.add_argument(
        "--docs", type=Path, default=Path("docs/experiments"), help="where memory_results.* go"
    )
    parser.add_argument("--oracle-videos", type=int, default=40, help="fresh TEMP videos for the oracle")
    args = parser.parse_args(argv)
    try:
        variants = _variants(args.run)
        configs = {variant: _final_stage(args.run, variant) for variant in variants}
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from locater.bench import machine_description

    args.docs.mkdir(parents=True, exist_ok=True)
    work = args.run / "report"
    work.mkdir(exist_ok=True)
    runs = [f"{variant}={args.run / variant / 'eval'}" for variant in variants]
    temp_crossing.main(
        ["--split", str(args.data / "TEMP"), "--runs", *runs, "--out", str(work / "temp_crossing.md")]
    )
    oracle_parts = []
    for variant in variants:
        config = configs[variant]
        if _no_local_memory(config):
            continue  # no local memory: nothing to write a mask into
        checkpoint = args.run / variant / config.stem / "checkpoints" / "last.pt"
        out = work / f"oracle_{variant}.md"
        memory_oracle.main(
            [
                "--config",
                str(config),
                "--checkpoint",
                str(checkpoint),
                "--videos",
                str(args.oracle_videos),
                "--out",
                str(out),
            ]
        )
        oracle_parts.append(f"{variant}:\n\n" + "\n".join(out.read_text().splitlines()[1:]).strip() + "\n")
    walls = {variant: _wall_seconds(args.run, variant) for variant in variants}
    lines = [
        "# The memory experiment: results",
        "",
        f"Command: `python tools/run_recipe.py {RECIPE}`, then "
        f"`python -m experiments.memory.write_report --run {args.run} --data {args.data} --docs {args.docs}`  ",
        f"Machine: {machine_description()}  ",
        "Wall time per variant (training and evaluation): "
        + ", ".join(f"{v} {walls[v]:.0f} s" for v in variants)
        + f"; {sum(walls.values()):.0f} s in all.",
        "",
        "Mean IoU / overall IoU (%) on the synthetic test splits:",
        "",
        (args.run / "results.md").read_text().rstrip(),
        "",
        "![mean IoU per split](memory_results.png)",
        "",
        (work / "temp_crossing.md").read_text().rstrip(),
        "",
        f"TEMP on {args.oracle_videos} fresh videos with each model's own masks or the true masks in its local memory "
        "(`experiments/memory/memory_oracle.py`): mean IoU / precision@0.7 in % (frames)",
        "",
        *oracle_parts,
    ]
    (args.docs / "memory_results.md").write_text("\n".join(lines).rstrip() + "\n")
    shutil.copyfile(args.run / "results.json", args.docs / "memory_results.json")
    shutil.copyfile(args.run / "results.png", args.docs / "memory_results.png")
    print(f"wrote {args.docs / 'memory_results.md'}")
    return 0


def _no_local_memory(config: Path) -> bool:
    import yaml

    return float(yaml.safe_load(config.read_text())["model"]["local_memory"]["size"]) == 0.0


if __name__ == "__main__":
    sys.exit(main())
