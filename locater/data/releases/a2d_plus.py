"""A2D-S+ (MUL, SPAT, TEMP) built from an A2D-Sentences test split in layout 3.1 (``A2D_SUBSET/NORM``).

The paper's exact selection rules are not public; these are ours, all in this module:

* Actor class of an instance: the actor of its h5 actor-action label (``A2D_instances.json`` written by
  ``tools/data/prepare_a2d.py``; label // 10), and where the release has no label for it, the actor named by its
  sentence (:data:`ACTOR_NOUNS`: the first actor noun not directly followed by another one, so "basketball
  player" is an adult). An instance with neither is of unknown class and matches no other instance.
* MUL: test expressions of videos where at least two annotated instances (every instance of the h5 files, with
  or without a sentence) share the referred instance's actor class. Without ``A2D_instances.json`` (e.g. a NORM
  split from elsewhere) the annotated instances are the video's expressions, classed by their sentences.
* SPAT: MUL expressions whose sentence contains a spatial word or phrase (:data:`SPATIAL_WORDS`,
  :data:`SPATIAL_PHRASES`).
* TEMP: MUL expressions whose sentence contains an action or temporal cue (:data:`ACTION_WORDS`, the verbs of
  the A2D action classes in all their forms, and :data:`TEMPORAL_WORDS`). Their labels are every annotated frame
  of the video; in those where the referred instance has no mask the mask is empty (scored: IoU 1 for an empty
  prediction).

Words are matched whole, on the lower-cased sentence after the official spelling fixes. The subsets are written
in layout 3.1 (frames hard-linked from NORM, every frame in ``frames``) and load with
:class:`locater.data.layout.LayoutSplit`, as do the official A2D-S+ annotations.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from locater.data.frames import image_size
from locater.data.layout import FRAME_DIRS, ExpressionSample, LayoutSplit, LayoutWriter
from locater.data.releases.a2d import INSTANCES_FILE, SplitSummary, actor_of_label
from locater.data.releases.staging import ReleaseError, StagedSplit, link_or_copy

logger = logging.getLogger(__name__)

SUBSETS = ("MUL", "SPAT", "TEMP")

ACTOR_NOUNS = {
    "adult": (
        "man", "men", "woman", "women", "person", "persons", "people", "guy", "guys", "lady", "ladies",
        "gentleman", "boy", "boys", "girl", "girls", "kid", "kids", "child", "children", "player", "players",
        "athlete", "soldier", "soldiers", "dancer", "rider", "biker", "cyclist", "skier", "skater", "runner",
        "climber", "swimmer", "gymnast", "worker", "policeman", "officer", "mother", "father", "human",
        "teenager", "male", "female",
    ),
    "baby": ("baby", "babies", "infant", "infants", "toddler", "toddlers"),
    "ball": ("ball", "balls", "football", "basketball", "volleyball", "baseball", "soccerball"),
    "bird": (
        "bird", "birds", "parrot", "duck", "ducks", "eagle", "owl", "pigeon", "pigeons", "chicken", "chickens",
        "hen", "rooster", "swan", "goose", "geese", "seagull", "gull", "penguin", "ostrich", "peacock", "hawk",
        "crow", "sparrow", "parakeet",
    ),
    "car": ("car", "cars", "vehicle", "vehicles", "truck", "trucks", "jeep", "suv", "van", "taxi", "racecar"),
    "cat": ("cat", "cats", "kitten", "kittens", "kitty"),
    "dog": ("dog", "dogs", "puppy", "puppies", "pup"),
}  # fmt: skip

# "back" is left out on purpose: it is mostly a body part or a direction of motion ("on its back").
SPATIAL_WORDS = (
    "left", "right", "leftmost", "rightmost", "top", "bottom", "middle", "center", "centre", "front",
    "behind", "background", "foreground", "upper", "lower", "above", "below", "under", "beneath",
    "underneath", "between", "beside", "near", "nearest", "closest", "closer", "far", "farthest", "further",
)  # fmt: skip
SPATIAL_PHRASES = ("next to",)

# The A2D action classes (climbing, crawling, eating, flying, jumping, rolling, running, walking) as verbs.
ACTION_WORDS = (
    "climb", "climbs", "climbing", "climbed", "crawl", "crawls", "crawling", "crawled",
    "eat", "eats", "eating", "ate", "fly", "flies", "flying", "flew", "jump", "jumps", "jumping", "jumped",
    "roll", "rolls", "rolling", "rolled", "run", "runs", "running", "ran",
    "walk", "walks", "walking", "walked",
)  # fmt: skip
TEMPORAL_WORDS = (
    "then", "after", "afterwards", "before", "while", "when", "first", "finally", "later", "until", "again",
    "begins", "starts", "stops", "still", "eventually", "meanwhile",
)  # fmt: skip

_NOUN_TO_ACTOR = {noun: actor for actor, nouns in ACTOR_NOUNS.items() for noun in nouns}


def words_of(sentence: str) -> list[str]:
    """Lower-cased words of a sentence (letters only)."""
    return re.findall(r"[a-z]+", sentence.lower())


def actor_from_sentence(sentence: str) -> str | None:
    """Actor class named by a sentence: the first actor noun not directly followed by another one."""
    words = words_of(sentence)
    for index, word in enumerate(words):
        if word in _NOUN_TO_ACTOR:
            following = words[index + 1] if index + 1 < len(words) else None
            if following not in _NOUN_TO_ACTOR:
                return _NOUN_TO_ACTOR[word]
    return None


def is_spatial(sentence: str) -> bool:
    """True when the sentence holds a spatial word or phrase."""
    words = words_of(sentence)
    joined = " ".join(words)
    return any(w in SPATIAL_WORDS for w in words) or any(f" {p} " in f" {joined} " for p in SPATIAL_PHRASES)


def is_temporal(sentence: str) -> bool:
    """True when the sentence holds an A2D action verb or a temporal word."""
    return any(w in ACTION_WORDS or w in TEMPORAL_WORDS for w in words_of(sentence))


@dataclass
class VideoInstances:
    """The annotated instances of one video: actor class per instance id, and the annotated frames."""

    actors: dict[str, str | None]
    annotated_frames: list[str]


@dataclass
class Selection:
    """The expressions chosen for each subset and why others were not."""

    subsets: dict[str, list[ExpressionSample]] = field(default_factory=lambda: {s: [] for s in SUBSETS})
    unknown_actor: int = 0
    annotated_frames: dict[str, list[str]] = field(default_factory=dict)


def read_instances(split: LayoutSplit) -> dict[str, VideoInstances]:
    """Annotated instances of every video, from ``A2D_instances.json`` or, without it, from the expressions."""
    path = split.root / INSTANCES_FILE
    sentences: dict[str, dict[str, str]] = {}
    for sample in split.samples:
        sentences.setdefault(sample.video, {})[sample.expression] = sample.sentence
    videos: dict[str, VideoInstances] = {}
    if not path.is_file():
        logger.warning(
            "%s not found: annotated instances are the expressions, classed by their sentences", path
        )
        for video, samples in split.videos().items():
            frames = sorted({f for s in samples for f in s.labels})
            instance_ids = {instance_of(s.expression) for s in samples}
            actors = {i: _sentence_actor(sentences[video], i) for i in sorted(instance_ids)}
            videos[video] = VideoInstances(actors, frames)
        return videos
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReleaseError(f"{path}: malformed JSON ({error})") from error
    for video in split.videos():
        entry = data.get(video) if isinstance(data, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("instances"), dict):
            raise ReleaseError(f"{path}: no instances for video {video!r}")
        actors = {}
        for instance, info in entry["instances"].items():
            label = info.get("actor_action") if isinstance(info, dict) else None
            if label is not None:
                try:
                    number = int(label)
                except (TypeError, ValueError):
                    raise ReleaseError(
                        f"{path}: video {video!r}, instance {instance!r}: actor_action {label!r} is not an integer"
                    ) from None
                actors[instance] = actor_of_label(number)
            else:
                actors[instance] = _sentence_actor(sentences.get(video, {}), instance)
        videos[video] = VideoInstances(actors, list(entry.get("annotated_frames", [])))
    return videos


def instance_of(expression: str) -> str:
    """Instance id of an object id (``"2"`` and ``"2_2"``, a second sentence of instance 2, give ``"2"``)."""
    return expression.split("_")[0]


def _sentence_actor(sentences: dict[str, str], instance: str) -> str | None:
    """The actor class the sentences of ``instance`` agree on, or ``None``."""
    found = {actor_from_sentence(s) for obj, s in sentences.items() if instance_of(obj) == instance} - {None}
    return found.pop() if len(found) == 1 else None


def select_subsets(split: LayoutSplit, instances: dict[str, VideoInstances]) -> Selection:
    """Apply the MUL / SPAT / TEMP rules to every expression of ``split``."""
    selection = Selection()
    for video, samples in split.videos().items():
        info = instances[video]
        classes = Counter(actor for actor in info.actors.values() if actor is not None)
        selection.annotated_frames[video] = info.annotated_frames
        for sample in samples:
            instance = instance_of(sample.expression)
            actor = info.actors.get(instance)
            counted = actor is not None  # the referred instance is already among ``classes``
            if actor is None:
                actor = actor_from_sentence(sample.sentence)
            if actor is None:
                selection.unknown_actor += 1
                continue
            if classes[actor] + (0 if counted else 1) < 2:
                continue
            selection.subsets["MUL"].append(sample)
            if is_spatial(sample.sentence):
                selection.subsets["SPAT"].append(sample)
            if is_temporal(sample.sentence):
                selection.subsets["TEMP"].append(sample)
    return selection


def build_a2d_plus(
    norm_dir: str | Path, out: str | Path, overwrite: bool = False
) -> tuple[list[SplitSummary], Selection]:
    """Write ``<out>/A2D_SUBSET/{MUL,SPAT,TEMP}`` from the NORM split in ``norm_dir``.

    Returns one summary per subset and the selection (sizes, expressions of unknown actor class).
    """
    split = LayoutSplit.open(norm_dir)
    if split.flavour != "a2d":
        raise ReleaseError(f"{norm_dir}: not an A2D split (no allPngs320H folder)")
    selection = select_subsets(split, read_instances(split))
    summaries = []
    for subset in SUBSETS:
        stage = StagedSplit(
            Path(out) / "A2D_SUBSET" / subset, {"builder": "a2d_plus", "subset": subset}, overwrite
        )
        if stage.complete():
            summaries.append(SplitSummary(subset, stage.final, "already complete (skipped)"))
            continue
        summaries.append(_write_subset(split, subset, selection, stage))
    return summaries, selection


def _write_subset(split: LayoutSplit, subset: str, selection: Selection, stage: StagedSplit) -> SplitSummary:
    if stage.partial.exists():  # cheap to redo: start afresh rather than resume
        shutil.rmtree(stage.partial)
    stage.begin()
    writer = LayoutWriter(stage.partial, f"A2D_{subset}_test_expressions.json", flavour="a2d")
    summary = SplitSummary(subset, stage.final, "written")
    by_video: dict[str, list[ExpressionSample]] = OrderedDict()
    for sample in selection.subsets[subset]:
        by_video.setdefault(sample.video, []).append(sample)
    for video, samples in by_video.items():
        num_frames = split.frame_counts[video]
        frames = [int(f) for f in samples[0].frames]
        target = writer.root / FRAME_DIRS["a2d"] / video
        target.mkdir(parents=True, exist_ok=True)
        for frame in samples[0].frames:
            link_or_copy(split.frame_path(video, frame), target / f"{frame}.png")
        writer.add_video(video, num_frames, frames)
        for sample in samples:
            labels = _subset_labels(sample, subset, selection.annotated_frames[video])
            for frame in labels:
                if frame in sample.labels:
                    mask = split.load_mask(video, sample.expression, frame)
                else:
                    mask = np.zeros(image_size(split.frame_path(video, frame)), bool)
                writer.write_mask(video, sample.expression, int(frame), mask)
            writer.add_expression(video, sample.expression, sample.raw_sentence, [int(f) for f in labels])
            summary.expressions += 1
            summary.labelled_frames += len(labels)
    summary.videos = len(by_video)
    writer.close()
    stage.finish()
    return summary


def _subset_labels(sample: ExpressionSample, subset: str, annotated_frames: list[str]) -> list[str]:
    """MUL and SPAT keep the NORM labels; TEMP scores every annotated frame of the video."""
    if subset != "TEMP":
        return sample.labels
    frame_set = set(sample.frames)
    return sorted((set(annotated_frames) & frame_set) | set(sample.labels))
