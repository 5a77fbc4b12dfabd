"""Run a recipe: every stage of every variant, then the evaluations and the report.

Layout of ``OUTPUT`` (``output_dir`` of the recipe)::

    OUTPUT/VARIANT/STAGE/            the stage's run (tools/train.py: checkpoints/, log.jsonl, config.yaml ...;
                                     a vision stage: vit.pth, vit.json)
    OUTPUT/VARIANT/eval/             tools/evaluate.py's outputs for the final weights
    OUTPUT/VARIANT/STAGE.yaml        the stage's resolved config, written before it runs
    OUTPUT/VARIANT/STAGE.done.json   written once the stage has finished (its summary)
    OUTPUT/results.{json,md,png}     the report across variants

The edits of a stage, in order: the base config <- the recipe's overlay <- the stage's overlay <- command-line
overrides <- the variant's overlay (always last, so a variant's setting wins over everything), then the driver's
own keys: ``output_dir``, and the weights the stage starts from (``pretrained.vit`` after a vision stage,
``pretrained.checkpoint`` after a training stage). The evaluation: the final stage's edits, then
``evaluate.overlay``, the command-line overrides and the variant's overlay.

A rerun compares each step's resolved config with the one it wrote: identical and finished -> skipped (said so);
identical and unfinished -> resumed (training with ``resume=auto``, exactly where it stopped; vision and
evaluation run again); different -> refused before anything runs, naming every differing key. Once a step of a
variant runs, the later steps of that variant run again too (their inputs changed).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from locater.config import (
    ConfigError,
    _load_with_bases,
    _validate,
    load_config,
    load_defaults,
    merge_dicts,
    parse_overrides,
)
from locater.errors import (  # noqa: F401  (re-exported by locater.recipes)
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_NON_FINITE,
    EXIT_NOT_FINISHED,
    EXIT_OK,
    EXIT_OUTPUT,
    LocaterError,
)
from locater.files import write_text_atomic
from locater.recipes.spec import Recipe

logger = logging.getLogger(__name__)


class RecipeError(LocaterError):
    """A recipe run that cannot go on; ``exit_code`` says why (see the EXIT_* constants)."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Step:
    """One unit of work: a stage of a variant, or its evaluation (``kind`` ``eval``)."""

    variant: str
    name: str
    kind: str  # train | vision | eval
    directory: Path
    config: dict  # resolved, plain (as written to <name>.yaml)
    checkpoint: Path | None = None  # eval: the weights evaluated
    status: str = "run"  # run | skip | resume | rerun
    differences: list[str] = field(default_factory=list)

    @property
    def config_file(self) -> Path:
        return self.directory.parent / f"{self.name}.yaml"

    @property
    def done_file(self) -> Path:
        return self.directory.parent / f"{self.name}.done.json"

    @property
    def label(self) -> str:
        return f"{self.variant}/{self.name}"


def _plain(data: Any) -> Any:
    """A YAML round trip: the form in which configs are written and compared."""
    return yaml.safe_load(yaml.safe_dump(data, sort_keys=False))


# guards, not settings: raising one lets a stage stopped by it resume, so a rerun does not compare them
RERUN_IGNORED = ("train.max_minutes", "train.stop_at_step", "pretrain_vision.max_minutes")


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain configs, as ``key: old -> new`` lines."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in list(old) + [k for k in new if k not in old]:
            dotted = f"{prefix}{key}"
            if key not in old:
                lines.append(f"{dotted}: (absent) -> {new[key]!r}")
            elif key not in new:
                lines.append(f"{dotted}: {old[key]!r} -> (absent)")
            else:
                lines.extend(config_differences(old[key], new[key], dotted + "."))
        return lines
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def _outputs_exist(step: Step) -> bool:
    """The files a finished step leaves (its done marker alone is not enough: the folder may have been deleted)."""
    if step.kind == "train":
        return (step.directory / "checkpoints" / "last.pt").is_file()
    if step.kind == "vision":
        return (step.directory / "vit.pth").is_file()
    return (step.directory / "metrics.json").is_file()


