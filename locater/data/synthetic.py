"""Synthetic referring-video benchmark that mirrors A2D-S+ (NORM, MUL, SPAT, TEMP), generated on the spot.

Each video shows 2-5 shapes (circle, square, triangle, star, cross, diamond) in 7 colours and two sizes over a
textured background, each still or moving with a constant velocity; masks are the visible pixels (later objects
occlude earlier ones). Each expression is true of exactly one object:

* NORM: the target's shape or colour alone is unique ("the blue star", "the star").
* MUL: at least two objects share the target's shape; colour and/or size disambiguate ("the small red circle").
* SPAT: the target has an identical twin; a spatial relation that holds in every labelled frame disambiguates
  ("the square on the left", "the upper triangle").
* TEMP: the target has an identical twin, the two swap their left/right (or up/down) order during the video, so
  no single frame tells them apart; only the motion does ("the circle moving right", "the star that stays still").

:func:`validate_expression` proves, from the scene description, that exactly one object satisfies each expression
in every labelled frame; generation fails loudly otherwise. Everything is deterministic in the seed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from locater.data.layout import LayoutWriter

logger = logging.getLogger(__name__)

KINDS = ("NORM", "MUL", "SPAT", "TEMP")
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 215, 40),
    "white": (245, 245, 245),
    "purple": (150, 50, 190),
    "orange": (245, 140, 30),
}
SIZE_WORDS = {"small": ("small", "little"), "big": ("big", "large")}
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SPATIAL_WORDS = {
    "left": ("on the left", "left"),
    "right": ("on the right", "right"),
    "top": ("at the top", "upper"),
    "bottom": ("at the bottom", "lower"),
}


class SyntheticError(RuntimeError):
    """A generated expression is ambiguous (the validator found zero or several referents)."""


@dataclass
class SceneObject:
    """One object: appearance and a linear trajectory of its centre (pixels, frame 0 at ``start``)."""

    shape: str
    colour: str
    size: str
    start: tuple[float, float]
    velocity: tuple[float, float]
    radius: float

    def centre(self, t: int) -> tuple[float, float]:
        return (self.start[0] + self.velocity[0] * t, self.start[1] + self.velocity[1] * t)

    @property
    def motion(self) -> str:
        vx, vy = self.velocity
        if abs(vx) < 1e-6 and abs(vy) < 1e-6:
            return "still"
        return ("right" if vx > 0 else "left") if abs(vx) >= abs(vy) else ("down" if vy > 0 else "up")


@dataclass
class Query:
    """The meaning of an expression: appearance constraints, plus a spatial relation or a motion."""

    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    relation: str | None = None  # left | right | top | bottom, among objects matching the appearance
    motion: str | None = None  # left | right | up | down | still


@dataclass
class SyntheticExpression:
    target: int
    sentence: str
    query: Query
    labels: list[int]  # 1-indexed labelled frames


@dataclass
class SyntheticVideo:
    """A generated video: ``frames`` T x H x W x 3 uint8, ``masks`` (objects) x T x H x W bool."""

    kind: str
    frames: np.ndarray
    masks: np.ndarray
    objects: list[SceneObject]
    expressions: list[SyntheticExpression] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- rendering
def _shape_mask(shape: str, cx: float, cy: float, r: float, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "cross":
        arm = r * 0.33
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    if shape == "triangle":  # pointing up
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if shape == "star":
        angle = np.arctan2(dy, dx)
        radius = r * (0.55 + 0.45 * np.abs(np.cos(2.5 * angle)))
        return dx * dx + dy * dy <= radius * radius
    raise ValueError(f"unknown shape {shape!r}")


def _background(rng: np.random.Generator, size: int, num_frames: int) -> np.ndarray:
    coarse = rng.uniform(40, 150, size=(4, 4, 3))
    ys = np.linspace(0, 3, size)
    y0 = np.clip(np.floor(ys).astype(int), 0, 2)
    fy = (ys - y0)[:, None, None]
    rows = coarse[y0] * (1 - fy) + coarse[y0 + 1] * fy  # size x 4 x 3
    x0 = y0
    fx = (ys - x0)[None, :, None]
    field_ = rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx  # size x size x 3
    stripes = 12 * np.sin(np.arange(size) * rng.uniform(0.3, 0.8) + rng.uniform(0, 6))[None, :, None]
    noise = rng.normal(0, 6, size=(size, size, 3))
    image = np.clip(field_ + stripes + noise, 0, 255)
    return np.repeat(image[None], num_frames, axis=0)


def render(
    objects: list[SceneObject], size: int, num_frames: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``T x H x W x 3`` uint8 and visible masks ``N x T x H x W`` (painter's order)."""
    frames = _background(rng, size, num_frames)
    owner = np.full((num_frames, size, size), -1, dtype=np.int16)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    for index, obj in enumerate(objects):
        colour = np.array(COLOURS[obj.colour], dtype=np.float64)
        for t in range(num_frames):
            cx, cy = obj.centre(t)
            mask = _shape_mask(obj.shape, cx, cy, obj.radius, ys, xs)
            frames[t][mask] = colour
            owner[t][mask] = index
    masks = np.stack([owner == i for i in range(len(objects))])
    return np.clip(frames, 0, 255).astype(np.uint8), masks


