"""Writing the synthetic benchmark in layout 3.1, with a ``scenes.json`` per split, and re-validating it.

Each split folder holds what the project's reader expects (``allPngs320H/``, ``mask/``, ``vid_frame_dict.pth``,
``SYN_TRAIN_expressions.json`` or ``SYN_<KIND>_test_expressions.json``) plus ``scenes.json``: per video the kind,
the frame count and every object's attributes, start, velocity, motion and per-frame centres, and the meaning of
each expression. :func:`validate_split` re-checks a written split from that file.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from locater.data.layout import LayoutSplit, LayoutWriter, frame_id
from locater.data.synthetic.language import Query
from locater.data.synthetic.render import SceneObject, visible_masks
from locater.data.synthetic.scenes import (
    KINDS,
    SyntheticError,
    SyntheticExpression,
    SyntheticVideo,
    generate_video,
    validate_expression,
)
from locater.files import publish_dir

logger = logging.getLogger(__name__)

SCENES_FILE = "scenes.json"
SCENES_FORMAT = "locater-synthetic-scenes-1"
SPLITS = ("train", *KINDS)


def expressions_file_name(split: str) -> str:
    """``SYN_TRAIN_expressions.json`` for ``train``, ``SYN_<KIND>_test_expressions.json`` for a test split."""
    return "SYN_TRAIN_expressions.json" if split == "train" else f"SYN_{split}_test_expressions.json"


def video_seed(seed: int, split: str, kind: str, index: int) -> list[int]:
    """The seed of one video: depends on the benchmark seed, train or test, the kind and the index only."""
    return [seed, KINDS.index(kind), index, int(split == "train")]


def train_kinds(num_videos: int, seed: int, mix: Mapping[str, float] | None = None) -> list[str]:
    """The kind of each training video, drawn with the proportions ``mix`` (default: equal)."""
    mix = dict(mix) if mix is not None else dict.fromkeys(KINDS, 1.0)
    unknown = sorted(set(mix) - set(KINDS))
    weights = np.array([float(mix.get(k, 0.0)) for k in KINDS])
    if unknown or (weights < 0).any() or not weights.sum() > 0:
        raise ValueError(f"train mix must give non-negative weights to {KINDS}, not all zero; got {mix}")
    drawn = np.random.default_rng([seed, 99]).choice(len(KINDS), size=num_videos, p=weights / weights.sum())
    return [KINDS[int(i)] for i in drawn]


# ------------------------------------------------------------------------------------------------ scenes.json
def scene_record(video: SyntheticVideo) -> dict:
    """The JSON description of a video's scene and expressions."""
    objects = []
    for obj in video.objects:
        record = asdict(obj)
        record["motion"] = obj.motion
        record["centres"] = [[round(c, 3) for c in obj.centre(t)] for t in range(video.num_frames)]
        objects.append(record)
    expressions = [
        {
            "id": str(e.target),
            "target": e.target,
            "sentence": e.sentence,
            "query": asdict(e.query),
            "labels": e.labels,
        }
        for e in video.expressions
    ]
    return {
        "kind": video.kind,
        "num_frames": video.num_frames,
        "objects": objects,
        "expressions": expressions,
    }


def objects_from_record(record: dict, where: str) -> list[SceneObject]:
    """The scene objects of one video record of ``scenes.json``; :class:`SyntheticError` naming ``where`` when its
    stored centres disagree with the start and velocity."""
    objects = []
    for i, o in enumerate(record["objects"]):
        obj = SceneObject(
            o["shape"], o["colour"], o["size"], o["radius"], tuple(o["start"]), tuple(o["velocity"])
        )
        drift = max(
            abs(c - e)
            for t, centre in enumerate(o["centres"])
            for c, e in zip(centre, obj.centre(t), strict=True)
        )
        if len(o["centres"]) != record["num_frames"] or drift > 1e-2:
            raise SyntheticError(f"{where}: object {i}: centres disagree with its start and velocity")
        objects.append(obj)
    return objects


def read_scenes(split_dir: str | Path) -> dict:
    """The parsed ``scenes.json`` of a split folder; :class:`SyntheticError` naming the file if absent or bad."""
    path = Path(split_dir) / SCENES_FILE
    if not path.is_file():
        raise SyntheticError(f"{path}: missing (not a synthetic split folder written by make_synthetic.py?)")
    try:
        scenes = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SyntheticError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(scenes, dict) or scenes.get("format") != SCENES_FORMAT:
        raise SyntheticError(f"{path}: expected format {SCENES_FORMAT!r}, got {scenes.get('format')!r}")
    return scenes


# ------------------------------------------------------------------------------------------------ writing
def _write_video(job: tuple[str, str, str, str, list[int], int]) -> dict:
    """Generate one video and write its frames and masks; returns its scene record (runs in a worker)."""
    split_dir, split, video_id, kind, seed, frame_size = job
    video = generate_video(kind, seed, frame_size, all_labelled=split == "train")
    writer = LayoutWriter(split_dir, expressions_file_name(split))
    for number, frame in enumerate(video.frames, start=1):
        writer.write_frame(video_id, number, frame)
    for expression in video.expressions:
        for number in expression.labels:
            writer.write_mask(
                video_id, str(expression.target), number, video.masks[expression.target, number - 1]
            )
    return scene_record(video)


