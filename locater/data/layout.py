"""The Locater test layout (docs/data.md): the one place that reads and writes it.

A2D flavour (``A2D_SUBSET/<TYPE>/``, also spelled ``A2D_SUBSET/A2D_<TYPE>/``)::

    allPngs320H/<video>/<00001>.png            frames, 1-indexed, 5 digits
    mask/<video>_<obj>_<frame>.pth             torch-saved H x W mask of one (video, expression, frame)
    vid_frame_dict.pth                         {video: number of frames}   (or vid_frames_dict.pth)
    <PREFIX>_expressions.json                  {video: {"frames": [...], "expressions": {obj: {"exp", "labels"}}}}

JHMDB flavour (``JHMDB/``): ``images/<action>/<video>/<00001>.png``, masks named with ``/`` -> ``_``, and
``vid_frames_dict.pth`` nested as ``{action: {video: n}}``.

:meth:`LayoutSplit.open` is strict by default (the first problem raises :class:`LayoutError`); with
``strict=False`` it reads what it can and lists every problem in ``split.problems`` (used by
``python -m locater.data.check``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from locater.config import TESTING_TYPES
from locater.data.frames import DataError, UnsafePathError, check_mask_size, encode_png, read_rgb
from locater.data.indices import global_frame_numbers, random_global_frame_numbers
from locater.files import load_torch, save_torch_atomic, write_bytes_atomic
from locater.paths import id_parts, safe_component

logger = logging.getLogger(__name__)

FRAME_DIRS = {"a2d": "allPngs320H", "jhmdb": "images"}
COUNT_FILES = ("vid_frame_dict.pth", "vid_frames_dict.pth")
DATASETS = ("A2D", "JHMDB", "SYN")
KINDED_DATASETS = ("A2D", "SYN")  # split into the testing types NORM / MUL / SPAT / TEMP

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
      JHMDB_test_expressions.json
  <data-root>/<TYPE>/                         (SYN: the synthetic benchmark, tools/data/make_synthetic.py)"""


class LayoutError(DataError):
    """A dataset folder does not follow the layout; the message names the file and the problem."""


def fix_sentence(sentence: str) -> str:
    """Lower-case and apply the official loader's 15 spelling fixes (A2D ``check_query``)."""
    lowered = sentence.lower()
    return SENTENCE_FIXES.get(lowered, lowered)


def frame_id(number: int) -> str:
    """``7 -> "00007"``."""
    return f"{int(number):05d}"


def is_frame_id(value: object) -> bool:
    """True for a 5-digit frame id string such as ``"00007"``."""
    return isinstance(value, str) and len(value) == 5 and value.isdigit()


def resolve_split_dir(data_root: str | Path, dataset: str, testing_type: str | None = None) -> Path:
    """The split folder for (data root, A2D/JHMDB, testing type), as the official loader.

    A2D: ``<root>/A2D_SUBSET/<TYPE>`` or ``<root>/A2D_SUBSET/A2D_<TYPE>``; JHMDB: ``<root>/JHMDB``; SYN (the
    synthetic benchmark): ``<root>/<TYPE>``. Raises :class:`LayoutError` with the expected layout when the folder
    is missing.
    """
    root = Path(data_root)
    dataset = dataset.upper()
    if dataset == "JHMDB":
        candidates = [root / "JHMDB"]
    elif dataset in KINDED_DATASETS:
        if testing_type is None:
            raise LayoutError(f"{dataset} needs a testing type (NORM, MUL, SPAT or TEMP)")
        kind = testing_type.upper()
        if kind not in TESTING_TYPES:
            raise LayoutError(
                f"unknown testing type {testing_type!r}: expected one of {', '.join(TESTING_TYPES)}"
            )
        if dataset == "SYN":
            candidates = [root / kind]
        else:
            candidates = [root / "A2D_SUBSET" / kind, root / "A2D_SUBSET" / f"A2D_{kind}"]
    else:
        raise LayoutError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise LayoutError(f"dataset folder not found (tried {tried})\n{EXPECTED_LAYOUT}")


