"""Training throughput: samples/s and peak memory of full optimizer steps (forward over a clip through the memory,
loss, backward, AdamW), each configuration in a fresh process so that its peak memory is its own.

  python tools/benchmark.py --train                                   # the tiny config on the CPU
  python tools/benchmark.py --train --config configs/synthetic/model.yaml --batch-size 8
  python tools/benchmark.py --train --config configs/model/locater_vit_b16.yaml --device cuda --amp bf16
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from locater.bench import (
    machine_description,
    markdown_table,
    run_in_fresh_process,
    write_section,
)
from locater.engine.amp import autocast_for, check_amp
from locater.engine.train_logging import peak_memory_mb


def training_step(
    config: str | Mapping,
    batch_size: int = 2,
    clip_length: int = 4,
    amp: str = "none",
    device: str = "cpu",
    seed: int = 0,
) -> tuple[torch.nn.Module, Callable[[], torch.Tensor]]:
    """A model of ``config`` and a function that runs one optimizer step on a fixed random batch.

    Args:
        config: a config (path or mapping, e.g. a loaded :class:`~locater.config.Config` with overrides) whose
            ``model`` section is built (``train.*`` supplies the optimizer and loss).
        batch_size: clips per step; clip_length: ``T`` frames per clip.
        amp: ``none`` | ``bf16`` | ``fp16`` (fp16 on CUDA only, with a gradient scaler).
        device: ``cpu`` or ``cuda``.

    Returns:
        The model and ``one_step()``: forward over the clip through the memory (plus the N1 global frames), BCE + Dice
        + auxiliary losses, backward, gradient clipping at 1, AdamW; it returns the detached loss (no sync).
    """
    import locater
    from locater.engine.losses import LossWeights, segmentation_loss
    from locater.engine.optim import build_optimizer

    target = torch.device(device)
    check_amp(amp, target.type)
    cfg = locater.load_config(config)
    torch.manual_seed(seed)
    model = locater.build_model(cfg).to(target).train()
    optimizer = build_optimizer(model, cfg.train.optimizer)
    weights = LossWeights.from_config(cfg.train.loss, len(model.fusion))
    size, num_global_frames = model.image_size[0], model.num_global_frames
    generator = torch.Generator().manual_seed(seed)
    clip = torch.randn(batch_size, clip_length, 3, size, size, generator=generator).to(target)
    global_frames = torch.randn(batch_size, num_global_frames, 3, size, size, generator=generator).to(target)
    ids = locater.tokenize(["the small red circle moving right"] * batch_size).to(target)
    masks = (torch.rand(batch_size, clip_length, 1, size, size, generator=generator) > 0.7).float().to(target)
    valid = torch.ones(batch_size, clip_length, dtype=torch.bool, device=target)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    autocast = autocast_for(target.type, amp)

    def one_step() -> torch.Tensor:
        with autocast:
            logits, aux = model(global_frames, ids, clip, memory_masks=masks, memory_mask_select=valid)
        loss, _ = segmentation_loss(logits, aux, masks, valid, weights)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return model, one_step


def training_step_flops(config: str | Mapping, clip_length: int = 5, amp: str = "none") -> float:
    """FLOPs of one :func:`training_step` on one clip (forward through the memory and the N1 global frames, loss,
    backward), counted by torch's FlopCounterMode on the CPU.

    Matrix products, convolutions and attention are counted (the optimizer update and element-wise work are not);
    the count does not depend on ``amp``, which only makes the counting run faster where the CPU has bf16 units.
    """
    from torch.utils.flop_counter import FlopCounterMode

    _, one_step = training_step(config, batch_size=1, clip_length=clip_length, amp=amp, device="cpu")
    counter = FlopCounterMode(display=False)
    with counter:
        one_step()
    return float(counter.get_total_flops())


def benchmark_training(
    config: str | Mapping,
    batch_size: int = 2,
    clip_length: int = 4,
    steps: int = 5,
    warmup: int = 2,
    amp: str = "none",
    device: str = "cpu",
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Time ``steps`` optimizer steps of :func:`training_step` (after ``warmup``) in this process.

    Returns:
        ``samples_per_s``, ``frames_per_s`` (clip frames), ``seconds_per_step``, ``peak_memory_mb`` (CUDA allocator
        peak on GPUs, the process's peak resident set on the CPU), ``parameters_m``.
    """
    if threads:
        torch.set_num_threads(threads)
    target = torch.device(device)
    model, one_step = training_step(config, batch_size, clip_length, amp, device, seed)
    if target.type == "cuda":
        torch.cuda.reset_peak_memory_stats(target)
    for _ in range(warmup):
        one_step()
    if target.type == "cuda":
        torch.cuda.synchronize(target)
    tic = time.perf_counter()
    for _ in range(steps):
        one_step()
    if target.type == "cuda":
        torch.cuda.synchronize(target)
    seconds = (time.perf_counter() - tic) / steps
    peak = torch.cuda.max_memory_allocated(target) / 2**20 if target.type == "cuda" else peak_memory_mb("cpu")
    return {
        "samples_per_s": batch_size / seconds,
        "frames_per_s": batch_size * clip_length / seconds,
        "seconds_per_step": seconds,
        "peak_memory_mb": peak,
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def _benchmark_job(job: dict) -> dict[str, float]:
    return benchmark_training(**job)


def benchmark_training_in_fresh_process(job: dict) -> dict[str, float]:
    """:func:`benchmark_training` in a spawned process (clean peak memory)."""
    return run_in_fresh_process(_benchmark_job, job, f"training benchmark {job}")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        prog="tools/benchmark.py --train", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--config",
        action="append",
        default=None,
        help="config(s) to measure (repeatable; default: configs/model/tiny.yaml and configs/synthetic/train.yaml)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="clips per step")
    parser.add_argument("--clip-length", type=int, default=5, help="frames per clip (T)")
    parser.add_argument("--steps", type=int, default=5, help="measured optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="steps run before measuring")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument(
        "--out", type=Path, default=Path("docs/benchmarks.md"), help="markdown file to update"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    configs = args.config or ["configs/model/tiny.yaml", "configs/synthetic/train.yaml"]
    rows = []
    for config in configs:
        job = dict(
            config=config,
            batch_size=args.batch_size,
            clip_length=args.clip_length,
            steps=args.steps,
            warmup=args.warmup,
            amp=args.amp,
            device=args.device,
            threads=args.threads,
        )
        print(f"measuring {config} ...", flush=True)
        result = benchmark_training_in_fresh_process(job)
        rows.append(
            [
                config,
                f"{result['parameters_m']:.2f}",
                args.device,
                args.amp,
                f"{args.batch_size} x {args.clip_length}",
                f"{result['samples_per_s']:.2f}",
                f"{result['frames_per_s']:.1f}",
                f"{result['seconds_per_step'] * 1000:.0f}",
                f"{result['peak_memory_mb']:.0f}",
            ]
        )
    header = [
        "config",
        "params (M)",
        "device",
        "amp",
        "clips x frames per step",
        "samples/s",
        "clip frames/s",
        "ms / step",
        "peak memory MB" + (" (CUDA allocator)" if args.device.startswith("cuda") else " (RSS)"),
    ]
    command = "python tools/benchmark.py --train" + (
        "".join(f" --config {c}" for c in args.config) if args.config else ""
    )
    gpu_note = (
        ""
        if torch.cuda.is_available()
        else "No GPU was available to this run; on one, measure the released 320 px model in bf16 with "
        "`--device cuda --config configs/model/locater_vit_b16.yaml --amp bf16 --batch-size 2`."
    )
    markdown = (
        "## Training throughput\n\n"
        f"Command: `{command}`  \nMachine: {machine_description()}  \n"
        "One step = forward over the clip through the memory (plus the N1 global "
        "frames), BCE + Dice + auxiliary losses, backward, gradient clipping, AdamW; median-free mean over "
        f"{args.steps} steps after {args.warmup} warm-up steps, each config in a fresh process. "
        + gpu_note
        + "\n\n"
        + markdown_table(header, rows)
        + "\n"
    )
    print(markdown)
    if not args.no_write:
        write_section("train", markdown, args.out)
    return markdown
