"""The Locater test layout (DESIGN §3.1): the one place that reads and writes it.

A2D flavour (``A2D_SUBSET/<TYPE>/``, also spelled ``A2D_SUBSET/A2D_<TYPE>/``)::

    allPngs320H/<video>/<00001>.png            frames, 1-indexed, 5 digits
    mask/<video>_<obj>_<frame>.pth             torch-saved H x W mask of one (video, expression, frame)
    vid_frame_dict.pth                         {video: number of frames}   (or vid_frames_dict.pth)
    <PREFIX>_test_expressions.json             {video: {"frames": [...], "expressions": {obj: {"exp", "labels"}}}}

JHMDB flavour (``JHMDB/``): ``images/<action>/<video>/<00001>.png``, masks named with ``/`` -> ``_``, and
``vid_frames_dict.pth`` nested as ``{action: {video: n}}``.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from locater.data.indices import global_frame_numbers

logger = logging.getLogger(__name__)

FRAME_DIRS = {"a2d": "allPngs320H", "jhmdb": "images"}
COUNT_FILES = ("vid_frame_dict.pth", "vid_frames_dict.pth")
TESTING_TYPES = ("NORM", "MUL", "SPAT", "TEMP")

# The official loader fixes these misspelled A2D sentences (after lower-casing).
SENTENCE_FIXES = {
    "the peson in red is standing": "the person in red is standing",
    "rd black formula car riding on the right side of the track": "red black formula car riding on the right side of the track",
    "white standing near the building": "person standing near the building",
    "red black is riding on the left": "red black car is riding on the left",
    "solder in camouflage uniforms crawling ": "soldier in camouflage uniforms crawling",
    "white in shirt is walking in the airport terminal": "person in shirt is walking in the airport terminal",
    "the left with yellow t shirt on the left running": "the left man with yellow t shirt on the left running",
    "black is climbing the stairs": "man is climbing the stairs",
    "white black is walking on the beach": "white black dog is walking on the beach",
    "on in blue running on the left": "man in blue running on the left",
    "a blue bar is sitting on the floor in the middle": "a blue ball is sitting on the floor in the middle",
    "solder crawling on the ground": "soldier crawling on the ground",
    "white brown is eating  the corn": "white brown dog is eating the corn",
    "white in white tracksuit is running during competition": "man in white tracksuit is running during competition",
    "white licking her claws on the left": "white cat licking her claws on the left",
}  # fmt: skip

EXPECTED_LAYOUT = """expected layout:
  <data-root>/A2D_SUBSET/<TYPE>/            (or A2D_SUBSET/A2D_<TYPE>/), TYPE in NORM, MUL, SPAT, TEMP
      allPngs320H/<video>/<00001>.png
      mask/<video>_<obj>_<frame>.pth
      vid_frame_dict.pth                     (or vid_frames_dict.pth)
      A2D_<TYPE>_test_expressions.json
  <data-root>/JHMDB/
      images/<action>/<video>/<00001>.png
      mask/<action>_<video>_<obj>_<frame>.pth
      vid_frames_dict.pth
      JHMDB_test_expressions.json"""


class LayoutError(ValueError):
    """A dataset folder does not follow the layout; the message names the file and the problem."""


def fix_sentence(sentence: str) -> str:
    """Lower-case and apply the official loader's 15 spelling fixes."""
    lowered = sentence.lower()
    return SENTENCE_FIXES.get(lowered, lowered)


def frame_id(number: int) -> str:
    """``7 -> "00007"``."""
    return f"{int(number):05d}"


def resolve_split_dir(data_root: str | Path, dataset: str, testing_type: str | None = None) -> Path:
    """The split folder for (data root, A2D/JHMDB, testing type), accepting both official spellings."""
    root = Path(data_root)
    dataset = dataset.upper()
    if dataset == "JHMDB":
        candidates = [root / "JHMDB"]
    elif dataset == "A2D":
        if testing_type is None:
            raise LayoutError("A2D needs a testing type (NORM, MUL, SPAT or TEMP)")
        kind = testing_type.upper()
        candidates = [root / "A2D_SUBSET" / kind, root / "A2D_SUBSET" / f"A2D_{kind}"]
    else:
        raise LayoutError(f"unknown dataset {dataset!r}: expected A2D or JHMDB")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise LayoutError(f"dataset folder not found (tried {tried})\n{EXPECTED_LAYOUT}")


@dataclass
class ExpressionSample:
    """One test sample: a (video, expression) pair.

    Attributes:
        video: video id (``action/video`` for JHMDB).
        expression: expression (object) id.
        sentence: the sentence after the official fixes.
        frames: sorted frame ids ("00001") the model runs over.
        labels: sorted frame ids that are scored.
        num_frames: number of frames of the video (count dict), which places the global frames.
    """

    video: str
    expression: str
    sentence: str
    frames: list[str]
    labels: list[str]
    num_frames: int
    raw_sentence: str = ""


