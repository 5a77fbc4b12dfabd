"""Tiny fake A2D-Sentences and JHMDB-Sentences releases in the exact original formats, for converter tests.

A2D: ``Release/videoset.csv`` (no header), ``Release/clips320H/<vid>.mp4`` (written with OpenCV),
``text_annotations/a2d_annotation.txt`` (with the bad ``1 (copy)`` row), ``a2d_missed_videos.txt`` and
``a2d_annotation_with_instances/<vid>/<frame:05d>.h5`` (``instance``, transposed ``reMask`` (N, W, H) or (W, H)
for a single instance, ``reBBox``, and ``id`` (1, N) in some files only).
JHMDB: ``Rename_Images/<action>/<video>/<00001>.png``, ``puppet_mask/<action>/<video>/puppet_mask.mat``
(``part_mask`` H x W x T) and ``jhmdb_annotation.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np
import scipy.io

A2D_SIZE = (48, 64)  # H x W: not square, so a missing transpose shows
A2D_RED_ROWS = 16
JHMDB_SIZE = (24, 32)


@dataclass
class FakeA2D:
    """What a fake A2D release holds, for the assertions."""

    root: Path
    num_frames: dict[str, int]
    masks: dict[tuple[str, int, int], np.ndarray] = field(default_factory=dict)  # (vid, instance, frame)

    def brightness(self, vid: str, frame: int) -> int:
        """Grey level of ``frame`` (1-indexed) of ``vid`` below its red band."""
        return brightness(sorted(self.num_frames).index(vid), frame)


def brightness(video_index: int, frame: int) -> int:
    return 20 + 30 * (frame - 1) + 7 * video_index


def _box_mask(size: tuple[int, int], top: int, left: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros(size, bool)
    mask[top : top + height, left : left + width] = True
    return mask


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 24) -> None:
    """An mp4 clip of ``H x W x 3`` RGB frames (OpenCV, mp4v)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write mp4 here"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def write_a2d_h5(
    path: Path, masks: dict[int, np.ndarray], actor_action: dict[int, int] | None = None
) -> None:
    """One annotated frame as the release stores it: masks transposed, a 2-D reMask for a single instance."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = list(masks)
    stack = np.stack([masks[i].T for i in ids]).astype(np.uint8)  # N x W x H
    with h5py.File(path, "w") as handle:
        handle["instance"] = np.asarray(ids, dtype=np.float64)
        handle["reMask"] = stack[0] if len(ids) == 1 else stack
        handle["reBBox"] = np.zeros((4, len(ids)))
        if actor_action is not None:
            handle["id"] = np.asarray([[actor_action[i] for i in ids]], dtype=np.float64)


# (vid, label, subset, frames, annotations {frame: ({instance: box}, has id field)}, actor-action per instance)
A2D_VIDEOS = {
    "vidTestA": (18, 1, 6, {2: ({1: (4, 4, 20, 10), 2: (10, 40, 30, 12), 3: (30, 20, 10, 10)}, True),
                            4: ({1: (6, 6, 20, 10), 2: (12, 38, 30, 12)}, True),
                            5: ({2: (14, 36, 30, 12)}, False)}, {1: 18, 2: 11, 3: 78}),
    "vidTestB": (36, 1, 5, {1: ({1: (20, 20, 8, 8)}, False), 3: ({1: (22, 30, 8, 8)}, False)}, {1: 36}),
    "vidTrain": (75, 0, 5, {3: ({1: (5, 5, 12, 30)}, True)}, {1: 75}),
}  # fmt: skip
A2D_SENTENCES = [
    ("vidTestA", "1", "man on the left walking"),
    ("vidTestA", "2", "the woman on the right"),
    ("vidTestA", "1 (copy)", "man on the left walking"),
    ("vidTestB", "1", "a red ball rolling"),
    ("vidTrain", "1", "a dog jumping"),
]


def make_fake_a2d(root: Path) -> FakeA2D:
    """A release of 4 videos: 2 test (one with two adults and an unnamed dog), 1 train, 1 missed."""
    fake = FakeA2D(root, {vid: spec[2] for vid, spec in A2D_VIDEOS.items()})
    rows = []
    for vid, (label, subset, num_frames, frame_boxes, actor_action) in A2D_VIDEOS.items():
        frames = []
        for frame in range(1, num_frames + 1):
            rgb = np.full((*A2D_SIZE, 3), fake.brightness(vid, frame), np.uint8)
            rgb[:A2D_RED_ROWS] = (230, 30, 30)  # a red band on top: shows a colour swap or a flip
            frames.append(rgb)
        write_clip(root / "Release" / "clips320H" / f"{vid}.mp4", frames)
        for frame, (boxes, has_id) in frame_boxes.items():
            masks = {instance: _box_mask(A2D_SIZE, *box) for instance, box in boxes.items()}
            for instance, mask in masks.items():
                fake.masks[(vid, instance, frame)] = mask
            path = root / "text_annotations" / "a2d_annotation_with_instances" / vid / f"{frame:05d}.h5"
            write_a2d_h5(path, masks, actor_action if has_id else None)
        rows.append(f"{vid},{label},0,0,{A2D_SIZE[0]},{A2D_SIZE[1]},{num_frames},{len(frame_boxes)},{subset}")
    rows.append(f"vidMissed,11,0,0,{A2D_SIZE[0]},{A2D_SIZE[1]},9,3,1")
    (root / "Release" / "videoset.csv").write_text("\n".join(rows) + "\n")
    text = root / "text_annotations"
    lines = ["video_id,instance_id,query"] + [f"{v},{i},{q}" for v, i, q in A2D_SENTENCES]
    lines.append("vidMissed,1,a man that was never annotated")
    (text / "a2d_annotation.txt").write_text("\n".join(lines) + "\n")
    (text / "a2d_missed_videos.txt").write_text("vidMissed\n")
    return fake


# (action, video, frames, masks T, sentence)
JHMDB_VIDEOS = [
    ("brush_hair", "Hair_brushing_u_nm", 6, 5, "a woman brushing her hair"),
    ("catch", "Catch_the_ball_f_cm", 4, 6, "man catching a ball"),
    ("catch", "Catch_me_if_you_can", 5, 5, "a boy catches a frisbee"),
]


@dataclass
class FakeJHMDB:
    root: Path
    masks: dict[str, np.ndarray]  # action/video -> T x H x W
    frames: dict[str, int]  # action/video -> number of png frames


def make_fake_jhmdb(root: Path) -> FakeJHMDB:
    """3 videos in 2 actions: one with more frames than masks, one with more masks than frames."""
    fake = FakeJHMDB(root, {}, {})
    for index, (action, video, num_frames, num_masks, _) in enumerate(JHMDB_VIDEOS):
        frame_dir = root / "Rename_Images" / action / video
        frame_dir.mkdir(parents=True)
        for frame in range(1, num_frames + 1):
            rgb = np.full((*JHMDB_SIZE, 3), brightness(index, frame), np.uint8)
            cv2.imwrite(str(frame_dir / f"{frame:05d}.png"), rgb)
        masks = np.stack([_box_mask(JHMDB_SIZE, t, 2 * t, 8, 6 + index) for t in range(num_masks)])
        mat = root / "puppet_mask" / action / video / "puppet_mask.mat"
        mat.parent.mkdir(parents=True)
        scipy.io.savemat(str(mat), {"part_mask": np.moveaxis(masks, 0, 2).astype(np.uint8)})  # H x W x T
        fake.masks[f"{action}/{video}"] = masks
        fake.frames[f"{action}/{video}"] = num_frames
    lines = ["video_id,query"] + [f"{video},{sentence}" for _, video, _, _, sentence in JHMDB_VIDEOS]
    (root / "jhmdb_annotation.txt").write_text("\n".join(lines) + "\n")
    return fake


def mttr_metadata(fake: FakeJHMDB, frames: dict[str, list[int]]) -> list[list]:
    """MTTR's ``jhmdb_sentences_samples_metadata.json`` rows for the given frames of each video."""
    rows = []
    sentences = {f"{a}/{v}": s for a, v, _, _, s in JHMDB_VIDEOS}
    for video_id, chosen in frames.items():
        action, name = video_id.split("/")
        usable = min(fake.frames[video_id], len(fake.masks[video_id]))
        for frame in chosen:
            frame_path = f"{fake.root}/Rename_Images/{action}/{name}/{frame:05d}.png"
            mask_path = f"{fake.root}/puppet_mask/{action}/{name}/puppet_mask.mat"
            rows.append([name, frame_path, mask_path, usable, sentences[video_id]])
    return rows
