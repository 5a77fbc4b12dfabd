from pathlib import Path

import pytest
import yaml

import locater
from locater.config import ConfigError, load_config, save_config

RECIPES = sorted(p for p in Path("configs").rglob("*.yaml") if "recipes" in p.parts)
CONFIGS = sorted(p for p in Path("configs").rglob("*.yaml") if p not in RECIPES)


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p) for p in CONFIGS])
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.model.image_size > 0 and cfg.eval.dataset


@pytest.mark.parametrize("path", RECIPES, ids=[str(p) for p in RECIPES])
def test_every_shipped_recipe_resolves(path):
    from locater.recipes import load_recipe, plan

    steps = plan(load_recipe(path))
    assert steps and all(step.config["model"]["image_size"] > 0 for step in steps)


def test_inheritance_and_overrides(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("model: {image_size: 64, patch_size: 8}\ntrain: {max_steps: 10}\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\ntrain: {max_steps: 20, optimizer: {lr: 0.5}}\n")
    cfg = load_config(
        child, ["train.max_steps=30", "model.local_memory.size=0", "validation.splits=[a.yaml]"]
    )
    assert cfg.model.image_size == 64 and cfg.model.patch_size == 8  # from the base
    assert cfg.train.max_steps == 30 and cfg.train.optimizer.lr == 0.5  # child, then the command line
    assert cfg.model.local_memory.size == 0 and cfg.validation.splits == ["a.yaml"]
    assert (
        cfg.train.optimizer.weight_decay == load_config(None).train.optimizer.weight_decay
    )  # defaults fill in
    saved = save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(saved) == cfg  # the dump is a complete config that loads back to the same values
    assert "_base_" not in yaml.safe_load(saved.read_text())


def test_unknown_key_wrong_type_and_bad_override_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key train\.max_step .*did you mean.*max_steps"):
        load_config(None, ["train.max_step=3"])
    with pytest.raises(ConfigError, match=r"train\.max_steps must be an integer, got 'many'"):
        load_config(None, ["train.max_steps=many"])
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(None, ["train.max_steps"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  imge_size: 64\n")
    with pytest.raises(ConfigError, match=rf"{bad}.*model\.imge_size"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    loop = tmp_path / "loop.yaml"
    loop.write_text("_base_: loop.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(loop)


def test_an_ablation_variant_edits_only_its_keys():
    from locater.recipes import config_differences, load_recipe, plan

    recipe = load_recipe("configs/synthetic/recipes/ablations.yaml")
    full, ablation = plan(recipe, variants=["full", "no_local_memory"])[0::2]
    assert ablation.kind == full.kind == "train"
    differences = config_differences(full.config, ablation.config)
    assert differences == [
        "output_dir: 'runs/ablations/full/train' -> 'runs/ablations/no_local_memory/train'",
        "model.local_memory.size: 2.0 -> 0.0",
    ]
    assert locater.build_model(load_config(ablation.config)).local_memory is None


def test_exponent_without_a_dot_is_a_number_where_a_number_is_expected():
    cfg = load_config(None, ["train.optimizer.lr=3e-3", "train.grad_clip=1E+1"])
    assert cfg.train.optimizer.lr == 0.003 and cfg.train.grad_clip == 10.0
    with pytest.raises(ConfigError, match="must be a number"):
        load_config(None, ["train.optimizer.lr=fast"])
