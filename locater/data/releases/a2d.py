"""A2D-Sentences from its original release (docs/data.md) to layout 3.1: ``A2D_SUBSET/NORM`` and ``A2D_SUBSET/train``.

Release files read::

    Release/videoset.csv                      no header: vid, label, start, end, height, width,
                                              total_frames, annotated_frames, subset (0 train, 1 test)
    Release/clips320H/<vid>.mp4               decoded with OpenCV; frame i (0-based) -> <i+1:05d>.png
    text_annotations/a2d_annotation.txt       CSV with header video_id,instance_id,query
    text_annotations/a2d_missed_videos.txt    one video id a line: videos without sentences, dropped
    text_annotations/a2d_annotation_with_instances/<vid>/<frame:05d>.h5
                                              instance (N,), reMask (N, W, H) or (W, H) for one instance,
                                              reBBox, and in some files id (1, N) = actor-action labels

Every split gets all frames of each clip in ``frames``; an expression's ``labels`` are the annotated frames
(h5 files) in which its instance has a mask. The row with instance id ``"1 (copy)"`` is dropped, as every public
A2D-Sentences loader does. Besides the layout, each split holds ``A2D_instances.json``: per video its label,
annotated frames and every annotated instance (with or without a sentence) with the frames it appears in and
its actor-action label when the h5 files carry one (``null`` otherwise); the A2D-S+ builder reads it.

The staged output (a split built in ``<split>.partial`` and renamed when complete) is in
:mod:`locater.data.releases.staging`.
"""

from __future__ import annotations

import csv
import logging
import shutil
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np

from locater.data.frames import encode_png
from locater.data.layout import FRAME_DIRS, LayoutWriter, frame_id
from locater.data.releases.staging import ReleaseError, StagedSplit, run_tasks, save_marker
from locater.files import publish_dir, write_json_atomic
from locater.paths import safe_component

logger = logging.getLogger(__name__)

EXPECTED_VIDEOS = 3782  # rows of Release/videoset.csv
EXPECTED_SENTENCES = 6655  # rows of text_annotations/a2d_annotation.txt
BAD_INSTANCE_ID = "1 (copy)"  # one mistaken row (video T6bNPuKV-wY), dropped
ACTORS = {1: "adult", 2: "baby", 3: "ball", 4: "bird", 5: "car", 6: "cat", 7: "dog"}
ACTIONS = {
    1: "climbing", 2: "crawling", 3: "eating", 4: "flying", 5: "jumping",
    6: "rolling", 7: "running", 8: "walking", 9: "none",
}  # fmt: skip
SUBSETS = {"train": 0, "test": 1}
SPLITS = {  # split -> (folder under A2D_SUBSET, expressions file)
    "test": ("NORM", "A2D_NORM_test_expressions.json"),
    "train": ("train", "A2D_train_expressions.json"),
}
INSTANCES_FILE = "A2D_instances.json"
SENTENCES_HEADER = ["video_id", "instance_id", "query"]


def actor_of_label(label: int) -> str | None:
    """Actor name of an A2D actor-action label (``11`` -> ``"adult"``); a bare actor id (1..7) is accepted too."""
    actor = label // 10 if label >= 10 else label
    return ACTORS.get(actor)


# ---------------------------------------------------------------------------------------------- release files
@dataclass(frozen=True)
class A2DVideo:
    """One row of ``Release/videoset.csv``."""

    vid: str
    label: int
    height: int
    width: int
    total_frames: int
    annotated_frames: int
    subset: int


@dataclass(frozen=True)
class A2DSentence:
    """One row of ``a2d_annotation.txt``; ``line`` is its 1-based line number in the file."""

    video: str
    instance: int
    text: str
    line: int


