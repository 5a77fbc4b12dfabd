"""The training loop and its state (our recipe: the authors' training code was never released).

Per optimizer step, every process takes ``accumulate`` micro-batches of ``batch_size`` clips. A clip of ``T``
consecutive frames runs through ``start`` (global memory from ``model.global_memory.num_frames`` frames of the
whole video) and ``step`` in order, backpropagating through the memory (``Locater.forward_clip``); the local memory
is written with the ground-truth mask with probability ``train.teacher_forcing`` per supervised frame, else with
the prediction (a clip's ``context`` frames, when the dataset gives them, always write the ground truth and are not
supervised). The loss is BCE + Dice on the main output plus weighted BCE + Dice on the ``K`` auxiliary heads
(:mod:`locater.engine.losses`); AdamW with a lower rate for the vision encoder, warm-up then cosine or step decay,
gradient clipping, optional AMP (bf16, or fp16 with a gradient scaler).

Runs as a plain process (CPU or one GPU) or under torchrun with DDP. Rank 0 writes logs and checkpoints. The
training data and its order are :mod:`locater.engine.sampler`'s, validation :mod:`locater.engine.validation`'s;
this module runs the loop and keeps, saves and resumes its state.

Reproducibility: the data order is a function of ``(seed, position in the sample stream)`` only (see
:class:`~locater.engine.sampler.TrainingSampler`), every sample's random draws too, and a checkpoint holds model,
optimizer, scaler, step, sampler position and every process's RNG states, so a run stopped and resumed ends where
an uninterrupted one does (bit-identical on the CPU).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from locater.checkpoint import CheckpointError
from locater.config import Config, save_config
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
from locater.engine.sampler import build_loader, build_train_dataset, next_batch
from locater.engine.train_logging import TrainLogger, peak_memory_mb
from locater.engine.validation import (
    evaluate_validation_splits,
    improves,
    prediction_overlays,
    resolve_validation_splits,
    selection_value,
)
from locater.errors import EXIT_NON_FINITE, InterruptedRun, LocaterError
from locater.model.loading import build_model
from locater.preprocess import normalise_frames

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class NonFiniteLossError(LocaterError, RuntimeError):
    """The loss or the gradient norm became NaN or infinite; the run stops without touching its checkpoints."""

    exit_code = EXIT_NON_FINITE


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


class Trainer:
    """Builds everything from a resolved config and runs the loop (:meth:`fit`)."""

    def __init__(self, cfg: Config, *, trust_checkpoint: bool = False) -> None:
        self.cfg = cfg
        self.t = cfg.train
        self.trust_checkpoint = trust_checkpoint  # resume / pretrained.checkpoint may need full unpickling
        if self.t.accumulate < 1 or self.t.batch_size < 1 or self.t.clip_length < 1:
            raise ValueError("train.accumulate, train.batch_size and train.clip_length must be >= 1")
        self.info = distributed.init_distributed(cfg.device)
        self.device = self.info.device
        check_amp(self.t.amp, self.device.type, "train.amp")  # fp16 needs CUDA (the mode is checked at load)
        self.output_dir = Path(cfg.output_dir)
        self.validation_splits = resolve_validation_splits(cfg)
        self.checkpoints = CheckpointManager(self.output_dir / "checkpoints", self.t.keep_last)

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.model = build_model(cfg, trust_checkpoint=trust_checkpoint).to(self.device)
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
            found = self.checkpoints.load_latest(trust_checkpoint=self.trust_checkpoint)
            if found is None:
                logger.info(
                    "resume=auto: no checkpoint in %s yet, starting from scratch", self.checkpoints.directory
                )
                return
            payload, path = found
        else:
            path = Path(str(resume))
            payload = load_training_checkpoint(path, trust_checkpoint=self.trust_checkpoint)
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
        masks = (
            batch["masks"].to(self.device, non_blocking=True).float()
        )  # bool in the batch: a quarter of the bytes
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
                normalise_frames(batch["global_frames"].to(self.device, non_blocking=True)),
                batch["input_ids"].to(self.device, non_blocking=True),
                normalise_frames(batch["frames"].to(self.device, non_blocking=True)),
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
        self._sync_buffers()
        results = evaluate_validation_splits(
            self.model, self.validation_splits, self.device, self.cfg.validation.max_videos or None
        )
        self.model.train()
        self.last_validation = results
        values = {f"val/{name}/{k}": v for name, m in results.items() for k, v in m.items() if _is_number(v)}
        self.log.scalars(self.step, values, kind="validation")
        if self.info.is_main and self.cfg.validation.overlays > 0:
            images = prediction_overlays(
                self.model, self.validation_splits[0].split, self.cfg.validation.overlays, self.device
            )
            self.log.images(f"overlays/{self.validation_splits[0].name}", images, self.step)
        self.model.train()
        return results

    def _validate_and_save(self) -> None:
        is_best = False
        if self.validation_splits:
            results = self.validate()
            value = selection_value(results, self.cfg.validation.metric)
            if improves(value, self.best, self.cfg.validation.mode):
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
        """Train until ``max_steps``, ``stop_at_step`` or ``max_minutes``; returns what happened.

        Raises:
            InterruptedRun: Ctrl-C (or SIGTERM, which the command wrapper turns into one). Nothing is saved on the
                way out: a checkpoint is only ever written whole (an interrupted save leaves the previous one), so
                the run goes on from the newest one with ``resume=auto``; the message names it.
        """
        self._bar: tqdm | None = None
        try:
            return self._fit()
        except KeyboardInterrupt:
            interrupted = self._interrupted()
        finally:  # on every way out (closing twice is harmless): no stray progress bar before the error line
            if self._bar is not None:
                self._bar.close()
            self.log.close()
        # raised outside the handler, so the interrupted frames (and a DataLoader's workers) are let go now
        raise interrupted

    def _interrupted(self) -> InterruptedRun:
        """The one line that says where the run stopped and which checkpoint a resume starts from."""
        started = self._bar is not None
        where = f"at step {min(self.step + 1, self.t.max_steps)}" if started else "while starting"
        saved = self.checkpoints.step_files()
        last = self.checkpoints.last_path
        if saved or last.is_file():
            kept = f"{saved[-1][1]} (step {saved[-1][0]})" if saved else str(last)
            return InterruptedRun(
                f"interrupted {where}; the last checkpoint is {kept}: resume with the same command and resume=auto"
            )
        return InterruptedRun(
            f"interrupted {where}; no checkpoint was saved yet: rerun the same command to start over"
        )

    def _fit(self) -> TrainResult:
        cfg, t = self.cfg, self.t
        self._resume()
        if cfg.resume not in (None, "", False):
            self.log.drop_after(self.step)  # the steps after the checkpoint run again: each is logged once
        if self.info.is_main:
            save_config(cfg, self.output_dir / "config.yaml")
            self.log.config(cfg.to_dict())
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
        bar = self._bar = tqdm(
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
                batch = next_batch(batches)
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


def train(cfg: Config, *, trust_checkpoint: bool = False) -> TrainResult:
    """Run training as ``cfg`` says (see ``locater/defaults/train.yaml``); returns the :class:`TrainResult`.

    ``trust_checkpoint``: the resumed checkpoint and ``pretrained.checkpoint`` may be read with full unpickling,
    which can run code (only for trusted files, e.g. checkpoints written before RNG states were tensors)."""
    return Trainer(cfg, trust_checkpoint=trust_checkpoint).fit()
