"""Streaming evaluation on layout-3.1 splits (A2D-S, A2D-S+, JHMDB-S, the synthetic benchmark).

``resolve_eval_splits(cfg)`` lists the splits an ``eval`` section names (ALL: the four testing types) and
``evaluate_split(model, cfg, split, device)`` evaluates one of them: what the trainer's validation and
``tools/evaluate.py`` call. Inside a process group every rank evaluates its share of the videos
(balanced by frame count, each video exactly once), the records are gathered, and every rank returns the same
metrics.

Per video: all its expressions run in one batch that shares the vision encoder; frames go through ``step`` in
order; frames after the last labelled frame of every expression are not processed (their outputs are never
scored and cannot change earlier ones); frames are decoded ahead in a background thread. Pre- and
post-processing are those of the official evaluation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from locater.config import TESTING_TYPES, Config
from locater.data.frames import write_png
from locater.data.layout import KINDED_DATASETS, LayoutError, LayoutSplit, resolve_split_dir
from locater.engine import distributed
from locater.engine.amp import autocast_for
from locater.engine.metrics import FrameRecord, SegmentationMetrics, score_frame
from locater.live import LiveMemory, LiveSettings
from locater.model.locater import Locater, LocaterState
from locater.paths import contained_path
from locater.prefetch import Prefetcher
from locater.preprocess import logits_to_masks, preprocess_frames
from locater.tokenizer import tokenize

logger = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """Metrics of one split plus what produced them."""

    metrics: dict[str, float]
    records: list[FrameRecord]
    num_samples: int
    frames_processed: int
    vision_passes: int
    seconds: float
    split_dir: Path = field(default_factory=Path)


def split_dir_from_config(cfg: Config, testing_type: str | None = None) -> Path:
    """The split folder an ``eval`` section names (``split_dir`` wins over data_root/dataset/testing_type)."""
    section = cfg.eval
    if section.split_dir:
        return Path(section.split_dir)
    return resolve_split_dir(section.data_root, section.dataset, testing_type or section.testing_type)


def _frame_loader(split: LayoutSplit, video: str, size: int) -> Callable[[str], tuple[str, torch.Tensor]]:
    """``frame id -> (frame id, 1 x 3 x S x S tensor)`` for one video (what a :class:`Prefetcher` runs)."""

    def load(frame: str) -> tuple[str, torch.Tensor]:
        return frame, preprocess_frames(split.load_frame(video, frame), size)[None]

    return load


def first_videos(split, max_videos: int | None, what: str = "split") -> list[tuple[str, list]]:
    """The split's ``(video, samples)`` in order, the first ``max_videos`` of them (``None`` or 0: all).

    Raises ValueError for a negative ``max_videos`` and LayoutError when nothing is left to evaluate.
    """
    if max_videos is not None and max_videos < 0:
        raise ValueError(f"eval.max_videos must be >= 0 (0: all videos), got {max_videos}")
    videos = list(split.videos().items())
    if max_videos:
        videos = videos[:max_videos]
    if not videos:
        raise LayoutError(f"{split.root}: the {what} holds no expression")
    return videos


def frames_to_process(samples: list, truncate: bool = True) -> list[str]:
    """The video's frames in order, up to the last labelled frame of any expression when ``truncate``."""
    frames = sorted(set().union(*(s.frames for s in samples)))
    if not truncate:
        return frames
    last = max((label for s in samples for label in s.labels), default=None)
    return [f for f in frames if last is not None and f <= last]