def plan(recipe: Recipe, overrides: list[str] = (), variants: list[str] | None = None) -> list[Step]:
    """Every step of the selected variants with its resolved config and what a run would do with it.

    Raises:
        ConfigError: an override or a resolved config that the schema refuses, an unknown variant.
    """
    defaults = load_defaults().to_dict()
    command_line = parse_overrides(overrides)
    _validate(defaults, command_line, "command-line override")
    selected = list(recipe.variants) if not variants else variants
    unknown = [v for v in selected if v not in recipe.variants]
    if unknown:
        raise ConfigError(
            f"{recipe.path}: unknown variants {unknown}; the recipe has {', '.join(recipe.variants)}"
        )
    base = _load_with_bases(recipe.base)
    steps: list[Step] = []
    for variant in selected:
        variant_dir = recipe.output_dir / variant
        previous: Step | None = None
        for stage in recipe.stages:
            edits = [recipe.overlay, stage.overlay, command_line, recipe.variants[variant]]
            config = _resolve(base, edits, f"{recipe.path}: variant {variant}, stage {stage.name}")
            directory = variant_dir / stage.name
            config["output_dir"] = str(directory)
            config["resume"] = None
            if stage.kind == "train" and previous is not None:
                # exactly one source of weights: the loader would let a checkpoint win over the ViT file
                if previous.kind == "vision":
                    config["pretrained"]["vit"] = str(previous.directory / "vit.pth")
                    config["pretrained"]["checkpoint"] = None
                else:
                    config["pretrained"]["checkpoint"] = str(previous.directory / "checkpoints" / "last.pt")
                    config["pretrained"]["vit"] = None
            step = Step(variant, stage.name, stage.kind, directory, _plain(config))
            steps.append(step)
            previous = step
        if recipe.evaluate is not None:
            final = recipe.final_stage
            edits = [recipe.overlay, final.overlay, recipe.evaluate["overlay"], command_line]
            edits.append(recipe.variants[variant])
            config = _resolve(base, edits, f"{recipe.path}: variant {variant}, evaluation")
            directory = variant_dir / "eval"
            config["output_dir"] = str(directory)
            config["resume"] = None
            checkpoint = previous.directory / "checkpoints" / "last.pt"
            steps.append(Step(variant, "eval", "eval", directory, _plain(config), checkpoint=checkpoint))
    _decide(steps)
    return steps


def _resolve(base: dict, edits: list[dict], where: str) -> dict:
    merged = copy.deepcopy(base)
    for edit in edits:
        merged = merge_dicts(merged, edit)
    try:
        return load_config(merged).to_dict()
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from error


def _decide(steps: list[Step]) -> None:
    """Set each step's status from what an earlier run left (see the module docstring)."""
    invalidated: set[str] = set()
    for step in steps:
        if step.config_file.is_file():
            saved = yaml.safe_load(step.config_file.read_text())
            step.differences = [
                line
                for line in config_differences(saved, step.config)
                if not line.startswith(tuple(f"{key}:" for key in RERUN_IGNORED))
            ]
            if step.differences:
                step.status = "refuse"
            elif step.variant in invalidated:
                step.status = "rerun"
            elif step.done_file.is_file() and _outputs_exist(step):
                step.status = "skip"
            else:
                step.status = "resume"
        elif step.directory.exists() and any(step.directory.iterdir()):
            step.status = "refuse"
            step.differences = [
                f"{step.directory} holds files this recipe did not write (no {step.config_file.name})"
            ]
        else:
            step.status = "run"
        if step.status in ("run", "rerun", "resume"):
            invalidated.add(step.variant)