# ----------------------------------------------------------------------------------------------- semantics
def _appearance_matches(obj: SceneObject, query: Query) -> bool:
    return (
        (query.shape is None or obj.shape == query.shape)
        and (query.colour is None or obj.colour == query.colour)
        and (query.size is None or obj.size == query.size)
    )


def referents(objects: list[SceneObject], query: Query, t: int, margin: float) -> list[int]:
    """Objects the query describes at frame ``t`` (0-indexed)."""
    candidates = [i for i, o in enumerate(objects) if _appearance_matches(o, query)]
    if query.motion is not None:
        candidates = [i for i in candidates if objects[i].motion == query.motion]
    if query.relation is not None and candidates:
        axis = 0 if query.relation in ("left", "right") else 1
        sign = -1 if query.relation in ("left", "top") else 1
        coords = {i: objects[i].centre(t)[axis] * sign for i in candidates}
        best = max(coords, key=coords.get)
        others = [coords[best] - coords[i] for i in candidates if i != best]
        if others and min(others) < margin:
            return []  # no object is clearly the most left/right/...: the relation does not single one out
        candidates = [best]
    return candidates


def validate_expression(video: SyntheticVideo, expression: SyntheticExpression, size: int) -> None:
    """Raise :class:`SyntheticError` unless exactly the target satisfies the query in every labelled frame and is
    visible there."""
    margin = 0.12 * size
    for frame in expression.labels:
        t = frame - 1
        found = referents(video.objects, expression.query, t, margin)
        if found != [expression.target]:
            raise SyntheticError(
                f"{video.kind} expression {expression.sentence!r}: frame {frame} refers to {found}, "
                f"expected [{expression.target}]"
            )
        if video.masks[expression.target, t].sum() < 4:
            raise SyntheticError(
                f"{video.kind} expression {expression.sentence!r}: target hidden in frame {frame}"
            )


# ----------------------------------------------------------------------------------------------- generation
def _sentence(rng: np.random.Generator, query: Query, motion_word: str | None = None) -> str:
    size = rng.choice(SIZE_WORDS[query.size]) if query.size else None
    noun = query.shape or "shape"
    adjectives = " ".join(w for w in (size, query.colour) if w)
    article = rng.choice(["the", "the", "a"]) if query.relation is None else "the"
    if query.relation is not None:
        phrase, adjective = SPATIAL_WORDS[query.relation]
        if rng.random() < 0.5:
            return " ".join(w for w in ("the", adjectives, noun, phrase) if w)
        return " ".join(w for w in ("the", adjective, adjectives, noun) if w)
    if query.motion is not None:
        if query.motion == "still":
            tail = rng.choice(["that stays still", "that is not moving", "standing still"])
        else:
            tail = f"{rng.choice(['moving', 'that moves', 'going'])} {query.motion}"
        return " ".join(w for w in ("the", adjectives, noun, tail) if w)
    if adjectives and rng.random() < 0.3:
        return f"{article} {noun} that is {adjectives.replace(' ', ' and ')}"
    return " ".join(w for w in (article, adjectives, noun) if w)