def _select_rows(state: LocaterState, rows: torch.Tensor, video_index: torch.Tensor) -> LocaterState:
    """The state of the expression rows ``rows`` only, their videos renumbered by ``video_index``."""

    def pick(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x[rows]

    return replace(
        state,
        words=state.words[rows],
        global_memory=pick(state.global_memory),
        local_memory=pick(state.local_memory),
        video_index=video_index,
    )


@dataclass
class VideoPlan:
    video: str
    samples: list
    frames: list[str]


def run_videos(
    model: Locater,
    split: LayoutSplit,
    plans: list[VideoPlan],
    device: torch.device,
    prefetch: int,
    on_frame,
    live: LiveSettings | None = None,
) -> tuple[int, int]:
    """Run several videos in lockstep: frame ``t`` of every video still running goes through one ``step``.

    All expressions of all the videos form one batch (``video_index`` maps each to its video's row); the vision
    encoder runs once per frame and video. A video whose frames are done leaves the batch (its rows are dropped
    from the state). ``on_frame(plan, frame, logits_rows)`` receives each video's ``E_v x 1 x S x S`` logits.
    With ``live`` the global memory is built causally from the frames seen so far (:class:`LiveMemory`): no global
    frame is read up front and no frame before its turn. Returns (frames processed, vision-encoder passes).
    """
    size = model.image_size[0]
    num_global_frames = model.num_global_frames if model.global_memory is not None else 0
    plans = [p for p in plans if p.frames]
    if not plans:
        return 0, 0
    global_frames, ids, rows_of = [], [], []
    for plan in plans:
        global_ids = (
            split.global_frames(plan.samples[0], num_global_frames) if num_global_frames and not live else []
        )
        global_frames.append(
            torch.stack([preprocess_frames(split.load_frame(plan.video, f), size) for f in global_ids])
            if global_ids
            else torch.zeros(0, 3, size, size)
        )
        ids.append(tokenize([s.sentence for s in plan.samples]))
        rows_of.append(len(plan.samples))
    row_video = torch.repeat_interleave(torch.arange(len(plans)), torch.tensor(rows_of))
    live_memory = None
    if live is not None:  # the encoded frames it keeps come from step: no vision pass of its own
        live_memory = LiveMemory(model, torch.cat(ids).to(device), row_video.to(device), live)
        state, vision_passes = None, 0
    else:
        state = model.start(
            torch.stack(global_frames).to(device), torch.cat(ids).to(device), row_video.to(device)
        )
        vision_passes = num_global_frames * len(plans)
    frames_done = 0
    prefetchers = [Prefetcher(p.frames, _frame_loader(split, p.video, size), prefetch) for p in plans]
    streams = [iter(f) for f in prefetchers]
    active = list(range(len(plans)))  # plans still running, in batch order
    try:
        for t in range(max(len(p.frames) for p in plans)):
            still = [v for v in active if t < len(plans[v].frames)]
            if still != active:
                keep = torch.tensor([v in still for v in row_video.tolist()])
                rows = keep.nonzero().squeeze(1)
                row_video = row_video[keep]
                renumber = {v: i for i, v in enumerate(still)}
                video_index = torch.tensor([renumber[v] for v in row_video.tolist()], dtype=torch.long)
                state = _select_rows(state, rows.to(device), video_index.to(device))
                if live_memory is not None:
                    live_memory.select_videos(torch.tensor([active.index(v) for v in still]))
                active = still
            batch = [next(streams[v]) for v in active]
            frame_tensor = torch.cat([tensor for _, tensor in batch]).to(device, non_blocking=True)
            if live_memory is None:
                logits, state = model.step(frame_tensor, state)
            else:
                logits, state = live_memory.step(frame_tensor, state)
            frames_done += len(active)
            vision_passes += len(active)
            offset = 0
            for v, (frame, _) in zip(active, batch):
                count = rows_of[v]
                on_frame(plans[v], frame, logits[offset : offset + count])
                offset += count
    finally:
        for prefetcher in prefetchers:
            prefetcher.close()
    return frames_done, vision_passes


def shard_plans(
    split, max_videos: int | None, *, truncate: bool, videos_per_batch: int = 1, what: str = "split"
) -> tuple[list[VideoPlan], list[VideoPlan]]:
    """``(plans, mine)``: a plan for each of the split's first ``max_videos`` videos, and this process's share.

    The share is :func:`distributed.balanced_shard` on the frame counts; with ``videos_per_batch > 1`` it is sorted
    longest first, so that the videos run in lockstep have similar lengths (fewer idle rows).

    Raises ValueError for ``videos_per_batch < 1`` (and what :func:`first_videos` raises).
    """
    if videos_per_batch < 1:
        raise ValueError(f"eval.videos_per_batch must be >= 1, got {videos_per_batch}")
    videos = first_videos(split, max_videos, what)
    plans = [VideoPlan(video, samples, frames_to_process(samples, truncate)) for video, samples in videos]
    rank, world = distributed.get_rank(), distributed.get_world_size()
    mine = [plans[i] for i in distributed.balanced_shard([len(p.frames) for p in plans], rank, world)]
    if videos_per_batch > 1:
        mine.sort(key=lambda p: -len(p.frames))
    return plans, mine


def run_plans(
    model: Locater,
    split,
    mine: list[VideoPlan],
    device: torch.device,
    on_frame,
    *,
    amp: bool | str = False,
    prefetch: int = 4,
    videos_per_batch: int = 1,
    live: LiveSettings | None = None,
    progress: bool = True,
) -> tuple[int, int]:
    """This process's videos through :func:`run_videos`, ``videos_per_batch`` at a time, under the autocast of
    ``amp``, with a progress bar of videos on rank 0 (frames/s as its postfix).

    Returns (frames processed, vision-encoder passes) of this process.
    """
    start_time = time.perf_counter()
    autocast = autocast_for(device.type, amp)
    frames_done = vision_passes = 0
    show = progress and distributed.get_rank() == 0
    bar = tqdm(total=len(mine), unit="video", disable=not show, dynamic_ncols=True)
    for first in range(0, len(mine), videos_per_batch):
        chunk = mine[first : first + videos_per_batch]
        with autocast:
            done, passes = run_videos(model, split, chunk, device, prefetch, on_frame, live)
        frames_done += done
        vision_passes += passes
        elapsed = time.perf_counter() - start_time
        bar.set_postfix(frames_per_s=f"{frames_done / max(elapsed, 1e-9):.1f}")
        bar.update(len(chunk))
    bar.close()
    return frames_done, vision_passes


def save_mask_png(
    save_masks_dir: Path, video: str, expression: str, frame: str, mask: np.ndarray, ids_source: object
) -> Path:
    """Write ``save_masks_dir/<video>/<expression>/<frame>.png`` (0/255) from an ``H x W`` bool mask.

    The ids come from a data file (``ids_source``, named in the error): the path is checked to stay under
    ``save_masks_dir`` whatever they hold."""
    out = contained_path(
        save_masks_dir, video, expression, f"{frame}.png", source=ids_source, what="video or expression id"
    )
    return write_png(out, mask.astype(np.uint8) * 255)


@torch.inference_mode()
def evaluate_layout_split(
    model: Locater,
    split: LayoutSplit,
    device: torch.device,
    *,
    truncate: bool = True,
    amp: bool = False,
    coco: bool = True,
    save_masks_dir: Path | None = None,
    progress: bool = True,
    max_videos: int | None = None,
    prefetch: int = 4,
    videos_per_batch: int = 1,
    live: LiveSettings | None = None,
) -> EvaluationResult:
    """Evaluate ``model`` on a split (sharded over the process group when one is initialised).

    ``videos_per_batch > 1`` runs that many videos in lockstep (see :func:`run_videos`): the same computation
    per video, in larger batches (faster for small models and on GPUs); results can differ from one video at a
    time in the last bits of floating-point sums. ``live`` evaluates the causal live mode (:mod:`locater.live`).
    """
    start_time = time.perf_counter()
    plans, mine = shard_plans(split, max_videos, truncate=truncate, videos_per_batch=videos_per_batch)
    model.eval()
    records: list[FrameRecord] = []
    labels = {(p.video, s.expression): set(s.labels) for p in mine for s in p.samples}
    ids_source = getattr(split, "expressions_file", None) or split.root

    def score(plan: VideoPlan, frame: str, logits: torch.Tensor) -> None:
        for row, sample in enumerate(plan.samples):
            if frame not in labels[(plan.video, sample.expression)]:
                continue
            target = split.load_mask(plan.video, sample.expression, frame)
            records.append(
                score_frame(logits[row].float(), target, plan.video, sample.expression, frame, coco=coco)
            )
            if save_masks_dir is not None:
                mask = logits_to_masks(logits[row, 0].float(), target.shape).cpu().numpy()
                save_mask_png(save_masks_dir, plan.video, sample.expression, frame, mask, ids_source)

    frames_done, vision_passes = run_plans(
        model,
        split,
        mine,
        device,
        score,
        amp=amp,
        prefetch=prefetch,
        videos_per_batch=videos_per_batch,
        live=live,
        progress=progress,
    )
    gathered = distributed.all_gather_objects((records, frames_done, vision_passes))
    all_records = [r for part in gathered for r in part[0]]
    metrics = SegmentationMetrics()
    metrics.extend(all_records)
    computed = metrics.compute()
    computed["num_samples"] = sum(len(p.samples) for p in plans)
    return EvaluationResult(
        metrics=computed,
        records=metrics.sorted_records(),
        num_samples=computed["num_samples"],
        frames_processed=sum(part[1] for part in gathered),
        vision_passes=sum(part[2] for part in gathered),
        seconds=time.perf_counter() - start_time,
        split_dir=split.root,
    )


@dataclass(frozen=True)
class EvalSplit:
    """One split that an ``eval`` section names.

    Attributes:
        testing_type: ``eval.testing_type``, or with ALL (A2D, SYN) one of the four types it stands for.
        split_dir: the split folder (``eval.split_dir``, or found under ``eval.data_root``).
    """

    testing_type: str
    split_dir: Path


def resolve_eval_splits(cfg: Config) -> list[EvalSplit]:
    """The splits ``cfg.eval`` names, every folder looked up (a missing one raises :class:`LayoutError` before
    anything is evaluated): the four testing types for ``testing_type: ALL`` on A2D or SYN (without
    ``split_dir``), else the one split. The one place that expands ALL (the evaluate tool, validation in training).
    """
    section = cfg.eval
    expand = section.testing_type == "ALL" and section.dataset in KINDED_DATASETS and not section.split_dir
    types = TESTING_TYPES if expand else (section.testing_type,)
    return [EvalSplit(testing_type, split_dir_from_config(cfg, testing_type)) for testing_type in types]


def evaluate_split(
    model: Locater,
    cfg: Config,
    split: EvalSplit,
    device: torch.device,
    *,
    output_dir: Path | None = None,
    progress: bool = True,
    max_videos: int | None = None,
) -> EvaluationResult:
    """Evaluate one split of :func:`resolve_eval_splits` with the settings of ``cfg.eval`` (same result on every
    rank). Writes nothing, except the masks into ``output_dir/masks`` when ``eval.save_masks`` and ``output_dir``
    is given; ``max_videos`` (when set) wins over ``eval.max_videos``."""
    section = cfg.eval
    return evaluate_layout_split(
        model,
        LayoutSplit.open(split.split_dir),
        device,
        truncate=section.truncate,
        amp=section.amp,
        coco=section.coco_ap,
        save_masks_dir=Path(output_dir) / "masks" if output_dir is not None and section.save_masks else None,
        progress=progress,
        max_videos=max_videos or section.max_videos or None,
        prefetch=section.prefetch,
        videos_per_batch=section.videos_per_batch,
        live=live_settings(cfg),
    )


def live_settings(cfg: Config) -> LiveSettings | None:
    """The live mode's settings when ``eval.live`` is on, else ``None``."""
    section = cfg.eval
    if not section.live:
        return None
    return LiveSettings(refresh_every=section.live_refresh_every, reservoir=section.live_reservoir)


@dataclass
class SubmissionResult:
    """What :func:`write_ytvos_submission` produced."""

    zip_path: Path
    num_masks: int
    num_samples: int
    frames_processed: int
    vision_passes: int
    seconds: float


@torch.inference_mode()
def write_ytvos_submission(
    model: Locater,
    split,
    device: torch.device,
    zip_path: Path,
    *,
    amp: bool = False,
    progress: bool = True,
    max_videos: int | None = None,
    prefetch: int = 4,
    live: LiveSettings | None = None,
) -> SubmissionResult:
    """Run ``model`` over a Ref-YouTube-VOS split without masks (``valid``) and write the submission zip.

    Every listed frame of every video is processed (all expressions of a video in one batch) and its mask is
    written at the frame's resolution as ``Annotations/<video>/<exp_id>/<frame>.png`` (0/255). Inside a process
    group the videos are sharded, the encoded PNGs gathered and rank 0 writes the zip; the zip is only written
    when it covers every (video, expression, frame) of the meta file (``max_videos`` therefore raises, by design,
    unless it covers the whole split).

    Args:
        split: a :class:`locater.data.ytvos.YTVOSSplit`.
        live: the causal live mode's settings (:mod:`locater.live`), or ``None`` for the standard mode.
    """
    from locater.data.frames import encode_png
    from locater.data.ytvos import SubmissionWriter

    start_time = time.perf_counter()
    plans, mine = shard_plans(split, max_videos, truncate=False, what=f"{split.split} split")
    model.eval()
    encoded: list[tuple[str, str, str, bytes]] = []
    listed = {(p.video, s.expression): set(s.frames) for p in mine for s in p.samples}

    def encode(plan: VideoPlan, frame: str, logits: torch.Tensor) -> None:
        with Image.open(split.frame_path(plan.video, frame)) as image:  # reads the header only
            width, height = image.size
        masks = logits_to_masks(logits.float(), (height, width))[:, 0].cpu().numpy()
        for row, sample in enumerate(plan.samples):
            if frame in listed[(plan.video, sample.expression)]:
                png = encode_png(masks[row].astype(np.uint8) * 255)
                encoded.append((plan.video, sample.expression, frame, png))

    frames_done, vision_passes = run_plans(
        model, split, mine, device, encode, amp=amp, prefetch=prefetch, live=live, progress=progress
    )
    gathered = distributed.all_gather_objects((encoded, frames_done, vision_passes))
    num_masks = sum(len(part[0]) for part in gathered)
    if distributed.is_main_process():
        with SubmissionWriter(zip_path, split) as writer:
            for part in gathered:
                for video, expression, frame, png in part[0]:
                    writer.add_png(video, expression, frame, png)
    distributed.barrier()
    return SubmissionResult(
        zip_path=Path(zip_path),
        num_masks=num_masks,
        num_samples=sum(len(p.samples) for p in plans),
        frames_processed=sum(part[1] for part in gathered),
        vision_passes=sum(part[2] for part in gathered),
        seconds=time.perf_counter() - start_time,
    )
