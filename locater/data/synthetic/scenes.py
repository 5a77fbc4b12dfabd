"""Synthetic videos of the four A2D-S+ kinds, generated in memory, with a validator for their expressions.

* NORM: the target's shape or colour alone is unique ("the blue star", "the star", "the blue shape").
* MUL: at least two objects share the target's shape; colour and/or size tell them apart ("the small red circle").
* SPAT: the target has an identical twin; a spatial relation that holds in every labelled frame tells them apart
  ("the square on the left", "the upper triangle").
* TEMP: the target has an identical twin and the two swap their left/right (or up/down) order during the video,
  so no single frame tells them apart; only the motion does ("the circle moving right", "the star that stays
  still"). The labelled frames include frames on both sides of the swap.

NORM and MUL videos have one expression; SPAT and TEMP videos have two, one for each twin ("the left square" and
"the right square"), labelled on the same frames, as A2D videos often describe several actors: a model that
cannot tell the twins apart fails on one of the two.

:func:`validate_expression` proves from the scene description that exactly the target satisfies an expression in
every labelled frame (and is visible there); :func:`generate_video` redraws a scene until it passes and fails
loudly when it cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from locater.data.synthetic.language import Query, describe, referents
from locater.data.synthetic.render import COLOURS, SHAPES, SIZES, SceneObject, object_radius, render
from locater.errors import LocaterError

KINDS = ("NORM", "MUL", "SPAT", "TEMP")
MIN_FRAMES, MAX_FRAMES = 12, 24
MIN_VISIBLE_PIXELS = 4
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
OPPOSITE_RELATION = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
# TEMP: distance between the twins' parallel tracks, as a fraction of the frame side
TEMP_TRACK_GAP = (0.06, 0.11)


class SyntheticError(LocaterError, RuntimeError):
    """A generated expression does not single out its target (or the scene breaks the rules of its kind)."""


@dataclass
class SyntheticExpression:
    """An expression: the target object's index, the sentence, its meaning and the 1-indexed labelled frames."""

    target: int
    sentence: str
    query: Query
    labels: list[int]


@dataclass
class SyntheticVideo:
    """A generated video.

    Attributes:
        kind: NORM, MUL, SPAT or TEMP.
        frame_size: side ``S`` of the square frames.
        frames: ``T x S x S x 3`` uint8 RGB.
        masks: ``N x T x S x S`` bool, the visible pixels of each of the ``N`` objects.
        objects: the scene description, in drawing order.
        expressions: the expressions (NORM, MUL: one; SPAT, TEMP: one per twin, the first one is the
            scene's target).
    """

    kind: str
    frame_size: int
    frames: np.ndarray
    masks: np.ndarray
    objects: list[SceneObject]
    expressions: list[SyntheticExpression] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.masks.shape[1])


# ------------------------------------------------------------------------------------------------ validation
def identical_twins(objects: list[SceneObject], target: int) -> list[int]:
    """Indices of the other objects with exactly the target's shape, colour and size."""
    return [
        i for i, obj in enumerate(objects) if i != target and obj.appearance == objects[target].appearance
    ]


def swap_axis(target: SceneObject, twin: SceneObject) -> int:
    """The axis (0: x, 1: y) along which TEMP twins move and swap their order."""
    return 0 if target.velocity[0] != 0 or twin.velocity[0] != 0 else 1


def crossing_frame(objects: Sequence[SceneObject], target: int) -> int | None:
    """First 0-based frame at which a TEMP target and its twin are no longer in the order of frame 0 along
    :func:`swap_axis` (``None`` if they never are, or the target has not exactly one twin)."""
    twins = identical_twins(list(objects), target)
    if len(twins) != 1:
        return None
    first, second = objects[target], objects[twins[0]]
    axis = swap_axis(first, second)
    order = np.sign(first.start[axis] - second.start[axis])
    velocity = first.velocity[axis] - second.velocity[axis]
    if velocity == 0 or order == 0 or np.sign(velocity) == order:
        return None
    # first frame t with sign(start difference + t * velocity difference) != order (0 counts as changed)
    return int(np.ceil(-(first.start[axis] - second.start[axis]) / velocity))


