"""The app's example videos: the first test video of each synthetic split, written as an mp4 on first use.

Each example is the video ``syn_<kind>_0000`` of the synthetic benchmark at seed 0 and 64 px, the size the
quickstart trains and evaluates on (``datasets/synthetic/<KIND>`` holds the same frames), with its expressions as
the sentences (NORM, MUL: one; SPAT, TEMP: one per twin). Nothing is downloaded: the frames come from
:func:`locater.data.synthetic.generate_video`. They are enlarged ``EXAMPLE_SCALE`` times by pixel repetition, so
the page shows them (and the overlay's legend) at a readable size, while the model still sees the 64 px frames:
the model's bilinear resize (``align_corners=True``) of a frame enlarged this way back to 64 px samples one pixel
of each block and returns the original frame (up to the mp4 coding).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from locater.data.synthetic import KINDS, generate_video
from locater.data.synthetic.files import video_seed
from locater.files import write_json_atomic
from locater.video_io import OverlayVideoWriter

logger = logging.getLogger(__name__)

EXAMPLE_SEED = 0  # the benchmark seed of the quickstart's test splits
EXAMPLE_SIZE = 64  # the quickstart's frame side (make_synthetic.py --size 64)
EXAMPLE_SCALE = 6  # 384 px on the page
EXAMPLE_FPS = 6.0  # 12-24 frames: 2-4 s, slow enough to follow the motion
EXAMPLE_KINDS = {
    "NORM": "its shape or colour alone is unique",
    "MUL": "another object has its shape",
    "SPAT": "identical twins told apart by position",
    "TEMP": "identical twins that swap places",
}


@dataclass(frozen=True)
class Example:
    """An example video on disk.

    Attributes:
        label: what the page lists, e.g. ``"TEMP: syn_temp_0000 (identical twins that swap places)"``.
        path: the mp4 file.
        sentences: its expressions, one per referred object.
    """

    label: str
    path: Path
    sentences: tuple[str, ...]


def example_labels() -> list[str]:
    """The labels of the examples, in the order of :data:`locater.data.synthetic.KINDS`."""
    return [f"{kind}: {video_id(kind)} ({EXAMPLE_KINDS[kind]})" for kind in KINDS]


def video_id(kind: str) -> str:
    """The benchmark's id of the example of ``kind`` (its first test video)."""
    return f"syn_{kind.lower()}_0000"


def kind_of(label: str) -> str:
    """The kind an :func:`example_labels` entry names (``ValueError`` for another text)."""
    kind = label.split(":", 1)[0].strip()
    if kind not in EXAMPLE_KINDS or label not in example_labels():
        raise ValueError(f"unknown example {label!r}; expected one of {example_labels()}")
    return kind


def ensure_example(examples_dir: str | Path, label: str) -> Example:
    """The example ``label`` (an :func:`example_labels` entry), generated into ``examples_dir`` on first use.

    Writes ``<video id>.mp4`` and ``<video id>.json`` (its sentences); the mp4 is written under a temporary name
    and renamed into place, so a reader (or a second request for the same example) never sees half a file.
    """
    kind = kind_of(label)
    folder = Path(examples_dir)
    path = folder / f"{video_id(kind)}.mp4"
    index = path.with_suffix(".json")
    if not (path.is_file() and index.is_file()):
        video = generate_video(kind, video_seed(EXAMPLE_SEED, kind, kind, 0), EXAMPLE_SIZE)
        frames = np.repeat(np.repeat(video.frames, EXAMPLE_SCALE, axis=1), EXAMPLE_SCALE, axis=2)
        folder.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=folder)
        os.close(handle)
        try:
            with OverlayVideoWriter(partial, EXAMPLE_FPS, frames.shape[1:3]) as writer:
                for frame in frames:
                    writer.write(frame)
            os.replace(partial, path)
        finally:
            Path(partial).unlink(missing_ok=True)
        write_json_atomic(index, {"sentences": [e.sentence for e in video.expressions]})
        logger.info("wrote the example %s (%d frames)", path, len(frames))
    sentences = json.loads(index.read_text())["sentences"]
    return Example(label, path, tuple(sentences))
