"""The recipe driver: recipe files checked, the order of edits, weights chained between stages, reruns that skip,
refuse or resume, and the shipped recipes."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from train_helpers import TINY_TRAIN

from locater.cli import pretrain_vision as pretrain_vision_cli
from locater.cli import run_recipe as run_recipe_cli
from locater.cli import train as train_cli
from locater.config import ConfigError, parse_overrides
from locater.data.synthetic import write_split
from locater.recipes import (
    EXIT_BAD_INPUT,
    EXIT_NOT_FINISHED,
    RecipeError,
    load_recipe,
    plan,
    run,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs/model/tiny.yaml")


def _write_recipe(folder: Path, **changes) -> Path:
    """A tiny three-stage recipe (vision, one-frame clips, 2-frame clips) with two variants."""
    recipe = {
        "base": TINY,
        "output_dir": str(folder / "out"),
        "overlay": parse_overrides(TINY_TRAIN),
        "stages": [
            {
                "name": "vision",
                "kind": "vision",
                "overlay": {"pretrain_vision": {"max_steps": 2, "batch_size": 4}},
            },
            {"name": "a", "overlay": {"train": {"max_steps": 2, "clip_length": 1}}},
            {"name": "b", "overlay": {"train": {"max_steps": 3, "checkpoint_every": 1}}},
        ],
        "variants": {"full": {}, "no_local_memory": {"model": {"local_memory": {"size": 0.0}}}},
    }
    recipe.update(changes)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _by_label(steps):
    return {step.label: step for step in steps}


def test_the_variant_overlay_is_applied_last_in_every_stage_and_the_evaluation(tmp_path):
    """base <- recipe overlay <- stage overlay <- command line <- variant: a variant's setting wins over a recipe that
    sets the same key (the memory experiment's no_global_memory once trained the full model because of this)."""
    overlay = parse_overrides([*TINY_TRAIN, "model.global_memory.size=3.0"])
    stages = [
        {"name": "a", "overlay": {"train": {"max_steps": 2}}},
        {"name": "b", "overlay": {"model": {"global_memory": {"size": 2.0}}}},
    ]
    variants = {"keep": {}, "none": {"model": {"global_memory": {"size": 0.0}}}}
    path = _write_recipe(
        tmp_path, overlay=overlay, stages=stages, variants=variants, evaluate={"overlay": {}}
    )
    recipe = load_recipe(path)
    size = lambda step: step.config["model"]["global_memory"]["size"]  # noqa: E731
    steps = _by_label(plan(recipe))
    assert [size(steps[f"keep/{s}"]) for s in ("a", "b", "eval")] == [3.0, 2.0, 2.0]
    assert [size(steps[f"none/{s}"]) for s in ("a", "b", "eval")] == [0.0, 0.0, 0.0]
    steps = _by_label(plan(recipe, ["model.global_memory.size=1.0"]))
    assert [size(steps[f"keep/{s}"]) for s in ("a", "b", "eval")] == [1.0, 1.0, 1.0]
    assert [size(steps[f"none/{s}"]) for s in ("a", "b", "eval")] == [0.0, 0.0, 0.0]


def test_each_stage_starts_from_the_weights_of_the_stage_before(tmp_path):
    """One source of weights per stage, whatever the overlay says (the loader lets a checkpoint win over a ViT)."""
    overlay = parse_overrides([*TINY_TRAIN, "pretrained.checkpoint=other.pt", "pretrained.vit=other.pth"])
    recipe = load_recipe(_write_recipe(tmp_path, overlay=overlay, evaluate={"overlay": {}}))
    steps = _by_label(plan(recipe, variants=["full"]))
    out = tmp_path / "out" / "full"
    assert list(steps) == ["full/vision", "full/a", "full/b", "full/eval"]
    assert steps["full/a"].config["pretrained"]["vit"] == str(out / "vision/vit.pth")
    assert steps["full/a"].config["pretrained"]["checkpoint"] is None
    assert steps["full/b"].config["pretrained"]["checkpoint"] == str(out / "a/checkpoints/last.pt")
    assert steps["full/b"].config["pretrained"]["vit"] is None
    assert steps["full/eval"].checkpoint == out / "b/checkpoints/last.pt"
    assert [steps[k].config["output_dir"] for k in ("full/a", "full/b")] == [str(out / "a"), str(out / "b")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stagez": []}, "unknown keys ['stagez']"),
        ({"stages": []}, "'stages' must be a non-empty list"),
        ({"stages": [{"name": "../x"}]}, "must be a plain folder name"),
        ({"stages": [{"name": "a"}, {"name": "a"}]}, "stage names must be unique"),
        ({"stages": [{"name": "a", "kind": "eval"}]}, "kind 'eval' is not one of train, vision"),
        ({"stages": [{"name": "a"}, {"name": "v", "kind": "vision"}]}, "a vision stage can only come first"),
        ({"stages": [{"name": "v", "kind": "vision"}]}, "the last stage must train the model"),
        (
            {"stages": [{"name": "a", "overlay": {"train": {"max_step": 3}}}]},
            "stages[0] (a): overlay: unknown config key train.max_step (did you mean train.max_steps?)",
        ),
        (
            {"variants": {"x": {"model": {"local_memory": {"size": "big"}}}}},
            "variants.x: model.local_memory.size must be a number",
        ),
        ({"report": {"metrics": ["mean_iou"]}}, "a report needs an 'evaluate' section"),
        ({"evaluate": {"overlay": {}}, "report": {"gifs": 2}}, "report.gifs needs eval.save_masks: true"),
        ({"base": "missing.yaml"}, "base config not found"),
    ],
)
def test_a_bad_recipe_is_an_error_naming_the_file_and_the_place(tmp_path, change, message):
    path = _write_recipe(tmp_path, **change)
    with pytest.raises(ConfigError) as error:
        load_recipe(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_unknown_variants_and_bad_overrides_are_refused(tmp_path):
    recipe = load_recipe(_write_recipe(tmp_path))
    with pytest.raises(
        ConfigError, match=r"unknown variants \['nope'\]; the recipe has full, no_local_memory"
    ):
        plan(recipe, variants=["nope"])
    with pytest.raises(ConfigError, match="command-line override: unknown config key train.max_step"):
        plan(recipe, ["train.max_step=3"])


@pytest.fixture()
def split(tmp_path):
    return write_split(tmp_path / "data", "NORM", 2, seed=0, size=64)


@pytest.mark.slow
def test_a_run_writes_every_stage_then_a_rerun_skips_and_a_changed_recipe_is_refused(tmp_path, split, capsys):
    """One variant through vision pre-training, two training stages, the evaluation and the report."""
    path = _write_recipe(
        tmp_path,
        overlay=parse_overrides([*TINY_TRAIN, "model.vision.depth=2"]),
        evaluate={"overlay": {"eval": {"split_dir": str(split), "max_videos": 1}}},
        report={"metrics": ["mean_iou", "overall_iou"]},
    )
    recipe = load_recipe(path)
    out = tmp_path / "out"
    assert run_recipe_cli.main([str(path), "--variants", "full"]) == 0
    printed = capsys.readouterr().out
    assert "[1/4] full/vision: vision (run)" in printed and "[4/4] full/eval: eval (run)" in printed
    # the vision stage pre-trained the encoder of the overlay's model (two blocks), and stage a started from it
    vit = torch.load(out / "full/vision/vit.pth", weights_only=True)
    assert {key.split(".")[1] for key in vit if key.startswith("blocks.")} == {"0", "1"}
    assert yaml.safe_load((out / "full/a/config.yaml").read_text())["pretrained"]["vit"] == str(
        out / "full/vision/vit.pth"
    )
    for stage, steps in (("a", 2), ("b", 3)):
        summary = json.loads((out / f"full/{stage}.done.json").read_text())["summary"]
        assert (summary["step"], summary["stopped_by"]) == (steps, "max_steps")
        saved = yaml.safe_load((out / f"full/{stage}/config.yaml").read_text())
        assert saved["train"]["max_steps"] == steps and saved["model"]["vision"]["depth"] == 2
    results = json.loads((out / "results.json").read_text())
    metrics = json.loads((out / "full/eval/metrics.json").read_text())
    assert results == {  # one split: named after its folder
        "full": {split.name: {"mean_iou": metrics["mean_iou"], "overall_iou": metrics["overall_iou"]}}
    }
    assert "| full |" in (out / "results.md").read_text() and (out / "results.png").stat().st_size > 0

    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "full").glob("*.done.json")}
    steps = run(recipe, variants=["full"])
    assert [step.status for step in steps] == ["skip"] * 4
    assert {p.name: p.stat().st_mtime_ns for p in (out / "full").glob("*.done.json")} == stamps
    assert "full/b: finished earlier with the same config, skipped" in capsys.readouterr().out

    # another setting: refused before anything runs, naming every step and key that differs
    code = run_recipe_cli.main([str(path), "--variants", "full", "model.decoder_width=16"])
    error = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    for label in ("full/vision", "full/a", "full/b", "full/eval"):
        assert f"  {label} (" in error
    assert "model.decoder_width: 0 -> 16" in error
    assert {p.name: p.stat().st_mtime_ns for p in (out / "full").glob("*.done.json")} == stamps