def describe(steps: list[Step]) -> str:
    """One line per step: what a run would do."""
    words = {
        "run": "run",
        "rerun": "run again (finished, but an earlier step of its variant runs)",
        "resume": "resume (same config, not finished)",
        "skip": "skip (finished with the same config)",
        "refuse": "REFUSED (config differs from the earlier run's)",
    }
    return "\n".join(f"  {step.label:<32} {step.kind:<6} {words[step.status]}" for step in steps)


def refusal_message(steps: list[Step]) -> str | None:
    """The error for steps whose earlier run had another config, or ``None``."""
    refused = [step for step in steps if step.status == "refuse"]
    if not refused:
        return None
    lines = [
        "the recipe differs from the earlier run in these steps (delete their folders or use another output_dir):"
    ]
    for step in refused:
        lines.append(f"  {step.label} ({step.config_file}):")
        lines.extend(f"    {line}" for line in step.differences)
    return "\n".join(lines)


Tool = Callable[[list[str]], int]


def _tools() -> dict[str, Tool]:
    from locater.cli import evaluate, pretrain_vision, train

    return {"train": train.main, "vision": pretrain_vision.main, "eval": evaluate.main}


def run(
    recipe: Recipe,
    overrides: list[str] = (),
    variants: list[str] | None = None,
    nproc_per_node: int = 1,
    tools: dict[str, Tool] | None = None,
) -> list[Step]:
    """Run the recipe (see the module docstring) and write the report; returns the steps with their status.

    Args:
        overrides: dotted ``key=value`` edits for every stage and the evaluation (before the variant's overlay).
        variants: the variants to run (default: all, in the recipe's order).
        nproc_per_node: >1 runs each training stage and evaluation under torchrun with that many processes.
        tools: the functions that run a step (tests substitute them); default the command-line tools' ``main``.

    Raises:
        RecipeError: a refused rerun, a failed or unfinished stage (``exit_code`` says which).
        ConfigError: a bad override or resolved config.
    """
    steps = plan(recipe, overrides, variants)
    message = refusal_message(steps)
    if message:
        raise RecipeError(message, EXIT_BAD_INPUT)
    logger.info("recipe %s -> %s\n%s", recipe.path, recipe.output_dir, describe(steps))
    tools = tools or _tools()
    for index, step in enumerate(steps, start=1):
        if step.status == "skip":
            print(
                f"[{index}/{len(steps)}] {step.label}: finished earlier with the same config, skipped",
                flush=True,
            )
            continue
        print(
            f"[{index}/{len(steps)}] {step.label}: {step.kind} ({step.status}) -> {step.directory}",
            flush=True,
        )
        _run_step(step, tools, nproc_per_node)
    if recipe.report is not None:
        # every variant evaluated with the recipe as it is now, not only the ones this invocation ran
        write_report(recipe, [step for step in plan(recipe, overrides) if step.status == "skip"])
    return steps


def _run_step(step: Step, tools: dict[str, Tool], nproc_per_node: int) -> None:
    step.done_file.unlink(missing_ok=True)
    if step.status in ("run", "rerun") or step.kind != "train":
        # a fresh start: the folder of an earlier, abandoned attempt goes (training resumes instead)
        if step.directory.exists():
            shutil.rmtree(step.directory)
    step.directory.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(step.config_file, yaml.safe_dump(step.config, sort_keys=False))
    argv = ["--config", str(step.config_file)]
    if step.kind == "train":
        argv.append("resume=auto" if step.status == "resume" else "resume=null")
    elif step.kind == "vision":
        argv += ["--out", str(step.directory / "vit.pth"), "--no-progress"]
    else:
        argv += ["--checkpoint", str(step.checkpoint), "--output-dir", str(step.directory), "--no-progress"]
    code = _launch(step, argv, tools, nproc_per_node)
    if code != 0:
        # the stage's own code where it says something the caller acts on; any other failure is bad input
        kind = code if code in (EXIT_NON_FINITE, EXIT_OUTPUT, EXIT_INTERRUPTED) else EXIT_BAD_INPUT
        if code == EXIT_NON_FINITE and step.kind != "train":
            kind = EXIT_BAD_INPUT
        raise RecipeError(
            f"{step.label}: {step.kind} failed with exit code {code} (its message is above)", kind
        )
    summary = _summary(step)
    write_text_atomic(
        step.done_file, json.dumps({"step": step.label, "kind": step.kind, "summary": summary}, indent=2)
    )


