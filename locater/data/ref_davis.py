"""Ref-DAVIS17 (docs/data.md): DAVIS-2017 frames and annotations with the Ref-DAVIS17 sentences, read as released.

Layout: the DAVIS-2017 trainval archive (480p), optionally the DAVIS-2017 unsupervised trainval archive, and the
Ref-DAVIS17 sentence archive, unpacked side by side into one folder::

    <root>/DAVIS/JPEGImages/480p/<video>/<frame>.jpg
    <root>/DAVIS/Annotations/480p/<video>/<frame>.png                palette PNG, pixel value = object id
    <root>/DAVIS/Annotations_unsupervised/480p/<video>/<frame>.png   the unsupervised set's objects (optional)
    <root>/DAVIS/ImageSets/2017/{train,val}.txt                      one video a line
    <root>/davis_text_annotations/Davis17_annot1.txt                 annotator 1, first-frame sentences
    <root>/davis_text_annotations/Davis17_annot1_full_video.txt      annotator 1, full-video sentences
    <root>/davis_text_annotations/Davis17_annot2.txt                 annotator 2, first-frame sentences
    <root>/davis_text_annotations/Davis17_annot2_full_video.txt      annotator 2, full-video sentences

A sentence line is ``<video> <object id> "<sentence>"``; the object id is the pixel value of the object in
``Annotations/480p`` (the semi-supervised set). Files are UTF-8; a file that is not valid UTF-8 is read as
Latin-1 (annotator 2's files are, and peers read them so), which is logged. Three video names are misspelt in
the sentence files and are corrected (:data:`VIDEO_NAME_FIXES`, as ReferFormer's conversion does); any other name
that is in no ``ImageSets/2017`` list is an error.

Each (video, sentence set, object) is one :class:`~locater.data.layout.ExpressionSample` with the id
``annot<1|2>-<first|full>-<object id>``; every frame of the video is labelled (DAVIS annotates all of them).
Nothing is converted: the reader serves the evaluator directly.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from locater.data.frames import DataError, check_mask_size, read_id_map, read_rgb
from locater.data.indices import global_frame_numbers
from locater.data.layout import ExpressionSample
from locater.paths import safe_component

logger = logging.getLogger(__name__)

RESOLUTION = "480p"
IMAGE_SETS = ("train", "val")
# misspelt video names of the sentence files -> the DAVIS names
VIDEO_NAME_FIXES = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}

EXPECTED_LAYOUT = """expected layout:
  <root>/DAVIS/JPEGImages/480p/<video>/<frame>.jpg
  <root>/DAVIS/Annotations/480p/<video>/<frame>.png      (palette PNG, pixel value = object id)
  <root>/DAVIS/ImageSets/2017/<split>.txt
  <root>/davis_text_annotations/Davis17_annot{1,2}.txt and Davis17_annot{1,2}_full_video.txt
  (<root>/DAVIS/Annotations_unsupervised/480p/ for the toolkit's unsupervised protocol)"""


class RefDAVISError(DataError):
    """A DAVIS-2017 or Ref-DAVIS17 file is missing or malformed; the message names it."""


@dataclass(frozen=True)
class SentenceSet:
    """One of the four Ref-DAVIS17 sentence files: an annotator (1, 2) and a kind (first-frame or full-video)."""

    annotator: int
    kind: str  # "first": written from the first frame only; "full": from the whole video
    file_name: str

    @property
    def name(self) -> str:
        """``annot1-first``, ``annot1-full``, ``annot2-first`` or ``annot2-full``."""
        return f"annot{self.annotator}-{self.kind}"


SENTENCE_SETS = (
    SentenceSet(1, "first", "Davis17_annot1.txt"),
    SentenceSet(1, "full", "Davis17_annot1_full_video.txt"),
    SentenceSet(2, "first", "Davis17_annot2.txt"),
    SentenceSet(2, "full", "Davis17_annot2_full_video.txt"),
)


@dataclass(frozen=True)
class Sentence:
    """One line of a sentence file."""

    video: str
    object_id: int
    text: str
    line: int


def _read_text(path: Path) -> str:
    """UTF-8 (a leading BOM dropped), or Latin-1 when the bytes are not UTF-8 (logged)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        logger.info("%s is not UTF-8: read as Latin-1", path)
        return data.decode("latin-1")


def read_sentence_file(path: str | Path, known_videos: set[str]) -> dict[str, dict[int, Sentence]]:
    """``{video: {object id: Sentence}}`` of one Ref-DAVIS17 sentence file.

    Blank lines are allowed; every other line must be ``<video> <object id> "<sentence>"``.

    Raises:
        RefDAVISError: naming the file and line: a malformed line, an object id outside 1..254, an empty or
            unquoted sentence, a video in no ``ImageSets/2017`` list, an object described twice.
    """
    path = Path(path)
    if not path.is_file():
        raise RefDAVISError(f"sentence file missing: {path}\n{EXPECTED_LAYOUT}")
    sentences: dict[str, dict[int, Sentence]] = {}
    for number, raw in enumerate(_read_text(path).splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"{path}, line {number}"
        parts = line.split(maxsplit=2)
        if len(parts) != 3:
            raise RefDAVISError(f"{where}: expected '<video> <object id> \"<sentence>\"', got {line!r}")
        video, object_text, quoted = parts
        if video in VIDEO_NAME_FIXES:
            logger.debug("%s: video name %r read as %r", where, video, VIDEO_NAME_FIXES[video])
            video = VIDEO_NAME_FIXES[video]
        safe_component(video, "video name", where)
        if video not in known_videos:
            raise RefDAVISError(f"{where}: video {video!r} is in no DAVIS/ImageSets/2017 list")
        try:
            object_id = int(object_text)
        except ValueError:
            object_id = -1
        if not 1 <= object_id <= 254:
            raise RefDAVISError(f"{where}: object id must be an integer in 1..254, got {object_text!r}")
        if len(quoted) < 2 or not (quoted.startswith('"') and quoted.endswith('"')):
            raise RefDAVISError(f"{where}: the sentence must be in double quotes, got {quoted!r}")
        text = " ".join(quoted[1:-1].split())
        if not text:
            raise RefDAVISError(f"{where}: empty sentence")
        earlier = sentences.setdefault(video, {}).get(object_id)
        if earlier is not None:
            raise RefDAVISError(
                f"{where}: video {video!r}, object {object_id} already described on line {earlier.line}"
            )
        sentences[video][object_id] = Sentence(video, object_id, text, number)
    return sentences


def read_image_set(path: Path) -> list[str]:
    """The videos of an ``ImageSets/2017/<split>.txt``, in file order."""
    if not path.is_file():
        raise RefDAVISError(f"image set missing: {path}\n{EXPECTED_LAYOUT}")
    videos = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    for video in videos:
        safe_component(video, "video name", path)
    if len(set(videos)) != len(videos):
        raise RefDAVISError(f"{path}: a video is listed twice")
    return videos


@dataclass
class RefDAVIS:
    """The Ref-DAVIS17 expressions of one DAVIS-2017 image set (``val`` or ``train``).

    Attributes:
        samples: one per (video, sentence set, object), videos in image-set order, then the sets in
            :data:`SENTENCE_SETS` order, then object ids ascending.
        object_ids: ``(video, expression id) -> object id`` in ``Annotations/480p``.
        sentence_set: ``(video, expression id) -> SentenceSet``.
        unsupervised_objects: ``video -> number of objects`` of ``Annotations_unsupervised`` (the largest id of
            its first frame, as the DAVIS toolkit counts them); empty unless opened with ``unsupervised=True``.
    """

    root: Path
    split: str
    samples: list[ExpressionSample] = field(default_factory=list)
    object_ids: dict[tuple[str, str], int] = field(default_factory=dict)
    sentence_set: dict[tuple[str, str], SentenceSet] = field(default_factory=dict)
    unsupervised_objects: dict[str, int] = field(default_factory=dict)
    _cached: tuple[Path, np.ndarray] | None = field(default=None, repr=False)

    @property
    def davis(self) -> Path:
        return self.root / "DAVIS"

    @property
    def text_dir(self) -> Path:
        return self.root / "davis_text_annotations"

    @classmethod
    def open(cls, root: str | Path, split: str = "val", unsupervised: bool = False) -> RefDAVIS:
        """Read the image set, the four sentence files and every annotation of the set's videos.

        Each annotation must exist and have its frame's size, and every described object must be drawn in at
        least one annotation of its video. With ``unsupervised``, the ``Annotations_unsupervised`` files are
        checked the same way and their objects counted.

        Raises:
            RefDAVISError: naming the file (and line) and the problem.
        """
        if split not in IMAGE_SETS:
            raise RefDAVISError(f"unknown DAVIS-2017 image set {split!r}: expected one of {IMAGE_SETS}")
        data = cls(root=Path(root), split=split)
        for folder in (data.davis / "JPEGImages" / RESOLUTION, data.davis / "Annotations" / RESOLUTION):
            if not folder.is_dir():
                raise RefDAVISError(f"{folder}: folder missing\n{EXPECTED_LAYOUT}")
        sets_dir = data.davis / "ImageSets" / "2017"
        videos = read_image_set(sets_dir / f"{split}.txt")
        known = {
            v
            for name in IMAGE_SETS
            if (sets_dir / f"{name}.txt").is_file()
            for v in read_image_set(sets_dir / f"{name}.txt")
        }
        files = {s: read_sentence_file(data.text_dir / s.file_name, known) for s in SENTENCE_SETS}
        for video in videos:
            frames = data._frames(video)
            present = data._scan(video, frames, "Annotations")
            for sentence_set, sentences in files.items():
                if not sentences.get(video):
                    raise RefDAVISError(
                        f"{data.text_dir / sentence_set.file_name}: no sentence for video {video!r} of "
                        f"{sets_dir / split}.txt"
                    )
                data._add_expressions(video, frames, sentence_set, sentences[video], present)
            if unsupervised:
                first = data._scan(video, frames, "Annotations_unsupervised", first_only=True)
                data._scan(video, frames, "Annotations_unsupervised")
                data.unsupervised_objects[video] = max(first, default=0)
        return data

    def _add_expressions(
        self,
        video: str,
        frames: list[str],
        sentence_set: SentenceSet,
        sentences: dict[int, Sentence],
        present: set[int],
    ) -> None:
        """One sample per sentence of a video in one set, by object id; an object drawn nowhere is an error."""
        for object_id, sentence in sorted(sentences.items()):
            if object_id not in present:
                raise RefDAVISError(
                    f"{self.text_dir / sentence_set.file_name}, line {sentence.line}: video {video!r}, object "
                    f"{object_id} has no mask in any annotation of {self.davis / 'Annotations' / RESOLUTION / video}"
                )
            expression = f"{sentence_set.name}-{object_id}"
            self.samples.append(
                ExpressionSample(
                    video=video,
                    expression=expression,
                    sentence=sentence.text.lower(),
                    frames=frames,
                    labels=list(frames),
                    num_frames=len(frames),
                    raw_sentence=sentence.text,
                )
            )
            self.object_ids[(video, expression)] = object_id
            self.sentence_set[(video, expression)] = sentence_set

    def _frames(self, video: str) -> list[str]:
        folder = self.davis / "JPEGImages" / RESOLUTION / video
        if not folder.is_dir():
            raise RefDAVISError(f"{folder}: frame folder missing")
        frames = sorted(path.stem for path in folder.glob("*.jpg"))
        if not frames:
            raise RefDAVISError(f"{folder}: no .jpg frame")
        return frames

    def _scan(self, video: str, frames: list[str], annotations: str, first_only: bool = False) -> set[int]:
        """The object ids (0 and 255 left out) drawn in a video's annotations; each file checked for its size."""
        folder = self.davis / annotations / RESOLUTION
        if not folder.is_dir():
            raise RefDAVISError(f"{folder}: folder missing\n{EXPECTED_LAYOUT}")
        present: set[int] = set()
        for frame in frames[:1] if first_only else frames:
            present.update(int(v) for v in np.unique(self._id_map(video, frame, annotations)))
        return present - {0, 255}

    def _id_map(self, video: str, frame: str, annotations: str) -> np.ndarray:
        path = self.davis / annotations / RESOLUTION / video / f"{frame}.png"
        if self._cached is not None and self._cached[0] == path:
            return self._cached[1]
        try:
            ids = read_id_map(path)
        except DataError as error:
            raise RefDAVISError(str(error)) from error
        check_mask_size(ids, path, self.frame_path(video, frame), error=RefDAVISError)
        self._cached = (path, ids)
        return ids

    def frame_path(self, video: str, frame: str) -> Path:
        return self.davis / "JPEGImages" / RESOLUTION / video / f"{frame}.jpg"

    def load_frame(self, video: str, frame: str) -> np.ndarray:
        """``H x W x 3`` uint8 RGB."""
        try:
            return read_rgb(self.frame_path(video, frame))
        except DataError as error:
            raise RefDAVISError(str(error)) from error

    def load_mask(self, video: str, expression: str, frame: str) -> np.ndarray:
        """``H x W`` bool mask of the expression's object in ``Annotations/480p`` (255 counts as background, as in
        the DAVIS toolkit)."""
        return self._id_map(video, frame, "Annotations") == self.object_ids[(video, expression)]

    def load_unsupervised_objects(self, video: str, frame: str) -> np.ndarray:
        """``M x H x W`` bool masks of the ``Annotations_unsupervised`` objects 1..M of a frame (M from
        :attr:`unsupervised_objects`)."""
        if video not in self.unsupervised_objects:
            raise RefDAVISError(f"{video}: the unsupervised annotations were not opened (unsupervised=True)")
        ids = self._id_map(video, frame, "Annotations_unsupervised")
        count = self.unsupervised_objects[video]
        return ids[None] == np.arange(1, count + 1, dtype=ids.dtype)[:, None, None]

    def global_frames(self, sample: ExpressionSample, num_global_frames: int) -> list[str]:
        """Frames at the centres of ``num_global_frames`` segments of the video (the official rule)."""
        return [sample.frames[n - 1] for n in global_frame_numbers(len(sample.frames), num_global_frames)]

    def group(self, video: str, expression: str) -> str:
        """The sentence set of an expression (``annot1-full`` ...): the ``split`` of its J&F records."""
        return self.sentence_set[(video, expression)].name

    def videos(self) -> OrderedDict[str, list[ExpressionSample]]:
        """Samples grouped by video, in image-set order."""
        grouped: OrderedDict[str, list[ExpressionSample]] = OrderedDict()
        for sample in self.samples:
            grouped.setdefault(sample.video, []).append(sample)
        return grouped
