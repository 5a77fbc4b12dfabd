"""Per-frame latency and peak memory of ``Locater.step`` at the released 320 px configuration.

Every measurement runs in a fresh process (clean peak RSS). With ``--official-root`` the official code (a checkout
of leonnnop/Locater, never part of this repository) runs the same weights on the same frames, and the table
reports its speed and the largest difference between the two outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch

from locater.bench import (
    machine_description,
    markdown_table,
    run_in_fresh_process,
    seeded_model,
    write_section,
)
from locater.engine.amp import autocast_for
from locater.engine.train_logging import peak_memory_mb

SENTENCES = ["the man in red is running on the left", "a dog jumping over the fence"]


def _seeded_model(size: int, seed: int) -> torch.nn.Module:
    return seeded_model({"model": {"image_size": size}}, seed, perturb_vectors=True)


def _frames(num_frames: int, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed + 1)
    coarse = torch.rand(num_frames, 3, size // 16, size // 16, generator=generator)
    frames = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (frames - 0.5) / 0.5


@contextlib.contextmanager
def _foreign_import_path(root: Path):
    """The official code imports its modules as top-level packages (``network.*``) from its checkout root."""
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))


def load_official_class(root: str | Path):
    """The official ``VLFTrans`` class from a checkout of leonnnop/Locater (not part of this repository)."""
    root = Path(root)
    if not (root / "network" / "mainnetwork.py").is_file():
        raise FileNotFoundError(
            f"{root} is not a checkout of the official Locater code (network/mainnetwork.py)"
        )
    with _foreign_import_path(root):
        return importlib.import_module("network.mainnetwork").VLFTrans


def _measure(job: dict) -> dict:
    torch.set_num_threads(job["threads"])
    import locater

    size, frames_total = job["size"], job["warmup"] + job["frames"]
    ours = _seeded_model(size, job["seed"])
    frames = _frames(frames_total, size, job["seed"])
    num_expr = job["expressions"]
    ids = locater.tokenize(SENTENCES[:num_expr])
    global_frames = frames[[0, frames_total // 2, frames_total - 1]][None]
    times, outputs = [], []
    start_time = time.perf_counter()
    if job["impl"] == "ours":
        autocast = autocast_for("cpu", job["dtype"] == "bfloat16")
        with torch.inference_mode(), autocast:
            state = ours.start(global_frames, ids)
            start_time = time.perf_counter() - start_time
            for t in range(frames_total):
                tic = time.perf_counter()
                logits, state = ours.step(frames[t : t + 1], state)
                times.append(time.perf_counter() - tic)
                outputs.append(logits.float()[:, 0])
    else:
        vlftrans = load_official_class(job["official_root"])
        official = vlftrans(img_dim=size).eval()
        official.load_state_dict(locater.checkpoint.ours_to_official(ours.state_dict()))
        with torch.no_grad():
            per_expr = []
            start_time = 0.0
            for row in range(num_expr):  # the official loop runs one expression after the other
                lang = {"input_ids": ids[row : row + 1]}
                tic = time.perf_counter()
                official._reset_memory()
                official._prep_global_mem(global_frames, lang)
                start_time += time.perf_counter() - tic
                expr_times, expr_out = [], []
                for t in range(frames_total):
                    tic = time.perf_counter()
                    out, _ = official(vis=frames[t : t + 1][:, None], lang=lang)
                    expr_times.append(time.perf_counter() - tic)
                    expr_out.append(out[-1][:, 0])
                per_expr.append((expr_times, expr_out))
            times = [sum(ts) for ts in zip(*(p[0] for p in per_expr))]
            outputs = [torch.cat(outs) for outs in zip(*(p[1] for p in per_expr))]
    measured = times[job["warmup"] :]
    return {
        "median_s": statistics.median(measured),
        "start_s": start_time,
        "peak_rss_mb": peak_memory_mb("cpu"),
        "outputs": torch.stack(outputs[job["warmup"] :]),
    }


def flops_per_frame(size: int) -> float:
    """FLOPs of one ``step`` (one expression) counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    import locater

    model = _seeded_model(size, 0)
    frames = _frames(4, size, 0)
    ids = locater.tokenize(SENTENCES[:1])
    with torch.inference_mode():
        state = model.start(frames[:3][None], ids)
        _, state = model.step(frames[:1], state)
        _, state = model.step(frames[1:2], state)  # the local memory is full from here on
        counter = FlopCounterMode(display=False)
        with counter:
            model.step(frames[2:3], state)
    return float(counter.get_total_flops())


