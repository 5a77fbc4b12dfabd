"""The training loop (our recipe: the authors' training code was never released).

Per optimizer step, every process takes ``accumulate`` micro-batches of ``batch_size`` clips. A clip of ``T``
consecutive frames runs through ``start`` (global memory from ``N1`` frames of the whole video) and ``step`` in
order, backpropagating through the memory (``Locater.forward_clip``); the local memory is written with the
ground-truth mask with probability ``train.teacher_forcing`` per supervised frame, else with the prediction (a
clip's ``context`` frames, when the dataset gives them, always write the ground truth and are not supervised). The
loss is BCE + Dice on the main output plus weighted BCE + Dice on the ``K`` auxiliary heads
(:mod:`locater.engine.losses`); AdamW with a lower rate for the vision encoder, warm-up then cosine or step decay,
gradient clipping, optional AMP (bf16, or fp16 with a gradient scaler).

Runs as a plain process (CPU or one GPU) or under torchrun with DDP. Rank 0 writes logs and checkpoints.

Reproducibility: the data order is a function of ``(seed, position in the sample stream)`` only (see
:class:`TrainingSampler`), every sample's random draws too, and a checkpoint holds model, optimizer, scaler,
step, sampler position and every process's RNG states, so a run stopped and resumed ends where an uninterrupted
one does (bit-identical on the CPU).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from locater.checkpoint import CheckpointError
from locater.config import Config, load_config, save_config
from locater.data.augment import AugmentConfig
from locater.data.layout import LayoutError, LayoutSplit
from locater.data.training import ReferringClipDataset, collate_clips
from locater.engine import distributed
from locater.engine.amp import autocast_for, check_amp
from locater.engine.checkpoints import (
    CheckpointManager,
    capture_rng_state,
    load_training_checkpoint,
    restore_rng_state,
)
from locater.engine.losses import LossWeights, segmentation_loss
from locater.engine.optim import LRSchedule, build_optimizer, learning_rates
from locater.engine.train_logging import TrainLogger, overlay, peak_memory_mb
from locater.model.build import build_model
from locater.model.locater import Locater

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; the run stops without touching its checkpoints."""


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports."""

    step: int
    epoch: int
    stopped_by: str  # max_steps | stop_at_step | max_minutes
    minutes: float
    losses: dict[str, float] = field(default_factory=dict)
    validation: dict[str, dict[str, float]] | None = None
    best: dict[str, Any] | None = None
    last_checkpoint: str | None = None
    weight_fingerprints: list[str] = field(default_factory=list)


def weight_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over the model's state dict (names, shapes, dtypes and bytes): equal on every rank after DDP."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------- data order
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


def seed_worker(worker_id: int, seed: int, rank: int) -> None:
    """DataLoader worker seeding from ``(seed, rank, worker)`` (items are reseeded per sample on top)."""
    value = int(np.random.SeedSequence([seed, rank, worker_id, 3]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def build_train_dataset(cfg: Config) -> Dataset:
    """The training dataset that ``train.data.source`` names."""
    data, model = cfg.train.data, cfg.model
    num_global = model.global_memory.num_frames if model.global_memory.size > 0 else 0
    if data.source == "synthetic":
        from locater.data.synthetic.stream import SyntheticClipStream

        return SyntheticClipStream(
            samples_per_epoch=data.samples_per_epoch,
            clip_length=cfg.train.clip_length,
            image_size=model.image_size,
            num_global_frames=num_global,
            mix=data.synthetic_mix,
            render_size=data.synthetic_size,
            num_frames=data.synthetic_frames,
            start_share=data.synthetic_start_share,
            context_frame=data.synthetic_context_frame,
            crossing_share=data.synthetic_crossing_share,
            frame_stride=data.synthetic_frame_stride,
            seed=cfg.seed,
        )
    if data.source == "layout":
        from locater.data.layout import LayoutSplit

        source = LayoutSplit.open(data.split_dir)
    elif data.source == "ytvos":
        from locater.data.ytvos import YTVOSSplit

        source = YTVOSSplit.open(data.ytvos_root, "train")
    else:
        raise ValueError(f"train.data.source must be synthetic, layout or ytvos, got {data.source!r}")
    return ReferringClipDataset(
        source,
        clip_length=cfg.train.clip_length,
        image_size=model.image_size,
        num_global=num_global,
        augment=AugmentConfig.from_dict(dict(cfg.train.augment)),
        train=True,
        seed=cfg.seed,
    )


def build_loader(dataset: Dataset, cfg: Config, info: distributed.DistInfo, start: int) -> DataLoader:
    """An endless DataLoader over :class:`TrainingSampler` keys from global stream position ``start``."""
    workers = cfg.train.data.num_workers
    sampler = TrainingSampler(len(dataset), cfg.seed, info.rank, info.world_size, start)
    return DataLoader(
        SeededSamples(dataset, cfg.seed),
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_clips,
        worker_init_fn=functools.partial(seed_worker, seed=cfg.seed, rank=info.rank),
        generator=torch.Generator().manual_seed(cfg.seed * 1000 + info.rank),  # leaves the global RNG alone
        pin_memory=info.device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


# ------------------------------------------------------------------------------------------------- validation
@dataclass
class ValidationSplit:
    """One validation split: a name and the config whose ``eval`` section names it."""

    name: str
    cfg: Config


def resolve_validation_splits(cfg: Config) -> list[ValidationSplit]:
    """``validation.splits`` entries (eval config paths or mappings of eval keys) as configs to evaluate; each
    split folder is opened once here so that a wrong path fails before training starts."""
    from locater.engine.evaluator import split_dir_from_config

    splits = []
    for index, entry in enumerate(cfg.validation.splits):
        if isinstance(entry, str):
            path = Path(entry)
            eval_section = load_config(path).eval.to_dict()
            default_name = path.stem
        elif isinstance(entry, Mapping):
            eval_section = {k: v for k, v in dict(entry).items() if k != "name"}
            default_name = Path(eval_section["split_dir"]).name if eval_section.get("split_dir") else ""
        else:
            raise ValueError(
                f"validation.splits[{index}] must be an eval config path or a mapping, got {entry!r}"
            )
        merged = load_config({**cfg.to_dict(), "eval": {**cfg.eval.to_dict(), **eval_section}})
        name = str(entry.get("name", "")) if isinstance(entry, Mapping) else ""
        name = name or default_name or merged.eval.testing_type or f"split{index}"
        try:  # fail before training, not after hours of it
            LayoutSplit.open(split_dir_from_config(merged))
        except LayoutError as error:
            raise ValueError(f"validation.splits[{index}] ({name}): {error}") from error
        splits.append(ValidationSplit(name, merged))
    names = [s.name for s in splits]
    if len(set(names)) != len(names):
        raise ValueError(f"validation.splits: names must differ, got {names} (give each mapping a name)")
    return splits


def selection_value(results: Mapping[str, Mapping[str, float]], metric: str) -> float:
    """The number ``validation.metric`` names: ``SPLIT/metric`` or a metric averaged over the splits."""
    if "/" in metric:
        split, key = metric.split("/", 1)
        if split not in results:
            raise KeyError(
                f"validation.metric {metric!r}: no validation split named {split!r} ({list(results)})"
            )
        return float(results[split][key])
    return float(np.mean([float(values[metric]) for values in results.values()]))


@torch.inference_mode()
def prediction_overlays(
    model: Locater, split_cfg: Config, count: int, device: torch.device
) -> list[np.ndarray]:
    """Overlays (prediction red, ground truth green outline) of the first labelled frame of the first ``count``
    samples of a validation split, the model run online from the video's first frame."""
    from locater.engine.evaluator import split_dir_from_config
    from locater.preprocess import logits_to_masks, preprocess_frames
    from locater.tokenizer import tokenize

    split = LayoutSplit.open(split_dir_from_config(split_cfg))
    size = model.image_size[0]
    was_training = model.training
    model.eval()
    images = []
    for sample in [s for s in split.samples if s.labels][:count]:
        frames = [f for f in sample.frames if f <= sample.labels[0]]
        global_ids = (
            split.global_frames(sample, model.num_global_frames) if model.global_memory is not None else []
        )
        global_frames = torch.stack(
            [preprocess_frames(split.load_frame(sample.video, f), size) for f in global_ids]
        )
        state = model.start(global_frames[None].to(device), tokenize([sample.sentence]).to(device))
        for frame in frames:
            rgb = split.load_frame(sample.video, frame)
            logits, state = model.step(preprocess_frames(rgb, size)[None].to(device), state)
        target = split.load_mask(sample.video, sample.expression, frames[-1])
        prediction = logits_to_masks(logits[0, 0].float(), target.shape).cpu().numpy()
        images.append(overlay(rgb, prediction, target))
    model.train(was_training)
    return images


