"""Streaming Locater against attention over every past frame, on videos of 16 to 1024 frames.

Locater reads each frame against a fixed-size memory (global + local), so the time per frame and the memory stay
flat however long the video is. The baseline is the same model with the same weights whose local memory never
compresses: its capacity is set above the video length, so every frame's tokens are appended and each new frame
cross-attends over all frames seen so far (time per frame grows linearly, the whole video quadratically).

Each (method, length) runs in a fresh process (clean peak RSS); a baseline run that passes ``--time-limit`` stops
and the table says after how many frames.
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from locater.bench import (
    machine_description,
    markdown_table,
    run_in_fresh_process,
    write_section,
)
from locater.engine.train_logging import peak_memory_mb

SENTENCE = "the man in a red shirt riding a bicycle"
METHODS = ("locater", "all-frames baseline")


def benchmark_model_section(size: int, width: int) -> dict:
    """A small but complete Locater: ``size`` px frames, 16 px patches, ``width`` channels, K = 2."""
    heads = max(1, width // 32)
    return {
        "image_size": size,
        "patch_size": 16,
        "embed_dim": width,
        "vision": {"depth": 4, "num_heads": heads, "mlp_ratio": 4.0},
        "text": {"vocab_size": 30000, "word_dim": 300, "hidden_size": width // 2, "num_layers": 2},
        "fusion": {
            "num_stages": 2,
            "num_heads": heads,
            "joint_depth": 1,
            "vision_depth": 1,
            "mlp_ratio": 4.0,
        },
        "global_memory": {"size": 1.5, "num_frames": 3},
        "local_memory": {"size": 2.0, "mask_history": True},
        "memory_heads": 8,
        "memory_mlp_ratio": 4.0,
        "aux_heads": False,
    }


def _frame(index: int, size: int, seed: int) -> torch.Tensor:
    """A smooth random pre-processed frame ``1 x 3 x size x size`` (made on the fly: no video is held)."""
    generator = torch.Generator().manual_seed(seed * 100003 + index)
    coarse = torch.rand(1, 3, max(1, size // 16), max(1, size // 16), generator=generator)
    frame = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (frame - 0.5) / 0.5


def _state_megabytes(state) -> float:
    tensors = [state.words, state.global_memory, state.local_memory]
    return sum(t.numel() * t.element_size() for t in tensors if t is not None) / 2**20


def _measure(job: dict) -> dict:
    torch.set_num_threads(job["threads"])
    import locater

    device = torch.device(job["device"])
    section = copy.deepcopy(job["model"])
    if job["method"] != METHODS[0]:
        # room for every frame: the write rule then appends whole frames and never compresses
        section["local_memory"]["size"] = float(job["frames"] + 1)
    torch.manual_seed(job["seed"])
    model = locater.build_model({"model": section}).eval().to(device)
    size = section["image_size"]
    ids = locater.tokenize([SENTENCE]).to(device)
    global_frames = torch.cat([_frame(-1 - i, size, job["seed"]) for i in range(3)])[None].to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.inference_mode():
        warm = model.start(global_frames, ids)
        for t in range(3):
            _, warm = model.step(_frame(10**6 + t, size, job["seed"]).to(device), warm)
        del warm
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync()
        state = model.start(global_frames, ids)
        times: list[float] = []
        begin = time.perf_counter()
        stopped = False
        for t in range(job["frames"]):
            frame = _frame(t, size, job["seed"]).to(device)
            sync()
            tic = time.perf_counter()
            _, state = model.step(frame, state)
            sync()
            times.append(time.perf_counter() - tic)
            if time.perf_counter() - begin > job["time_limit"] and t + 1 < job["frames"]:
                stopped = True
                break
    tail = times[-max(4, len(times) // 10) :]
    return {
        "frames_done": len(times),
        "stopped": stopped,
        "mean_ms": 1000 * statistics.fmean(times),
        "last_ms": 1000 * statistics.median(tail),
        "memory_tokens": (0 if state.local_memory is None else state.local_memory.shape[1])
        + (0 if state.global_memory is None else state.global_memory.shape[1]),
        "state_mb": _state_megabytes(state),
        "peak_rss_mb": peak_memory_mb("cpu"),
        "peak_cuda_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }


def run_job(job: dict) -> dict:
    """Run one (method, length) measurement in a fresh process."""
    return run_in_fresh_process(_measure, job, f"scaling job {job['method']} x {job['frames']}")


def plot_scaling(rows: list[dict], path: str | Path) -> Path:
    """Two panels against video length: ms per frame (last frames) and peak memory, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memory_key = "peak_cuda_mb" if rows and rows[0]["peak_cuda_mb"] is not None else "peak_rss_mb"
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for method, marker in zip(METHODS, ("o", "s")):
        mine = [r for r in rows if r["method"] == method]
        lengths = [r["frames_done"] for r in mine]
        time_axis.plot(lengths, [r["last_ms"] for r in mine], marker=marker, label=method)
        memory_axis.plot(lengths, [r[memory_key] for r in mine], marker=marker, label=method)
    for axis, label in (
        (time_axis, "ms per frame (median of the last 10% of frames)"),
        (memory_axis, "peak GPU memory (MB)" if memory_key == "peak_cuda_mb" else "peak RSS (MB)"),
    ):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("frames read")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        axis.legend()
    time_axis.set_ylim(bottom=0)
    figure.suptitle("Streaming Locater (fixed memory) vs attention over all past frames")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        prog="tools/benchmark.py --scaling", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 256, 1024], help="video lengths")
    parser.add_argument("--size", type=int, default=128, help="frame size of the benchmark model")
    parser.add_argument("--width", type=int, default=256, help="channels of the benchmark model")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument(
        "--time-limit", type=float, default=300.0, help="seconds after which a run stops (the table says so)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=Path("docs/benchmarks.md"), help="markdown file to update"
    )
    parser.add_argument("--plot", type=Path, default=Path("docs/scaling.png"), help="PNG plot to write")
    parser.add_argument("--note", default="", help="a sentence added to the markdown (e.g. machine load)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if any(length <= 0 for length in args.lengths):
        parser.error("--lengths must be positive")

    section = benchmark_model_section(args.size, args.width)
    rows = []
    for method in METHODS:
        for length in sorted(args.lengths):
            print(f"running {method} on {length} frames ...", flush=True)
            job = {
                "method": method,
                "frames": length,
                "model": section,
                "device": args.device,
                "threads": args.threads,
                "time_limit": args.time_limit,
                "seed": args.seed,
            }
            rows.append(dict(run_job(job), method=method, frames=length))
    gpu = args.device.startswith("cuda")
    header = [
        "method",
        "video frames",
        "ms / frame (mean)",
        "ms / frame (last 10%)",
        "frames/s",
        "memory tokens at the end",
        "state MB",
        "peak GPU MB" if gpu else "peak RSS MB",
        "notes",
    ]
    table = []
    for row in rows:
        note = (
            f"stopped after {row['frames_done']} frames (time limit {args.time_limit:g} s)"
            if row["stopped"]
            else ""
        )
        table.append(
            [
                row["method"],
                row["frames"],
                f"{row['mean_ms']:.1f}",
                f"{row['last_ms']:.1f}",
                f"{1000 / row['mean_ms']:.1f}",
                row["memory_tokens"],
                f"{row['state_mb']:.2f}",
                f"{row['peak_cuda_mb' if gpu else 'peak_rss_mb']:.0f}",
                note,
            ]
        )
    locater_rows = [r for r in rows if r["method"] == METHODS[0]]
    baseline_rows = [r for r in rows if r["method"] == METHODS[1]]
    ratio = ""
    if locater_rows and baseline_rows:
        longest = max(r["frames_done"] for r in baseline_rows)
        base = next(r for r in baseline_rows if r["frames_done"] == longest)
        ours = min(locater_rows, key=lambda r: abs(r["frames"] - longest))
        ratio = (
            f" At {longest} frames the baseline spends {base['last_ms'] / ours['last_ms']:.1f}x Locater's time on "
            f"each new frame and holds {base['memory_tokens']} memory tokens against {ours['memory_tokens']}."
        )
    tokens = (section["image_size"] // section["patch_size"]) ** 2
    plot_link = Path(os.path.relpath(args.plot.resolve(), args.out.resolve().parent)).as_posix()
    plot_note = f"\n\n![scaling]({plot_link})\n" if not args.no_write else ""
    given = sys.argv[2:] if argv is None else argv  # the options as typed (tools/benchmark.py --scaling ...)
    command = "python tools/benchmark.py --scaling" + "".join(f" {shlex.quote(a)}" for a in given)
    markdown = (
        f"## Scaling with video length ({'GPU' if gpu else 'CPU'})\n\n"
        f"Command: `{command}`  \nMachine: {machine_description()}  \n\n"
        f"Model: {section['image_size']} px frames ({tokens} tokens), width {section['embed_dim']}, "
        f"{section['vision']['depth']} ViT blocks, K = {section['fusion']['num_stages']} fusion stages, one "
        "sentence, random weights and frames (timing does not depend on them). `locater`: the released memory "
        f"sizes (global 1.5 and local 2 frames = {int(3.5 * tokens)} tokens). `all-frames baseline`: the same "
        "model and weights with a local memory that keeps every past frame whole, so each frame cross-attends "
        "over all frames seen so far. Each row is a fresh process; times are per `step` (frame encoding, "
        "fusion, memory read and write, mask decoding) after 3 warm-up frames; `state MB` is the size of the "
        f"streaming state after the last frame.{ratio}{' ' + args.note if args.note else ''}\n\n"
        + markdown_table(header, table)
        + plot_note
    )
    print(markdown)
    if not args.no_write:
        plot_scaling(rows, args.plot)
        write_section("scaling", markdown, args.out)
        print(f"wrote {args.out} and {args.plot}")
    return markdown
