"""The decoded-frame cache: the same training samples without decoding, and no stale or unsafe read."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import locater
from locater.bench.a2d_like import SENTENCES, write_a2d_like_split
from locater.config import ConfigError
from locater.data.frame_cache import CachedFrames, build_frame_cache, video_frames
from locater.data.frames import DataError, write_png
from locater.data.layout import LayoutSplit
from locater.engine.distributed import DistInfo
from locater.engine.sampler import build_loader, build_train_dataset
from locater.errors import OutputError
from locater.paths import UnsafePathError

TENSORS = ("frames", "global_frames", "masks", "mask_valid", "input_ids")


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("a2d_like")
    written = write_a2d_like_split(root, num_videos=3, num_frames=8, frame_sizes=((40, 56), (36, 64)))
    return written.split_dir


def _config(split_dir, cache=None, *extra):
    overrides = [
        "train.data.source=layout",
        f"train.data.split_dir={split_dir}",
        "train.clip_length=3",
        "model.global_memory.num_frames=2",
        *extra,
    ]
    if cache is not None:
        overrides.append(f"train.data.frame_cache={cache}")
    return locater.load_config("configs/model/tiny.yaml", overrides)


def test_cache_gives_the_same_training_samples(split_dir, tmp_path):
    split = LayoutSplit.open(split_dir)
    report = build_frame_cache(split, tmp_path / "cache", progress=False)
    assert (report.built, report.up_to_date, report.frames_written) == (3, 0, 24)
    plain = build_train_dataset(_config(split_dir))
    cached = build_train_dataset(_config(split_dir, tmp_path / "cache"))
    assert isinstance(cached.source, CachedFrames) and len(cached) == len(plain)
    flipped = 0
    for epoch in range(3):  # the configured augmentation: flips, jitter and crops all run
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for index in range(len(plain)):
            want, got = plain[index], cached[index]
            assert all(torch.equal(want[key], got[key]) for key in TENSORS)
            assert (got["sentence"], got["frame_ids"]) == (want["sentence"], want["frame_ids"])
            flipped += got["sentence"] not in SENTENCES  # "left" and "right" swapped
    assert flipped  # the augmentation ran
    for video, frames in video_frames(split).items():
        for frame in frames:
            assert np.array_equal(cached.source.load_frame(video, frame), split.load_frame(video, frame))


def test_cache_through_the_dataloader_workers(split_dir, tmp_path):
    build_frame_cache(LayoutSplit.open(split_dir), tmp_path / "cache", progress=False)
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    batches = []
    for cache in (None, tmp_path / "cache"):
        cfg = _config(split_dir, cache, "train.batch_size=2", "train.data.num_workers=1")
        loader = iter(build_loader(build_train_dataset(cfg), cfg, info, start=0))
        batches.append([next(loader) for _ in range(3)])
        del loader
    for want, got in zip(*batches):
        assert all(torch.equal(want[key], got[key]) for key in TENSORS)


def test_rebuild_keeps_fresh_entries_and_a_changed_frame_is_never_read_stale(split_dir, tmp_path):
    copy = tmp_path / "split"
    subprocess.run(["cp", "-r", str(split_dir), str(copy)], check=True)
    split = LayoutSplit.open(copy)
    cache_dir = tmp_path / "cache"
    build_frame_cache(split, cache_dir, progress=False)
    again = build_frame_cache(split, cache_dir, progress=False)
    assert (again.built, again.up_to_date, again.bytes_written) == (0, 3, 0)

    video = split.samples[0].video
    path = split.frame_path(video, "00004")
    image = split.load_frame(video, "00004")
    write_png(path, 255 - image)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a clock-resolution-proof change
    cached = CachedFrames(split, cache_dir)
    assert np.array_equal(cached.load_frame(video, "00003"), split.load_frame(video, "00003"))
    with pytest.raises(DataError, match=r"00004\.png: changed after the frame cache .*cache_frames\.py"):
        cached.load_frame(video, "00004")
    rebuilt = build_frame_cache(split, cache_dir, progress=False)
    assert (rebuilt.built, rebuilt.up_to_date) == (1, 2)
    assert np.array_equal(CachedFrames(split, cache_dir).load_frame(video, "00004"), 255 - image)

    path.unlink()
    with pytest.raises(DataError, match=r"00004\.png: was removed after the frame cache"):
        CachedFrames(split, cache_dir).load_frame(video, "00004")

    dead = subprocess.Popen(["true"])
    dead.wait()  # a process that is gone: its temporary file is an interrupted build's leftover
    leftover = cache_dir / "videos" / f".{video}.npy.tmp{dead.pid}"
    leftover.write_bytes(b"half an array")
    write_png(path, image)
    build_frame_cache(split, cache_dir, progress=False)
    assert not leftover.exists()

    header = cache_dir / "cache.json"
    header.write_text(header.read_text().replace('"version": 1', '"version": 0'))
    with pytest.raises(DataError, match="frame cache version 0, this code reads version 1; rebuild"):
        CachedFrames(split, cache_dir)
    assert build_frame_cache(split, cache_dir, progress=False).built == 3  # every entry, in the new version


def test_missing_foreign_and_incomplete_caches_are_named(split_dir, tmp_path):
    split = LayoutSplit.open(split_dir)
    with pytest.raises(DataError, match=r"no frame cache here \(cache\.json missing\).*cache_frames\.py"):
        CachedFrames(split, tmp_path / "none")
    cache_dir = tmp_path / "cache"
    build_frame_cache(split, cache_dir, progress=False)
    other = SimpleNamespace(root=tmp_path / "elsewhere", samples=split.samples)
    with pytest.raises(DataError, match="built from .* training reads .*elsewhere"):
        CachedFrames(other, cache_dir)
    with pytest.raises(DataError, match="not .*elsewhere; use another folder for each split"):
        build_frame_cache(other, cache_dir, progress=False)

    video = split.samples[-1].video
    (cache_dir / "videos" / f"{video}.json").unlink()
    with pytest.raises(DataError, match=rf"no entry for 1 of 3 videos \(first: '{video}'\)"):
        CachedFrames(split, cache_dir)
    resumed = build_frame_cache(split, cache_dir, progress=False)
    assert (resumed.built, resumed.up_to_date) == (1, 2)  # only that video again
    array = cache_dir / "videos" / f"{video}.npy"
    good = array.read_bytes()
    np.save(array, np.zeros((2, 4, 4, 3), np.uint8))  # an entry that does not match its index
    with pytest.raises(DataError, match=r"does not match its index .*rebuild"):
        CachedFrames(split, cache_dir).load_frame(video, "00001")
    repaired = build_frame_cache(split, cache_dir, progress=False)  # the advice in the message works
    assert (repaired.built, repaired.up_to_date) == (1, 2) and array.read_bytes() == good
    array.write_bytes(good[: len(good) // 2])  # cut short
    with pytest.raises(DataError, match=r"unreadable frame cache entry .*rebuild"):
        CachedFrames(split, cache_dir).load_frame(video, "00001")
    assert build_frame_cache(split, cache_dir, progress=False).built == 1 and array.read_bytes() == good
    with pytest.raises(DataError, match="frame 99999 of video .* is not in the frame cache"):
        CachedFrames(split, cache_dir).load_frame(split.samples[0].video, "99999")


class _FakeSource:
    """A reader with a video id taken from a data file, and frames held in memory."""

    def __init__(self, root: Path, video: str, images: list[np.ndarray]) -> None:
        self.root = root
        self.images = images
        frames = [f"{i:05d}" for i in range(1, len(images) + 1)]
        self.samples = [SimpleNamespace(video=video, frames=frames, num_frames=len(frames))]
        for i, image in enumerate(images, 1):
            write_png(root / f"{i:05d}.png", image)

    def frame_path(self, video: str, frame: str) -> Path:
        return self.root / f"{frame}.png"

    def load_frame(self, video: str, frame: str) -> np.ndarray:
        return self.images[int(frame) - 1]

    def global_frames(self, sample, num_global_frames: int) -> list[str]:
        return sample.frames[:num_global_frames]


def test_unsafe_video_ids_and_mixed_frame_sizes_are_refused(tmp_path):
    frame = np.zeros((8, 10, 3), np.uint8)
    unsafe = _FakeSource(tmp_path / "a", "../../outside", [frame])
    with pytest.raises(UnsafePathError, match="outside"):
        build_frame_cache(unsafe, tmp_path / "cache_a", progress=False)
    assert not (tmp_path / "outside.npy").exists()
    mixed = _FakeSource(tmp_path / "b", "v", [frame, np.zeros((8, 12, 3), np.uint8)])
    with pytest.raises(
        DataError, match=r"00002\.png: frame is 8 x 12, the video's first frame 00001 is 8 x 10"
    ):
        build_frame_cache(mixed, tmp_path / "cache_b", progress=False)
    assert not list((tmp_path / "cache_b" / "videos").glob("*.json"))  # nothing half-written is readable


def test_global_frames_beyond_the_listed_frames_are_cached(split_dir, tmp_path):
    """A layout video may list fewer frames than it has; its global memory still draws from all of them."""
    copy = tmp_path / "split"
    subprocess.run(["cp", "-r", str(split_dir), str(copy)], check=True)
    expressions = copy / "A2D_train_expressions.json"
    data = json.loads(expressions.read_text())
    video = next(iter(data))
    data[video]["frames"] = data[video]["frames"][:4]  # 8 frames on disk, 4 listed; labels stay among them
    for expression in data[video]["expressions"].values():
        expression["labels"] = [f for f in expression["labels"] if f in data[video]["frames"]]
    expressions.write_text(json.dumps(data))
    split = LayoutSplit.open(copy, strict=False)
    sample = next(s for s in split.samples if s.video == video)
    assert len(sample.frames) < sample.num_frames == 8
    assert video_frames(split)[video] == [f"{n:05d}" for n in range(1, 9)]
    build_frame_cache(split, tmp_path / "cache", progress=False)
    cached = CachedFrames(split, tmp_path / "cache")
    rng = np.random.default_rng(0)
    drawn = {f for _ in range(50) for f in split.random_global_frames(sample, 2, rng)}
    assert drawn - set(sample.frames)  # the global memory did draw frames outside the list
    for frame in drawn:
        assert np.array_equal(cached.load_frame(video, frame), split.load_frame(video, frame))


def test_a_full_disk_is_a_named_error_and_leaves_nothing(tmp_path, tiny_disk):
    big = [np.full((320, 427, 3), i, np.uint8) for i in range(4)]  # 1.6 MB of pixels on a 1 MiB disk
    source = _FakeSource(tmp_path / "frames", "v", big)
    with pytest.raises(OutputError, match=r"v\.npy: no space left on device \(ENOSPC"):
        build_frame_cache(source, tiny_disk / "cache", progress=False)
    assert sorted(p.name for p in (tiny_disk / "cache" / "videos").iterdir()) == []


def test_parallel_build_writes_the_same_arrays(split_dir, tmp_path):
    split = LayoutSplit.open(split_dir)
    build_frame_cache(split, tmp_path / "one", workers=1, progress=False)
    report = build_frame_cache(split, tmp_path / "two", workers=2, progress=False)
    assert report.built == 3
    for array in sorted((tmp_path / "one" / "videos").glob("*.npy")):
        assert array.read_bytes() == (tmp_path / "two" / "videos" / array.name).read_bytes()


def test_frame_cache_config_needs_a_file_source(tmp_path):
    cfg = locater.load_config("configs/model/tiny.yaml", [f"train.data.frame_cache={tmp_path}"])
    with pytest.raises(ConfigError, match="frame_cache.*layout and ytvos sources only"):
        build_train_dataset(cfg)


@pytest.mark.slow
def test_cache_frames_command(split_dir, tmp_path):
    tool = [sys.executable, "tools/data/cache_frames.py", "--config", "configs/model/tiny.yaml"]
    layout = ["train.data.source=layout", f"train.data.split_dir={split_dir}"]
    out = tmp_path / "cache"
    result = subprocess.run(
        [*tool, "--out", str(out), "--no-progress", *layout], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 videos decoded (24 frames" in result.stdout and f"train.data.frame_cache={out}" in result.stdout
    result = subprocess.run(
        [*tool, "--no-progress", *layout, f"train.data.frame_cache={out}"], capture_output=True, text=True
    )
    assert (
        result.returncode == 0
        and "0 videos decoded" in result.stdout
        and "3 already up to date" in result.stdout
    )
    result = subprocess.run([*tool, "--out", str(out)], capture_output=True, text=True)  # synthetic: no files
    assert result.returncode == 2 and "reads no files" in result.stderr
    result = subprocess.run([*tool, *layout], capture_output=True, text=True)
    assert result.returncode == 2 and "give --out DIR or set train.data.frame_cache" in result.stderr