def _random_object(
    rng: np.random.Generator, size: int, num_frames: int, shape=None, colour=None, obj_size=None, moving=None
) -> SceneObject:
    obj_size = obj_size or rng.choice(["small", "big"])
    radius = size * (0.07 if obj_size == "small" else 0.12)
    speed = size * rng.uniform(0.02, 0.035)
    moving = rng.random() < 0.5 if moving is None else moving
    velocity = (0.0, 0.0)
    if moving:
        direction = DIRECTIONS[rng.choice(list(DIRECTIONS))]
        velocity = (direction[0] * speed, direction[1] * speed)
    lo, hi = radius + 1, size - radius - 1
    # choose a start so that the whole trajectory stays inside the frame
    start = []
    for axis in range(2):
        travel = velocity[axis] * (num_frames - 1)
        a, b = lo - min(0.0, travel), hi - max(0.0, travel)
        start.append(float(rng.uniform(a, b)) if b > a else (lo + hi) / 2)
    return SceneObject(
        shape=shape or str(rng.choice(SHAPES)),
        colour=colour or str(rng.choice(list(COLOURS))),
        size=str(obj_size),
        start=(start[0], start[1]),
        velocity=velocity,
        radius=radius,
    )


def _labels(rng: np.random.Generator, num_frames: int, must: list[int] | None = None) -> list[int]:
    count = max(3, num_frames // 3)
    chosen = set(must or [])
    pool = [f for f in range(1, num_frames + 1) if f not in chosen]
    chosen.update(int(f) for f in rng.choice(pool, size=max(0, count - len(chosen)), replace=False))
    return sorted(chosen)


def _scene(
    kind: str, rng: np.random.Generator, size: int, num_frames: int
) -> tuple[list[SceneObject], int, Query]:
    """Objects, the target index and its query for one video of ``kind``."""
    if kind == "NORM":
        target = _random_object(rng, size, num_frames)
        others = []
        for _ in range(int(rng.integers(1, 5))):
            o = _random_object(rng, size, num_frames)
            while o.shape == target.shape and o.colour == target.colour:
                o = _random_object(rng, size, num_frames)
            others.append(o)
        unique_shape = all(o.shape != target.shape for o in others)
        unique_colour = all(o.colour != target.colour for o in others)
        if not (unique_shape or unique_colour):
            others = [o for o in others if o.shape != target.shape] or others[:0]
            unique_shape = True
        options = [
            q
            for q, ok in (
                (Query(shape=target.shape), unique_shape),
                (Query(colour=target.colour), unique_colour),
            )
            if ok
        ]
        query = options[int(rng.integers(len(options)))]
        if unique_shape and unique_colour and rng.random() < 0.5:
            query = Query(shape=target.shape, colour=target.colour)
        objects = [target, *others]
    elif kind == "MUL":
        target = _random_object(rng, size, num_frames)
        twin_colour = (
            str(rng.choice([c for c in COLOURS if c != target.colour]))
            if rng.random() < 0.7
            else target.colour
        )
        twin_size = (
            "big"
            if target.size == "small"
            else "small"
            if twin_colour == target.colour
            else str(rng.choice(["small", "big"]))
        )
        twin = _random_object(
            rng, size, num_frames, shape=target.shape, colour=twin_colour, obj_size=twin_size
        )
        others = [_random_object(rng, size, num_frames) for _ in range(int(rng.integers(0, 3)))]
        objects = [target, twin, *others]
        query = Query(shape=target.shape)
        if twin.colour != target.colour:
            query.colour = target.colour
        if twin.size != target.size or rng.random() < 0.3:
            query.size = target.size
        for o in others:  # every other same-shape object must also differ from the description
            if o.shape == target.shape and _appearance_matches(o, query):
                query.colour, query.size = target.colour, target.size
    elif kind == "SPAT":
        relation = str(rng.choice(list(SPATIAL_WORDS)))
        shape, colour, obj_size = (
            str(rng.choice(SHAPES)),
            str(rng.choice(list(COLOURS))),
            str(rng.choice(["small", "big"])),
        )
        axis = 0 if relation in ("left", "right") else 1
        target = _random_object(rng, size, num_frames, shape, colour, obj_size, moving=rng.random() < 0.3)
        twin = _random_object(rng, size, num_frames, shape, colour, obj_size, moving=rng.random() < 0.3)
        # place the pair on either side of the frame centre along the relation's axis, with parallel motion
        twin.velocity = target.velocity
        first_half = relation in ("left", "top")
        lo, hi = size * 0.18, size * 0.82
        for obj, near in ((target, first_half), (twin, not first_half)):
            centre = list(obj.start)
            travel = obj.velocity[axis] * (num_frames - 1)
            span = (lo, size * 0.42) if near else (size * 0.58, hi)
            a, b = span[0] - min(0.0, travel), span[1] - max(0.0, travel)
            centre[axis] = float(rng.uniform(a, b)) if b > a else sum(span) / 2
            obj.start = (centre[0], centre[1])
        others = [_random_object(rng, size, num_frames) for _ in range(int(rng.integers(0, 3)))]
        others = [o for o in others if not (o.shape == shape and o.colour == colour)]
        objects = [target, twin, *others]
        query = Query(shape=shape, relation=relation)
        if any(o.shape == shape for o in others):
            query.colour = colour
    elif kind == "TEMP":
        shape, colour, obj_size = (
            str(rng.choice(SHAPES)),
            str(rng.choice(list(COLOURS))),
            str(rng.choice(["small", "big"])),
        )
        horizontal = rng.random() < 0.7
        axis = 0 if horizontal else 1
        # fast enough to see at 64 px, slow enough to stay inside the frame for the whole video
        speed = size * min(float(rng.uniform(0.03, 0.045)), 0.55 / max(num_frames - 1, 1))
        centre_line = size / 2
        # target crosses the twin: starts on one side and moves across; the twin stays still or moves the other way
        sign = 1 if rng.random() < 0.5 else -1
        target = _random_object(rng, size, num_frames, shape, colour, obj_size, moving=False)
        twin = _random_object(rng, size, num_frames, shape, colour, obj_size, moving=False)
        twin_moves = rng.random() < 0.5
        twin_speed = -sign * speed * 0.5 if twin_moves else 0.0
        target_velocity = [0.0, 0.0]
        target_velocity[axis] = sign * speed
        twin_velocity = [0.0, 0.0]
        twin_velocity[axis] = twin_speed
        if rng.random() < 0.25:  # the still one is the target
            target_velocity, twin_velocity = twin_velocity, target_velocity
            target_velocity[axis] = 0.0
            twin_velocity[axis] = sign * speed
        target.velocity, twin.velocity = tuple(target_velocity), tuple(twin_velocity)
        # centre both trajectories on the frame centre so that they cross mid-video
        for obj in (target, twin):
            start = list(obj.start)
            start[axis] = centre_line - obj.velocity[axis] * (num_frames - 1) / 2
            # (nearly) the same line across the motion: no relation across it tells the twins apart either
            offset = size * float(rng.uniform(-0.04, 0.04))
            start[1 - axis] = float(np.clip(centre_line + offset, obj.radius + 1, size - obj.radius - 1))
            obj.start = (start[0], start[1])
        others = [_random_object(rng, size, num_frames) for _ in range(int(rng.integers(0, 3)))]
        others = [o for o in others if not (o.shape == shape and o.colour == colour)]
        objects = [target, twin, *others]
        query = Query(shape=shape, motion=target.motion)
        if any(o.shape == shape for o in others):
            query.colour = colour
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    order = rng.permutation(len(objects))
    shuffled = [objects[i] for i in order]
    return shuffled, int(np.where(order == 0)[0][0]), query


def generate_video(
    kind: str,
    seed: int | list[int],
    size: int = 96,
    num_frames: int | None = None,
    all_labelled: bool = False,
    attempts: int = 50,
) -> SyntheticVideo:
    """One validated video of ``kind`` (NORM, MUL, SPAT or TEMP), deterministic in ``seed``.

    Args:
        kind: split kind.
        seed: int or list of ints for ``numpy.random.default_rng``.
        size: frame side in pixels.
        num_frames: frames (default: random in 12..24).
        all_labelled: label every frame (the train split).
        attempts: scenes tried before giving up (a scene whose expression fails validation is redrawn).
    """
    rng = np.random.default_rng(seed)
    frames_count = int(num_frames or rng.integers(12, 25))
    last_error: Exception | None = None
    for _ in range(attempts):
        objects, target, query = _scene(kind, rng, size, frames_count)
        frames, masks = render(objects, size, frames_count, rng)
        video = SyntheticVideo(kind=kind, frames=frames, masks=masks, objects=objects)
        if all_labelled:
            labels = list(range(1, frames_count + 1))
        elif kind == "TEMP":
            labels = _labels(rng, frames_count, must=[2, frames_count - 1])  # both sides of the swap
        else:
            labels = _labels(rng, frames_count)
        expression = SyntheticExpression(target, _sentence(rng, query), query, labels)
        try:
            validate_expression(video, expression, size)
            if kind == "TEMP":
                _check_swap(video, expression)
        except SyntheticError as error:
            last_error = error
            continue
        video.expressions.append(expression)
        return video
    raise SyntheticError(f"could not generate a valid {kind} video in {attempts} attempts: {last_error}")


def _twin_of(video: SyntheticVideo, target: int) -> int:
    t = video.objects[target]
    twins = [
        i
        for i, o in enumerate(video.objects)
        if i != target and (o.shape, o.colour, o.size) == (t.shape, t.colour, t.size)
    ]
    if len(twins) != 1:
        raise SyntheticError(f"TEMP target needs exactly one identical twin, found {len(twins)}")
    return twins[0]


def _check_swap(video: SyntheticVideo, expression: SyntheticExpression) -> None:
    """TEMP: the twin is identical and the two swap their order along the motion axis between labelled frames."""
    twin = _twin_of(video, expression.target)
    target = video.objects[expression.target]
    axis = 0 if abs(target.velocity[0]) + abs(video.objects[twin].velocity[0]) > 0 else 1
    signs = {
        np.sign(target.centre(f - 1)[axis] - video.objects[twin].centre(f - 1)[axis])
        for f in expression.labels
    }
    if not {-1.0, 1.0} <= signs:
        raise SyntheticError("TEMP twins do not swap their order across the labelled frames")


# ----------------------------------------------------------------------------------------------- writing
def write_split(
    out_dir: str | Path,
    split: str,
    num_videos: int,
    seed: int,
    size: int = 96,
    mix: dict[str, float] | None = None,
) -> Path:
    """Write one split folder (``train`` mixes the kinds by ``mix``; test splits hold one kind)."""
    out = Path(out_dir) / split
    is_train = split == "train"
    name = "SYN_TRAIN_expressions.json" if is_train else f"SYN_{split}_test_expressions.json"
    writer = LayoutWriter(out, name)
    scenes = {}
    kind_ids = {k: i for i, k in enumerate(KINDS)}
    if is_train:
        mix = mix or {k: 1.0 for k in KINDS}
        weights = np.array([mix.get(k, 0.0) for k in KINDS], dtype=np.float64)
        kinds = np.random.default_rng([seed, 99]).choice(KINDS, size=num_videos, p=weights / weights.sum())
    else:
        kinds = [split] * num_videos
    for index in range(num_videos):
        kind = str(kinds[index])
        video_id = f"syn_{split.lower()}_{index:04d}"
        video = generate_video(
            kind, [seed, kind_ids[kind], index, int(is_train)], size, all_labelled=is_train
        )
        writer.add_video(video_id, len(video.frames))
        for t, frame in enumerate(video.frames, start=1):
            writer.write_frame(video_id, t, frame)
        for expression in video.expressions:
            obj = str(expression.target)
            writer.add_expression(video_id, obj, expression.sentence, expression.labels)
            for frame in expression.labels:
                writer.write_mask(video_id, obj, frame, video.masks[expression.target, frame - 1])
        scenes[video_id] = {
            "kind": kind,
            "objects": [asdict(o) for o in video.objects],
            "expressions": [
                {"target": e.target, "sentence": e.sentence, "query": asdict(e.query), "labels": e.labels}
                for e in video.expressions
            ],
        }
    writer.close()
    (out / "scenes.json").write_text(json.dumps(scenes, indent=1))
    return out


def generate_benchmark(
    out_dir: str | Path,
    seed: int = 0,
    num_train: int = 400,
    num_test: int = 50,
    size: int = 96,
    mix: dict[str, float] | None = None,
) -> dict[str, Path]:
    """Write ``train`` and the four test splits; returns ``{split: folder}``."""
    paths = {"train": write_split(out_dir, "train", num_train, seed, size, mix)} if num_train else {}
    for kind in KINDS:
        paths[kind] = write_split(out_dir, kind, num_test, seed, size)
    return paths


def validate_split(split_dir: str | Path, size: int) -> int:
    """Re-check every expression of a written split from its ``scenes.json``; returns the number checked."""
    split_dir = Path(split_dir)
    scenes = json.loads((split_dir / "scenes.json").read_text())
    checked = 0
    for video_id, scene in scenes.items():
        objects = [
            SceneObject(**{**o, "start": tuple(o["start"]), "velocity": tuple(o["velocity"])})
            for o in scene["objects"]
        ]
        num_frames = len(list((split_dir / "allPngs320H" / video_id).glob("*.png")))
        rng = np.random.default_rng(0)
        _, masks = render(objects, size, num_frames, rng)
        video = SyntheticVideo(kind=scene["kind"], frames=np.zeros((0,)), masks=masks, objects=objects)
        for e in scene["expressions"]:
            validate_expression(
                video, SyntheticExpression(e["target"], e["sentence"], Query(**e["query"]), e["labels"]), size
            )
            checked += 1
    return checked
