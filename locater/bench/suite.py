"""The one-shot GPU suite: everything worth knowing from a first hour on a GPU, in one command under 8 minutes.

  python tools/benchmark.py --suite gpu                                   # on a GPU: writes "GPU suite" in docs
  python tools/benchmark.py --suite gpu --official-root /path/to/Locater  # also the official code on the same GPU
  python tools/benchmark.py --suite gpu --device cpu --config configs/model/tiny.yaml \\
      --train-config configs/model/tiny.yaml --out /tmp/suite.md       # the CPU rehearsal the tests run

It records, reusing the step, training and precision benchmarks:

* per-frame ``step`` latency of the streaming model in float32 (TF32 off), TF32, bf16 autocast and bf16 with
  ``torch.compile`` (:func:`locater.bench.step.compile_modules`), for one video and for several videos in lockstep
  (frames/s), with the peak memory of each;
* the official code against ours on the same device, float32 (with ``--official-root``);
* training step time and samples/s in bf16 with and without activation checkpointing of the fusion stages
  (``model.fusion.checkpoint``), with the peak memory of each;
* bf16 against float32 agreement of the streamed logits and masks.

Every measurement runs in a fresh process with its own time limit, and the whole suite within ``--budget-s``
(default 450 s): a measurement that would not fit is skipped, one that runs over is stopped, and the table says so.
What needs a GPU (TF32) is skipped with its reason on the CPU. The section is written into ``--out`` (default
``docs/benchmarks.md``) only on a GPU; on the CPU only when ``--out`` is given.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from locater.bench import (
    BenchmarkTimeout,
    machine_description,
    markdown_table,
    run_in_fresh_process,
    write_section,
)
from locater.bench.precision import compare_logits, streaming_logits
from locater.bench.step import measure_step
from locater.bench.training import benchmark_training

SECTION = "gpu-suite"
LATENCY_MODES = (  # label, autocast dtype, TF32 flags, torch.compile
    ("float32", "float32", False, False),
    ("TF32", "float32", True, False),
    ("bf16", "bfloat16", False, False),
    ("bf16 + torch.compile", "bfloat16", False, True),
)


@dataclass
class Measurement:
    """One measurement of the suite: what runs, in which process, with which time limit, or why it does not."""

    kind: str  # latency | official | train | agreement
    label: str
    job: dict[str, Any]
    budget_s: float
    skip: str = ""
    result: dict[str, Any] | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _latency_job(job: dict) -> dict:
    """One streaming mode, one video and then ``lockstep`` videos, in this (fresh) process.

    The lockstep run is left out (with the reason) when what is left of ``job["limit_s"]`` would not hold another
    run as long as the first: a process stopped at its limit returns nothing, the first run included.
    """
    tic = time.monotonic()
    single = measure_step(dict(job, videos=1, budget_s=job["measure_s"] / 2))
    result: dict[str, Any] = {"single": single}
    spent = time.monotonic() - tic
    if job["lockstep"] > 1:
        if job["limit_s"] - spent < 1.2 * spent:
            result["lockstep_skipped"] = (
                f"skipped: one video took {spent:.0f} s of the {job['limit_s']:.0f} s limit (compilation included)"
            )
        else:
            result["lockstep"] = measure_step(
                dict(job, videos=job["lockstep"], budget_s=job["measure_s"] / 2)
            )
    return result


def _train_job(job: dict) -> dict:
    import locater

    cfg = locater.load_config(job["config"], job["overrides"])
    return benchmark_training(
        cfg,
        job["batch_size"],
        job["clip_length"],
        steps=job["steps"],
        warmup=job["warmup"],
        amp=job["amp"],
        device=job["device"],
        threads=job["threads"],
    )


def _agreement_job(job: dict) -> dict:
    torch.set_num_threads(job["threads"])
    reference = streaming_logits(job["config"], job["device"], "none", job["frames"], job["seed"])
    mixed = streaming_logits(job["config"], job["device"], "bf16", job["frames"], job["seed"])
    return compare_logits(reference, mixed)


RUNNERS: dict[str, Callable[[dict], dict]] = {
    "latency": _latency_job,
    "official": measure_step,
    "train": _train_job,
    "agreement": _agreement_job,
}


def plan(args: argparse.Namespace) -> list[Measurement]:
    """The suite's measurements in the order they run (the cheap and the most wanted first), each with its time
    limit and, where it cannot run here, the reason."""
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    base = {
        "seed": args.seed,
        "threads": args.threads,
        "device": args.device,
        "frames": args.frames,
        "warmup": 3,  # the local memory is full from the third frame on (and compiled graphs are built)
        "expressions": 1,
        "size": args.size,
        "model_config": args.config,
        "official_root": str(args.official_root),
    }
    measurements = []
    budgets = {"float32": 45, "TF32": 40, "bf16": 40, "bf16 + torch.compile": 120}
    for label, dtype, tf32, compiled in LATENCY_MODES:
        job = dict(base, impl="ours", dtype=dtype, tf32=tf32 if on_gpu else None, compile=compiled)
        job.update(lockstep=args.videos, measure_s=budgets[label] * 0.4)
        skip = ""
        if tf32 and not on_gpu:
            skip = "skipped: TF32 is a mode of CUDA matrix products and convolutions; this run has no GPU"
        elif compiled and args.skip_compile:
            skip = "skipped: --skip-compile"
        measurements.append(Measurement("latency", label, job, budgets[label], skip))
    official = dict(base, impl="official", dtype="float32", tf32=False if on_gpu else None, model_config=None)
    official_skip = ""
    if args.official_root is None:
        official_skip = "not run: no --official-root (a checkout of the official code) was given"
    elif args.config != "configs/model/locater_vit_b16.yaml":
        official_skip = (
            "not run: the official code builds the released architecture only (--config is another)"
        )
    measurements.append(Measurement("official", "official code, float32", official, 45, official_skip))
    for checkpointing in (False, True):
        job = {
            "config": args.train_config,
            "overrides": [
                "pretrained.vit=null",
                "pretrained.checkpoint=null",
                f"model.fusion.checkpoint={str(checkpointing).lower()}",
            ],
            "batch_size": args.batch_size,
            "clip_length": args.clip_length,
            "steps": args.train_steps,
            "warmup": 2,
            "amp": "bf16",
            "device": args.device,
            "threads": args.threads,
        }
        label = "bf16, activation checkpointing " + ("on" if checkpointing else "off")
        measurements.append(Measurement("train", label, job, 60))
    agreement = {
        "config": args.config,
        "device": args.device,
        "frames": 4,
        "seed": args.seed,
        "threads": args.threads,
    }
    measurements.append(Measurement("agreement", "bf16 vs float32", agreement, 40))
    # torch.compile last: the one whose time is hardest to foresee
    measurements.sort(key=lambda m: m.kind == "latency" and m.job.get("compile", False))
    return measurements


def run(measurements: list[Measurement], budget_s: float) -> None:
    """Run each measurement in a fresh process within its limit and what is left of ``budget_s``."""
    deadline = time.monotonic() + budget_s
    for measurement in measurements:
        if measurement.skip:
            continue
        left = deadline - time.monotonic()
        if left < min(measurement.budget_s, 20.0):
            measurement.skip = f"skipped: the suite's {budget_s:.0f} s were spent"
            continue
        limit = min(measurement.budget_s, left)
        if measurement.kind == "latency":
            measurement.job["measure_s"] = min(measurement.job["measure_s"], limit * 0.4)
            measurement.job["limit_s"] = limit
        print(f"measuring {measurement.kind}: {measurement.label} (at most {limit:.0f} s) ...", flush=True)
        tic = time.monotonic()
        try:
            measurement.result = run_in_fresh_process(
                RUNNERS[measurement.kind], measurement.job, f"suite {measurement.label}", timeout_s=limit
            )
        except BenchmarkTimeout:
            measurement.skip = f"stopped: over its time limit of {limit:.0f} s"
        except RuntimeError as error:  # reported in the table; the other measurements still run
            measurement.skip = "failed: " + str(error).strip().splitlines()[-1][:200]
        measurement.extra["seconds"] = time.monotonic() - tic


def _memory(result: dict) -> str:
    return f"{result['peak_memory_mb']:.0f}"


def tables(measurements: list[Measurement], args: argparse.Namespace) -> str:
    """The suite's markdown: latency, official, training and agreement tables."""
    on_gpu = torch.device(args.device).type == "cuda"
    memory = "peak memory MB (CUDA allocator)" if on_gpu else "peak memory MB (RSS)"
    by_label = {m.label: m for m in measurements}
    float32 = by_label["float32"].result
    latency_rows = []
    for m in (m for m in measurements if m.kind == "latency"):
        if m.result is None:
            latency_rows.append([m.label, "1", "", "", "", m.skip])
            continue
        for key, videos in (("single", 1), ("lockstep", args.videos)):
            r = m.result.get(key)
            if r is None:
                if f"{key}_skipped" in m.result:
                    latency_rows.append([m.label, str(videos), "", "", "", m.result[f"{key}_skipped"]])
                continue
            notes = [f"{r['frames_measured']} frames measured"]
            if m.job.get("compile"):
                notes.append(f"compilation in start and warm-up: {r['start_s'] + r['warmup_s']:.0f} s")
            reference = float32.get(key) if float32 else None
            if reference is not None and m.label != "float32":
                count = min(len(reference["outputs"]), len(r["outputs"]))
                diff = (reference["outputs"][:count] - r["outputs"][:count]).abs().max().item()
                notes.append(f"{reference['median_s'] / r['median_s']:.2f}x float32, max abs diff {diff:.1e}")
            latency_rows.append(
                [
                    m.label,
                    str(videos),
                    f"{r['median_s'] * 1000:.1f}",
                    f"{videos / r['median_s']:.1f}",
                    _memory(r),
                    "; ".join(notes),
                ]
            )
    official = by_label["official code, float32"]
    if official.result is None:
        official_rows = [["official", "", "", "", official.skip]]
    else:
        ours = float32["single"] if float32 else None
        note = ""
        if ours is not None:
            count = min(len(ours["outputs"]), len(official.result["outputs"]))
            diff = (ours["outputs"][:count] - official.result["outputs"][:count]).abs().max().item()
            note = (
                f"ours {official.result['median_s'] / ours['median_s']:.2f}x faster; max abs diff {diff:.1e}"
            )
        official_rows = [
            [
                "official",
                f"{official.result['median_s'] * 1000:.1f}",
                f"{1 / official.result['median_s']:.1f}",
                _memory(official.result),
                note,
            ]
        ]
        if ours is not None:
            official_rows.append(
                ["ours", f"{ours['median_s'] * 1000:.1f}", f"{1 / ours['median_s']:.1f}", _memory(ours), ""]
            )
    train_rows = []
    for m in (m for m in measurements if m.kind == "train"):
        if m.result is None:
            train_rows.append([m.label, "", "", "", m.skip])
            continue
        train_rows.append(
            [
                m.label,
                f"{m.result['seconds_per_step'] * 1000:.0f}",
                f"{m.result['samples_per_s']:.2f}",
                f"{m.result['peak_memory_mb']:.0f}",
                f"{args.batch_size} clips x {args.clip_length} frames a step",
            ]
        )
    agreement = by_label["bf16 vs float32"]
    if agreement.result is None:
        agreement_rows = [["", "", "", "", agreement.skip]]
    else:
        a = agreement.result
        agreement_rows = [
            [
                f"{a['max_abs_logit']:.2e}",
                f"{a['mean_abs_prob']:.2e}",
                f"{a['mask_agreement']:.5f}",
                f"{a['mask_iou']:.4f}",
                "finite" if a["finite"] else "NOT FINITE",
            ]
        ]
    command = "python tools/benchmark.py --suite gpu" + (" --official-root DIR" if args.official_root else "")
    if args.device != "cuda":
        command += f" --device {args.device}"
    if args.config != "configs/model/locater_vit_b16.yaml":
        command += f" --config {args.config} --train-config {args.train_config}"
    seconds = sum(m.extra.get("seconds", 0.0) for m in measurements)
    return "\n".join(
        [
            f"## GPU suite ({args.device})",
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine_description()}  ",
            f"Streaming: `{args.config}` with seeded random weights, one sentence per video, median over up to "
            f"{args.frames} frames after 3 warm-up frames; {args.videos} videos in lockstep run one batched `step`. "
            f"Training: `{args.train_config}` in bf16. Each measurement in a fresh process with a time limit; the "
            f"suite took {seconds:.0f} s of its {args.budget_s:.0f} s.",
            "",
            markdown_table(
                ["streaming", "videos", "ms / step (median)", "frames/s", memory, "notes"], latency_rows
            ),
            "",
            markdown_table(
                ["code (float32, one video)", "ms / frame", "frames/s", memory, "notes"], official_rows
            ),
            "",
            markdown_table(["training step", "ms / step", "samples/s", memory, "notes"], train_rows),
            "",
            markdown_table(
                [
                    "bf16 vs float32: max abs logit diff",
                    "mean abs prob diff",
                    "mask agreement",
                    "mask IoU",
                    "notes",
                ],
                agreement_rows,
            ),
        ]
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/benchmark.py --suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("suite", choices=["gpu"], help="the suite to run")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda[:N] or cpu"
    )
    parser.add_argument(
        "--config", default="configs/model/locater_vit_b16.yaml", help="model of the streaming rows"
    )
    parser.add_argument(
        "--train-config", default="configs/a2d/train.yaml", help="config of the training rows"
    )
    parser.add_argument(
        "--official-root", type=Path, default=None, help="checkout of leonnnop/Locater to compare"
    )
    parser.add_argument("--size", type=int, default=320, help="frame size when --config has none")
    parser.add_argument("--frames", type=int, default=20, help="measured frames per streaming row (at most)")
    parser.add_argument("--videos", type=int, default=8, help="videos in lockstep in the batched rows")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per training step (config's)")
    parser.add_argument("--clip-length", type=int, default=None, help="frames per clip (config's)")
    parser.add_argument("--train-steps", type=int, default=5, help="measured training steps")
    parser.add_argument("--budget-s", type=float, default=450.0, help="time for the whole suite")
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile rows")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="markdown file to update (see above)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(
            f"--device {args.device}: no CUDA device is available (use --device cpu for a rehearsal)"
        )
    if device.type not in ("cuda", "cpu"):
        parser.error(f"--device must be cuda[:N] or cpu, got {args.device}")
    for name in ("frames", "videos", "train_steps", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.budget_s < 30:
        parser.error("--budget-s must be at least 30")
    import locater

    train = locater.load_config(args.train_config).train
    args.batch_size = args.batch_size or train.batch_size
    args.clip_length = args.clip_length or train.clip_length
    return args


def main(argv: list[str] | None = None) -> str:
    args = _parse(argv)
    measurements = plan(args)
    run(measurements, args.budget_s)
    markdown = tables(measurements, args)
    print(markdown)
    on_gpu = torch.device(args.device).type == "cuda"
    out = args.out if args.out is not None else (Path("docs/benchmarks.md") if on_gpu else None)
    if args.no_write or out is None:
        if not on_gpu and not args.no_write:
            print("(a CPU run writes no section unless --out names a file)")
        return markdown
    write_section(SECTION, markdown, out)
    return markdown