# ------------------------------------------------------------------------------------------------- the loop
class Trainer:
    """Builds everything from a resolved config and runs the loop (:meth:`fit`)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.t = cfg.train
        check_amp(self.t.amp, None, "train.amp")
        if self.t.accumulate < 1 or self.t.batch_size < 1 or self.t.clip_length < 1:
            raise ValueError("train.accumulate, train.batch_size and train.clip_length must be >= 1")
        self.info = distributed.init_distributed(cfg.device)
        self.device = self.info.device
        check_amp(self.t.amp, self.device.type, "train.amp")
        self.output_dir = Path(cfg.output_dir)
        self.validation_splits = resolve_validation_splits(cfg)
        self.checkpoints = CheckpointManager(self.output_dir / "checkpoints", self.t.keep_last)

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.model = build_model(cfg).to(self.device)
        self.model.train()
        distributed.seed_everything(cfg.seed, self.info.rank)
        self.teacher_generator = torch.Generator().manual_seed(cfg.seed * 7919 + self.info.rank)
        self.optimizer = build_optimizer(self.model, self.t.optimizer)
        self.schedule = LRSchedule.from_config(self.t.schedule, self.t.max_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.t.amp == "fp16")
        self.loss_weights = LossWeights.from_config(self.t.loss, len(self.model.fusion))
        self.dataset = build_train_dataset(cfg)

        self.step = 0
        self.position = 0  # global sample-stream position consumed by all processes
        self.elapsed_before = 0.0  # minutes spent in earlier runs of this training (resume)
        self.best: dict[str, Any] | None = None
        self.last_validation: dict[str, dict[str, float]] | None = None
        self.last_checkpoint: Path | None = None
        self.log = TrainLogger(self.output_dir, enabled=self.info.is_main, tensorboard=self.t.tensorboard)

    # ----------------------------------------------------------------------------------------- state
    def _resume(self) -> None:
        resume = self.cfg.resume
        if resume in (None, "", False):
            return
        if resume == "auto":
            found = self.checkpoints.load_latest()
            if found is None:
                logger.info(
                    "resume=auto: no checkpoint in %s yet, starting from scratch", self.checkpoints.directory
                )
                return
            payload, path = found
        else:
            path = Path(str(resume))
            payload = load_training_checkpoint(path)
        try:
            self.model.load_state_dict(payload["model"])
        except RuntimeError as error:
            raise CheckpointError(f"{path}: does not fit the configured model: {error}") from error
        self.optimizer.load_state_dict(payload["optimizer"])
        if payload.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(payload["scaler"])
        self.step = int(payload["step"])
        self.position = int(payload["sampler"]["position"])
        self.elapsed_before = float(payload.get("elapsed_minutes", 0.0))
        self.best = payload.get("best")
        self.last_validation = payload.get("validation")
        states = payload["rng"]
        if len(states) == self.info.world_size:
            restore_rng_state(states[self.info.rank])
            self.teacher_generator.set_state(states[self.info.rank]["teacher_forcing"])
        else:
            logger.warning(
                "%s was written by %d processes, this run has %d: random generators start fresh",
                path,
                len(states),
                self.info.world_size,
            )
        logger.info("resumed from %s at step %d (sample %d)", path, self.step, self.position)

    def _sync_buffers(self) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics of the auxiliary heads) to every rank.

        DDP broadcasts them at the start of every forward, so the ranks only differ after the last one; doing
        the same before a checkpoint, a validation and the end keeps every rank's model equal to rank 0's."""
        if dist.is_initialized():
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)

    def _save(self, is_best: bool = False) -> None:
        self._sync_buffers()
        rng = capture_rng_state()
        rng["teacher_forcing"] = self.teacher_generator.get_state()
        states = distributed.all_gather_objects(rng)
        if self.info.is_main:
            payload = {
                "format": CHECKPOINT_FORMAT,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": {"kind": self.schedule.kind, "factor": self.schedule.factor(self.step)},
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "step": self.step,
                "epoch": self.epoch,
                "sampler": {"position": self.position, "epoch": self.epoch, "num_samples": len(self.dataset)},
                "rng": states,
                "world_size": self.info.world_size,
                "elapsed_minutes": self.elapsed_minutes(),
                "best": self.best,
                "validation": self.last_validation,
                "config": self.cfg.to_dict(),
            }
            self.last_checkpoint = self.checkpoints.save(payload, self.step, is_best)
        distributed.barrier()

    @property
    def epoch(self) -> int:
        return self.position // len(self.dataset)

    def elapsed_minutes(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.start_time) / 60.0

    # ----------------------------------------------------------------------------------------- pieces
    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast_for(self.device.type, self.t.amp)

    def _micro_step(
        self, network: torch.nn.Module, batch: dict
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        masks = batch["masks"].to(self.device, non_blocking=True)
        valid = batch["mask_valid"]
        draw = torch.rand(valid.shape, generator=self.teacher_generator)
        select = valid & (draw < self.t.teacher_forcing)
        context = batch.get("context")  # context frames: true mask into the memory, not supervised
        if context is not None:
            select = select | (valid & context)
            valid = valid & ~context
        select = select.to(self.device)
        with self._autocast():
            logits, aux = network(
                batch["global_frames"].to(self.device, non_blocking=True),
                batch["input_ids"].to(self.device, non_blocking=True),
                batch["frames"].to(self.device, non_blocking=True),
                memory_masks=masks,
                memory_mask_select=select,
            )
        return segmentation_loss(logits, aux, masks, valid.to(self.device), self.loss_weights)

    def _any_rank(self, flags: list[float]) -> list[float]:
        """Element-wise maximum over the processes (the values themselves in a single process)."""
        if not dist.is_initialized():
            return flags
        tensor = torch.tensor(flags, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor.tolist()

    def validate(self) -> dict[str, dict[str, float]]:
        """Evaluate every validation split with the evaluation engine (sharded over the processes)."""
        from locater.engine.evaluator import evaluate_split

        self._sync_buffers()
        results = {}
        for split in self.validation_splits:
            results[split.name] = evaluate_split(
                self.model,
                split.cfg,
                self.device,
                progress=False,
                max_videos=self.cfg.validation.max_videos or None,
            )
        self.model.train()
        self.last_validation = results
        values = {f"val/{name}/{k}": v for name, m in results.items() for k, v in m.items() if _is_number(v)}
        self.log.scalars(self.step, values, kind="validation")
        if self.info.is_main and self.cfg.validation.overlays > 0:
            images = prediction_overlays(
                self.model, self.validation_splits[0].cfg, self.cfg.validation.overlays, self.device
            )
            self.log.images(f"overlays/{self.validation_splits[0].name}", images, self.step)
        self.model.train()
        return results

    def _validate_and_save(self) -> None:
        is_best = False
        if self.validation_splits:
            results = self.validate()
            value = selection_value(results, self.cfg.validation.metric)
            better = (
                self.best is None
                or (self.cfg.validation.mode == "max" and value > self.best["value"])
                or (self.cfg.validation.mode == "min" and value < self.best["value"])
            )
            if better:
                self.best = {"metric": self.cfg.validation.metric, "value": value, "step": self.step}
                is_best = True
            logger.info(
                "step %d: %s = %.4f (best %.4f)",
                self.step,
                self.cfg.validation.metric,
                value,
                self.best["value"],
            )
        self._save(is_best=is_best)

    # ----------------------------------------------------------------------------------------- fit
    def fit(self) -> TrainResult:
        """Train until ``max_steps``, ``stop_at_step`` or ``max_minutes``; returns what happened."""
        cfg, t = self.cfg, self.t
        self._resume()
        if self.info.is_main:
            save_config(cfg, self.output_dir / "config.yaml")
            self.log.config(cfg.to_dict())
        if cfg.validation.mode not in ("max", "min"):
            raise ValueError(f"validation.mode must be max or min, got {cfg.validation.mode!r}")
        network: torch.nn.Module = self.model
        if self.info.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            network = DistributedDataParallel(
                self.model, device_ids=device_ids, find_unused_parameters=t.find_unused_parameters
            )
        batches = iter(build_loader(self.dataset, cfg, self.info, self.position))
        params = [p for p in self.model.parameters() if p.requires_grad]
        samples_per_micro = t.batch_size * self.info.world_size
        self.start_time = time.perf_counter()
        bar = tqdm(
            total=t.max_steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            disable=not self.info.is_main,
        )
        sums: dict[str, float] = {}
        window_steps, window_start = 0, time.perf_counter()
        stopped_by = "max_steps"
        last_terms: dict[str, float] = {}
        # the time spent, as all ranks agree on it (the largest, exchanged with the step's checks): the schedule
        # and the time budget must not read each rank's own clock, or the ranks would use different rates
        elapsed = self.elapsed_before
        while self.step < t.max_steps:
            if t.stop_at_step and self.step >= t.stop_at_step:
                stopped_by = "stop_at_step"
                break
            progress = None
            if t.max_minutes > 0:
                progress = max(self.step / t.max_steps, elapsed / t.max_minutes)
            self.schedule.apply(self.optimizer, self.step, progress)
            terms_sum: dict[str, float] = {}
            loss_finite = True
            for micro in range(t.accumulate):
                batch = next(batches)
                sync = micro == t.accumulate - 1 or not self.info.distributed
                with contextlib.nullcontext() if sync else network.no_sync():
                    loss, terms = self._micro_step(network, batch)
                    loss_finite &= bool(torch.isfinite(loss))
                    self.scaler.scale(loss / t.accumulate).backward()
                for key, value in terms.items():
                    terms_sum[key] = terms_sum.get(key, 0.0) + float(value) / t.accumulate
            if self.scaler.is_enabled():
                self.scaler.unscale_(self.optimizer)
            max_norm = t.grad_clip if t.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            grad_bad = not math.isfinite(grad_norm) and not self.scaler.is_enabled()
            loss_bad, grad_bad, elapsed = self._any_rank(
                [float(not loss_finite), float(grad_bad), self.elapsed_minutes()]
            )
            if loss_bad or grad_bad:
                what = "loss" if loss_bad else "gradient norm"
                detail = ", ".join(f"{k}={v:.4g}" for k, v in terms_sum.items())
                last = self.last_checkpoint or (self.checkpoints.step_files() or [(None, None)])[-1][1]
                raise NonFiniteLossError(
                    f"non-finite {what} at step {self.step + 1} ({detail}); stopping. Weights were not updated and "
                    f"no checkpoint was written; the last good checkpoint is {last or 'none (nothing saved yet)'}"
                )
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.position += samples_per_micro * t.accumulate
            last_terms = terms_sum
            for key, value in {**terms_sum, "grad_norm": grad_norm}.items():
                sums[key] = sums.get(key, 0.0) + value
            window_steps += 1
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == t.max_steps:
                self._log_window(sums, window_steps, window_start)
                bar.set_postfix(loss=f"{sums['total'] / window_steps:.4f}")
                sums, window_steps, window_start = {}, 0, time.perf_counter()
            if t.max_minutes > 0 and elapsed >= t.max_minutes and self.step < t.max_steps:
                stopped_by = "max_minutes"
                logger.info("time budget of %.1f min spent at step %d", t.max_minutes, self.step)
                break
            validation_due = cfg.validation.every > 0 and self.step % cfg.validation.every == 0
            if self.step < t.max_steps and validation_due:
                self._validate_and_save()
            elif self.step < t.max_steps and self.step % t.checkpoint_every == 0:
                self._save()
        bar.close()
        if self.step >= t.max_steps and cfg.validation.at_end and self.validation_splits:
            self._validate_and_save()
        else:
            self._save()
        minutes = self.elapsed_minutes()
        self.log.close()
        fingerprints = [str(f) for f in distributed.all_gather_objects(weight_fingerprint(self.model))]
        if len(set(fingerprints)) > 1:
            raise RuntimeError(f"the processes ended with different weights (fingerprints {fingerprints})")
        return TrainResult(
            step=self.step,
            epoch=self.epoch,
            stopped_by=stopped_by,
            minutes=minutes,
            losses=last_terms,
            validation=self.last_validation,
            best=self.best,
            last_checkpoint=str(self.checkpoints.last_path) if self.info.is_main else None,
            weight_fingerprints=fingerprints,
        )

    def _log_window(self, sums: dict[str, float], steps: int, start: float) -> None:
        values = {k: v / steps for k, v in sums.items()}
        reduced = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        distributed.all_reduce_sum(reduced)
        values = dict(zip(values, (reduced / self.info.world_size).tolist()))
        seconds = max(time.perf_counter() - start, 1e-9)
        record = {f"loss/{k}" if k not in ("grad_norm",) else k: v for k, v in values.items()}
        record.update(learning_rates(self.optimizer))
        record["samples_per_s"] = (
            steps * self.t.batch_size * self.t.accumulate * self.info.world_size / seconds
        )
        record["memory_mb"] = peak_memory_mb(self.device.type)
        record["epoch"] = self.epoch
        self.log.scalars(self.step, record)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def train(cfg: Config) -> TrainResult:
    """Run training as ``cfg`` says (see ``locater/defaults/train.yaml``); returns the :class:`TrainResult`."""
    return Trainer(cfg).fit()