@dataclass
class LayoutSplit:
    """A split folder in layout 3.1 (test splits, the A2D train split, the synthetic benchmark)."""

    root: Path
    flavour: str
    expressions_file: Path
    samples: list[ExpressionSample] = field(default_factory=list)
    frame_counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def open(cls, split_dir: str | Path) -> LayoutSplit:
        """Read a split folder; raises :class:`LayoutError` naming the file on any structural problem."""
        root = Path(split_dir)
        if not root.is_dir():
            raise LayoutError(f"split folder not found: {root}\n{EXPECTED_LAYOUT}")
        flavour = next((name for name, sub in FRAME_DIRS.items() if (root / sub).is_dir()), None)
        if flavour is None:
            raise LayoutError(
                f"{root}: no frame folder ({' or '.join(FRAME_DIRS.values())})\n{EXPECTED_LAYOUT}"
            )
        counts_path = next((root / n for n in COUNT_FILES if (root / n).is_file()), None)
        if counts_path is None:
            raise LayoutError(f"{root}: no frame-count file ({' or '.join(COUNT_FILES)})")
        try:
            raw_counts = torch.load(counts_path, weights_only=False)
        except Exception as error:
            raise LayoutError(f"{counts_path}: cannot read ({error})") from error
        counts = _flatten_counts(raw_counts, counts_path)
        expressions_file = _find_expressions_file(root)
        split = cls(root=root, flavour=flavour, expressions_file=expressions_file, frame_counts=counts)
        split.samples = _read_samples(expressions_file, counts)
        return split

    # ------------------------------------------------------------------ paths and loading
    def frame_path(self, video: str, frame: str) -> Path:
        return self.root / FRAME_DIRS[self.flavour] / video / f"{frame}.png"

    def mask_path(self, video: str, expression: str, frame: str) -> Path:
        return self.root / "mask" / f"{video.replace('/', '_')}_{expression}_{frame}.pth"

    def load_frame(self, video: str, frame: str) -> np.ndarray:
        """``H x W x 3`` uint8 RGB; :class:`LayoutError` naming the file when missing or unreadable."""
        return read_rgb(self.frame_path(video, frame))

    def load_mask(self, video: str, expression: str, frame: str) -> np.ndarray:
        """``H x W`` bool mask."""
        path = self.mask_path(video, expression, frame)
        if not path.is_file():
            raise LayoutError(f"mask file missing: {path}")
        try:
            mask = torch.load(path, weights_only=False)
        except Exception as error:
            raise LayoutError(f"{path}: cannot read mask ({error})") from error
        mask = torch.as_tensor(mask)
        while mask.dim() > 2 and mask.shape[0] == 1:
            mask = mask[0]
        if mask.dim() != 2:
            raise LayoutError(f"{path}: expected an H x W mask, got shape {tuple(mask.shape)}")
        return (mask.float() > 0.5).numpy()

    def global_frames(self, sample: ExpressionSample, num_global: int) -> list[str]:
        """Frame ids of the global memory (official rule, from the frame count)."""
        return [frame_id(n) for n in global_frame_numbers(sample.num_frames, num_global)]

    def videos(self) -> OrderedDict[str, list[ExpressionSample]]:
        """Samples grouped by video, in file order."""
        grouped: OrderedDict[str, list[ExpressionSample]] = OrderedDict()
        for sample in self.samples:
            grouped.setdefault(sample.video, []).append(sample)
        return grouped


