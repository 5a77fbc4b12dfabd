"""Synthetic referring-video benchmark that mirrors A2D-S+ (NORM, MUL, SPAT, TEMP), generated on the spot.

Videos of 12-24 frames show 2-5 shapes (circle, square, triangle, star, cross, diamond) in 7 colours and two
sizes over a textured background, each still or moving with a constant velocity; masks are the visible pixels.
Each expression is true of exactly one object (proved by :func:`validate_expression` from the scene):

* NORM: the target's shape or colour alone is unique ("the blue star").
* MUL: other objects share the target's shape; colour and/or size tell them apart ("the small red circle").
* SPAT: the target has an identical twin; a relation true in every labelled frame tells them apart
  ("the square on the left").
* TEMP: the target has an identical twin and the two swap places during the video; only the motion tells them
  apart ("the circle moving right", "the star that stays still").

Entry points: :func:`generate_video` (one video in memory, for training on fresh videos),
:func:`generate_benchmark` / :func:`write_split` (layout 3.1 folders, as ``tools/data/make_synthetic.py``) and
:func:`validate_split` (re-check a written split). The parts live in ``render`` (drawing),
``language`` (meaning and wording), ``scenes`` (the four kinds) and ``files`` (the submodules of this package).
"""

from locater.data.synthetic.files import (
    SCENES_FILE,
    SPLITS,
    expressions_file_name,
    generate_benchmark,
    read_scenes,
    train_kinds,
    validate_split,
    write_split,
)
from locater.data.synthetic.language import WORDS, Query, describe, referents
from locater.data.synthetic.render import COLOURS, SHAPES, SIZES, SceneObject, render, visible_masks
from locater.data.synthetic.scenes import (
    KINDS,
    SyntheticError,
    SyntheticExpression,
    SyntheticVideo,
    generate_video,
    identical_twins,
    validate_expression,
)

__all__ = [
    "COLOURS",
    "KINDS",
    "SCENES_FILE",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "WORDS",
    "Query",
    "SceneObject",
    "SyntheticError",
    "SyntheticExpression",
    "SyntheticVideo",
    "describe",
    "expressions_file_name",
    "generate_benchmark",
    "generate_video",
    "identical_twins",
    "read_scenes",
    "referents",
    "render",
    "train_kinds",
    "validate_expression",
    "validate_split",
    "visible_masks",
    "write_split",
]