@dataclass
class A2DRelease:
    """The parsed text files of an A2D-Sentences release (clips and h5 files are read per video)."""

    root: Path
    videos: list[A2DVideo]
    sentences: list[A2DSentence]
    missed: set[str]
    sentence_rows: int
    dropped_rows: list[int] = field(default_factory=list)  # line numbers of the "1 (copy)" rows

    @classmethod
    def open(cls, root: str | Path) -> A2DRelease:
        """Parse ``videoset.csv``, the sentences and the missed-video list; :class:`ReleaseError` on any problem."""
        root = Path(root)
        if not root.is_dir():
            raise ReleaseError(f"A2D-Sentences folder not found: {root}")
        videos = read_videoset(root / "Release" / "videoset.csv")
        missed = read_missed_videos(root / "text_annotations" / "a2d_missed_videos.txt")
        rows, dropped = read_sentences(root / "text_annotations" / "a2d_annotation.txt")
        known = {video.vid for video in videos}
        unknown = [s for s in rows if s.video not in known]
        if unknown:
            first = unknown[0]
            raise ReleaseError(
                f"{root / 'text_annotations' / 'a2d_annotation.txt'}: line {first.line}: video {first.video!r} "
                f"is not in Release/videoset.csv ({len(unknown)} such rows)"
            )
        release = cls(
            root, videos, rows, missed, sentence_rows=len(rows) + len(dropped), dropped_rows=dropped
        )
        return release

    def clip_path(self, vid: str) -> Path:
        return self.root / "Release" / "clips320H" / f"{vid}.mp4"

    def annotation_dir(self, vid: str) -> Path:
        return self.root / "text_annotations" / "a2d_annotation_with_instances" / vid

    def count_warnings(self) -> list[str]:
        """Differences from the public release's counts (3782 videos, 6655 sentence rows), one line each."""
        warnings = []
        if len(self.videos) != EXPECTED_VIDEOS:
            warnings.append(f"Release/videoset.csv has {len(self.videos)} videos, expected {EXPECTED_VIDEOS}")
        if self.sentence_rows != EXPECTED_SENTENCES:
            warnings.append(
                f"a2d_annotation.txt has {self.sentence_rows} sentence rows, expected {EXPECTED_SENTENCES}"
            )
        return warnings

    def split_videos(self, split: str) -> tuple[list[A2DVideo], dict[str, list[A2DSentence]]]:
        """Videos of ``split`` ("train"/"test") that have sentences, missed videos dropped, with their sentences."""
        by_video: dict[str, list[A2DSentence]] = OrderedDict()
        for sentence in self.sentences:
            if sentence.video not in self.missed:
                by_video.setdefault(sentence.video, []).append(sentence)
        chosen = [
            v
            for v in self.videos
            if v.subset == SUBSETS[split] and v.vid not in self.missed and v.vid in by_video
        ]
        return chosen, {v.vid: by_video[v.vid] for v in chosen}


def _parse_int(value: str, path: Path, line: int, column: str) -> int:
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        raise ReleaseError(f"{path}: line {line}: {column} {value!r} is not a number") from None
    if not number.is_integer():
        raise ReleaseError(f"{path}: line {line}: {column} {value!r} is not an integer")
    return int(number)


def read_videoset(path: Path) -> list[A2DVideo]:
    """Rows of ``Release/videoset.csv`` (no header, 9 columns), in file order."""
    if not path.is_file():
        raise ReleaseError(f"video list missing: {path}")
    videos: list[A2DVideo] = []
    seen: set[str] = set()
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 9:
                raise ReleaseError(
                    f"{path}: line {line}: expected 9 columns (vid, label, start, end, height, width, "
                    f"total_frames, annotated_frames, subset), got {len(row)}"
                )
            vid = row[0].strip()
            if not vid:
                raise ReleaseError(f"{path}: line {line}: empty video id")
            # the id names the clip, the annotation folder and the converted video's folder
            safe_component(vid, "video id", f"{path}: line {line}")
            if vid in seen:
                raise ReleaseError(f"{path}: line {line}: video {vid!r} listed twice")
            seen.add(vid)
            for column, value in (("start", row[2]), ("end", row[3])):
                _parse_float(value, path, line, column)
            subset = _parse_int(row[8], path, line, "subset")
            if subset not in SUBSETS.values():
                raise ReleaseError(
                    f"{path}: line {line}: subset {row[8]!r} is neither 0 (train) nor 1 (test)"
                )
            videos.append(
                A2DVideo(
                    vid=vid,
                    label=_parse_int(row[1], path, line, "label"),
                    height=_parse_int(row[4], path, line, "height"),
                    width=_parse_int(row[5], path, line, "width"),
                    total_frames=_parse_int(row[6], path, line, "total_frames"),
                    annotated_frames=_parse_int(row[7], path, line, "annotated_frames"),
                    subset=subset,
                )
            )
    if not videos:
        raise ReleaseError(f"{path}: no videos")
    return videos