def read_rgb(path: Path) -> np.ndarray:
    """Read an image as ``H x W x 3`` uint8 RGB with OpenCV (grey images are expanded)."""
    if not path.is_file():
        raise LayoutError(f"frame file missing: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise LayoutError(f"{path}: cannot decode image (corrupt file?)")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    if image.dtype != np.uint8:
        raise LayoutError(f"{path}: expected an 8-bit image, got {image.dtype}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _flatten_counts(raw: object, path: Path) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise LayoutError(f"{path}: expected a dict of frame counts, got {type(raw).__name__}")
    counts: dict[str, int] = {}
    for key, value in raw.items():
        if isinstance(value, dict):  # JHMDB: {action: {video: n}}
            for video, n in value.items():
                counts[f"{key}/{video}"] = int(n)
        else:
            counts[str(key)] = int(value)
    return counts


def _find_expressions_file(root: Path) -> Path:
    candidates = sorted(root.glob("*_expressions.json"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise LayoutError(f"{root}: no *_expressions.json file\n{EXPECTED_LAYOUT}")
    preferred = [
        c
        for c in candidates
        if c.name in (f"A2D_{root.name}_test_expressions.json", f"{root.name}_test_expressions.json")
    ]
    if len(preferred) == 1:
        return preferred[0]
    raise LayoutError(f"{root}: several expression files {[c.name for c in candidates]}; keep one")


def _read_samples(path: Path, counts: dict[str, int]) -> list[ExpressionSample]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise LayoutError(f"{path}: malformed JSON ({error})") from error
    if not isinstance(data, dict):
        raise LayoutError(f"{path}: expected an object of videos")
    samples = []
    for video, entry in data.items():
        where = f"{path}: video {video!r}"
        if not isinstance(entry, dict) or "frames" not in entry or "expressions" not in entry:
            raise LayoutError(f"{where}: needs 'frames' and 'expressions'")
        frames = sorted({str(f) for f in entry["frames"]})
        if video not in counts:
            raise LayoutError(f"{where}: not in the frame-count file")
        for obj, expression in entry["expressions"].items():
            if not isinstance(expression, dict) or "exp" not in expression:
                raise LayoutError(f"{where}, expression {obj!r}: needs 'exp'")
            sentence = expression["exp"]
            if not isinstance(sentence, str) or not sentence.strip():
                raise LayoutError(f"{where}, expression {obj!r}: empty sentence")
            labels = sorted({str(f) for f in expression.get("labels", [])})
            samples.append(
                ExpressionSample(
                    video=video,
                    expression=str(obj),
                    sentence=fix_sentence(sentence),
                    frames=frames,
                    labels=labels,
                    num_frames=counts[video],
                    raw_sentence=sentence,
                )
            )
    return samples


class LayoutWriter:
    """Writes one split folder in layout 3.1.

    Args:
        split_dir: the folder to write.
        expressions_name: JSON file name, e.g. ``"A2D_NORM_test_expressions.json"``.
        flavour: ``"a2d"`` (``allPngs320H``, flat ``vid_frame_dict.pth``) or ``"jhmdb"`` (``images``, video ids
            ``action/video``, nested ``vid_frames_dict.pth``).
    """

    def __init__(self, split_dir: str | Path, expressions_name: str, flavour: str = "a2d") -> None:
        if flavour not in FRAME_DIRS:
            raise ValueError(f"flavour must be one of {sorted(FRAME_DIRS)}, got {flavour!r}")
        self.root = Path(split_dir)
        self.expressions_name = expressions_name
        self.flavour = flavour
        self.videos: OrderedDict[str, dict] = OrderedDict()
        self.counts: OrderedDict[str, int] = OrderedDict()
        (self.root / FRAME_DIRS[flavour]).mkdir(parents=True, exist_ok=True)
        (self.root / "mask").mkdir(parents=True, exist_ok=True)

    def write_frame(self, video: str, frame: int, rgb: np.ndarray) -> Path:
        """Write an ``H x W x 3`` uint8 RGB frame (1-indexed) as PNG."""
        path = self.root / FRAME_DIRS[self.flavour] / video / f"{frame_id(frame)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"{path}: expected an H x W x 3 uint8 frame, got {rgb.dtype} {rgb.shape}")
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3]):
            raise OSError(f"cannot write {path}")
        return path

    def write_mask(self, video: str, obj: str, frame: int, mask: np.ndarray) -> Path:
        """Save an ``H x W`` mask as a uint8 tensor."""
        path = self.root / "mask" / f"{video.replace('/', '_')}_{obj}_{frame_id(frame)}.pth"
        array = np.asarray(mask)
        if array.ndim != 2:
            raise ValueError(f"{path}: expected an H x W mask, got shape {array.shape}")
        torch.save(torch.from_numpy((array > 0).astype(np.uint8)), path)
        return path

    def add_video(self, video: str, num_frames: int, frames: list[int] | None = None) -> None:
        """Register a video with its frame count and the frames the model runs over (default all)."""
        frames = list(range(1, num_frames + 1)) if frames is None else frames
        self.videos[video] = {"frames": [frame_id(f) for f in frames], "expressions": OrderedDict()}
        self.counts[video] = int(num_frames)

    def add_expression(self, video: str, obj: str, sentence: str, labels: list[int]) -> None:
        """Register an expression (object ``obj``) of a video with its labelled frames."""
        if video not in self.videos:
            raise KeyError(f"add_video({video!r}) first")
        if not sentence.strip():
            raise ValueError(f"video {video!r}, expression {obj!r}: empty sentence")
        self.videos[video]["expressions"][str(obj)] = {
            "exp": sentence,
            "labels": [frame_id(f) for f in labels],
        }

    def close(self) -> None:
        """Write the expressions JSON and the frame-count dict, each atomically."""
        json_path = self.root / self.expressions_name
        _atomic_write_bytes(json_path, json.dumps(self.videos, indent=1).encode())
        if self.flavour == "jhmdb":
            nested: dict = {}
            for video, n in self.counts.items():
                action, name = video.split("/", 1)
                nested.setdefault(action, {})[name] = n
            counts, name = nested, "vid_frames_dict.pth"
        else:
            counts, name = dict(self.counts), "vid_frame_dict.pth"
        tmp = self.root / f".{name}.tmp"
        torch.save(counts, tmp)
        os.replace(tmp, self.root / name)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
