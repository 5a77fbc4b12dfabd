"""Process-group helpers: torchrun environment, sharding without duplicates, gathering, seeding."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass
class DistInfo:
    """Where this process stands."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto", backend: str | None = None) -> DistInfo:
    """Initialise from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or run as a
    single process when WORLD_SIZE is absent or 1. NCCL on GPUs, gloo on the CPU.

    Args:
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        backend: force a backend.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    if use_cuda:
        index = local_rank if device in ("auto", "cuda") else int(device.split(":")[1])
        torch.cuda.set_device(index)
        torch_device = torch.device("cuda", index)
    else:
        torch_device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"))
        logger.info("process group: rank %d of %d (%s)", rank, world_size, dist.get_backend())
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


def get_rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: object) -> list:
    """Every rank's ``obj`` in rank order (``[obj]`` in a single process)."""
    if not dist.is_initialized():
        return [obj]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank ``src``'s ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (no-op in a single process)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard_indices(num_items: int, rank: int, world_size: int) -> list[int]:
    """Strided split without padding: every item exactly once over all ranks (counts may differ by one)."""
    return list(range(rank, num_items, world_size))


def balanced_shard(weights: list[float], rank: int, world_size: int) -> list[int]:
    """Deterministic greedy split of weighted items (e.g. videos by frame count) into ``world_size`` groups of
    similar total weight (longest processing time first); every item exactly once. Returns this rank's indices in
    ascending order."""
    loads = [0.0] * world_size
    groups: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        target = min(range(world_size), key=lambda r: (loads[r], r))
        groups[target].append(index)
        loads[target] += weights[index]
    return sorted(groups[rank])


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch (CPU and CUDA) with ``seed + rank``."""
    value = seed + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker seeding derived from torch's per-worker initial seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
