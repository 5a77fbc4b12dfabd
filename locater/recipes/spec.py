"""A recipe file: multi-stage training and a grid of variants as one YAML, read and checked here.

Format (paths relative to the recipe file, except ``output_dir``, which is relative to the working directory)::

    base: ../train.yaml          # the config every stage starts from (a config file, ``_base_`` chains allowed)
    output_dir: runs/quickstart  # OUTPUT/VARIANT/STAGE/ per stage, OUTPUT/VARIANT/eval/, OUTPUT/results.*
    overlay: {...}               # config edits for every stage and the evaluation (optional)
    stages:                      # in order; each training stage starts from the weights of the stage before
      - name: vision             # a plain folder name
        kind: vision             # vision: pre-train the vision encoder (pretrain_vision.*); train (default)
        overlay: {...}
      - name: appearance
        overlay: {train: {max_steps: 2400, clip_length: 1}}
    variants:                    # optional; name -> overlay, applied LAST (after command-line overrides too)
      full: {}
      no_local_memory: {model: {local_memory: {size: 0.0}}}
    evaluate:                    # optional: the final weights of every variant, through tools/evaluate.py
      overlay: {eval: {dataset: SYN, testing_type: ALL, save_masks: false}}
    report:                      # optional: OUTPUT/results.{json,md,png} across variants
      metrics: [mean_iou, overall_iou]
      gifs: 0                    # overlay GIFs of the first N videos of each split (needs eval.save_masks)

An overlay is a nested mapping of config keys (the keys of ``locater/defaults/*.yaml``); each is checked against
the schema when the recipe is read, so a misspelt key is an error naming the recipe file and where it sits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from locater.config import ConfigError, _validate, load_defaults

STAGE_KINDS = ("train", "vision")
RECIPE_KEYS = ("base", "output_dir", "overlay", "stages", "variants", "evaluate", "report")
STAGE_KEYS = ("name", "kind", "overlay")
EVALUATE_KEYS = ("overlay",)
REPORT_KEYS = ("metrics", "gifs")
DEFAULT_VARIANT = "default"
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Stage:
    """One stage: ``kind`` ``train`` (tools/train.py) or ``vision`` (tools/pretrain_vision.py), its overlay."""

    name: str
    kind: str
    overlay: dict


@dataclass(frozen=True)
class Recipe:
    """A checked recipe file (see the module docstring)."""

    path: Path
    base: Path
    output_dir: Path
    overlay: dict
    stages: tuple[Stage, ...]
    variants: dict[str, dict]
    evaluate: dict | None
    report: dict | None = field(default=None)

    @property
    def final_stage(self) -> Stage:
        return self.stages[-1]


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of config keys, got {value!r}")
    return value


def _unknown(keys: Any, allowed: tuple[str, ...], where: str) -> None:
    extra = sorted(set(keys) - set(allowed))
    if extra:
        raise ConfigError(f"{where}: unknown keys {extra} (expected some of {', '.join(allowed)})")


def _plain_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _PLAIN_NAME.match(name):
        raise ConfigError(
            f"{where}: name {name!r} must be a plain folder name (letters, digits, '_', '-', '.'; no '/')"
        )
    return name


def _check_overlay(defaults: dict, overlay: dict, where: str) -> None:
    """Keys and value types of ``overlay`` against the schema (the error names ``where``)."""
    _validate(defaults, overlay, where)


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe file.

    Raises:
        ConfigError: missing file, bad YAML, unknown or misplaced keys, a stage or variant name that is not a
            plain folder name or repeats, an overlay key the config schema does not know.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe holds a mapping at the top level")
    _unknown(data, RECIPE_KEYS, str(path))
    for key in ("base", "output_dir", "stages"):
        if key not in data:
            raise ConfigError(f"{path}: '{key}' is required")
    base = path.parent / str(data["base"])
    if not base.is_file():
        raise ConfigError(f"{path}: base config not found: {base}")
    defaults = load_defaults().to_dict()
    overlay = _mapping(data.get("overlay"), f"{path}: overlay")
    _check_overlay(defaults, overlay, f"{path}: overlay")

    raw_stages = data["stages"]
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ConfigError(f"{path}: 'stages' must be a non-empty list")
    stages = []
    for index, raw in enumerate(raw_stages):
        where = f"{path}: stages[{index}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a mapping with name, kind, overlay")
        _unknown(raw, STAGE_KEYS, where)
        name = _plain_name(raw.get("name"), where)
        kind = raw.get("kind", "train")
        if kind not in STAGE_KINDS:
            raise ConfigError(f"{where} ({name}): kind {kind!r} is not one of {', '.join(STAGE_KINDS)}")
        if kind == "vision" and index != 0:
            raise ConfigError(f"{where} ({name}): a vision stage can only come first")
        stage_overlay = _mapping(raw.get("overlay"), f"{where} ({name}): overlay")
        _check_overlay(defaults, stage_overlay, f"{where} ({name}): overlay")
        stages.append(Stage(name, kind, stage_overlay))
    names = [stage.name for stage in stages]
    repeated = sorted({name for name in names if names.count(name) > 1} | ({"eval"} & set(names)))
    if repeated:
        raise ConfigError(f"{path}: stage names must be unique and not 'eval': {repeated}")
    if stages[-1].kind != "train":
        raise ConfigError(f"{path}: the last stage must train the model (kind: train)")

    raw_variants = data.get("variants")
    if raw_variants is None:
        variants = {DEFAULT_VARIANT: {}}
    else:
        if not isinstance(raw_variants, dict) or not raw_variants:
            raise ConfigError(f"{path}: 'variants' must map variant names to overlays")
        variants = {}
        for name, variant_overlay in raw_variants.items():
            where = f"{path}: variants.{name}"
            _plain_name(name, where)
            variant_overlay = _mapping(variant_overlay, where)
            _check_overlay(defaults, variant_overlay, where)
            variants[name] = variant_overlay

    evaluate = data.get("evaluate")
    if evaluate is not None:
        evaluate = _mapping(evaluate, f"{path}: evaluate")
        _unknown(evaluate, EVALUATE_KEYS, f"{path}: evaluate")
        evaluate = {"overlay": _mapping(evaluate.get("overlay"), f"{path}: evaluate.overlay")}
        _check_overlay(defaults, evaluate["overlay"], f"{path}: evaluate.overlay")

    report = data.get("report")
    if report is not None:
        if evaluate is None:
            raise ConfigError(f"{path}: a report needs an 'evaluate' section (it reports the evaluations)")
        report = _mapping(report, f"{path}: report")
        _unknown(report, REPORT_KEYS, f"{path}: report")
        metrics = report.get("metrics", ["mean_iou", "overall_iou"])
        gifs = report.get("gifs", 0)
        if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
            raise ConfigError(f"{path}: report.metrics must be a non-empty list of metric names")
        if isinstance(gifs, bool) or not isinstance(gifs, int) or gifs < 0:
            raise ConfigError(f"{path}: report.gifs must be an integer >= 0, got {gifs!r}")
        if gifs and not evaluate["overlay"].get("eval", {}).get("save_masks", False):
            raise ConfigError(
                f"{path}: report.gifs needs eval.save_masks: true in evaluate.overlay (the GIFs draw the masks)"
            )
        report = {"metrics": metrics, "gifs": gifs}

    return Recipe(
        path=path,
        base=base,
        output_dir=Path(str(data["output_dir"])),
        overlay=overlay,
        stages=tuple(stages),
        variants=variants,
        evaluate=evaluate,
        report=report,
    )
