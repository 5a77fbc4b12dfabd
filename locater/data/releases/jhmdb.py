"""JHMDB-Sentences from its original release (docs/data.md) to layout 3.1's JHMDB flavour (``<out>/JHMDB``).

Release files read::

    Rename_Images/<action>/<video>/<00001>.png        frames, 1-indexed
    puppet_mask/<action>/<video>/puppet_mask.mat       part_mask: H x W x T puppet masks
    jhmdb_annotation.txt                               CSV with header video_id,query (928 rows)

The number of frames of a video is ``min(frames, T)``: frames past the last mask are dropped (they cannot be
scored), masks past the last frame are ignored. Frames are hard-linked (copied across file systems), never
re-encoded. JHMDB has one actor per video, so the object id is ``"0"``.

Which frames are scored (``labels``) is a choice:

* ``"all"``: every frame (every frame has a mask);
* a list file: our own (:func:`make_scored_frames`, 3 random frames per video from a fixed seed, written by
  ``tools/data/prepare_jhmdb.py --make-scored-list``) or MTTR's ``jhmdb_sentences_samples_metadata.json``
  (rows ``[video_id, frame_path, mask_path, num_frames, query]``), so numbers are comparable with the field.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from locater.data.frames import image_size
from locater.data.layout import FRAME_DIRS, LayoutWriter, frame_id
from locater.data.releases.a2d import SplitSummary, sentence_rows
from locater.data.releases.staging import ReleaseError, StagedSplit, link_or_copy, run_tasks, save_marker
from locater.files import publish_dir, write_json_atomic, write_text_atomic
from locater.paths import safe_component

logger = logging.getLogger(__name__)

EXPECTED_SENTENCES = 928
SENTENCES_HEADER = ["video_id", "query"]
OBJECT_ID = "0"
EXPRESSIONS_NAME = "JHMDB_test_expressions.json"
FRAMES_PER_VIDEO = 3
SCORED_LIST_FORMAT = "locater-jhmdb-scored-frames"


@dataclass(frozen=True)
class JHMDBVideo:
    """One annotated video of the release: ``video_id`` is ``action/video`` (layout 3.1's id)."""

    video_id: str
    name: str
    sentence: str
    frame_dir: Path
    mask_file: Path


def read_jhmdb_sentences(path: Path) -> list[tuple[str, str, int]]:
    """Rows ``(video name, query, line number)`` of ``jhmdb_annotation.txt``."""
    rows = []
    seen: dict[str, int] = {}
    for line, row in sentence_rows(path, SENTENCES_HEADER):
        name, query = row[0].strip(), row[1].strip()
        if not name:
            raise ReleaseError(f"{path}: line {line}: empty video id")
        safe_component(name, "video id", f"{path}: line {line}")  # it becomes a folder of the output
        if not query:
            raise ReleaseError(f"{path}: line {line}: expression with no text (video {name})")
        if name in seen:
            raise ReleaseError(
                f"{path}: line {line}: video {name!r} already has a sentence (line {seen[name]}); "
                "layout 3.1 holds one expression per JHMDB video"
            )
        seen[name] = line
        rows.append((name, query, line))
    return rows


def open_jhmdb_release(root: str | Path) -> list[JHMDBVideo]:
    """The annotated videos of a JHMDB-Sentences release, in the sentence file's order."""
    root = Path(root)
    if not root.is_dir():
        raise ReleaseError(f"JHMDB-Sentences folder not found: {root}")
    sentence_file = root / "jhmdb_annotation.txt"
    rows = read_jhmdb_sentences(sentence_file)
    if len(rows) != EXPECTED_SENTENCES:
        logger.warning("%s has %d sentences, expected %d", sentence_file, len(rows), EXPECTED_SENTENCES)
    images = root / "Rename_Images"
    if not images.is_dir():
        raise ReleaseError(f"frame folder missing: {images}")
    actions: dict[str, list[str]] = {}
    for video_dir in sorted(p for p in images.glob("*/*") if p.is_dir()):
        actions.setdefault(video_dir.name, []).append(video_dir.parent.name)
    videos = []
    for name, query, line in rows:
        found = actions.get(name, [])
        if not found:
            raise ReleaseError(
                f"{sentence_file}: line {line}: no frame folder {images}/<action>/{name} for video {name!r}"
            )
        if len(found) > 1:
            raise ReleaseError(
                f"{sentence_file}: line {line}: video {name!r} is in several actions {found} of {images}"
            )
        action = found[0]
        videos.append(
            JHMDBVideo(
                video_id=f"{action}/{name}",
                name=name,
                sentence=query,
                frame_dir=images / action / name,
                mask_file=root / "puppet_mask" / action / name / "puppet_mask.mat",
            )
        )
    return videos


def read_puppet_masks(path: Path) -> np.ndarray:
    """``part_mask`` of a ``puppet_mask.mat`` as a ``T x H x W`` bool array (stored ``H x W x T``)."""
    if not path.is_file():
        raise ReleaseError(f"mask file missing: {path}")
    try:
        content = scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises several types for corrupt files
        raise ReleaseError(f"{path}: cannot read MAT file ({error})") from error
    if "part_mask" not in content:
        raise ReleaseError(f"{path}: no 'part_mask' variable")
    masks = np.asarray(content["part_mask"])
    if masks.ndim == 2:
        masks = masks[:, :, None]
    if masks.ndim != 3 or masks.shape[2] == 0:
        raise ReleaseError(f"{path}: part_mask has shape {masks.shape}, expected H x W x T")
    return np.moveaxis(masks > 0, 2, 0)


def list_frames(frame_dir: Path) -> int:
    """Number of frames of a ``<00001>.png ...`` folder; a gap in the numbering is a missing frame."""
    numbers = []
    for path in frame_dir.glob("*.png"):
        if not path.stem.isdigit():
            raise ReleaseError(f"{path}: frame names must be 1-indexed numbers (00001.png)")
        numbers.append(int(path.stem))
    if not numbers:
        raise ReleaseError(f"{frame_dir}: no .png frames")
    count = max(numbers)
    missing = sorted(set(range(1, count + 1)) - set(numbers))
    if missing:
        raise ReleaseError(
            f"frame file missing: {frame_dir / (frame_id(missing[0]) + '.png')} ({len(missing)} missing)"
        )
    return count


def usable_frames(video: JHMDBVideo) -> tuple[int, np.ndarray]:
    """``(n, masks)``: frames that have a mask, and the ``n x H x W`` masks."""
    masks = read_puppet_masks(video.mask_file)
    num_frames = min(list_frames(video.frame_dir), masks.shape[0])
    return num_frames, masks[:num_frames]


# ---------------------------------------------------------------------------------------------- scored frames
def make_scored_frames(
    frame_counts: dict[str, int], seed: int = 0, per_video: int = FRAMES_PER_VIDEO
) -> dict:
    """Our fixed list: ``per_video`` distinct random frames of each video, sorted, from ``seed``.

    Each video draws from its own generator ``default_rng([seed, crc32(video_id)])``, so a video's frames do not
    depend on which other videos are present.
    """
    videos = OrderedDict()
    for video_id in sorted(frame_counts):
        count = frame_counts[video_id]
        rng = np.random.default_rng([seed, zlib.crc32(video_id.encode())])
        chosen = rng.choice(np.arange(1, count + 1), size=min(per_video, count), replace=False)
        videos[video_id] = sorted(int(f) for f in chosen)
    return {"format": SCORED_LIST_FORMAT, "seed": seed, "frames_per_video": per_video, "videos": videos}


def read_scored_frames(path: Path, videos: list[JHMDBVideo]) -> dict[str, list[int]]:
    """Scored frames per ``action/video`` from our list or from MTTR's samples metadata (auto-detected)."""
    if not path.is_file():
        raise ReleaseError(f"scored-frame list missing: {path}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReleaseError(f"{path}: malformed JSON ({error})") from error
    by_name = {video.name: video.video_id for video in videos}
    scored: dict[str, set[int]] = {}
    if isinstance(data, dict) and data.get("format") == SCORED_LIST_FORMAT:
        if not isinstance(data.get("videos"), dict):
            raise ReleaseError(f"{path}: malformed JSON ('videos' must be an object)")
        for video_id, frames in data["videos"].items():
            if not isinstance(frames, list) or not all(isinstance(f, int) and f >= 1 for f in frames):
                raise ReleaseError(f"{path}: video {video_id!r}: frames must be a list of 1-indexed integers")
            scored[video_id] = set(frames)
    elif isinstance(data, list):  # MTTR: [video_id, frame_path, mask_path, num_frames, query] per sample
        for index, row in enumerate(data):
            if not (
                isinstance(row, list)
                and len(row) == 5
                and isinstance(row[0], str)
                and isinstance(row[1], str)
            ):
                raise ReleaseError(
                    f"{path}: row {index}: expected [video_id, frame_path, mask_path, num_frames, query], got {row!r}"
                )
            stem = Path(row[1]).stem
            if not stem.isdigit() or int(stem) < 1:
                raise ReleaseError(
                    f"{path}: row {index}: frame path {row[1]!r} does not end in a frame number"
                )
            if row[0] not in by_name:
                raise ReleaseError(f"{path}: row {index}: video {row[0]!r} is not in the release's sentences")
            scored.setdefault(by_name[row[0]], set()).add(int(stem))
    else:
        raise ReleaseError(
            f"{path}: malformed JSON: neither our scored-frame list (format {SCORED_LIST_FORMAT!r}) "
            "nor MTTR's samples metadata (a list of rows)"
        )
    unknown = sorted(set(scored) - {video.video_id for video in videos})
    if unknown:
        raise ReleaseError(f"{path}: video {unknown[0]!r} is not in the release ({len(unknown)} such videos)")
    missing = [video.video_id for video in videos if video.video_id not in scored]
    if missing:
        raise ReleaseError(f"{path}: no scored frames for {len(missing)} video(s), e.g. {missing[0]!r}")
    return {video_id: sorted(frames) for video_id, frames in scored.items()}


def scored_option(scored: str | Path, videos: list[JHMDBVideo]) -> tuple[dict[str, list[int]] | None, dict]:
    """The scored frames (``None``: all) and a description kept with the output (file digest included)."""
    if str(scored) == "all":
        return None, {"scored_frames": "all"}
    path = Path(scored)
    frames = read_scored_frames(path, videos)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return frames, {"scored_frames": str(path), "sha256": digest}


# ---------------------------------------------------------------------------------------------- conversion
@dataclass(frozen=True)
class JHMDBVideoTask:
    """Everything one worker needs to convert one video (picklable)."""

    video: JHMDBVideo
    scored: tuple[int, ...] | None  # None: every frame
    partial_dir: Path
    scored_source: str = "all"  # where ``scored`` comes from, for error messages


def convert_jhmdb_video(task: JHMDBVideoTask) -> dict[str, Any]:
    """Link the frames, write the scored masks and the finished-video marker; returns the video's record."""
    video = task.video
    num_frames, masks = usable_frames(video)
    labels = list(range(1, num_frames + 1)) if task.scored is None else list(task.scored)
    past = [f for f in labels if f > num_frames]
    if past:
        raise ReleaseError(
            f"{task.scored_source}: video {video.video_id}: scored frame {past[0]} is past its {num_frames} "
            f"frames with a mask ({video.frame_dir}, {video.mask_file})"
        )
    mask_size = masks.shape[1:]
    frames_root = task.partial_dir / FRAME_DIRS["jhmdb"]
    staging = frames_root / video.video_id.split("/")[0] / f".{video.name}.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for number in range(1, num_frames + 1):
        source = video.frame_dir / f"{frame_id(number)}.png"
        size = image_size(source)
        if size != mask_size:
            raise ReleaseError(
                f"{source}: frame is {size[0]} x {size[1]} (H x W) but the masks of {video.mask_file} are "
                f"{mask_size[0]} x {mask_size[1]}"
            )
        link_or_copy(source, staging / source.name)
    writer = LayoutWriter(task.partial_dir, EXPRESSIONS_NAME, flavour="jhmdb")
    for number in labels:
        writer.write_mask(video.video_id, OBJECT_ID, number, masks[number - 1])
    record = {"video": video.video_id, "num_frames": num_frames, "sentence": video.sentence, "labels": labels}
    publish_dir(staging, frames_root / video.video_id)
    save_marker(task.partial_dir, video.video_id, record)
    return record


def prepare_jhmdb(
    root: str | Path,
    out: str | Path,
    scored: str | Path = "all",
    workers: int = 1,
    overwrite: bool = False,
) -> SplitSummary:
    """Convert a JHMDB-Sentences release into ``<out>/JHMDB`` (layout 3.1, JHMDB flavour).

    Args:
        root: the release folder (``Rename_Images/``, ``puppet_mask/``, ``jhmdb_annotation.txt``).
        out: the data root (``datasets/``).
        scored: ``"all"`` or the path of a scored-frame list (ours or MTTR's samples metadata).
        workers: processes converting videos in parallel.
        overwrite: rebuild a complete ``JHMDB`` folder (the old one is replaced only at the end).
    """
    videos = open_jhmdb_release(root)
    frames, description = scored_option(scored, videos)
    stage = StagedSplit(Path(out) / "JHMDB", {"converter": "jhmdb", **description}, overwrite)
    if stage.complete():
        return SplitSummary("JHMDB", stage.final, "already complete (skipped)")
    stage.begin()
    records: dict[str, dict[str, Any]] = {}
    tasks = []
    for video in videos:
        record = stage.finished_record(video.video_id)
        if record is not None:
            records[video.video_id] = record
        else:
            chosen = None if frames is None else tuple(frames[video.video_id])
            tasks.append(JHMDBVideoTask(video, chosen, stage.partial, str(scored)))
    summary = SplitSummary("JHMDB", stage.final, "written", resumed_videos=len(records))
    for record in run_tasks(convert_jhmdb_video, tasks, workers, "JHMDB"):
        records[record["video"]] = record
    writer = LayoutWriter(stage.partial, EXPRESSIONS_NAME, flavour="jhmdb")
    for video in videos:
        record = records[video.video_id]
        writer.add_video(video.video_id, record["num_frames"])
        writer.add_expression(video.video_id, OBJECT_ID, record["sentence"], record["labels"])
        summary.labelled_frames += len(record["labels"])
    summary.videos = summary.expressions = len(videos)
    writer.close()
    write_json_atomic(stage.partial / "conversion.json", {"source": "JHMDB-Sentences release", **description})
    stage.finish()
    return summary


def write_scored_list(
    root: str | Path, path: str | Path, seed: int = 0, per_video: int = FRAMES_PER_VIDEO
) -> int:
    """Generate our scored-frame list from a release and write it to ``path``; returns the number of videos."""
    videos = open_jhmdb_release(root)
    counts = {video.video_id: usable_frames(video)[0] for video in videos}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, scored_list_text(make_scored_frames(counts, seed, per_video)))
    return len(counts)


def scored_list_text(data: dict) -> str:
    """JSON text of a scored-frame list with one video a line (readable diffs when it is committed)."""
    head = json.dumps({key: value for key, value in data.items() if key != "videos"})[:-1]
    body = ",\n".join(
        f"  {json.dumps(video)}: {json.dumps(frames)}" for video, frames in data["videos"].items()
    )
    return f'{head}, "videos": {{\n{body}\n}}}}\n'