@dataclass
class ExpressionSample:
    """One sample: a (video, expression) pair.

    Attributes:
        video: video id (``action/video`` for JHMDB).
        expression: expression id (the object id in layout 3.1).
        sentence: the sentence after the official fixes (lower-cased).
        frames: sorted unique frame ids ("00001") the model runs over.
        labels: sorted unique frame ids that carry a mask (scored at test time, supervised in training).
        num_frames: number of frames of the whole video (count dict), which places the global frames.
        raw_sentence: the sentence as written in the file.
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
    expressions_file: Path | None
    samples: list[ExpressionSample] = field(default_factory=list)
    frame_counts: dict[str, int] = field(default_factory=dict)
    counts_file: Path | None = None
    problems: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, split_dir: str | Path, strict: bool = True) -> LayoutSplit:
        """Read a split folder.

        Args:
            split_dir: the folder holding the frame folder, ``mask/``, the count dict and the JSON.
            strict: raise :class:`LayoutError` on the first problem; otherwise collect every problem found
                in the JSON and the count dict in ``problems`` (files are checked by ``locater.data.check``).
        """
        root = Path(split_dir)
        if not root.is_dir():
            raise LayoutError(f"split folder not found: {root}\n{EXPECTED_LAYOUT}")
        problems = _Problems(strict)
        flavour = next((name for name, sub in FRAME_DIRS.items() if (root / sub).is_dir()), None)
        if flavour is None:
            problems.add(f"{root}: no frame folder ({' or '.join(FRAME_DIRS.values())})\n{EXPECTED_LAYOUT}")
            flavour = "a2d"
        counts_file, counts = _read_counts(root, problems)
        expressions_file = _find_expressions_file(root, problems)
        split = cls(root=root, flavour=flavour, expressions_file=expressions_file, frame_counts=counts)
        split.counts_file = counts_file
        if expressions_file is not None:
            split.samples = _read_samples(expressions_file, counts, counts_file is not None, problems)
        split.problems = problems.found
        return split

    # ------------------------------------------------------------------ paths and loading
    def frame_dir(self, video: str) -> Path:
        return self.root / FRAME_DIRS[self.flavour] / video

    def frame_path(self, video: str, frame: str) -> Path:
        return self.frame_dir(video) / f"{frame}.png"

    def mask_path(self, video: str, expression: str, frame: str) -> Path:
        return self.root / "mask" / f"{video.replace('/', '_')}_{expression}_{frame}.pth"

    def load_frame(self, video: str, frame: str) -> np.ndarray:
        """``H x W x 3`` uint8 RGB; :class:`LayoutError` naming the file when missing or unreadable."""
        try:
            return read_rgb(self.frame_path(video, frame))
        except DataError as error:
            raise LayoutError(str(error)) from error

    def load_mask(self, video: str, expression: str, frame: str) -> np.ndarray:
        """``H x W`` bool mask (a torch-saved tensor of any dtype; leading singleton dims are dropped).

        The mask must have its frame's size (read from the PNG header): a ground truth of another size would
        otherwise be resized and scored without complaint. :class:`LayoutError` names the mask file and both sizes.
        """
        path = self.mask_path(video, expression, frame)
        mask = read_mask_file(path)
        check_mask_size(
            mask,
            path,
            self.frame_path(video, frame),
            what="mask",
            context=f"video {video!r}, expression {expression!r}, frame {frame}",
            error=LayoutError,
        )
        return mask

    def global_frames(self, sample: ExpressionSample, num_global_frames: int) -> list[str]:
        """Frame ids of the global memory at test time: centres of ``num_global_frames`` segments (official rule)."""
        return [frame_id(n) for n in global_frame_numbers(sample.num_frames, num_global_frames)]

    def random_global_frames(
        self, sample: ExpressionSample, num_global_frames: int, rng: np.random.Generator
    ) -> list[str]:
        """Training variant: one random frame inside each of the ``num_global_frames`` segments."""
        return [frame_id(n) for n in random_global_frame_numbers(sample.num_frames, num_global_frames, rng)]

    def videos(self) -> OrderedDict[str, list[ExpressionSample]]:
        """Samples grouped by video, in file order (the evaluator runs one video's expressions together)."""
        grouped: OrderedDict[str, list[ExpressionSample]] = OrderedDict()
        for sample in self.samples:
            grouped.setdefault(sample.video, []).append(sample)
        return grouped


# why a layout file refused by the safe reader is refused, and what to do about it
UNSAFE_LAYOUT_FILE = (
    "holds Python objects beyond tensors and plain values; rewrite it with tensors (the converters do)"
)


def _refused_for_objects(error: Exception) -> bool:
    """Whether ``torch.load(weights_only=True)`` refused a file for holding objects it will not unpickle."""
    return isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error)


def _numpy_integer_globals() -> list:
    """What unpickles a numpy integer scalar (a frame count saved as ``np.int64``): the scalar constructor (also
    under its numpy 1 name), ``np.dtype`` and the integer dtype classes. None of them runs code."""
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    allowed: list = [
        np.dtype,
        scalar,
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
    ]
    dtypes = getattr(np, "dtypes", None)
    for size in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Long", "ULong"):
        if hasattr(dtypes, f"{size}DType"):
            allowed.append(getattr(dtypes, f"{size}DType"))
    return allowed


