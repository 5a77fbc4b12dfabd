"""Tiny DAVIS-2017 + Ref-DAVIS17 and Ref-YouTube-VOS train releases in the original formats, for the J&F tests.

DAVIS: ``DAVIS/JPEGImages/480p/<video>/<frame>.jpg``, palette PNGs in ``DAVIS/Annotations/480p`` and
``DAVIS/Annotations_unsupervised/480p`` (there the two objects of ``bike-packing`` carry each other's ids, so only a
matching finds them), ``DAVIS/ImageSets/2017/{train,val}.txt`` and the four sentence files of
``davis_text_annotations/`` (``<video> <object id> "<sentence>"``; annotator 2's in Latin-1, and one misspelt video
name, as in the release).
Ref-YouTube-VOS: ``train/JPEGImages``, ``train/Annotations`` (palette PNGs) and
``meta_expressions/train/meta_expressions.json``, with video ids picked so that some fall in the local validation
split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from locater.data.ytvos_local_val import is_local_val

DAVIS_SIZE = (30, 48)  # H x W
DAVIS_VAL = {"bike-packing": (6, 2), "blackswan": (5, 1)}  # video: (frames, objects)
DAVIS_TRAIN = {"classic-car": (4, 1)}
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (256 * 3 - 12)
YTVOS_SIZE = (24, 32)
YTVOS_FRAMES = ["00000", "00005", "00010", "00015"]

SENTENCES = {  # (annotator, kind) -> {(video as written in the file, object): sentence}
    (1, "first"): {
        ("bike-packing", 1): "a man on the left",
        ("bike-packing", 2): "the bike on the right",
        ("blackswan", 1): "a black swan",
        ("clasic-car", 1): "an old car",  # misspelt in the release
    },
    (1, "full"): {
        ("bike-packing", 1): "a man walking to the right",
        ("bike-packing", 2): "a bike moving left",
        ("blackswan", 1): "a swan swimming",
        ("clasic-car", 1): "a car parked",
    },
    (2, "first"): {
        ("bike-packing", 1): "the person near the café",  # Latin-1 in the file
        ("bike-packing", 2): "a bicycle",
        ("blackswan", 1): "black bird",
        ("classic-car", 1): "classic car",
    },
    (2, "full"): {
        ("bike-packing", 1): "a man pushing   his bike",
        ("bike-packing", 2): "a bicycle pushed by a man",
        ("blackswan", 1): "the swan in the pond",
        ("classic-car", 1): "a red car",
    },
}
FILE_NAMES = {
    (1, "first"): "Davis17_annot1.txt",
    (1, "full"): "Davis17_annot1_full_video.txt",
    (2, "first"): "Davis17_annot2.txt",
    (2, "full"): "Davis17_annot2_full_video.txt",
}


def box(size: tuple[int, int], top: int, left: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros(size, bool)
    mask[max(top, 0) : top + height, max(left, 0) : left + width] = True
    return mask


def davis_ids(objects: int, t: int) -> np.ndarray:
    """The ``Annotations/480p`` id map of frame ``t``: object 1 moves right, object 2 moves left."""
    ids = np.zeros(DAVIS_SIZE, np.uint8)
    ids[box(DAVIS_SIZE, 3, 2 + 3 * t, 10, 12)] = 1
    if objects > 1:
        ids[box(DAVIS_SIZE, 16, 33 - 3 * t, 11, 13)] = 2
    return ids


def write_palette_png(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(ids, mode="P")
    image.putpalette(PALETTE)
    image.save(path)


def write_jpeg(path: Path, ids: np.ndarray, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.full((*ids.shape, 3), shade, np.uint8)
    rgb[ids == 1] = (220, 40, 40)
    rgb[ids == 2] = (40, 40, 220)
    cv2.imwrite(str(path), rgb[:, :, ::-1])


@dataclass
class FakeDAVIS:
    root: Path
    frames: dict[str, list[str]]  # every video, train and val


def make_fake_davis(root: Path) -> FakeDAVIS:
    """Write the tiny release under ``root`` (``root/DAVIS``, ``root/davis_text_annotations``)."""
    davis = root / "DAVIS"
    frames = {}
    for video, (count, objects) in {**DAVIS_VAL, **DAVIS_TRAIN}.items():
        frames[video] = [f"{t:05d}" for t in range(count)]
        for t, frame in enumerate(frames[video]):
            ids = davis_ids(objects, t)
            write_jpeg(davis / "JPEGImages/480p" / video / f"{frame}.jpg", ids, 60 + 20 * t)
            write_palette_png(davis / "Annotations/480p" / video / f"{frame}.png", ids)
            unsupervised = ids.copy()
            if video == "bike-packing":  # the unsupervised set numbers the two objects the other way round
                unsupervised[ids == 1], unsupervised[ids == 2] = 2, 1
            write_palette_png(davis / "Annotations_unsupervised/480p" / video / f"{frame}.png", unsupervised)
    sets = davis / "ImageSets/2017"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("".join(f"{video}\n" for video in DAVIS_VAL))
    (sets / "train.txt").write_text("".join(f"{video}\n" for video in DAVIS_TRAIN))
    text = root / "davis_text_annotations"
    text.mkdir(parents=True)
    for key, sentences in SENTENCES.items():
        lines = "".join(f'{video} {obj} "{sentence}"\n' for (video, obj), sentence in sentences.items())
        (text / FILE_NAMES[key]).write_bytes(lines.encode("latin-1" if key[0] == 2 else "utf-8"))
    return FakeDAVIS(root, frames)


@dataclass
class FakeYTVOS:
    root: Path
    local_val: list[str]
    train: list[str]


def ytvos_ids(t: int) -> np.ndarray:
    ids = np.zeros(YTVOS_SIZE, np.uint8)
    ids[box(YTVOS_SIZE, 2, 1 + 2 * t, 8, 9)] = 1
    ids[box(YTVOS_SIZE, 13, 20 - 2 * t, 9, 10)] = 2
    return ids


def make_fake_ytvos_train(root: Path, held_out: int = 2, kept: int = 2) -> FakeYTVOS:
    """A train split whose first ``held_out`` videos (by the rule) are local validation videos and the next
    ``kept`` are not; each video has an expression for object 1 and one for object 2."""
    local_val, train = [], []
    for index in range(10_000):
        video = f"{index * 7919:010x}"  # hex ids, like the release's
        side = local_val if is_local_val(video) else train
        if len(side) < (held_out if side is local_val else kept):
            side.append(video)
        if len(local_val) == held_out and len(train) == kept:
            break
    videos = {}
    for video in sorted(local_val + train):
        videos[video] = {
            "expressions": {
                "0": {"exp": f"the red box of {video}", "obj_id": "1"},
                "1": {"exp": "a blue box moving left", "obj_id": "2"},
            },
            "frames": YTVOS_FRAMES,
        }
        for t, frame in enumerate(YTVOS_FRAMES):
            ids = ytvos_ids(t)
            write_jpeg(root / "train/JPEGImages" / video / f"{frame}.jpg", ids, 80 + 10 * t)
            write_palette_png(root / "train/Annotations" / video / f"{frame}.png", ids)
    meta = root / "meta_expressions/train/meta_expressions.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"videos": videos}))
    return FakeYTVOS(root, sorted(local_val), sorted(train))