def validate_expression(video: SyntheticVideo, expression: SyntheticExpression) -> None:
    """Raise :class:`SyntheticError` unless, in every labelled frame, exactly the target satisfies the query and
    at least ``MIN_VISIBLE_PIXELS`` of it are visible; for TEMP also unless the target has one identical twin and
    the two are in both orders along the motion axis across the labelled frames."""
    where = f"{video.kind} expression {expression.sentence!r}"
    if not expression.labels or any(not 1 <= f <= video.num_frames for f in expression.labels):
        raise SyntheticError(f"{where}: labelled frames {expression.labels} outside 1..{video.num_frames}")
    for frame in expression.labels:
        found = referents(video.objects, expression.query, frame - 1, video.frame_size)
        if found != [expression.target]:
            raise SyntheticError(f"{where}: frame {frame} refers to {found}, expected [{expression.target}]")
        if int(video.masks[expression.target, frame - 1].sum()) < MIN_VISIBLE_PIXELS:
            raise SyntheticError(f"{where}: the target is hidden in frame {frame}")
    if video.kind == "TEMP":
        twins = identical_twins(video.objects, expression.target)
        if len(twins) != 1:
            raise SyntheticError(f"{where}: TEMP needs exactly one identical twin, found {len(twins)}")
        target, twin = video.objects[expression.target], video.objects[twins[0]]
        axis = swap_axis(target, twin)
        order = {np.sign(target.centre(f - 1)[axis] - twin.centre(f - 1)[axis]) for f in expression.labels}
        if not {-1.0, 1.0} <= order:
            raise SyntheticError(f"{where}: the twins do not swap their order across the labelled frames")


# ------------------------------------------------------------------------------------------------ scenes
def _choice(rng: np.random.Generator, options: Sequence[str]) -> str:
    return str(options[int(rng.integers(len(options)))])


def random_object(
    rng: np.random.Generator,
    frame_size: int,
    num_frames: int,
    shape: str | None = None,
    colour: str | None = None,
    size: str | None = None,
    moving: bool | None = None,
) -> SceneObject:
    """An object whose whole trajectory stays inside the frame; unspecified attributes are random."""
    shape = shape or _choice(rng, SHAPES)
    colour = colour or _choice(rng, list(COLOURS))
    size = size or _choice(rng, SIZES)
    radius = object_radius(size, frame_size)
    low, high = radius + 1, frame_size - radius - 1
    moving = bool(rng.random() < 0.5) if moving is None else moving
    velocity = (0.0, 0.0)
    if moving:
        speed = min(frame_size * rng.uniform(0.02, 0.04), 0.8 * (high - low) / max(num_frames - 1, 1))
        dx, dy = DIRECTIONS[_choice(rng, list(DIRECTIONS))]
        velocity = (dx * speed, dy * speed)
    start = []
    for axis in range(2):
        travel = velocity[axis] * (num_frames - 1)
        a, b = low - min(0.0, travel), high - max(0.0, travel)
        start.append(float(rng.uniform(a, b)))
    return SceneObject(shape, colour, size, radius, (start[0], start[1]), velocity)


def _others(
    rng: np.random.Generator, frame_size: int, num_frames: int, count: int, avoid: tuple[str, str]
) -> list[SceneObject]:
    """``count`` random distractors, none with the ``(shape, colour)`` pair ``avoid``."""
    others = []
    while len(others) < count:
        obj = random_object(rng, frame_size, num_frames)
        if (obj.shape, obj.colour) != avoid:
            others.append(obj)
    return others


def _norm_scene(
    rng: np.random.Generator, frame_size: int, num_frames: int
) -> tuple[list[SceneObject], list[Query]]:
    target = random_object(rng, frame_size, num_frames)
    unique = _choice(rng, ("shape", "colour"))
    others = []
    for _ in range(int(rng.integers(1, 5))):
        if unique == "shape":
            shape = _choice(rng, [s for s in SHAPES if s != target.shape])
            others.append(random_object(rng, frame_size, num_frames, shape=shape))
        else:
            colour = _choice(rng, [c for c in COLOURS if c != target.colour])
            others.append(random_object(rng, frame_size, num_frames, colour=colour))
    options = [Query(shape=target.shape, colour=target.colour)]
    if all(o.shape != target.shape for o in others):
        options.append(Query(shape=target.shape))
    if all(o.colour != target.colour for o in others):
        options.append(Query(colour=target.colour))
    return [target, *others], [options[int(rng.integers(len(options)))]]


def _mul_scene(
    rng: np.random.Generator, frame_size: int, num_frames: int
) -> tuple[list[SceneObject], list[Query]]:
    target = random_object(rng, frame_size, num_frames)
    if rng.random() < 0.7:  # the twin differs in colour (and maybe size), else in size only
        twin_colour = _choice(rng, [c for c in COLOURS if c != target.colour])
        twin_size = _choice(rng, SIZES)
    else:
        twin_colour = target.colour
        twin_size = "big" if target.size == "small" else "small"
    twin = random_object(rng, frame_size, num_frames, target.shape, twin_colour, twin_size)
    others = [random_object(rng, frame_size, num_frames) for _ in range(int(rng.integers(0, 4)))]
    query = Query(shape=target.shape)
    if twin.colour != target.colour:
        query.colour = target.colour
    if twin.size != target.size and (query.colour is None or rng.random() < 0.4):
        query.size = target.size
    if any(query.matches_appearance(o) for o in others):  # a distractor fits too: say everything
        query.colour, query.size = target.colour, target.size
    return [target, twin, *others], [query]