def read_mask_file(path: Path) -> np.ndarray:
    """Read a torch-saved mask as an ``H x W`` bool array; :class:`LayoutError` naming the file otherwise.

    Read with ``weights_only=True``: a mask file that holds other Python objects (which could run code when
    unpickled) is refused, never executed."""
    if not path.is_file():
        raise LayoutError(f"mask file missing: {path}")
    try:
        mask = load_torch(path, weights_only=True)
        mask = torch.as_tensor(mask)
    except Exception as error:
        if _refused_for_objects(error):
            raise LayoutError(f"{path}: {UNSAFE_LAYOUT_FILE}") from error
        raise LayoutError(f"{path}: cannot read mask ({error})") from error
    while mask.dim() > 2 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.dim() != 2:
        raise LayoutError(f"{path}: expected an H x W mask, got shape {tuple(mask.shape)}")
    return (mask.float() > 0.5).numpy()


class _Problems:
    """Raises at the first problem (strict) or collects them all."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.found: list[str] = []

    def add(self, message: str) -> None:
        if self.strict:
            raise LayoutError(message)
        self.found.append(message)

    def add_error(self, error: DataError) -> None:
        """A problem that has its own error type (e.g. :class:`UnsafePathError`): raised as is when strict."""
        if self.strict:
            raise error
        self.found.append(str(error))


def _read_counts(root: Path, problems: _Problems) -> tuple[Path | None, dict[str, int]]:
    present = [root / name for name in COUNT_FILES if (root / name).is_file()]
    if not present:
        problems.add(f"{root}: no frame-count file ({' or '.join(COUNT_FILES)})")
        return None, {}
    if len(present) > 1:
        problems.add(f"{root}: both {COUNT_FILES[0]} and {COUNT_FILES[1]} exist; keep one")
    path = present[0]
    try:  # tensors and plain values only (numpy integer counts too): a crafted file is refused, never run
        allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
        with allow(_numpy_integer_globals()) if allow else contextlib.nullcontext():
            raw = load_torch(path, weights_only=True)
    except Exception as error:
        if _refused_for_objects(error):
            problems.add(f"{path}: {UNSAFE_LAYOUT_FILE}")
        else:
            problems.add(f"{path}: cannot read ({error})")
        return path, {}
    if not isinstance(raw, dict):
        problems.add(f"{path}: expected a dict of frame counts, got {type(raw).__name__}")
        return path, {}
    counts: dict[str, int] = {}
    for key, value in raw.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]  # JHMDB: {action: {video: n}}
        for name, n in items:
            video = str(key) if name is None else f"{key}/{name}"
            if isinstance(n, torch.Tensor) and n.numel() == 1:
                n = n.item()
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
                problems.add(f"{path}: count of video {video!r} is {n!r}, expected a positive integer")
                continue
            counts[video] = int(n)
    return path, counts


def _find_expressions_file(root: Path, problems: _Problems) -> Path | None:
    candidates = sorted(root.glob("*_expressions.json"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        problems.add(f"{root}: no *_expressions.json file\n{EXPECTED_LAYOUT}")
        return None
    kind = root.name[4:] if root.name.startswith("A2D_") else root.name
    preferred = [
        c
        for c in candidates
        if c.name in (f"A2D_{kind}_test_expressions.json", f"{kind}_test_expressions.json")
    ]
    if len(preferred) == 1:
        return preferred[0]
    problems.add(f"{root}: several expression files {[c.name for c in candidates]}; keep one")
    return None


def _read_samples(
    path: Path, counts: dict[str, int], have_counts: bool, problems: _Problems
) -> list[ExpressionSample]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problems.add(f"{path}: malformed JSON ({error})")
        return []
    if not isinstance(data, dict):
        problems.add(f"{path}: malformed JSON (expected an object of videos, got {type(data).__name__})")
        return []
    samples = []
    for video, entry in data.items():
        where = f"{path}: video {video!r}"
        try:  # ids become paths (frame folders, mask files, saved masks): a ``../`` id would leave the root
            id_parts(video, "video id", path)
        except UnsafePathError as error:
            problems.add_error(error)
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("frames"), list):
            problems.add(f"{where}: needs a 'frames' list")
            continue
        if not isinstance(entry.get("expressions"), dict):
            problems.add(f"{where}: needs an 'expressions' object")
            continue
        bad = [f for f in entry["frames"] if not is_frame_id(f)]
        if bad:
            problems.add(f"{where}: frame ids {bad[:5]} are not 5-digit strings")
        frames = sorted({f for f in entry["frames"] if is_frame_id(f)})
        if not frames:
            problems.add(f"{where}: no frames")
        num_frames = counts.get(video, 0)
        if have_counts and video not in counts:
            problems.add(f"{where}: not in the frame-count file")
        elif frames and num_frames and int(frames[-1]) > num_frames:
            problems.add(f"{where}: frame {frames[-1]} beyond the count of {num_frames} frames")
        frame_set = set(frames)
        for obj, expression in entry["expressions"].items():
            here = f"{where}, expression {obj!r}"
            try:
                safe_component(str(obj), "expression id", where)
            except UnsafePathError as error:
                problems.add_error(error)
                continue
            if not isinstance(expression, dict) or "exp" not in expression:
                problems.add(f"{here}: needs 'exp'")
                continue
            sentence = expression["exp"]
            if not isinstance(sentence, str) or not sentence.strip():
                problems.add(f"{here}: empty sentence")
                sentence = sentence if isinstance(sentence, str) else ""
            raw_labels = expression.get("labels", [])
            if not isinstance(raw_labels, list):
                problems.add(f"{here}: 'labels' must be a list")
                raw_labels = []
            bad = [f for f in raw_labels if not is_frame_id(f)]
            if bad:
                problems.add(f"{here}: label ids {bad[:5]} are not 5-digit strings")
            labels = sorted({f for f in raw_labels if is_frame_id(f)})
            outside = [f for f in labels if f not in frame_set]
            if outside:
                problems.add(f"{here}: labels {outside[:5]} not in the video's frames")
            samples.append(
                ExpressionSample(
                    video=video,
                    expression=str(obj),
                    sentence=fix_sentence(sentence),
                    frames=frames,
                    labels=labels,
                    num_frames=num_frames,
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
        path = self.root / FRAME_DIRS[self.flavour] / self._video_dir(video) / f"{frame_id(frame)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"{path}: expected an H x W x 3 uint8 frame, got {rgb.dtype} {rgb.shape}")
        path.write_bytes(encode_png(rgb))
        return path

    def write_mask(self, video: str, obj: str, frame: int, mask: np.ndarray) -> Path:
        """Save an ``H x W`` mask as a uint8 tensor."""
        self._video_dir(video)
        safe_component(str(obj), "expression id", self.root / self.expressions_name)
        path = self.root / "mask" / f"{video.replace('/', '_')}_{obj}_{frame_id(frame)}.pth"
        array = np.asarray(mask)
        if array.ndim != 2:
            raise ValueError(f"{path}: expected an H x W mask, got shape {array.shape}")
        torch.save(torch.from_numpy((array > 0).astype(np.uint8)), path)
        return path

    def add_video(self, video: str, num_frames: int, frames: list[int] | None = None) -> None:
        """Register a video with its frame count and the frames the model runs over (default all)."""
        if self.flavour == "jhmdb" and "/" not in video:
            raise ValueError(f"JHMDB video ids are 'action/video', got {video!r}")
        self._video_dir(video)
        frames = list(range(1, num_frames + 1)) if frames is None else frames
        self.videos[video] = {"frames": [frame_id(f) for f in frames], "expressions": OrderedDict()}
        self.counts[video] = int(num_frames)

    def add_expression(self, video: str, obj: str, sentence: str, labels: list[int]) -> None:
        """Register an expression (object ``obj``) of a video with its labelled frames."""
        if video not in self.videos:
            raise KeyError(f"add_video({video!r}) first")
        safe_component(str(obj), "expression id", self.root / self.expressions_name)
        if not sentence.strip():
            raise ValueError(f"video {video!r}, expression {obj!r}: empty sentence")
        self.videos[video]["expressions"][str(obj)] = {
            "exp": sentence,
            "labels": [frame_id(f) for f in labels],
        }

    def _video_dir(self, video: str) -> Path:
        """The video's folder below the frame folder; :class:`UnsafePathError` for an id that would leave it."""
        return Path(*id_parts(video, "video id", self.root / self.expressions_name))

    def close(self) -> None:
        """Write the expressions JSON and the frame-count dict, each atomically."""
        json_path = self.root / self.expressions_name
        write_bytes_atomic(json_path, json.dumps(self.videos, indent=1).encode())
        if self.flavour == "jhmdb":
            nested: dict = {}
            for video, n in self.counts.items():
                action, name = video.split("/", 1)
                nested.setdefault(action, {})[name] = n
            counts, name = nested, "vid_frames_dict.pth"
        else:
            counts, name = dict(self.counts), "vid_frame_dict.pth"
        save_torch_atomic(counts, self.root / name)
