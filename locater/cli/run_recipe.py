"""Run a training recipe: its stages in order for each variant, then the evaluations and the report.

  python tools/run_recipe.py configs/synthetic/recipes/quickstart.yaml
  python tools/run_recipe.py configs/synthetic/recipes/memory_experiment.yaml --variants full,no_local_memory
  python tools/run_recipe.py RECIPE.yaml train.batch_size=4 --output-dir runs/small   # edits for every stage
  python tools/run_recipe.py RECIPE.yaml --plan                                        # what a run would do
  python tools/run_recipe.py RECIPE.yaml --nproc-per-node 4          # each stage under torchrun, 4 processes

A recipe is a YAML file (format in locater/recipes/spec.py and docs/training.md). Each stage of each variant
writes OUTPUT/VARIANT/STAGE/ and its resolved config OUTPUT/VARIANT/STAGE.yaml; a rerun skips a finished step
whose resolved config is identical, resumes an unfinished one, and refuses (exit 2) one whose config differs,
naming the keys. Exit codes (docs/exit-codes.md): 0 done, 1 non-finite loss in a training stage, 2 bad recipe,
config or input, or a refused rerun, 3 a stage stopped before its step count (its time guard): run the same
command to resume it, 4 disk full or permission, 130 interrupted (a rerun resumes the stage it stopped).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from locater.cli.entry import DEBUG_HELP, command
from locater.recipes import EXIT_BAD_INPUT, RecipeError, describe, load_recipe, plan, run
from locater.recipes.runner import refusal_message


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tools/run_recipe.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "recipe", type=Path, help="recipe YAML, e.g. configs/synthetic/recipes/quickstart.yaml"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config edits for every stage")
    parser.add_argument(
        "--variants",
        type=lambda text: [name for name in text.split(",") if name],
        default=None,
        help="comma-separated variants to run, e.g. full,no_local_memory (default: all)",
    )
    parser.add_argument("--output-dir", type=Path, default=None, help="instead of the recipe's output_dir")
    parser.add_argument("--plan", action="store_true", help="print what a run would do and stop")
    parser.add_argument(
        "--nproc-per-node", type=int, default=1, help="processes per training stage (torchrun)"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="(default: INFO)"
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return parser


@command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.nproc_per_node < 1:
        raise RecipeError(f"--nproc-per-node must be >= 1, got {args.nproc_per_node}")
    try:
        recipe = load_recipe(args.recipe)
        if args.output_dir is not None:
            recipe = dataclasses.replace(recipe, output_dir=args.output_dir)
        if args.plan:
            steps = plan(recipe, args.overrides, args.variants)
            print(f"{recipe.path} -> {recipe.output_dir}\n{describe(steps)}")
            message = refusal_message(steps)
            if message:
                print(f"error: {message}", file=sys.stderr)
                return EXIT_BAD_INPUT
            return 0
        run(recipe, args.overrides, args.variants, nproc_per_node=args.nproc_per_node)
    except KeyError as error:  # a report naming a metric the evaluation does not write
        raise RecipeError(str(error.args[0]) if error.args else str(error)) from error
    print(f"recipe finished; outputs in {recipe.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