def _spat_scene(
    rng: np.random.Generator, frame_size: int, num_frames: int
) -> tuple[list[SceneObject], list[Query]]:
    relation = _choice(rng, ("left", "right", "top", "bottom"))
    shape, colour, size = _choice(rng, SHAPES), _choice(rng, list(COLOURS)), _choice(rng, SIZES)
    radius = object_radius(size, frame_size)
    low, high = radius + 1, frame_size - radius - 1
    axis = 0 if relation in ("left", "right") else 1
    # the twins stay in opposite halves along the relation's axis; if they move, they move in parallel across it
    velocity = [0.0, 0.0]
    if rng.random() < 0.4:
        speed = min(frame_size * rng.uniform(0.02, 0.04), 0.8 * (high - low) / max(num_frames - 1, 1))
        velocity[1 - axis] = speed if rng.random() < 0.5 else -speed
    travel = velocity[1 - axis] * (num_frames - 1)
    target_first = relation in ("left", "top")
    twins = []
    for first_half in (target_first, not target_first):
        band = (0.18, 0.42) if first_half else (0.58, 0.82)
        start = [0.0, 0.0]
        start[axis] = float(rng.uniform(max(band[0] * frame_size, low), min(band[1] * frame_size, high)))
        start[1 - axis] = float(rng.uniform(low - min(0.0, travel), high - max(0.0, travel)))
        twins.append(
            SceneObject(shape, colour, size, radius, (start[0], start[1]), (velocity[0], velocity[1]))
        )
    others = _others(rng, frame_size, num_frames, int(rng.integers(0, 4)), (shape, colour))
    colour_word = colour if any(o.shape == shape for o in others) else None
    queries = [
        Query(shape=shape, colour=colour_word, relation=relation),
        Query(shape=shape, colour=colour_word, relation=OPPOSITE_RELATION[relation]),
    ]
    return [*twins, *others], queries


def _crossing_point(
    speeds: Sequence[float], crossing_time: float, low: float, high: float, span: int
) -> tuple[float, float]:
    """Bounds of the point where objects with these speeds meet at ``crossing_time``, keeping every trajectory
    (frames 0..span) inside ``[low, high]``."""
    a, b = low, high
    for v in speeds:
        before, after = -v * crossing_time, v * (span - crossing_time)
        a = max(a, low - min(before, after))
        b = min(b, high - max(before, after))
    return a, b


def _temp_scene(
    rng: np.random.Generator, frame_size: int, num_frames: int
) -> tuple[list[SceneObject], list[Query]]:
    shape, colour, size = _choice(rng, SHAPES), _choice(rng, list(COLOURS)), _choice(rng, SIZES)
    radius = object_radius(size, frame_size)
    low, high = radius + 1, frame_size - radius - 1
    axis = 0 if rng.random() < 0.7 else 1
    span = num_frames - 1
    sign = 1.0 if rng.random() < 0.5 else -1.0
    # they meet at a random time in the middle of the video (labelled frames fall on both sides)
    crossing_time = rng.uniform(0.38, 0.62) * span
    wanted_speed = frame_size * rng.uniform(0.03, 0.045)  # a few pixels per frame at 64 px
    pattern = rng.random()
    if pattern < 0.5:  # both move, in opposite directions, at similar speeds
        speed = min(wanted_speed, 0.75 * (high - low) / span)
        slower = speed * rng.uniform(0.8, 1.0)  # either of the two may be the faster one
        speeds = (sign * speed, -sign * slower) if rng.random() < 0.5 else (sign * slower, -sign * speed)
        a, b = _crossing_point(speeds, crossing_time, low, high, span)
        crossing = float(rng.uniform(a, b))
    else:  # one crosses the other, which stays still (the target in half of these videos)
        # the still one sits on the mover's path; kept at least a quarter of that path away from the frame
        # centre, so that "the one nearer the centre is the still one" is right only half of the time
        speed = min(wanted_speed, 0.57 * (high - low) / span)
        speeds = (sign * speed, 0.0) if pattern < 0.75 else (0.0, sign * speed)
        a, b = _crossing_point(speeds, crossing_time, low, high, span)
        centre, gap = frame_size / 2, speed * span / 4
        sides = [(lo, hi) for lo, hi in ((a, min(b, centre - gap)), (max(a, centre + gap), b)) if hi >= lo]
        if not sides:
            raise SyntheticError(f"TEMP: no crossing point keeps speed {speed:.2f} inside the frame")
        lo, hi = sides[int(rng.integers(len(sides)))]
        crossing = float(rng.uniform(lo, hi))
    # they pass on two parallel tracks a few pixels apart (less than the 12% margin of "upper"/"left", so no
    # relation word singles one out), overlapping at the crossing but not hiding each other completely
    gap = rng.uniform(*TEMP_TRACK_GAP) * frame_size
    line = float(rng.uniform(low + gap / 2, high - gap / 2))
    side = 1.0 if rng.random() < 0.5 else -1.0
    pair = []
    for v, track in zip(speeds, (side, -side)):
        start, velocity = [0.0, 0.0], [0.0, 0.0]
        start[axis] = crossing - v * crossing_time
        start[1 - axis] = line + track * gap / 2
        velocity[axis] = v
        pair.append(
            SceneObject(shape, colour, size, radius, (start[0], start[1]), (velocity[0], velocity[1]))
        )
    others = _others(rng, frame_size, num_frames, int(rng.integers(0, 4)), (shape, colour))
    colour_word = colour if any(o.shape == shape for o in others) else None
    queries = [Query(shape=shape, colour=colour_word, motion=twin.motion) for twin in pair]
    return [*pair, *others], queries