@pytest.mark.slow
def test_an_interrupted_stage_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    """Stage b stops at step 1 of 3 (as if killed after a checkpoint): the run ends with exit 3, and the same
    command then resumes it; its final weights equal those of a run that was never interrupted."""
    path = _write_recipe(tmp_path)
    recipe = load_recipe(path)

    def stopping_train(argv):
        stop = ["train.stop_at_step=1"] if "/b.yaml" in argv[1] else []
        return train_cli.main([*argv, *stop])

    tools = {"train": stopping_train, "vision": pretrain_vision_cli.main, "eval": None}
    with pytest.raises(RecipeError) as stopped:
        run(recipe, variants=["full"], tools=tools)
    assert stopped.value.exit_code == EXIT_NOT_FINISHED and "stopped by stop_at_step at step 1 of 3" in str(
        stopped.value
    )
    out = tmp_path / "out" / "full"
    assert not (out / "b.done.json").exists() and (out / "a.done.json").is_file()
    steps = run(recipe, variants=["full"])
    assert [step.status for step in steps] == ["skip", "skip", "resume"]
    assert json.loads((out / "b.done.json").read_text())["summary"]["step"] == 3

    (tmp_path / "straight").mkdir()
    straight = load_recipe(_write_recipe(tmp_path / "straight"))
    run(straight, variants=["full"])
    a = torch.load(out / "b/checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "straight/out/full/b/checkpoints/last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_folder_the_driver_did_not_write_is_refused(tmp_path):
    recipe = load_recipe(_write_recipe(tmp_path))
    stray = tmp_path / "out" / "full" / "a"
    stray.mkdir(parents=True)
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(RecipeError, match="holds files this recipe did not write"):
        run(recipe, variants=["full"])
    assert (stray / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("recipe", "variant", "key", "value"),
    [
        ("memory_experiment", "no_global_memory", ("model", "global_memory", "size"), 0.0),
        ("memory_experiment", "no_local_memory", ("model", "local_memory", "size"), 0.0),
        ("memory_experiment", "no_mask_history", ("model", "local_memory", "mask_history"), False),
        ("ablations", "no_aux_loss", ("train", "loss", "aux"), 0.0),
    ],
)
def test_the_shipped_recipes_set_each_variant_in_every_step(recipe, variant, key, value):
    steps = plan(load_recipe(ROOT / f"configs/synthetic/recipes/{recipe}.yaml"), variants=[variant, "full"])
    for step in steps:
        node = step.config
        for part in key:
            node = node[part]
        assert (node == value) == (step.variant == variant), step.label
        if step.kind == "train":  # stopped by a step count, not by the clock
            assert step.config["train"]["max_minutes"] == 0.0 and step.config["train"]["max_steps"] < 10000


def test_the_memory_recipe_keeps_the_global_memory_whole_and_reads_three_global_frames_in_its_rule_stage():
    steps = _by_label(
        plan(load_recipe(ROOT / "configs/synthetic/recipes/memory_experiment.yaml"), variants=["full"])
    )
    assert [s.split("/")[1] for s in steps] == [
        "vision",
        "appearance",
        "tracking",
        "rule",
        "own_masks",
        "eval",
    ]
    frames = [
        steps[f"full/{s}"].config["model"]["global_memory"]["num_frames"]
        for s in ("appearance", "rule", "own_masks")
    ]
    assert (
        frames[:2] == [1, 3]
        and frames[2] == steps["full/eval"].config["model"]["global_memory"]["num_frames"]
    )
    assert all(steps[k].config["model"]["global_memory"]["write"] == "window" for k in steps)
    assert steps["full/own_masks"].config["train"]["teacher_forcing"] == 0.0


def test_a_raised_guard_resumes_and_a_finished_step_without_its_outputs_runs_again(tmp_path):
    """Time guards are not compared on a rerun (raising one resumes the stage it stopped); a done marker whose
    outputs were deleted does not make a step count as finished."""
    recipe = load_recipe(
        _write_recipe(tmp_path, stages=[{"name": "a", "overlay": {"train": {"max_steps": 2}}}])
    )
    steps = _by_label(plan(recipe, variants=["full"]))
    a = steps["full/a"]
    a.config_file.parent.mkdir(parents=True)
    old = yaml.safe_load(yaml.safe_dump(a.config))
    old["train"]["max_minutes"], old["train"]["stop_at_step"] = 0.01, 1
    a.config_file.write_text(yaml.safe_dump(old))
    a.done_file.write_text("{}")  # finished once, but its folder (checkpoints/last.pt) is gone
    assert _by_label(plan(recipe, variants=["full"]))["full/a"].status == "resume"
    old["train"]["max_steps"] = 7  # a setting, not a guard: refused
    a.config_file.write_text(yaml.safe_dump(old))
    refused = _by_label(plan(recipe, variants=["full"]))["full/a"]
    assert refused.status == "refuse" and refused.differences == ["train.max_steps: 7 -> 2"]
