"""The training data and its order: which dataset ``train.data.source`` names, and the resumable stream of
sample keys that feeds it.

The data order is a function of ``(seed, position in the sample stream)`` only (:class:`TrainingSampler`), and
every sample's random draws too (:class:`SeededSamples`), so a run stopped and resumed at a stream position sees
the samples an uninterrupted one does, whatever the number of processes or DataLoader workers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import re
from collections.abc import Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from locater.config import Config, ConfigError
from locater.data.augment import AugmentConfig
from locater.data.frame_cache import CachedFrames
from locater.data.layout import LayoutSplit
from locater.data.synthetic.stream import SyntheticClipStream
from locater.data.training import ReferringClipDataset, collate_clips
from locater.data.ytvos import YTVOSSplit
from locater.data.ytvos_local_val import split_local_val
from locater.engine import distributed
from locater.errors import LocaterError

logger = logging.getLogger(__name__)


class TrainingSampler(Sampler):
    """An endless, resumable stream of ``(index, sample_seed)`` keys, sharded over the processes.

    The global stream is ``perm_0 + perm_1 + ...`` where ``perm_e`` is a permutation of the dataset drawn from
    ``(seed, e)``; process ``rank`` of ``world_size`` takes the stream positions ``start + rank``,
    ``start + rank + world_size``, ... So the processes together see every sample exactly once per epoch, no
    sample is padded or dropped, and the order does not depend on the number of processes. ``sample_seed`` is the
    stream position: each sample's random draws are a function of it.

    Args:
        num_samples: dataset length (one epoch).
        seed: seed of the permutations.
        rank, world_size: this process's place.
        start: global stream position to start from (samples consumed by all processes so far).
        shuffle: permute each epoch (otherwise the natural order).
    """

    def __init__(
        self,
        num_samples: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        shuffle: bool = True,
    ) -> None:
        if num_samples < 1:
            raise ValueError("the training dataset is empty")
        self.num_samples = num_samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.shuffle = shuffle

    def permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, epoch, 7]).permutation(self.num_samples)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start + self.rank
        epoch, order = -1, np.empty(0, dtype=np.int64)
        while True:
            this_epoch, offset = divmod(position, self.num_samples)
            if this_epoch != epoch:
                epoch, order = this_epoch, self.permutation(this_epoch)
            yield int(order[offset]), position
            position += self.world_size


class SeededSamples(Dataset):
    """Feeds ``(index, sample_seed)`` keys to a dataset so that every sample is a function of its key only.

    Datasets with per-item generators of their own (:class:`ReferringClipDataset`) get the epoch of the key
    (``sample_seed // len``) before each item; any other dataset runs with python, numpy and torch seeded from
    ``(seed, sample_seed)`` (the caller's generator states are restored afterwards). Either way an item does not
    depend on the DataLoader worker that builds it nor on what ran before.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, sample_seed = key
        if getattr(self.dataset, "accepts_sample_keys", False):
            return self.dataset[key]
        if isinstance(self.dataset, ReferringClipDataset):
            self.dataset.set_epoch(sample_seed // len(self.dataset))
            return self.dataset[index]
        with _seeded_generators([self.seed, sample_seed]):
            return self.dataset[index]


@contextlib.contextmanager
def _seeded_generators(entropy: list[int]) -> Iterator[None]:
    python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)


def seed_worker(worker_id: int, seed: int, rank: int, fresh_process: bool = False) -> None:
    """DataLoader worker seeding from ``(seed, rank, worker)`` (items are reseeded per sample on top).

    OpenCV's thread count is set here only in a worker started afresh (``fresh_process``: the spawn and
    forkserver start methods), which inherits nothing from the parent. In a forked worker ``cv2.setNumThreads``
    tears down the thread pool inherited from the parent and can wait forever on a condition variable the parent's
    threads held at the fork (seen as a hung training run); :func:`build_loader` sets it in the parent before
    forking instead."""
    if fresh_process:
        cv2.setNumThreads(1)
    value = int(np.random.SeedSequence([seed, rank, worker_id, 3]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def ytvos_training_split(root: str, exclude_local_val: bool) -> YTVOSSplit:
    """Ref-YouTube-VOS train, without the local validation videos when ``exclude_local_val``
    (:mod:`locater.data.ytvos_local_val`): the videos ``eval.ytvos_split=local_val`` scores are never trained on."""
    split = YTVOSSplit.open(root, "train")
    if not exclude_local_val:
        return split
    kept, held_out = split_local_val(split.videos())
    logger.info(
        "Ref-YouTube-VOS train: %d of %d videos, the %d local validation videos left out",
        len(kept),
        len(kept) + len(held_out),
        len(held_out),
    )
    return split.subset(kept)


def build_train_source(cfg: Config) -> LayoutSplit | YTVOSSplit:
    """The reader of the files ``train.data.source`` names (``layout`` or ``ytvos``; the synthetic source has no
    files)."""
    data = cfg.train.data
    if data.source == "layout":
        return LayoutSplit.open(data.split_dir)
    if data.source == "ytvos":
        return ytvos_training_split(data.ytvos_root, data.ytvos_exclude_local_val)
    raise ConfigError(f"train.data.source={data.source} reads no files: no frames to cache or read")


def build_train_dataset(cfg: Config) -> Dataset:
    """The training dataset that ``train.data.source`` names (read through ``train.data.frame_cache`` if set)."""
    data, model = cfg.train.data, cfg.model
    num_global_frames = model.global_memory.num_frames if model.global_memory.size > 0 else 0
    if data.frame_cache is not None and (data.source == "synthetic" or not isinstance(data.frame_cache, str)):
        raise ConfigError(
            f"train.data.frame_cache={data.frame_cache!r}: a folder path, for the layout and ytvos sources only "
            f"(train.data.source={data.source})"
        )
    if data.source == "synthetic":
        return SyntheticClipStream(
            samples_per_epoch=data.samples_per_epoch,
            clip_length=cfg.train.clip_length,
            image_size=model.image_size,
            num_global_frames=num_global_frames,
            mix=data.synthetic_mix,
            render_size=data.synthetic_size,
            num_frames=data.synthetic_frames,
            start_share=data.synthetic_start_share,
            context_frame=data.synthetic_context_frame,
            crossing_share=data.synthetic_crossing_share,
            frame_stride=data.synthetic_frame_stride,
            seed=cfg.seed,
        )
    source = build_train_source(cfg)
    if data.frame_cache is not None:
        source = CachedFrames(source, data.frame_cache)
    return ReferringClipDataset(
        source,
        clip_length=cfg.train.clip_length,
        image_size=model.image_size,
        num_global_frames=num_global_frames,
        augment=AugmentConfig.from_dict(dict(cfg.train.augment)),
        train=True,
        seed=cfg.seed,
    )


_WORKER_ERROR = re.compile(r"Caught \w+ in DataLoader worker process \d+\.")


def unwrap_worker_error(error: BaseException) -> BaseException:
    """The named error a DataLoader worker raised, as its own type with its own one-line message.

    torch re-raises a worker's exception in the main process as the same type, but with the message
    ``Caught X in DataLoader worker process N.`` followed by the worker's traceback text; the user would see that
    text where a :class:`~locater.errors.LocaterError` promises one line naming the file. Its last line
    ``module.X: message`` gives the message back. Any other error (a bug: its traceback is the useful part) is
    returned as it is, and so is one that cannot be rebuilt.
    """
    if not isinstance(error, LocaterError) or not _WORKER_ERROR.match(str(error)):
        return error
    kind = type(error)
    prefixes = (f"{kind.__module__}.{kind.__qualname__}: ", f"{kind.__qualname__}: ")
    for line in reversed(str(error).splitlines()):
        for prefix in prefixes:
            if line.startswith(prefix):
                try:
                    return kind(line[len(prefix) :].strip())
                except Exception:  # a constructor with other arguments: keep torch's message
                    return error
    return error


def next_batch(batches: Iterator) -> object:
    """``next(batches)``, with a named error of a DataLoader worker given back as it was raised
    (:func:`unwrap_worker_error`); the worker's traceback stays attached as the cause (``--debug`` prints it)."""
    try:
        return next(batches)
    except LocaterError as error:
        unwrapped = unwrap_worker_error(error)
        if unwrapped is error:
            raise
        raise unwrapped from error


def build_loader(dataset: Dataset, cfg: Config, info: distributed.DistInfo, start: int) -> DataLoader:
    """An endless DataLoader over :class:`TrainingSampler` keys from global stream position ``start``.

    With workers, OpenCV runs on one thread in each of them (set in this process before forked workers start, which
    inherit it, or in each worker started afresh): each worker is one of several processes sharing the cores, and
    OpenCV's own threads on top of them made 6 workers on 2 cores about half as fast (the trainer's own process
    needs no OpenCV threads)."""
    workers = cfg.train.data.num_workers
    # the start method the DataLoader will use, read without fixing it (get_start_method() would)
    mp = torch.multiprocessing
    forked = (mp.get_start_method(allow_none=True) or mp.get_all_start_methods()[0]) == "fork"
    if workers > 0 and forked:
        cv2.setNumThreads(1)  # here, never in a forked worker (see seed_worker)
    sampler = TrainingSampler(len(dataset), cfg.seed, info.rank, info.world_size, start)
    return DataLoader(
        SeededSamples(dataset, cfg.seed),
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_clips,
        worker_init_fn=functools.partial(
            seed_worker, seed=cfg.seed, rank=info.rank, fresh_process=not forked
        ),
        generator=torch.Generator().manual_seed(cfg.seed * 1000 + info.rank),  # leaves the global RNG alone
        pin_memory=info.device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