def _parse_float(value: str, path: Path, line: int, column: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise ReleaseError(f"{path}: line {line}: {column} {value!r} is not a number") from None


def read_missed_videos(path: Path) -> set[str]:
    """Video ids of ``a2d_missed_videos.txt`` (one a line; blank lines ignored)."""
    if not path.is_file():
        raise ReleaseError(f"missed-video list missing: {path}")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def sentence_rows(path: Path, header: list[str]) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of a release's sentence file (a CSV with ``header``), blank rows skipped.

    Raises ReleaseError for a missing file, another header, or a row with another number of fields.
    """
    if not path.is_file():
        raise ReleaseError(f"sentence file missing: {path}")
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        first = next(reader, None)
        if first is None or [cell.strip() for cell in first] != header:
            raise ReleaseError(f"{path}: line 1: expected the header {','.join(header)}, got {first}")
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ReleaseError(
                    f"{path}: line {reader.line_num}: expected {len(header)} fields ({','.join(header)}), got {row}"
                )
            yield reader.line_num, row


def read_sentences(path: Path) -> tuple[list[A2DSentence], list[int]]:
    """Rows of ``a2d_annotation.txt`` and the line numbers of the dropped ``"1 (copy)"`` rows."""
    sentences: list[A2DSentence] = []
    dropped: list[int] = []
    for line, row in sentence_rows(path, SENTENCES_HEADER):
        video, instance, text = row[0].strip(), row[1].strip(), row[2]
        if instance == BAD_INSTANCE_ID:
            dropped.append(line)
            continue
        if not video:
            raise ReleaseError(f"{path}: line {line}: empty video id")
        if not instance.isdigit():
            raise ReleaseError(f"{path}: line {line}: instance id {instance!r} is not an integer")
        if not text.strip():
            raise ReleaseError(
                f"{path}: line {line}: expression with no text (video {video}, instance {instance})"
            )
        sentences.append(A2DSentence(video, int(instance), text.strip(), line))
    return sentences, dropped


@dataclass
class FrameAnnotation:
    """The instances of one annotated frame (one h5 file).

    Attributes:
        frame: 1-indexed frame number (the file name).
        path: the h5 file.
        masks: instance id -> ``H x W`` bool mask (``reMask`` transposed back).
        actor_action: instance id -> actor-action label, for files with an ``id`` field.
    """

    frame: int
    path: Path
    masks: dict[int, np.ndarray]
    actor_action: dict[int, int]


def read_frame_annotation(path: Path) -> FrameAnnotation:
    """Read one ``<frame:05d>.h5`` file; masks are stored transposed, ``(N, W, H)``, or ``(W, H)`` for one."""
    if not path.is_file():
        raise ReleaseError(f"mask file missing: {path}")
    if not path.stem.isdigit() or int(path.stem) < 1:
        raise ReleaseError(f"{path}: annotation file names must be 1-indexed frame numbers (00001.h5)")
    try:
        with h5py.File(path, "r") as handle:
            missing = [name for name in ("instance", "reMask") if name not in handle]
            if missing:
                raise ReleaseError(f"{path}: no {' or '.join(missing)} field")
            instances = np.asarray(handle["instance"]).reshape(-1)
            stack = np.asarray(handle["reMask"])
            ids = np.asarray(handle["id"]).reshape(-1) if "id" in handle else None
    except OSError as error:
        raise ReleaseError(f"{path}: cannot read HDF5 file ({error})") from error
    if instances.size == 0:
        raise ReleaseError(f"{path}: empty 'instance' field")
    if not np.all(np.equal(np.mod(instances, 1), 0)):
        raise ReleaseError(f"{path}: instance ids {instances.tolist()} are not integers")
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or stack.shape[0] < instances.size:
        raise ReleaseError(
            f"{path}: reMask of shape {stack.shape} does not hold one (W x H) mask for each of the "
            f"{instances.size} instances {instances.astype(int).tolist()}"
        )
    if ids is not None and ids.size < instances.size:
        raise ReleaseError(f"{path}: 'id' holds {ids.size} labels for {instances.size} instances")
    masks: dict[int, np.ndarray] = {}
    actor_action: dict[int, int] = {}
    for index, instance in enumerate(instances.astype(int).tolist()):
        mask = stack[index].T > 0
        # an id listed twice in one frame (seen in the release) is the union of its masks
        masks[instance] = masks[instance] | mask if instance in masks else mask
        if ids is not None:
            actor_action[instance] = int(ids[index])
    return FrameAnnotation(int(path.stem), path, masks, actor_action)


def read_video_annotations(annotation_dir: Path) -> list[FrameAnnotation]:
    """Every ``*.h5`` of one video's annotation folder, sorted by frame number."""
    if not annotation_dir.is_dir():
        raise ReleaseError(f"annotation folder missing: {annotation_dir}")
    paths = sorted(annotation_dir.glob("*.h5"))
    if not paths:
        raise ReleaseError(f"{annotation_dir}: no .h5 mask files")
    return sorted((read_frame_annotation(p) for p in paths), key=lambda a: a.frame)


def decode_clip(path: Path) -> Iterator[np.ndarray]:
    """Frames of an mp4 clip as ``H x W x 3`` uint8 RGB, in order (OpenCV)."""
    if not path.is_file():
        raise ReleaseError(f"clip missing: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ReleaseError(f"{path}: OpenCV cannot open the clip")
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def extract_frames(clip: Path, frame_dir: Path) -> tuple[int, tuple[int, int]]:
    """Decode ``clip`` into ``frame_dir/<00001>.png`` ...; returns (number of frames, (H, W))."""
    frame_dir.mkdir(parents=True, exist_ok=True)
    count, size = 0, None
    for count, rgb in enumerate(decode_clip(clip), start=1):
        if size is None:
            size = rgb.shape[:2]
        elif rgb.shape[:2] != size:
            raise ReleaseError(f"{clip}: frame {count} is {rgb.shape[:2]}, the first frame {size}")
        (frame_dir / f"{frame_id(count)}.png").write_bytes(encode_png(rgb))
    if size is None:
        raise ReleaseError(f"{clip}: no frame could be decoded")
    return count, size


# ---------------------------------------------------------------------------------------------- conversion
@dataclass(frozen=True)
class A2DVideoTask:
    """Everything one worker needs to convert one video (picklable)."""

    video: A2DVideo
    sentences: tuple[tuple[str, A2DSentence], ...]  # (object id, sentence)
    clip: Path
    annotation_dir: Path
    partial_dir: Path
    expressions_name: str


def object_ids(sentences: list[A2DSentence]) -> list[tuple[str, A2DSentence]]:
    """Object id of each sentence: the instance id; a second sentence of the same instance gets ``"<id>_2"``."""
    seen: Counter[int] = Counter()
    named = []
    for sentence in sentences:
        seen[sentence.instance] += 1
        suffix = "" if seen[sentence.instance] == 1 else f"_{seen[sentence.instance]}"
        named.append((f"{sentence.instance}{suffix}", sentence))
    return named


def convert_a2d_video(task: A2DVideoTask) -> dict[str, Any]:
    """Frames, masks and the finished-video marker of one video; returns its record (see :func:`save_marker`)."""
    vid = task.video.vid
    annotations = read_video_annotations(task.annotation_dir)
    frames_root = task.partial_dir / FRAME_DIRS["a2d"]
    staging = frames_root / f".{vid}.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    num_frames, size = extract_frames(task.clip, staging)
    for annotation in annotations:
        h5_path = annotation.path
        if annotation.frame > num_frames:
            raise ReleaseError(
                f"{h5_path}: annotated frame {annotation.frame} is past the {num_frames} frames of {task.clip}"
            )
        for instance, mask in annotation.masks.items():
            if mask.shape != size:
                raise ReleaseError(
                    f"{h5_path}: mask of instance {instance} is {mask.shape[0]} x {mask.shape[1]} (H x W), "
                    f"the frames of {task.clip} are {size[0]} x {size[1]}"
                )
    writer = LayoutWriter(task.partial_dir, task.expressions_name, flavour="a2d")
    expressions = []
    for obj, sentence in task.sentences:
        labels = [a.frame for a in annotations if sentence.instance in a.masks]
        for annotation in annotations:
            if sentence.instance in annotation.masks:
                writer.write_mask(vid, obj, annotation.frame, annotation.masks[sentence.instance])
        expressions.append(
            {"obj": obj, "sentence": sentence.text, "labels": labels, "instance": sentence.instance}
        )
    instances: dict[str, dict[str, Any]] = {}
    for annotation in annotations:
        for instance in annotation.masks:
            entry = instances.setdefault(str(instance), {"actor_action": None, "frames": []})
            entry["frames"].append(annotation.frame)
            if instance in annotation.actor_action and entry["actor_action"] is None:
                entry["actor_action"] = annotation.actor_action[instance]
    record = {
        "video": vid,
        "num_frames": num_frames,
        "label": task.video.label,
        "expressions": expressions,
        "annotated_frames": [a.frame for a in annotations],
        "instances": instances,
    }
    publish_dir(staging, frames_root / vid)
    save_marker(task.partial_dir, vid, record)
    return record


@dataclass
class SplitSummary:
    """What one converter run did to one split folder."""

    name: str
    path: Path
    status: str  # "written" or "already complete (skipped)"
    videos: int = 0
    expressions: int = 0
    labelled_frames: int = 0
    resumed_videos: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = f"{self.name}: {self.path} {self.status}"
        if self.status == "written":
            text += f": {self.videos} videos, {self.expressions} expressions, {self.labelled_frames} labelled frames"
            if self.resumed_videos:
                text += f" ({self.resumed_videos} videos kept from an interrupted run)"
        return text


def prepare_a2d(
    root: str | Path,
    out: str | Path,
    splits: Iterable[str] = ("test", "train"),
    workers: int = 1,
    overwrite: bool = False,
) -> tuple[list[SplitSummary], list[str]]:
    """Convert an A2D-Sentences release into ``<out>/A2D_SUBSET/{NORM,train}`` (layout 3.1).

    Args:
        root: the release folder (holding ``Release/`` and ``text_annotations/``).
        out: the data root (``datasets/``).
        splits: any of "test" (-> ``NORM``) and "train" (-> ``train``).
        workers: processes converting videos in parallel.
        overwrite: rebuild splits that are already complete (the old folder is replaced only at the end).

    Returns:
        one summary per split, and the warnings about the release's counts (also logged).
    """
    release = A2DRelease.open(root)
    warnings = release.count_warnings()
    for warning in warnings:
        logger.warning(warning)
    if release.dropped_rows:
        logger.info(
            "dropped %d %r row(s) (lines %s)",
            len(release.dropped_rows),
            BAD_INSTANCE_ID,
            release.dropped_rows,
        )
    summaries = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: expected one of {sorted(SPLITS)}")
        folder, expressions_name = SPLITS[split]
        stage = StagedSplit(
            Path(out) / "A2D_SUBSET" / folder, {"converter": "a2d", "split": split}, overwrite
        )
        if stage.complete():
            summaries.append(SplitSummary(folder, stage.final, "already complete (skipped)"))
            continue
        summaries.append(_convert_split(release, split, stage, expressions_name, workers))
    return summaries, warnings


def _convert_split(
    release: A2DRelease, split: str, stage: StagedSplit, expressions_name: str, workers: int
) -> SplitSummary:
    videos, sentences = release.split_videos(split)
    if not videos:
        raise ReleaseError(f"{release.root}: no {split} video with sentences in Release/videoset.csv")
    stage.begin()
    records: dict[str, dict[str, Any]] = {}
    tasks = []
    for video in videos:
        record = stage.finished_record(video.vid)
        if record is not None:
            records[video.vid] = record
            continue
        named = tuple(object_ids(sentences[video.vid]))
        tasks.append(
            A2DVideoTask(
                video,
                named,
                release.clip_path(video.vid),
                release.annotation_dir(video.vid),
                stage.partial,
                expressions_name,
            )
        )
    resumed = len(records)
    if resumed:
        logger.info(
            "%s: %d of %d videos already converted by an earlier run", stage.final.name, resumed, len(videos)
        )
    for record in run_tasks(convert_a2d_video, tasks, workers, f"A2D {split}"):
        records[record["video"]] = record
    summary = SplitSummary(stage.final.name, stage.final, "written", resumed_videos=resumed)
    writer = LayoutWriter(stage.partial, expressions_name, flavour="a2d")
    instances_info: dict[str, Any] = OrderedDict()
    mismatched = 0
    for video in videos:
        record = records[video.vid]
        mismatched += record["num_frames"] != video.total_frames
        writer.add_video(video.vid, record["num_frames"])
        for expression in record["expressions"]:
            writer.add_expression(video.vid, expression["obj"], expression["sentence"], expression["labels"])
            summary.expressions += 1
            summary.labelled_frames += len(expression["labels"])
            if not expression["labels"]:
                summary.notes.append(
                    f"video {video.vid}, instance {expression['instance']}: no mask in any annotated frame"
                )
        instances_info[video.vid] = {
            "label": record["label"],
            "annotated_frames": [frame_id(f) for f in record["annotated_frames"]],
            "instances": {
                obj: {"actor_action": entry["actor_action"], "frames": [frame_id(f) for f in entry["frames"]]}
                for obj, entry in record["instances"].items()
            },
        }
    summary.videos = len(videos)
    if mismatched:
        summary.notes.append(
            f"{mismatched} clips decode to a frame count other than videoset.csv's (decoded count used)"
        )
    for note in summary.notes:
        logger.warning("%s: %s", stage.final.name, note)
    writer.close()
    write_json_atomic(stage.partial / INSTANCES_FILE, instances_info)
    stage.finish()
    return summary
