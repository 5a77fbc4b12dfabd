"""Ref-YouTube-VOS (docs/data.md): reader for train/valid and the valid-set submission writer.

Layout::

    <root>/{train,valid}/JPEGImages/<video>/<frame>.jpg
    <root>/train/Annotations/<video>/<frame>.png             palette PNG, pixel value = object id
    <root>/meta_expressions/{train,valid}/meta_expressions.json
        {"videos": {video: {"expressions": {exp_id: {"exp": sentence, "obj_id": "1"}}, "frames": [...]}}}

Samples are :class:`~locater.data.layout.ExpressionSample` as for layout 3.1: ``frames`` are the video's frame
names from the meta file, ``labels`` are every frame on train (each has an annotation PNG; the object may be
absent, giving an empty mask) and none on valid. The global frames are placed over the listed frames (the
official rule applied to ``len(frames)``).

The submission is a zip of ``Annotations/<video>/<exp_id>/<frame>.png`` (0/255) covering every (video,
expression, frame) of the valid meta file; :class:`SubmissionWriter` refuses to write an incomplete one.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from locater.data.frames import DataError, check_mask_size, encode_png, read_id_map, read_rgb
from locater.data.indices import global_frame_numbers, random_global_frame_numbers
from locater.data.layout import ExpressionSample
from locater.files import replace_file, temporary_path
from locater.paths import safe_archive_name, safe_component

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid")
ZIP_DATE = (2021, 1, 1, 0, 0, 0)  # fixed member time stamps: the same masks give the same zip bytes

EXPECTED_LAYOUT = """expected layout:
  <root>/<split>/JPEGImages/<video>/<frame>.jpg
  <root>/train/Annotations/<video>/<frame>.png      (palette PNG, pixel value = object id)
  <root>/meta_expressions/<split>/meta_expressions.json"""


class YTVOSError(DataError):
    """A Ref-YouTube-VOS folder or file is missing or malformed; the message names it."""


class SubmissionError(YTVOSError):
    """A submission is incomplete or gets an entry the meta file does not list."""


def meta_path(root: str | Path, split: str) -> Path:
    """The meta file of a split: ``<root>/meta_expressions/<split>/meta_expressions.json``.

    ``<root>/<split>/meta_expressions.json`` is accepted too.
    """
    root = Path(root)
    candidates = [
        root / "meta_expressions" / split / "meta_expressions.json",
        root / split / "meta_expressions.json",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise YTVOSError(f"Ref-YouTube-VOS meta file not found (tried {tried})\n{EXPECTED_LAYOUT}")


@dataclass
class YTVOSSplit:
    """One Ref-YouTube-VOS split (``train`` with masks, ``valid`` without)."""

    root: Path
    split: str
    samples: list[ExpressionSample] = field(default_factory=list)
    object_ids: dict[tuple[str, str], int] = field(default_factory=dict)
    meta_file: Path | None = None  # the meta file the ids come from (named by errors)

    @classmethod
    def open(cls, root: str | Path, split: str = "train") -> YTVOSSplit:
        """Read the meta file of ``split``; raises :class:`YTVOSError` naming the file on any problem."""
        if split not in SPLITS:
            raise YTVOSError(f"unknown Ref-YouTube-VOS split {split!r}: expected one of {SPLITS}")
        root = Path(root)
        if not (root / split / "JPEGImages").is_dir():
            raise YTVOSError(f"{root / split / 'JPEGImages'}: folder missing\n{EXPECTED_LAYOUT}")
        path = meta_path(root, split)
        ytvos = cls(root=root, split=split, meta_file=path)
        ytvos.samples, ytvos.object_ids = _read_meta(path, with_objects=split == "train")
        return ytvos

    @property
    def has_masks(self) -> bool:
        return self.split == "train"

    def frame_path(self, video: str, frame: str) -> Path:
        return self.root / self.split / "JPEGImages" / video / f"{frame}.jpg"

    def annotation_path(self, video: str, frame: str) -> Path:
        return self.root / self.split / "Annotations" / video / f"{frame}.png"

    def load_frame(self, video: str, frame: str) -> np.ndarray:
        """``H x W x 3`` uint8 RGB."""
        try:
            return read_rgb(self.frame_path(video, frame))
        except DataError as error:
            raise YTVOSError(str(error)) from error

    def load_annotation(self, video: str, frame: str) -> np.ndarray:
        """``H x W`` object-id map of a frame (palette indices, or grey values for a mode-L PNG)."""
        if not self.has_masks:
            raise YTVOSError(f"the {self.split} split has no masks")
        try:
            return read_id_map(self.annotation_path(video, frame))
        except DataError as error:
            raise YTVOSError(str(error)) from error

    def _check_size(self, annotation: np.ndarray, video: str, frame: str) -> None:
        check_mask_size(
            annotation, self.annotation_path(video, frame), self.frame_path(video, frame), error=YTVOSError
        )

    def load_mask(self, video: str, expression: str, frame: str) -> np.ndarray:
        """``H x W`` bool mask of the object the expression refers to; :class:`YTVOSError` naming the annotation
        file when its size is not its frame's (it would otherwise be resized and scored without complaint)."""
        annotation = self.load_annotation(video, frame)
        self._check_size(annotation, video, frame)
        return annotation == self.object_ids[(video, expression)]

    def global_frames(self, sample: ExpressionSample, num_global_frames: int) -> list[str]:
        """Frames at the centres of ``num_global_frames`` segments of the listed frames."""
        return [sample.frames[n - 1] for n in global_frame_numbers(len(sample.frames), num_global_frames)]

    def random_global_frames(
        self, sample: ExpressionSample, num_global_frames: int, rng: np.random.Generator
    ) -> list[str]:
        """Training variant: one random listed frame inside each of the ``num_global_frames`` segments."""
        return [
            sample.frames[n - 1]
            for n in random_global_frame_numbers(len(sample.frames), num_global_frames, rng)
        ]

    def subset(self, videos: Iterable[str]) -> YTVOSSplit:
        """The split restricted to ``videos`` (the meta file's order kept); an id the meta file lacks is an
        error naming the meta file."""
        wanted = set(videos)
        missing = sorted(wanted - {sample.video for sample in self.samples})
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise YTVOSError(
                f"{self.meta_file}: {len(missing)} requested video(s) not in the meta file: {shown}"
            )
        samples = [sample for sample in self.samples if sample.video in wanted]
        object_ids = {key: value for key, value in self.object_ids.items() if key[0] in wanted}
        return YTVOSSplit(self.root, self.split, samples, object_ids, self.meta_file)

    def check_referred_objects(self) -> None:
        """Read every annotation of the split's videos once: each must exist, be a palette (or grey) PNG of its
        frame's size, and every expression's object must be drawn in at least one of them.

        Raises:
            YTVOSError: naming the annotation file (missing, undecodable, wrong size) or, for an object that no
                annotation holds, the meta file, video, expression and object id.
        """
        for video, samples in self.videos().items():
            present: set[int] = set()
            for frame in sorted(set().union(*(sample.labels for sample in samples))):
                annotation = self.load_annotation(video, frame)
                self._check_size(annotation, video, frame)
                present.update(int(value) for value in np.unique(annotation))
            for sample in samples:
                object_id = self.object_ids[(video, sample.expression)]
                if object_id not in present:
                    raise YTVOSError(
                        f"{self.meta_file}: video {video!r}, expression {sample.expression!r}: object "
                        f"{object_id} has no mask in any annotation of {self.root / self.split / 'Annotations' / video}"
                    )

    def videos(self) -> OrderedDict[str, list[ExpressionSample]]:
        """Samples grouped by video, in file order."""
        grouped: OrderedDict[str, list[ExpressionSample]] = OrderedDict()
        for sample in self.samples:
            grouped.setdefault(sample.video, []).append(sample)
        return grouped