SCENE_BUILDERS = {"NORM": _norm_scene, "MUL": _mul_scene, "SPAT": _spat_scene, "TEMP": _temp_scene}


def _labelled_frames(rng: np.random.Generator, num_frames: int, required: Sequence[int] = ()) -> list[int]:
    """About a third of the frames (at least 3), always including ``required``."""
    chosen = set(required)
    pool = [f for f in range(1, num_frames + 1) if f not in chosen]
    extra = max(0, max(3, num_frames // 3) - len(chosen))
    chosen.update(int(f) for f in rng.choice(pool, size=extra, replace=False))
    return sorted(chosen)


# ------------------------------------------------------------------------------------------------ videos
def generate_video(
    kind: str,
    seed: int | Sequence[int],
    size: int = 96,
    num_frames: int | None = None,
    all_labelled: bool = False,
    attempts: int = 50,
) -> SyntheticVideo:
    """One validated video of ``kind``, in memory, deterministic in ``seed``.

    Args:
        kind: NORM, MUL, SPAT or TEMP.
        seed: an int or a sequence of ints for ``numpy.random.default_rng``.
        size: frame side ``S`` in pixels.
        num_frames: ``T`` (default: random in 12..24).
        all_labelled: label every frame (the train split); otherwise about a third of them, at least 3.
        attempts: scenes drawn before giving up (a scene whose expression fails validation is redrawn).

    Returns:
        a :class:`SyntheticVideo` with ``frames`` ``T x S x S x 3``, ``masks`` ``N x T x S x S`` and its
        expressions (one, or for SPAT and TEMP one per twin, on the same labelled frames).
    """
    if kind not in SCENE_BUILDERS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    if size < 16:
        raise ValueError(f"frame size must be at least 16 pixels, got {size}")
    rng = np.random.default_rng(seed)
    count = int(num_frames) if num_frames is not None else int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
    if count < 4:
        raise ValueError(f"a video needs at least 4 frames, got {count}")
    last_error: SyntheticError | None = None
    for _ in range(attempts):
        objects, queries = SCENE_BUILDERS[kind](rng, size, count)  # query i describes builder object i
        order = [int(i) for i in rng.permutation(len(objects))]  # drawing order: any object may be on top
        objects = [objects[i] for i in order]
        if all_labelled:
            labels = list(range(1, count + 1))
        elif kind == "TEMP":
            labels = _labelled_frames(rng, count, required=(2, count - 1))  # both sides of the swap
        else:
            labels = _labelled_frames(rng, count)
        first = SyntheticExpression(order.index(0), describe(rng, queries[0]), queries[0], labels)
        frames, masks = render(objects, size, count, rng)
        # the twin's sentence is drawn after the frames (a scene that passes at the first draw keeps the frames
        # it had with one expression; a redraw starts from another random state than before)
        expressions = [first] + [
            SyntheticExpression(order.index(i), describe(rng, query), query, list(labels))
            for i, query in enumerate(queries[1:], start=1)
        ]
        video = SyntheticVideo(kind, size, frames, masks, objects)
        try:
            for expression in expressions:
                validate_expression(video, expression)
        except SyntheticError as error:
            last_error = error
            continue
        video.expressions.extend(expressions)
        return video
    raise SyntheticError(f"no valid {kind} video in {attempts} attempts (seed {seed}): {last_error}")
