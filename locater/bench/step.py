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
from locater.bench.paired import VARIANTS, measure_paired
from locater.bench.precision import compare_logits
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _tf32(allow: bool | None):
    """CUDA's TF32 flags (matrix products and cuDNN) set to ``allow`` while inside (``None``: left as they are)."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if allow is not None:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def compile_modules(model: torch.nn.Module) -> None:
    """``torch.compile`` (in place, static shapes) the parts of ``step`` that hold its arithmetic: the vision
    encoder, each fusion stage, the query generator, the memory reader and the mask decoder.

    ``step`` itself is not compiled whole: its state carries a frame counter, and a graph that guards on a Python
    integer is rebuilt at every frame.
    """
    parts = [
        model.vision_encoder,
        *model.fusion,
        model.query_generator,
        model.memory_reader,
        model.mask_decoder,
    ]
    for part in parts:
        part.compile(dynamic=False)


def measure_step(job: dict) -> dict:
    """Per-frame latency of ``step`` for one job (run it in a fresh process: :func:`run_in_fresh_process`).

    ``job`` keys: ``impl`` (``ours`` | ``official``), ``dtype`` (``float32`` | ``bfloat16``: autocast), ``expressions``
    (sentences of one video), ``size``, ``frames`` (measured), ``warmup``, ``threads``, ``seed``, ``official_root``;
    optional: ``model_config`` (a config whose model is timed instead of the released architecture at ``size``;
    its own image size then), ``device`` (default ``cpu``), ``tf32`` (CUDA TF32 flags; default off on CUDA), ``compile``
    (``torch.compile`` the step; ours only), ``videos`` (videos in lockstep, one expression each, one batched
    ``step``; ours only; replaces ``expressions``), ``budget_s`` (stop measuring after this many seconds, at least
    one measured frame).

    Returns:
        ``median_s`` (per step), ``start_s``, ``warmup_s`` (all warm-up frames: the compilation when compiling),
        ``frames_measured``, ``peak_memory_mb`` (CUDA allocator peak on a GPU, peak RSS on the CPU; also as
        ``peak_rss_mb``), ``outputs`` (measured logits, ``frames x rows x H x W``, on the CPU).
    """
    torch.set_num_threads(job["threads"])
    import locater

    device = torch.device(job.get("device", "cpu"))
    if job.get("model_config"):
        cfg = locater.load_config(job["model_config"], ["pretrained.vit=null", "pretrained.checkpoint=null"])
        ours = seeded_model(cfg, job["seed"], perturb_vectors=True)
        size = ours.image_size[0]
    else:
        size = job["size"]
        ours = _seeded_model(size, job["seed"])
    ours = ours.to(device)
    frames_total = job["warmup"] + job["frames"]
    videos = job.get("videos", 1)
    frames = _frames(frames_total + videos - 1, size, job["seed"]).to(device)
    num_expr = job["expressions"] if videos == 1 else videos
    sentences = (SENTENCES * num_expr)[:num_expr]
    ids = locater.tokenize(sentences).to(device)
    picks = [0, frames_total // 2, frames_total - 1]
    # video v sees frames shifted by v, so the videos of a lockstep batch differ
    global_frames = torch.stack([frames[[p + v for p in picks]] for v in range(videos)])
    deadline = time.perf_counter() + job.get("budget_s", float("inf"))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, outputs = [], []
    warmup_s = 0.0
    tf32 = job.get("tf32", False if device.type == "cuda" else None)
    with _tf32(tf32):
        if job["impl"] == "ours":
            if job.get("compile"):
                compile_modules(ours)
            step = ours.step
            autocast = autocast_for(device.type, job["dtype"] == "bfloat16")
            with torch.inference_mode(), autocast:
                tic = time.perf_counter()
                state = ours.start(global_frames, ids)
                _sync(device)
                start_time = time.perf_counter() - tic
                for t in range(frames_total):
                    batch = torch.stack([frames[t + v] for v in range(videos)])
                    tic = time.perf_counter()
                    logits, state = step(batch, state)
                    _sync(device)
                    elapsed = time.perf_counter() - tic
                    if t < job["warmup"]:
                        warmup_s += elapsed
                        continue
                    times.append(elapsed)
                    outputs.append(logits.float()[:, 0].cpu())
                    if time.perf_counter() > deadline:
                        break
        else:
            vlftrans = load_official_class(job["official_root"])
            official = vlftrans(img_dim=size).eval()
            official.load_state_dict(locater.checkpoint.ours_to_official(ours.state_dict()))
            official = official.to(device)
            with torch.no_grad():
                per_expr = []
                start_time = 0.0
                for row in range(num_expr):  # the official loop runs one expression after the other
                    lang = {"input_ids": ids[row : row + 1]}
                    tic = time.perf_counter()
                    official._reset_memory()
                    official._prep_global_mem(global_frames[:1], lang)
                    _sync(device)
                    start_time += time.perf_counter() - tic
                    expr_times, expr_out = [], []
                    for t in range(frames_total):
                        tic = time.perf_counter()
                        out, _ = official(vis=frames[t : t + 1][:, None], lang=lang)
                        _sync(device)
                        expr_times.append(time.perf_counter() - tic)
                        expr_out.append(out[-1][:, 0].float().cpu())
                        if t >= job["warmup"] and time.perf_counter() > deadline:
                            break
                    per_expr.append((expr_times, expr_out))
                times = [sum(ts) for ts in zip(*(p[0] for p in per_expr))]
                outputs = [torch.cat(outs) for outs in zip(*(p[1] for p in per_expr))]
                warmup_s = sum(times[: job["warmup"]])
                times, outputs = times[job["warmup"] :], outputs[job["warmup"] :]
    peak = peak_memory_mb(device.type)
    return {
        "median_s": statistics.median(times),
        "start_s": start_time,
        "warmup_s": warmup_s,
        "frames_measured": len(times),
        "peak_memory_mb": peak,
        "peak_rss_mb": peak,
        "outputs": torch.stack(outputs),
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
        "--compile",
        action="store_true",
        help="also time eager and torch.compile, float32 and bf16, taking turns frame by frame in one process "
        "(locater.bench.paired: a fair comparison on a loaded machine)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("docs/benchmarks.md"), help="markdown file to update"
    )
    parser.add_argument(
        "--section",
        default="step",
        help="section of --out to write (another name keeps the main table, e.g. its --official-root rows)",
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
    jobs = [("ours", "float32", 1), ("ours", "float32", 2)]
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
        results[(impl, dtype, expressions)] = run_in_fresh_process(measure_step, job, f"step benchmark {job}")
    paired = None
    if args.compile:
        variants = [name for name, bf16, _ in VARIANTS if not (bf16 and args.skip_bf16)]
        print(f"running {', '.join(variants)} in turns ...", flush=True)
        paired = run_in_fresh_process(
            measure_paired, dict(base, variants=variants), "paired eager / compiled benchmark"
        )

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
        float32 = results[("ours", "float32", 1)]
        reference = results.get(("ours", "float32", expressions))
        if impl == "official" and reference is not None:
            diff = (result["outputs"] - reference["outputs"]).abs().max().item()
            speedup = result["median_s"] / reference["median_s"]
            row.append(f"ours {speedup:.2f}x faster; max abs diff {diff:.2e}")
        elif dtype == "bfloat16":
            agreement = compare_logits(float32["outputs"], result["outputs"])
            row.append(
                f"{float32['median_s'] / result['median_s']:.2f}x float32; max abs diff vs float32 "
                f"{agreement['max_abs_logit']:.2e}, mean abs prob diff {agreement['mean_abs_prob']:.1e}, "
                f"mask IoU {agreement['mask_iou']:.4f}"
            )
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
    command += " --compile" if args.compile else ""
    command += f" --section {args.section}" if args.section != "step" else ""
    markdown = (
        f"## Streaming step latency{', torch.compile and bf16' if args.compile else ''} ({args.size} px, CPU)\n\n"
        f"Command: `{command}`  \nMachine: {machine_description()}  \n"
        f"One `step` = {gflop:.1f} GFLOP per expression (torch FlopCounterMode; "
        f"the vision encoder is shared by the expressions of a video); measured float32 matmul peak "
        f"{peak:.0f} GFLOP/s. Median over {args.frames} frames after {args.warmup} warm-up frames, each row in a "
        "fresh process; the official loop re-encodes the sentence every frame and runs each expression separately.\n\n"
        + markdown_table(header, rows)
        + "\n"
    )
    if paired is not None:
        markdown += "\n" + _paired_table(paired, args) + "\n"
    print(markdown)
    if not args.no_write:
        write_section(args.section, markdown, args.out)
    return markdown


def _paired_table(paired: dict, args: argparse.Namespace) -> str:
    """The ``--compile`` table: the variants of :mod:`locater.bench.paired`, taking turns in one process."""
    rows = []
    for name, _, _ in VARIANTS:
        if name not in paired:
            continue
        r = paired[name]
        rows.append(
            [
                name,
                f"{r['median_s'] * 1000:.0f}",
                f"{r['ratio']:.2f}x",
                f"{r['first_s']:.1f}",
                f"{r['max_abs_logit']:.2e}",
                f"{r['mask_iou']:.4f}",
            ]
        )
    header = [
        "variant (one process, in turns)",
        "ms / frame (median)",
        "speed vs eager float32 (median of paired frames)",
        "start + warm-up s (compilation)",
        "max abs logit diff vs eager float32",
        "mask IoU vs eager float32",
    ]
    return (
        f"Paired (`--compile`): every variant streams the same {args.frames} frames (after {max(args.warmup, 3)} "
        "warm-up frames) with its own state, the variants taking turns frame by frame in one process, so a change "
        "of load on the machine hits them alike; the speed is the median over frames of the eager float32 frame's "
        "time over this variant's. The compiled variants compile the vision encoder, fusion stages, query "
        "generator, memory reader and mask decoder (`locater.bench.step.compile_modules`).\n\n"
        + markdown_table(header, rows)
    )