def _check_replaceable(folder: Path) -> None:
    if folder.exists() and any(folder.iterdir()) and not (folder / SCENES_FILE).is_file():
        raise SyntheticError(
            f"{folder}: exists and is not a synthetic split (no {SCENES_FILE}); not overwriting it"
        )


def write_split(
    out_dir: str | Path,
    split: str,
    num_videos: int,
    seed: int,
    size: int = 96,
    mix: Mapping[str, float] | None = None,
    workers: int = 1,
) -> Path:
    """Write one split folder ``out_dir/split`` and return it.

    ``train`` mixes the kinds by ``mix`` and labels every frame; ``NORM``, ``MUL``, ``SPAT`` and ``TEMP`` hold
    one kind each, about a third of the frames labelled. The folder is written aside and then replaces an older
    synthetic split of that name (a folder that is not one is never overwritten). The bytes depend only on
    ``(split, num_videos, seed, size, mix)``, not on ``workers``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if num_videos < 1:
        raise ValueError(f"{split}: need at least one video, got {num_videos}")
    final = Path(out_dir) / split
    _check_replaceable(final)
    partial = Path(out_dir) / f".{split}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    kinds = train_kinds(num_videos, seed, mix) if split == "train" else [split] * num_videos
    video_ids = [f"syn_{split.lower()}_{index:04d}" for index in range(num_videos)]
    jobs = [
        (str(partial), split, video_ids[i], kind, video_seed(seed, split, kind, i), size)
        for i, kind in enumerate(kinds)
    ]
    writer = LayoutWriter(partial, expressions_file_name(split))
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            records = list(pool.map(_write_video, jobs, chunksize=8))
    else:
        records = [_write_video(job) for job in jobs]
    for video_id, record in zip(video_ids, records, strict=True):
        writer.add_video(video_id, record["num_frames"])
        for expression in record["expressions"]:
            writer.add_expression(video_id, expression["id"], expression["sentence"], expression["labels"])
    writer.close()
    scenes = {
        "format": SCENES_FORMAT,
        "split": split,
        "seed": seed,
        "frame_size": size,
        "videos": dict(zip(video_ids, records, strict=True)),
    }
    (partial / SCENES_FILE).write_text(json.dumps(scenes, indent=1))
    publish_dir(partial, final)
    logger.info("wrote %d %s videos to %s", num_videos, split, final)
    return final


def generate_benchmark(
    out_dir: str | Path,
    seed: int = 0,
    num_train: int = 400,
    num_test: int = 50,
    size: int = 96,
    mix: Mapping[str, float] | None = None,
    workers: int = 1,
) -> dict[str, Path]:
    """Write ``train`` (skipped when ``num_train`` is 0) and the NORM, MUL, SPAT and TEMP test splits.

    Returns ``{split: folder}``.
    """
    paths = {}
    if num_train:
        paths["train"] = write_split(out_dir, "train", num_train, seed, size, mix, workers)
    for kind in KINDS:
        paths[kind] = write_split(out_dir, kind, num_test, seed, size, workers=workers)
    return paths


# ------------------------------------------------------------------------------------------------ validation
def validate_split(split_dir: str | Path) -> int:
    """Re-check a written split; returns the number of expressions checked.

    From ``scenes.json`` alone, every expression must single out its target in every labelled frame (see
    :func:`validate_expression`); the expressions JSON must hold exactly those sentences and labelled frames,
    and each expression's first labelled mask file must equal the re-drawn visible mask. Raises
    :class:`SyntheticError` naming the file otherwise.
    """
    split_dir = Path(split_dir)
    scenes = read_scenes(split_dir)
    scenes_path = split_dir / SCENES_FILE
    layout = LayoutSplit.open(split_dir)
    written = {(s.video, s.expression): s for s in layout.samples}
    described = {(v, e["id"]) for v, record in scenes["videos"].items() for e in record["expressions"]}
    if set(written) != described:
        difference = sorted(set(written) ^ described)[:5]
        raise SyntheticError(
            f"{layout.expressions_file} and {scenes_path} list different expressions: {difference}"
        )
    frame_size = int(scenes["frame_size"])
    for video_id, record in scenes["videos"].items():
        where = f"{scenes_path}: video {video_id}"
        objects = objects_from_record(record, where)
        masks = visible_masks(objects, frame_size, record["num_frames"])
        video = SyntheticVideo(record["kind"], frame_size, np.zeros((0,), np.uint8), masks, objects)
        for e in record["expressions"]:
            expression = SyntheticExpression(e["target"], e["sentence"], Query(**e["query"]), e["labels"])
            try:
                validate_expression(video, expression)
            except SyntheticError as error:
                raise SyntheticError(f"{where}: {error}") from error
            sample = written[(video_id, e["id"])]
            if sample.raw_sentence != e["sentence"] or sample.labels != [frame_id(f) for f in e["labels"]]:
                raise SyntheticError(
                    f"{layout.expressions_file}: video {video_id} expression {e['id']} differs"
                )
            first = e["labels"][0]
            if not np.array_equal(
                layout.load_mask(video_id, e["id"], frame_id(first)), masks[e["target"], first - 1]
            ):
                path = layout.mask_path(video_id, e["id"], frame_id(first))
                raise SyntheticError(f"{path}: differs from the mask re-drawn from {scenes_path}")
    return len(described)
