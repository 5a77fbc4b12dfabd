"""Recipes: multi-stage training and variant grids as YAML, run by one driver (``tools/run_recipe.py``)."""

from locater.recipes.runner import (
    EXIT_BAD_INPUT,
    EXIT_NON_FINITE,
    EXIT_NOT_FINISHED,
    EXIT_OK,
    RecipeError,
    Step,
    config_differences,
    describe,
    plan,
    run,
)
from locater.recipes.spec import Recipe, Stage, load_recipe

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_NON_FINITE",
    "EXIT_NOT_FINISHED",
    "EXIT_OK",
    "Recipe",
    "RecipeError",
    "Stage",
    "Step",
    "config_differences",
    "describe",
    "load_recipe",
    "plan",
    "run",
]
