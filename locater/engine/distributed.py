"""Process-group helpers: torchrun's environment, sharding without duplicates, gathering, seeding.

Every helper also works in a single process without a process group (``all_gather_objects(x) == [x]``,
``barrier()`` does nothing, ...), so library code calls them unconditionally.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes outputs and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise RuntimeError(f"environment variable {name} is not set (launch with torchrun)")
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: str = "auto", backend: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's variables, or run as a single process.

    With ``WORLD_SIZE`` absent or 1 no process group is created. Otherwise RANK, LOCAL_RANK, MASTER_ADDR and
    MASTER_PORT must be set (torchrun sets them all) and the group is initialised from them.

    Args:
        device: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` (the GPU numbered LOCAL_RANK) or
            ``cuda:N`` (single process only). The chosen GPU becomes the current CUDA device.
        backend: process-group backend; default NCCL on CUDA, gloo on the CPU.
    """
    if not _DEVICE_PATTERN.fullmatch(device):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size < 1:
        raise ValueError(f"environment variable WORLD_SIZE={world_size} must be >= 1")
    distributed = world_size > 1
    rank = _env_int("RANK") if distributed else _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK") if distributed else _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"environment variable RANK={rank} is outside [0, WORLD_SIZE={world_size})")
    if distributed:
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(name):
                raise RuntimeError(f"environment variable {name} is not set (launch with torchrun)")

    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available")
        if ":" in device:
            if distributed:
                raise ValueError(f"device {device!r}: under torchrun use 'cuda' (each rank takes LOCAL_RANK)")
            index = int(device.split(":")[1])
        else:
            index = local_rank
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"CUDA device {index} requested but only {torch.cuda.device_count()} visible")
        torch.cuda.set_device(index)
        torch_device = torch.device("cuda", index)
    else:
        torch_device = torch.device("cpu")

    if distributed and not dist.is_initialized():
        dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"))
        logger.info("process group: rank %d of %d (%s)", rank, world_size, dist.get_backend())
    if dist.is_initialized() and (dist.get_rank(), dist.get_world_size()) != (rank, world_size):
        raise RuntimeError(
            f"process group is rank {dist.get_rank()} of {dist.get_world_size()} but the environment says "
            f"rank {rank} of {world_size}"
        )
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


def get_rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if not dist.is_initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_gather_objects(obj: object) -> list:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` in a single process); gloo and NCCL."""
    if not dist.is_initialized():
        return [obj]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank ``src``'s picklable ``obj`` on every rank (``obj`` itself in a single process)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place and return it (unchanged in a single process).

    The tensor must live on the backend's device (CUDA for NCCL, CPU for gloo).
    """
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def cleanup() -> None:
    """Destroy the process group, if any."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need world_size >= 1 and 0 <= rank < world_size, got rank={rank}, {world_size=}")


def shard_indices(num_items: int, rank: int, world_size: int) -> list[int]:
    """This rank's items of a strided split without padding: ``rank, rank + world_size, ...``.

    Every item lands on exactly one rank; counts differ by at most one (a rank may get none).
    """
    _check_rank(rank, world_size)
    if num_items < 0:
        raise ValueError(f"num_items must be >= 0, got {num_items}")
    return list(range(rank, num_items, world_size))


def weights_balanced_shard(weights: list[float], rank: int, world_size: int) -> list[int]:
    """This rank's items of a deterministic split of weighted items into ``world_size`` balanced groups.

    Greedy longest-processing-time: items in decreasing weight (ties: lower index first) each go to the group
    with the smallest load so far (ties: lower rank). Every item lands on exactly one rank; the heaviest group
    weighs at most 4/3 of the best possible split. Used to spread videos weighted by frame count.

    Returns:
        Indices into ``weights`` in ascending order.
    """
    _check_rank(rank, world_size)
    for index, weight in enumerate(weights):
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"weights[{index}] = {weight!r}: weights must be finite and >= 0")
    loads = [0.0] * world_size
    groups: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        lightest = min(range(world_size), key=lambda r: (loads[r], r))
        groups[lightest].append(index)
        loads[lightest] += weights[index]
    return sorted(groups[rank])


balanced_shard = weights_balanced_shard  # shorter name used by the evaluator


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python's ``random``, numpy and torch (CPU and every CUDA device) with ``seed + rank``."""
    value = seed + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
    torch.cuda.manual_seed_all(value)  # lazy: safe without CUDA


def worker_init_fn(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: seed python and numpy in a worker from torch's per-worker seed.

    torch already seeds each worker with ``base_seed + worker_id`` (``base_seed`` drawn from the parent's
    generator), so the derived seeds differ per worker and per epoch and follow :func:`seed_everything`.
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
