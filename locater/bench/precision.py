"""Numerical checks of a device and of mixed precision: the same streaming outputs in float32 on the device as on the
CPU, how far bfloat16 / float16 autocast moves them, and whether training steps stay finite and learn under each AMP
mode. What only a GPU shows; on a CPU-only machine the CPU-vs-device rows are left out (and fp16 with them).

  python tools/benchmark.py --precision --device cuda --out docs/benchmarks_gpu.md
  python tools/benchmark.py --precision --device cpu --config configs/model/tiny.yaml --no-write

Streaming rows: one model of ``--config`` with seeded random weights (the numbers do not need trained ones), random
frames, ``--frames`` frames of one video with two sentences through ``start`` + ``step``, in eval mode. Compared:
logits (max |difference|), probabilities (mean |difference|), and the binary masks at probability 0.5 (share of
pixels that agree; IoU of the two masks, 1 where both are empty) and whether every compared logit is finite. Float32
on CUDA is compared with TF32 off (the exact float32 path) and with PyTorch's flags left as they are (by default TF32
in cuDNN convolutions, not in matrix products).
Training rows: ``--steps`` optimizer steps of ``--train-config`` on one fixed random batch (locater.bench.training),
from the same initial weights under each AMP mode: the loss at the first and the last step, and whether every loss
was finite. The exit status is 1 when a compared output or a loss is not finite, or a run's last loss is not below
its first.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from locater.bench import machine_description, markdown_table, seeded_model, write_section
from locater.bench.training import training_step
from locater.engine.amp import autocast_for

SENTENCES = ["the small red circle moving right", "the blue square on the left"]


def streaming_logits(
    config: str,
    device: str,
    amp: str = "none",
    frames: int = 4,
    seed: int = 0,
    allow_tf32: bool | None = False,
) -> torch.Tensor:
    """Logits of a seeded random model of ``config`` streaming ``frames`` random frames of one video.

    ``allow_tf32``: the TF32 flags of CUDA matrix products and cuDNN while it runs (restored after); ``None`` leaves
    them as they are.

    Returns:
        ``frames x 2 x H x W`` float32 logits on the CPU (two sentences).
    """
    import locater

    target = torch.device(device)
    cfg = locater.load_config(config)
    model = seeded_model(cfg, seed).to(target)
    size, num_global_frames = model.image_size[0], model.num_global_frames
    generator = torch.Generator().manual_seed(seed + 1)
    video = torch.randn(1, frames, 3, size, size, generator=generator)
    global_frames = torch.randn(1, num_global_frames, 3, size, size, generator=generator)
    ids = locater.tokenize(SENTENCES)
    autocast = autocast_for(target.type, amp)
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if allow_tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow_tf32
    outputs = []
    try:
        with torch.no_grad(), autocast:
            state = model.start(global_frames.to(target), ids.to(target))
            for index in range(frames):
                logits, state = model.step(video[:, index].to(target), state)
                outputs.append(logits[:, 0].float().cpu())
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return torch.stack(outputs)


def compare_logits(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """How far ``other`` logits are from ``reference`` (same shape).

    Returns:
        ``max_abs_logit``, ``mean_abs_prob``, ``mask_agreement`` (share of pixels on the same side of 0.5),
        ``mask_iou`` (IoU of the two binary masks; 1.0 when both are empty) and ``finite`` (both all finite).
    """
    if reference.shape != other.shape:
        raise ValueError(f"shapes differ: {tuple(reference.shape)} vs {tuple(other.shape)}")
    mask_a, mask_b = reference > 0, other > 0
    union = (mask_a | mask_b).sum().item()
    return {
        "max_abs_logit": (reference - other).abs().max().item(),
        "mean_abs_prob": (reference.sigmoid() - other.sigmoid()).abs().mean().item(),
        "mask_agreement": (mask_a == mask_b).float().mean().item(),
        "mask_iou": (mask_a & mask_b).sum().item() / union if union else 1.0,
        "finite": bool(torch.isfinite(reference).all() and torch.isfinite(other).all()),
    }


def training_losses(config: str, amp: str, device: str, steps: int, seed: int = 0) -> list[float]:
    """Losses of ``steps`` optimizer steps on one fixed batch (:func:`locater.bench.training.training_step`)."""
    _, one_step = training_step(config, batch_size=2, clip_length=3, amp=amp, device=device, seed=seed)
    return [one_step().item() for _ in range(steps)]


def run(
    config: str, train_config: str, device: str, frames: int = 4, steps: int = 30, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """The streaming comparisons and the training runs on ``device``.

    Returns:
        ``(streaming_rows, training_rows)``: dicts with ``reference``, ``compared`` and :func:`compare_logits`'s
        numbers; dicts with ``amp``, ``first_loss``, ``last_loss``, ``finite``.
    """
    on_gpu = torch.device(device).type == "cuda"
    reference = streaming_logits(config, device, "none", frames, seed)
    streaming = []
    if on_gpu:
        cpu = streaming_logits(config, "cpu", "none", frames, seed)
        streaming.append(
            dict(
                reference="float32, CPU",
                compared=f"float32, {device}, TF32 off",
                **compare_logits(cpu, reference),
            )
        )
        matmul_tf32, cudnn_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        tf32 = streaming_logits(config, device, "none", frames, seed, allow_tf32=None)
        streaming.append(
            dict(
                reference="float32, CPU",
                compared=f"float32, {device}, TF32 as set (matrix products {matmul_tf32}, cuDNN {cudnn_tf32})",
                **compare_logits(cpu, tf32),
            )
        )
    amps = ["bf16", "fp16"] if on_gpu else ["bf16"]
    for amp in amps:
        other = streaming_logits(config, device, amp, frames, seed)
        streaming.append(
            dict(
                reference=f"float32, {device}",
                compared=f"{amp} autocast, {device}",
                **compare_logits(reference, other),
            )
        )
    training = []
    for amp in ["none", *amps]:
        losses = training_losses(train_config, amp, device, steps, seed)
        training.append(
            dict(
                amp=amp,
                first_loss=losses[0],
                last_loss=losses[-1],
                finite=all(math.isfinite(x) for x in losses),
            )
        )
    return streaming, training


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        prog="tools/benchmark.py --precision", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--config", default="configs/model/locater_vit_b16.yaml", help="model of the streaming rows"
    )
    parser.add_argument(
        "--train-config", default="configs/synthetic/train.yaml", help="model of the training rows"
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda[:N]"
    )
    parser.add_argument("--frames", type=int, default=4, help="streamed frames")
    parser.add_argument("--steps", type=int, default=30, help="training steps per AMP mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=Path("docs/benchmarks.md"), help="markdown file to update"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.frames <= 0 or args.steps <= 1:
        parser.error("--frames must be positive and --steps at least 2")

    streaming, training = run(args.config, args.train_config, args.device, args.frames, args.steps, args.seed)
    stream_table = markdown_table(
        [
            "reference",
            "compared",
            "max abs logit diff",
            "mean abs prob diff",
            "mask agreement",
            "mask IoU",
            "finite",
        ],
        [
            [
                row["reference"],
                row["compared"],
                f"{row['max_abs_logit']:.2e}",
                f"{row['mean_abs_prob']:.2e}",
                f"{row['mask_agreement']:.5f}",
                f"{row['mask_iou']:.4f}",
                "yes" if row["finite"] else "NO",
            ]
            for row in streaming
        ],
    )
    train_table = markdown_table(
        ["amp", "loss at step 1", f"loss at step {args.steps}", "all finite"],
        [
            [r["amp"], f"{r['first_loss']:.4f}", f"{r['last_loss']:.4f}", "yes" if r["finite"] else "NO"]
            for r in training
        ],
    )
    command = (
        f"python tools/benchmark.py --precision --device {args.device} --config {args.config} "
        f"--train-config {args.train_config} --frames {args.frames} --steps {args.steps} --seed {args.seed}"
    )
    markdown = "\n".join(
        [
            f"## Precision ({args.device})",
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine_description()}  ",
            f"Streaming: `{args.config}` with seeded random weights, {args.frames} "
            "random frames of one video, two sentences, eval mode. Training: "
            f"`{args.train_config}`, {args.steps} optimizer steps on one fixed random batch (2 clips x 3 frames) "
            "from the same weights under each AMP mode (fp16 with a gradient scaler).",
            "",
            stream_table,
            "",
            train_table,
        ]
    )
    print(markdown)
    if not args.no_write:
        write_section(f"precision-{torch.device(args.device).type}", markdown, args.out)
    failed = [f"streaming {row['compared']}" for row in streaming if not row["finite"]]
    failed += [
        f"training with amp {row['amp']}"
        for row in training
        if not row["finite"] or row["last_loss"] >= row["first_loss"]
    ]
    if failed:
        raise SystemExit(f"not finite, or a loss that did not go down: {', '.join(failed)}")
    return markdown
