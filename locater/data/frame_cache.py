"""A decoded-frame cache for training: each video's frames decoded once, read back without decoding.

Decoding a 320 x 427 PNG frame takes about 3 ms of CPU, and the 8 frames of an A2D training clip most of what a
DataLoader worker spends on the clip; reading the same pixels from a memory-mapped array is a copy. The cache holds
exactly the decoded pixels (uint8 RGB at the file's own size), so a training run gives the same samples with and
without it. Raw pixels take 400 KiB a 320 x 427 frame: 1.6x the A2D-like PNG frames of ``tools/benchmark.py
--data``, and many times JPEG frames.

Which frames: every frame the split's samples list, and every frame their global memory can draw from
(:func:`video_frames`).

Layout of a cache folder (written by :func:`build_frame_cache`, ``tools/data/cache_frames.py``)::

    cache.json                 {"format": "locater-frame-cache", "version": 1, "source": <the split it reads>}
    videos/<video>.npy         N x H x W x 3 uint8 RGB, frame i of the index
    videos/<video>.json        {"frames": [N frame ids], "height": H, "width": W, "sources": [[bytes, mtime_ns]]}

Video ids become paths under ``videos/`` only after :func:`locater.paths.contained_path` checked them. The index
records the size and modification time of each source file; :class:`CachedFrames` compares them with the file on
every read, so a frame changed (or removed) after the cache was built is an error naming the file, never a stale
image. Arrays are read with ``numpy.load(mmap_mode="r")`` (no pickles: a cache file cannot run code).
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from locater.data.frames import DataError
from locater.files import atomic_output, write_json_atomic
from locater.paths import contained_path

logger = logging.getLogger(__name__)

CACHE_FORMAT = "locater-frame-cache"
CACHE_VERSION = 1
OPEN_VIDEOS = 64  # memory maps kept open per process (least recently used closed first)


class FrameSource(Protocol):
    """What the cache needs from a reader (:class:`~locater.data.layout.LayoutSplit`, ``YTVOSSplit``)."""

    root: Path
    samples: list

    def frame_path(self, video: str, frame: str) -> Path: ...

    def load_frame(self, video: str, frame: str) -> np.ndarray: ...

    def global_frames(self, sample, num_global_frames: int) -> list[str]: ...


def build_command(cache_dir: str | Path) -> str:
    """How to (re)build a cache, for error messages."""
    return f"python tools/data/cache_frames.py --config CONFIG --out {cache_dir}"


def video_frames(source: FrameSource) -> dict[str, list[str]]:
    """Every video of ``source.samples`` with every frame training can read, in first-seen order: the frames its
    samples list, and the frames its global memory can draw from. The reader's own rule answers the latter:
    ``global_frames(sample, sample.num_frames)`` is one segment a frame, so every frame a segment can give (a
    layout split's global frames come from the whole video, which its ``frames`` list may not cover)."""
    videos: dict[str, dict[str, None]] = {}
    for sample in source.samples:
        frames = videos.setdefault(sample.video, {})
        frames.update(dict.fromkeys(sample.frames))
        frames.update(dict.fromkeys(source.global_frames(sample, sample.num_frames)))
    return {video: list(frames) for video, frames in videos.items()}


def _stat(path: Path) -> list[int] | None:
    """``[size, mtime_ns]`` of a source file, ``None`` when it does not exist."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise DataError(
            f"{path}: cannot read the file's size and time ({error.strerror or error})"
        ) from error
    return [info.st_size, info.st_mtime_ns]


def _entry_paths(cache_dir: Path, video: str, source: object = None) -> tuple[Path, Path]:
    videos = cache_dir / "videos"
    array = contained_path(videos, f"{video}.npy", source=source or cache_dir, what="video id")
    return array, array.with_suffix(".json")


def _open_entry(cache_dir: Path, array_path: Path, index_path: Path) -> tuple[dict, np.ndarray]:
    """A cache entry's index and its memory-mapped array, checked to match: ``N x H x W x 3`` uint8 for the index's
    ``N`` frames of ``H x W``, one source record a frame.

    Raises:
        DataError: an unreadable index or array, or an array that does not match its index (the file named, and
            how to rebuild).
    """
    rebuild = f"rebuild it with `{build_command(cache_dir)}`"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{index_path}: unreadable frame cache index ({error}); {rebuild}") from error
    try:
        array = np.load(array_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{array_path}: unreadable frame cache entry ({error}); {rebuild}") from error
    frames = index.get("frames") if isinstance(index, dict) else None
    shape = (len(frames), index.get("height"), index.get("width"), 3) if isinstance(frames, list) else None
    if (
        not frames
        or array.dtype != np.uint8
        or array.shape != shape
        or len(index.get("sources", [])) != len(frames)
    ):
        raise DataError(
            f"{array_path}: frame cache entry does not match its index {index_path.name} "
            f"(array {array.dtype} {array.shape}); {rebuild}"
        )
    return index, array


@dataclass
class CacheReport:
    """What :func:`build_frame_cache` did: videos (re)built and already up to date, frames and bytes written."""

    built: int = 0
    up_to_date: int = 0
    frames_written: int = 0
    bytes_written: int = 0


def _is_fresh(
    source: FrameSource, video: str, frames: list[str], cache_dir: Path, array_path: Path, index_path: Path
) -> bool:
    """The entry holds exactly these frames, its array matches its index, and no source file changed since."""
    try:
        index, _ = _open_entry(cache_dir, array_path, index_path)
    except DataError:
        return False
    if index["frames"] != frames:
        return False
    return all(_stat(source.frame_path(video, f)) == s for f, s in zip(frames, index["sources"]))


def _build_video(
    source: FrameSource, cache_dir: Path, video: str, frames: list[str], rebuild: bool = False
) -> tuple[bool, int]:
    """Decode one video into its cache entry unless it is up to date (``rebuild``: in any case); (built, bytes
    written)."""
    array_path, index_path = _entry_paths(cache_dir, video, source.root)
    if not rebuild and _is_fresh(source, video, frames, cache_dir, array_path, index_path):
        return False, 0
    sources = [_stat(source.frame_path(video, f)) for f in frames]  # before decoding: a later edit is seen
    first = source.load_frame(video, frames[0])
    height, width = first.shape[:2]
    array_path.parent.mkdir(parents=True, exist_ok=True)
    index_path.unlink(missing_ok=True)  # an entry without its index is never read
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
        "fortran_order": False,
        "shape": (len(frames), height, width, 3),
    }
    # plain writes, not a memory map: a full disk is then an OSError that atomic_output names, not a SIGBUS
    with atomic_output(array_path) as tmp, open(tmp, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for i, frame in enumerate(frames):
            image = first if i == 0 else source.load_frame(video, frame)
            if image.shape != first.shape:
                raise DataError(
                    f"{source.frame_path(video, frame)}: frame is {image.shape[0]} x {image.shape[1]}, the "
                    f"video's first frame {frames[0]} is {height} x {width}; a video's frames must share one size"
                )
            handle.write(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
    write_json_atomic(index_path, {"frames": frames, "height": height, "width": width, "sources": sources})
    return True, array_path.stat().st_size


_WORKER_SOURCE: FrameSource | None = None


def _init_worker(source: FrameSource) -> None:
    global _WORKER_SOURCE
    _WORKER_SOURCE = source


def _build_in_worker(cache_dir: Path, video: str, frames: list[str], rebuild: bool) -> tuple[bool, int]:
    assert _WORKER_SOURCE is not None
    return _build_video(_WORKER_SOURCE, cache_dir, video, frames, rebuild)


def build_frame_cache(
    source: FrameSource, cache_dir: str | Path, workers: int = 1, progress: bool = True
) -> CacheReport:
    """Decode every frame the samples of ``source`` list into ``cache_dir`` (see the module docstring).

    An entry whose index matches the video's frames and the size and time of each source file is kept; every
    other one is decoded again, so an interrupted build resumes and an edited split is brought up to date.

    Raises:
        DataError: a cache folder built from another split, a missing or unreadable frame, or frames of one
            video of different sizes (the file named).
    """
    cache_dir = Path(cache_dir)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    header = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "source": str(Path(source.root).resolve())}
    header_path = cache_dir / "cache.json"
    rebuild = False
    if header_path.is_file():
        existing = _read_header(cache_dir, check_version=False)
        if existing["source"] != header["source"]:
            raise DataError(
                f"{header_path}: this frame cache was built from {existing['source']}, not {header['source']}; "
                "use another folder for each split"
            )
        rebuild = existing.get("version") != CACHE_VERSION
        if rebuild:
            logger.info(
                "%s: frame cache version %s, rebuilding every entry", header_path, existing.get("version")
            )
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_dead_temporaries(cache_dir / "videos")
    write_json_atomic(header_path, header)
    videos = video_frames(source)
    report = CacheReport()

    def count(video: str, result: tuple[bool, int]) -> None:
        built, size = result
        report.built += built
        report.up_to_date += not built
        report.frames_written += len(videos[video]) if built else 0
        report.bytes_written += size
        bar.update()

    if workers == 1:
        with tqdm(total=len(videos), desc="caching frames", unit="video", disable=not progress) as bar:
            for video, frames in videos.items():
                count(video, _build_video(source, cache_dir, video, frames, rebuild))
        return report
    # the pool's processes start before the progress bar's thread does
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(source,)) as pool:
        futures = {
            pool.submit(_build_in_worker, cache_dir, video, frames, rebuild): video
            for video, frames in videos.items()
        }
        with tqdm(total=len(videos), desc="caching frames", unit="video", disable=not progress) as bar:
            try:
                for future in as_completed(futures):
                    count(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # the first error now, not after every video
                raise
    return report


def _remove_dead_temporaries(videos_dir: Path) -> None:
    """Delete the temporary files of builds whose process is gone (an interrupted build's leftovers)."""
    if not videos_dir.is_dir():
        return
    for path in videos_dir.rglob(".*.tmp*"):
        pid = path.name.rsplit(".tmp", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except PermissionError:  # a live process of another user
            continue


def _read_header(cache_dir: Path, check_version: bool = True) -> dict:
    path = cache_dir / "cache.json"
    if not path.is_file():
        raise DataError(
            f"{cache_dir}: no frame cache here (cache.json missing); build it with `{build_command(cache_dir)}`"
        )
    try:
        header = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable frame cache header ({error})") from error
    if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT or "source" not in header:
        raise DataError(f"{path}: not a locater frame cache header")
    if check_version and header.get("version") != CACHE_VERSION:
        raise DataError(
            f"{path}: frame cache version {header.get('version')}, this code reads version {CACHE_VERSION}; "
            f"rebuild it with `{build_command(cache_dir)}`"
        )
    return header


@dataclass
class _Entry:
    positions: dict[str, int]
    sources: list
    array: np.ndarray


class CachedFrames:
    """A reader whose frames come from a cache built by :func:`build_frame_cache`; the rest from ``source``.

    Construction checks that the cache was built from ``source`` and has an entry for every video; each
    :meth:`load_frame` checks that the frame's source file is the one that was cached.

    Raises:
        DataError: no cache, a cache of another split, missing videos (how to build them is in the message), a
            frame the cache does not hold, a source file changed or removed since the cache was built.
    """

    def __init__(self, source: FrameSource, cache_dir: str | Path) -> None:
        self.source = source
        self.cache_dir = Path(cache_dir)
        header = _read_header(self.cache_dir)
        expected = str(Path(source.root).resolve())
        if header["source"] != expected:
            raise DataError(
                f"{self.cache_dir / 'cache.json'}: this frame cache was built from {header['source']}, "
                f"training reads {expected}"
            )
        videos = list(dict.fromkeys(sample.video for sample in source.samples))  # only names are needed here
        missing = [v for v in videos if not _entry_paths(self.cache_dir, v, self.source.root)[1].is_file()]
        if missing:
            raise DataError(
                f"{self.cache_dir}: frame cache has no entry for {len(missing)} of {len(videos)} videos "
                f"(first: {missing[0]!r}); build it with `{build_command(self.cache_dir)}`"
            )
        self._open: OrderedDict[str, _Entry] = OrderedDict()

    # the reader protocol of the training dataset, delegated
    @property
    def root(self) -> Path:
        return self.source.root

    @property
    def samples(self) -> list:
        return self.source.samples

    def frame_path(self, video: str, frame: str) -> Path:
        return self.source.frame_path(video, frame)

    def load_mask(self, video: str, expression: str, frame: str) -> np.ndarray:
        return self.source.load_mask(video, expression, frame)

    def global_frames(self, sample, num_global_frames: int) -> list[str]:
        return self.source.global_frames(sample, num_global_frames)

    def random_global_frames(self, sample, num_global_frames: int, rng: np.random.Generator) -> list[str]:
        return self.source.random_global_frames(sample, num_global_frames, rng)

    def load_frame(self, video: str, frame: str) -> np.ndarray:
        """``H x W x 3`` uint8 RGB (a read-only view of the memory-mapped cache)."""
        entry = self._entry(video)
        position = entry.positions.get(frame)
        if position is None:
            raise DataError(
                f"{_entry_paths(self.cache_dir, video, self.source.root)[1]}: frame {frame} of video {video!r} is not in the "
                f"frame cache; rebuild it with `{build_command(self.cache_dir)}`"
            )
        path = self.source.frame_path(video, frame)
        if _stat(path) != entry.sources[position]:
            change = "was removed" if not path.exists() else "changed"
            raise DataError(
                f"{path}: {change} after the frame cache {self.cache_dir} was built; rebuild it with "
                f"`{build_command(self.cache_dir)}`"
            )
        return entry.array[position]

    def _entry(self, video: str) -> _Entry:
        entry = self._open.get(video)
        if entry is not None:
            self._open.move_to_end(video)
            return entry
        array_path, index_path = _entry_paths(self.cache_dir, video, self.source.root)
        index, array = _open_entry(self.cache_dir, array_path, index_path)
        entry = _Entry({f: i for i, f in enumerate(index["frames"])}, index["sources"], array)
        self._open[video] = entry
        if len(self._open) > OPEN_VIDEOS:
            self._open.popitem(last=False)
        return entry

    def __getstate__(self) -> dict:  # DataLoader workers open their own maps
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()
        return state


def cache_size_bytes(cache_dir: str | Path) -> int:
    """Bytes of the arrays under ``cache_dir/videos``."""
    total = 0
    for directory, _, files in os.walk(Path(cache_dir) / "videos"):
        total += sum(
            os.path.getsize(os.path.join(directory, name)) for name in files if name.endswith(".npy")
        )
    return total