def _launch(step: Step, argv: list[str], tools: dict[str, Tool], nproc_per_node: int) -> int:
    if nproc_per_node > 1 and step.kind in ("train", "eval"):
        module = "locater.cli.train" if step.kind == "train" else "locater.cli.evaluate"
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}"]
        command += ["-m", module, *argv]
        return subprocess.run(command, env=dict(os.environ)).returncode
    return int(tools[step.kind](argv) or 0)


def _summary(step: Step) -> dict:
    """What the finished step reported; a training stage that stopped before its step count is an error."""
    if step.kind == "train":
        path = step.directory / "summary.json"
        if not path.is_file():
            raise RecipeError(f"{step.label}: training ended without {path}", EXIT_BAD_INPUT)
        summary = json.loads(path.read_text())
        if summary.get("stopped_by") != "max_steps":
            raise RecipeError(
                f"{step.label}: stopped by {summary.get('stopped_by')} at step {summary.get('step')} of "
                f"{step.config['train']['max_steps']}: not finished; run the same command again to resume it",
                EXIT_NOT_FINISHED,
            )
        return summary
    if step.kind == "vision":
        path = step.directory / "vit.json"
        if not path.is_file():
            raise RecipeError(f"{step.label}: pre-training ended without {path}", EXIT_BAD_INPUT)
        summary = json.loads(path.read_text())
        wanted = step.config["pretrain_vision"]["max_steps"]
        if wanted and summary.get("steps", 0) < wanted:
            raise RecipeError(
                f"{step.label}: stopped by its time guard at step {summary.get('steps')} of {wanted}: not finished; "
                "run the same command again to run it anew",
                EXIT_NOT_FINISHED,
            )
        return summary
    path = step.directory / "metrics.json"
    if not path.is_file():
        raise RecipeError(f"{step.label}: the evaluation wrote no {path}", EXIT_BAD_INPUT)
    return json.loads(path.read_text())


def write_report(recipe: Recipe, steps: list[Step]) -> dict:
    """``OUTPUT/results.{json,md,png}`` (and GIFs) across the evaluated variants; returns the results."""
    from locater.engine.evaluator import split_dir_from_config
    from locater.recipes import report

    evaluations = {step.variant: step for step in steps if step.kind == "eval"}
    runs = {variant: step.directory for variant, step in evaluations.items()}
    metrics = recipe.report["metrics"]
    first = next(iter(evaluations.values()))
    cfg = load_config(first.config)
    # an evaluation of one split is named after it (its folder, or its testing type)
    single = Path(cfg.eval.split_dir).name if cfg.eval.split_dir else str(cfg.eval.testing_type).upper()
    results = report.collect(runs, metrics, single)
    out = recipe.output_dir
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    markdown = report.table(results, metrics)
    write_text_atomic(out / "results.md", markdown)
    report.bar_chart(results, out / "results.png", metrics[0])
    print(markdown, flush=True)
    gifs = recipe.report["gifs"]
    if gifs:
        for split, folder in report.split_folders(first.directory, single).items():
            masks = folder / "masks"
            if not masks.is_dir():
                raise RecipeError(
                    f"{masks}: missing; report.gifs needs eval.save_masks: true", EXIT_BAD_INPUT
                )
            split_dir = Path(split_dir_from_config(cfg, None if folder == first.directory else split))
            for path in report.overlay_gif(split_dir, masks, out, gifs):
                print(f"wrote {path}", flush=True)
    return results