def _read_meta(path: Path, with_objects: bool) -> tuple[list[ExpressionSample], dict[tuple[str, str], int]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise YTVOSError(f"{path}: malformed JSON ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("videos"), dict):
        raise YTVOSError(f"{path}: malformed JSON (expected {{'videos': {{...}}}})")
    samples, object_ids = [], {}
    for video, entry in data["videos"].items():
        where = f"{path}: video {video!r}"
        # ids become paths (frames, annotations) and zip member names: a ``../`` id would leave the folder
        safe_component(video, "video id", path)
        if not isinstance(entry, dict) or not isinstance(entry.get("frames"), list) or not entry["frames"]:
            raise YTVOSError(f"{where}: needs a non-empty 'frames' list")
        if not isinstance(entry.get("expressions"), dict):
            raise YTVOSError(f"{where}: needs an 'expressions' object")
        frames = sorted({safe_component(str(f), "frame name", where) for f in entry["frames"]})
        for exp_id, expression in entry["expressions"].items():
            here = f"{where}, expression {exp_id!r}"
            safe_component(str(exp_id), "expression id", where)
            sentence = expression.get("exp") if isinstance(expression, dict) else None
            if not isinstance(sentence, str) or not sentence.strip():
                raise YTVOSError(f"{here}: empty sentence")
            if with_objects:
                try:
                    object_ids[(video, str(exp_id))] = int(expression["obj_id"])
                except (KeyError, TypeError, ValueError) as error:
                    raise YTVOSError(f"{here}: needs an integer 'obj_id'") from error
            samples.append(
                ExpressionSample(
                    video=video,
                    expression=str(exp_id),
                    sentence=" ".join(sentence.lower().split()),
                    frames=frames,
                    labels=list(frames) if with_objects else [],
                    num_frames=len(frames),
                    raw_sentence=sentence,
                )
            )
    return samples, object_ids


class SubmissionWriter:
    """Writes the Ref-YouTube-VOS valid submission zip.

    Every (video, expression, frame) of ``split`` must be added exactly once; :meth:`close` writes the zip
    (atomically) only when none is missing, otherwise raises :class:`SubmissionError` listing what is missing
    and leaves no zip behind. Usable as a context manager (an exception inside discards the zip).

    Args:
        zip_path: the zip to write.
        split: the split whose meta file defines the expected entries (normally ``valid``).
    """

    def __init__(self, zip_path: str | Path, split: YTVOSSplit) -> None:
        self.zip_path = Path(zip_path)
        self.source = split.meta_file or split.root  # where the ids come from, named when one is unsafe
        self.expected = {
            (s.video, s.expression): set(s.frames) for s in split.samples
        }  # (video, exp_id) -> frame names
        self.written: set[tuple[str, str, str]] = set()
        self.zip_path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = temporary_path(self.zip_path)
        self.archive: zipfile.ZipFile | None = zipfile.ZipFile(self.tmp_path, "w", zipfile.ZIP_DEFLATED)

    def add(self, video: str, expression: str, frame: str, mask: np.ndarray) -> None:
        """Add the ``H x W`` bool (or 0/1) mask of one frame, stored as a 0/255 PNG."""
        array = np.asarray(mask)
        if array.ndim != 2:
            raise SubmissionError(
                f"{video}/{expression}/{frame}: expected an H x W mask, got shape {array.shape}"
            )
        self.add_png(video, expression, frame, encode_png(np.where(array > 0, 255, 0).astype(np.uint8)))

    def add_png(self, video: str, expression: str, frame: str, png: bytes) -> None:
        """Add one frame's mask already encoded as a 0/255 PNG (what :meth:`add` stores)."""
        if self.archive is None:
            raise SubmissionError(f"{self.zip_path}: writer already closed")
        key = (video, str(expression))
        if key not in self.expected:
            raise SubmissionError(
                f"{self.zip_path}: video {video!r}, expression {expression!r} not in the meta file"
            )
        if frame not in self.expected[key]:
            raise SubmissionError(f"{self.zip_path}: frame {frame!r} not listed for video {video!r}")
        if (video, key[1], frame) in self.written:
            raise SubmissionError(f"{self.zip_path}: {video}/{expression}/{frame} added twice")
        name = safe_archive_name("Annotations", video, str(expression), f"{frame}.png", source=self.source)
        info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        self.archive.writestr(info, png)
        self.written.add((video, key[1], frame))

    def missing(self) -> list[tuple[str, str, str]]:
        """The (video, expression, frame) entries not added yet, sorted."""
        return sorted(
            (video, exp, frame)
            for (video, exp), frames in self.expected.items()
            for frame in frames
            if (video, exp, frame) not in self.written
        )

    def close(self) -> Path:
        """Write the zip; :class:`SubmissionError` (and no zip) if any entry is missing."""
        if self.archive is None:
            raise SubmissionError(f"{self.zip_path}: writer already closed")
        self.archive.close()
        self.archive = None
        missing = self.missing()
        if missing:
            self.tmp_path.unlink(missing_ok=True)
            shown = ", ".join("/".join(m) for m in missing[:10])
            raise SubmissionError(
                f"{self.zip_path}: not written, {len(missing)} of "
                f"{sum(len(f) for f in self.expected.values())} masks missing ({shown}{' ...' if len(missing) > 10 else ''})"
            )
        replace_file(self.tmp_path, self.zip_path)
        logger.info("wrote %s (%d masks)", self.zip_path, len(self.written))
        return self.zip_path

    def discard(self) -> None:
        """Drop the partial zip."""
        if self.archive is not None:
            self.archive.close()
            self.archive = None
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> SubmissionWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