def matmul_peak_gflops(threads: int) -> float:
    """Measured float32 matrix-multiply throughput (2048^3) on this machine."""
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(2):
        a @ b
    runs = []
    for _ in range(5):
        tic = time.perf_counter()
        a @ b
        runs.append(time.perf_counter() - tic)
    return 2 * 2048**3 / statistics.median(runs) / 1e9


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        prog="tools/benchmark.py --step", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--size", type=int, default=320, help="input size (the released model: 320)")
    parser.add_argument("--frames", type=int, default=6, help="measured frames per run")
    parser.add_argument("--warmup", type=int, default=2, help="frames run before measuring")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--official-root", type=Path, default=None, help="checkout of leonnnop/Locater to compare"
    )
    parser.add_argument("--skip-bf16", action="store_true", help="skip the bfloat16 autocast run")
    parser.add_argument(
        "--out", type=Path, default=Path("docs/benchmarks.md"), help="markdown file to update"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    base = {
        "size": args.size,
        "frames": args.frames,
        "warmup": args.warmup,
        "threads": args.threads,
        "seed": args.seed,
    }
    jobs = [
        ("ours", "float32", 1),
        ("ours", "float32", 2),
    ]
    if not args.skip_bf16:
        jobs.append(("ours", "bfloat16", 1))
    if args.official_root is not None:
        jobs += [("official", "float32", 1), ("official", "float32", 2)]
    results = {}
    for impl, dtype, expressions in jobs:
        job = dict(
            base, impl=impl, dtype=dtype, expressions=expressions, official_root=str(args.official_root)
        )
        print(f"running {impl} {dtype} x{expressions} ...", flush=True)
        results[(impl, dtype, expressions)] = run_in_fresh_process(_measure, job, f"step benchmark {job}")

    gflop = flops_per_frame(args.size) / 1e9
    peak = matmul_peak_gflops(args.threads)
    rows = []
    for (impl, dtype, expressions), result in results.items():
        fps = 1.0 / result["median_s"]
        achieved = gflop * expressions / result["median_s"] if impl == "ours" else float("nan")
        row = [
            impl,
            dtype,
            expressions,
            f"{result['median_s'] * 1000:.0f}",
            f"{fps:.2f}",
            f"{result['start_s'] * 1000:.0f}",
            f"{result['peak_rss_mb']:.0f}",
            "" if impl != "ours" or dtype != "float32" else f"{achieved:.0f} ({100 * achieved / peak:.0f}%)",
        ]
        reference = results.get(("ours", "float32", expressions))
        if impl == "official" and reference is not None:
            diff = (result["outputs"] - reference["outputs"]).abs().max().item()
            speedup = result["median_s"] / reference["median_s"]
            row.append(f"ours {speedup:.2f}x faster; max abs diff {diff:.2e}")
        elif dtype == "bfloat16":
            diff = (result["outputs"] - results[("ours", "float32", 1)]["outputs"]).abs().max().item()
            row.append(f"max abs diff vs float32 {diff:.2e}")
        else:
            row.append("")
        rows.append(row)
    header = [
        "implementation",
        "dtype",
        "expressions",
        "ms / frame (median)",
        "frames/s",
        "start (global memory) ms",
        "peak RSS MB",
        "GFLOP/s (% of matmul peak)",
        "notes",
    ]
    command = "python tools/benchmark.py --step" + (" --official-root DIR" if args.official_root else "")
    markdown = (
        f"## Streaming step latency ({args.size} px, CPU)\n\n"
        f"Command: `{command}`  \nMachine: {machine_description()}  \n"
        f"Date: {time.strftime('%Y-%m-%d')}. One `step` = {gflop:.1f} GFLOP per expression (torch FlopCounterMode; "
        f"the vision encoder is shared by the expressions of a video); measured float32 matmul peak "
        f"{peak:.0f} GFLOP/s. Median over {args.frames} frames after {args.warmup} warm-up frames, each row in a "
        "fresh process; the official loop re-encodes the sentence every frame and runs each expression separately.\n\n"
        + markdown_table(header, rows)
        + "\n"
    )
    print(markdown)
    if not args.no_write:
        write_section("step", markdown, args.out)
    return markdown
