"""Meaning and wording of synthetic referring expressions.

A :class:`Query` is what an expression means (appearance, plus a spatial relation or a motion);
:func:`referents` evaluates it on a scene at one frame; :func:`describe` words it from varied templates (word
order, synonyms, articles). Every word used is a single bert-base-uncased WordPiece (``WORDS``; tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from locater.data.synthetic.render import COLOURS, SceneObject

RELATIONS = ("left", "right", "top", "bottom")
MOTIONS = ("left", "right", "up", "down", "still")
RELATION_MARGIN = 0.12  # the referent must beat every rival by this fraction of the frame side

SHAPE_WORDS = {
    "circle": ("circle", "disc", "disk"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "cross": ("cross", "plus"),
    "diamond": ("diamond",),
}
GENERIC_NOUNS = ("shape", "object")
SIZE_WORDS = {"small": ("small", "little"), "big": ("big", "large")}
RELATION_PHRASES = {
    "left": ("on the left", "to the left", "on the left side"),
    "right": ("on the right", "to the right", "on the right side"),
    "top": ("at the top", "on top"),
    "bottom": ("at the bottom", "on the bottom"),
}
RELATION_ADJECTIVES = {
    "left": ("left",),
    "right": ("right",),
    "top": ("upper", "top"),
    "bottom": ("lower", "bottom"),
}
MOVING = ("moving", "that moves", "going", "that is moving", "heading")
STILL = (
    "that stays still",
    "that is not moving",
    "standing still",
    "that does not move",
    "that remains still",
)
ARTICLES = ("the", "the", "a")
LINKS = ("that is", "which is")


def _words(*groups) -> set[str]:
    found: set[str] = set()
    for group in groups:
        values = group.values() if isinstance(group, dict) else [group]
        for value in values:
            for phrase in value if isinstance(value, tuple) else (value,):
                found.update(phrase.split())
    return found


WORDS = frozenset(
    _words(
        SHAPE_WORDS,
        SIZE_WORDS,
        RELATION_PHRASES,
        RELATION_ADJECTIVES,
        tuple(COLOURS),
        GENERIC_NOUNS,
        MOVING,
        STILL,
        ARTICLES,
        LINKS,
        MOTIONS,
        ("and", "to", "the"),
    )
)


@dataclass
class Query:
    """What an expression means.

    Attributes:
        shape, colour, size: appearance constraints (``None``: unconstrained).
        relation: ``left``, ``right``, ``top`` or ``bottom``: the extreme one among objects matching the rest.
        motion: ``left``, ``right``, ``up``, ``down`` or ``still`` (see :attr:`SceneObject.motion`).
    """

    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    relation: str | None = None
    motion: str | None = None

    def matches_appearance(self, obj: SceneObject) -> bool:
        return (
            (self.shape is None or obj.shape == self.shape)
            and (self.colour is None or obj.colour == self.colour)
            and (self.size is None or obj.size == self.size)
        )


def referents(objects: list[SceneObject], query: Query, t: int, frame_size: int) -> list[int]:
    """Indices of the objects ``query`` describes at 0-indexed frame ``t``.

    A relation picks the extreme candidate along its axis only when it beats every other candidate by
    ``RELATION_MARGIN * frame_size`` pixels; otherwise nothing is clearly "the left one" and the result is empty.
    """
    candidates = [i for i, obj in enumerate(objects) if query.matches_appearance(obj)]
    if query.motion is not None:
        candidates = [i for i in candidates if objects[i].motion == query.motion]
    if query.relation is None or not candidates:
        return candidates
    if query.relation not in RELATIONS:
        raise ValueError(f"unknown relation {query.relation!r}; expected one of {RELATIONS}")
    axis = 0 if query.relation in ("left", "right") else 1
    sign = -1.0 if query.relation in ("left", "top") else 1.0
    score = {i: sign * objects[i].centre(t)[axis] for i in candidates}
    best = max(score, key=score.__getitem__)
    rivals = [score[best] - score[i] for i in candidates if i != best]
    if rivals and min(rivals) < RELATION_MARGIN * frame_size:
        return []
    return [best]


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def describe(rng: np.random.Generator, query: Query) -> str:
    """A lower-case sentence for ``query``, e.g. "the small red circle", "the upper star", "a box moving left"."""
    noun = _pick(rng, SHAPE_WORDS[query.shape]) if query.shape else _pick(rng, GENERIC_NOUNS)
    adjectives = [w for w in (_pick(rng, SIZE_WORDS[query.size]) if query.size else None, query.colour) if w]
    if query.relation is not None:
        if rng.random() < 0.5:
            return " ".join(["the", *adjectives, noun, _pick(rng, RELATION_PHRASES[query.relation])])
        return " ".join(["the", _pick(rng, RELATION_ADJECTIVES[query.relation]), *adjectives, noun])
    article = _pick(rng, ARTICLES)
    if query.motion is not None:
        if query.motion == "still":
            tail = _pick(rng, STILL)
        else:
            direction = query.motion
            if direction in ("left", "right") and rng.random() < 0.3:
                direction = f"to the {direction}"
            tail = f"{_pick(rng, MOVING)} {direction}"
        return " ".join([article, *adjectives, noun, tail])
    if adjectives and query.shape and rng.random() < 0.3:
        return " ".join([article, noun, _pick(rng, LINKS), " and ".join(adjectives)])
    return " ".join([article, *adjectives, noun])
