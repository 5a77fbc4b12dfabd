"""Does the training input pipeline keep a GPU busy? Clips/s one GPU consumes against clips/s the DataLoader makes.

  python tools/benchmark.py --data                                   # configs/a2d/train.yaml, the released model
  python tools/benchmark.py --data --config configs/model/tiny.yaml --videos 2 --frames-per-video 6 --no-write

Consumed: the FLOPs of one training step on one clip (``clip_length`` frames through the memory plus the ``N1``
global frames, loss, backward; :func:`locater.bench.training.training_step_flops`) against an assumed GPU bf16
throughput, at its peak and at an assumed utilisation; on a machine with a GPU also the measured rate of the
config's training step in bf16 (:func:`locater.bench.training.benchmark_training`).

Produced: an A2D-like split (:mod:`locater.bench.a2d_like`, the A2D converter's file formats and frame sizes) is
written into a temporary folder, with its decoded-frame cache (:mod:`locater.data.frame_cache`), and the
trainer's own dataset and loader (:func:`build_train_dataset`, :func:`build_loader`: the real augmentation of the
config) are timed for each frame source (the PNG files, the cache): in one process on one core (what one
DataLoader worker makes), then through the DataLoader with 1 worker and with the configured ``num_workers``. Each
measurement runs in a fresh process. The files sit in the page cache while measured; the table also gives the
disk bandwidth the consumed rate needs when they do not.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from locater.bench import machine_description, markdown_table, run_in_fresh_process, write_section
from locater.bench.a2d_like import A2D_FRAME_SIZES, write_a2d_like_split
from locater.data.frame_cache import build_frame_cache, cache_size_bytes

LOADER_WINDOWS = 6  # the DataLoader's batches are timed in this many windows; the rate is their median
# H100 SXM, dense bf16 tensor-core peak (the data sheet's 1979 counts 2:4 sparsity)
H100_BF16_DENSE_TFLOPS = 989.0


def _config(config: str, split_dir: str, overrides: list[str]) -> Mapping:
    import locater

    # random weights time the same as trained ones: no pretrained file is needed
    fixed = ["pretrained.vit=null", "pretrained.checkpoint=null", "train.data.source=layout"]
    return locater.load_config(config, [*overrides, *fixed, f"train.data.split_dir={split_dir}"])


def _one_core_rate(job: dict) -> dict:
    """Clips/s of the dataset in this process on one core (torch and OpenCV single-threaded): one worker's work,
    without the transfer to the main process."""
    import cv2

    from locater.engine.sampler import SeededSamples, build_train_dataset

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cfg = _config(job["config"], job["split_dir"], job["overrides"])
    dataset = build_train_dataset(cfg)
    samples = SeededSamples(dataset, cfg.seed)
    for key in range(job["warmup"]):
        samples[(key % len(dataset), key)]
    times = []
    for key in range(job["warmup"], job["warmup"] + job["clips"]):
        tic = time.perf_counter()
        samples[(key % len(dataset), key)]
        times.append(time.perf_counter() - tic)
    return {"seconds_per_clip": statistics.median(times), "mean_seconds_per_clip": statistics.fmean(times)}


def _loader_rate(job: dict) -> dict:
    """Clips/s through the trainer's DataLoader with ``job["workers"]`` workers, after the first batch (workers
    started and their prefetch queues filling): the median over :data:`LOADER_WINDOWS` windows of consecutive
    batches, so that a burst of other load on a shared machine moves one window, not the result."""
    from locater.engine.distributed import DistInfo
    from locater.engine.sampler import build_loader, build_train_dataset

    # more workers than cores is the point of one row (a GPU's share of a node): torch's warning about it is noise
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    overrides = [*job["overrides"], f"train.data.num_workers={job['workers']}"]
    cfg = _config(job["config"], job["split_dir"], overrides)
    dataset = build_train_dataset(cfg)
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    batches = iter(build_loader(dataset, cfg, info, start=0))
    window = max(1, job["batches"] // LOADER_WINDOWS)
    rates = []
    try:
        next(batches)
        for _ in range(max(1, job["batches"] // window)):
            tic = time.perf_counter()
            for _ in range(window):
                next(batches)
            rates.append(window * cfg.train.batch_size / (time.perf_counter() - tic))
    finally:
        # the workers are persistent: stop them now, not in the interpreter's exit (where one may abort)
        del batches
        gc.collect()
    return {"clips_per_s": statistics.median(rates)}


def _flops_job(job: dict) -> float:
    from locater.bench.training import training_step_flops
    from locater.engine.amp import native_bf16

    torch.set_num_threads(job["threads"])
    cfg = _config(job["config"], job["split_dir"], job["overrides"])
    amp = "bf16" if native_bf16("cpu") else "none"  # the same count, faster where the CPU has bf16 units
    return training_step_flops(cfg, cfg.train.clip_length, amp)


def _gpu_job(job: dict) -> dict:
    from locater.bench.training import benchmark_training

    cfg = _config(job["config"], job["split_dir"], job["overrides"])
    return benchmark_training(
        cfg, cfg.train.batch_size, cfg.train.clip_length, steps=5, warmup=2, amp="bf16", device="cuda"
    )


def _frame_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 320x427, got {text!r}") from None
    if height < 16 or width < 16:
        raise argparse.ArgumentTypeError(f"frames must be at least 16 x 16, got {text!r}")
    return height, width


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/benchmark.py --data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default="configs/a2d/train.yaml", help="training config")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=H100_BF16_DENSE_TFLOPS,
        help="GPU dense bf16 peak in TFLOP/s (default: H100 SXM)",
    )
    parser.add_argument(
        "--utilisation", type=float, default=0.4, help="assumed share of the peak a training step sustains"
    )
    parser.add_argument("--node-cores", type=int, default=16, help="CPU cores of the GPU node")
    parser.add_argument("--node-gpus", type=int, default=8, help="GPUs of the node")
    parser.add_argument("--videos", type=int, default=6, help="videos of the A2D-like split")
    parser.add_argument("--frames-per-video", type=int, default=24)
    parser.add_argument(
        "--frame-size",
        type=_frame_size,
        action="append",
        default=None,
        help="HxW of the frames, used in turn (repeatable; default: A2D's clips320H sizes 320x427 and 320x569)",
    )
    parser.add_argument("--clips", type=int, default=40, help="clips timed in one process on one core")
    parser.add_argument(
        "--batches", type=int, default=60, help="batches timed through each DataLoader (in 6 windows)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        action="append",
        default=None,
        help="DataLoader worker counts to time (repeatable; default: 1 and the config's num_workers)",
    )
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="threads of the FLOP count"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("docs/benchmarks.md"), help="markdown file to update"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args(argv)
    for name in ("videos", "frames_per_video", "clips", "batches", "node_cores", "node_gpus", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.utilisation <= 1 or args.peak_tflops <= 0:
        parser.error("--utilisation must lie in (0, 1] and --peak-tflops be positive")
    if args.workers and min(args.workers) < 1:
        parser.error("--workers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> str:
    args = _parse(argv)
    import locater
    from locater.data.layout import LayoutSplit

    cfg = locater.load_config(args.config, args.overrides)
    train = cfg.train
    configured_workers = train.data.num_workers
    # one worker's DataLoader rate (its work plus handing batches over) is what the node estimate scales
    worker_counts = sorted({1, *(args.workers or [max(configured_workers, 1)])})
    sizes = tuple(args.frame_size or A2D_FRAME_SIZES)
    load_before = os.getloadavg()[0]
    sources: dict[str, dict] = {}  # frame source -> its measurements
    with tempfile.TemporaryDirectory(prefix="locater-data-bench-") as tmp:
        print("writing the A2D-like split and its frame cache ...", flush=True)
        written = write_a2d_like_split(
            tmp, num_videos=args.videos, num_frames=args.frames_per_video, frame_sizes=sizes
        )
        cache_dir = Path(tmp) / "frame_cache"
        build_frame_cache(LayoutSplit.open(written.split_dir), cache_dir, progress=False)
        cache_bytes_per_frame = cache_size_bytes(cache_dir) / (written.num_videos * written.num_frames)
        job = {
            "config": args.config,
            "split_dir": str(written.split_dir),
            "overrides": list(args.overrides),
            "threads": args.threads,
        }
        print("counting the FLOPs of one training step ...", flush=True)
        flops = run_in_fresh_process(_flops_job, job, "FLOP count of a training step")
        measured_gpu = None
        if torch.cuda.is_available():
            print("measuring the training step on the GPU ...", flush=True)
            measured_gpu = run_in_fresh_process(_gpu_job, job, "training step on the GPU")
        for name, extra in (
            ("PNG frames", ["train.data.frame_cache=null"]),  # whatever the config names
            ("decoded-frame cache", [f"train.data.frame_cache={cache_dir}"]),
        ):
            source_job = dict(job, overrides=[*job["overrides"], *extra])
            print(f"{name}: timing one core ...", flush=True)
            one_core = run_in_fresh_process(
                _one_core_rate, dict(source_job, clips=args.clips, warmup=2), f"{name}, dataset on one core"
            )
            loaders = {}
            for workers in worker_counts:
                print(f"{name}: timing the DataLoader with {workers} worker(s) ...", flush=True)
                loaders[workers] = run_in_fresh_process(
                    _loader_rate,
                    dict(source_job, workers=workers, batches=args.batches),
                    f"{name}, DataLoader, {workers} workers",
                )
            sources[name] = {"one_core": one_core, "loaders": loaders}
    load_after = os.getloadavg()[0]

    peak_rate = args.peak_tflops * 1e12 / flops
    assumed_rate = peak_rate * args.utilisation
    cores_per_gpu = args.node_cores / args.node_gpus
    cores_used = min(cores_per_gpu, configured_workers or 1)
    here_cores = os.cpu_count() or 1
    consumed = measured_gpu["samples_per_s"] if measured_gpu else assumed_rate
    consumed_label = "measured on this GPU" if measured_gpu else f"at {args.utilisation:.0%} utilisation"
    frames_per_clip = train.clip_length + cfg.model.global_memory.num_frames

    rows = [
        [
            "consumed: one GPU, peak-bound",
            f"{peak_rate:.1f}",
            f"{flops / 1e12:.3g} TFLOP per clip; {args.peak_tflops:g} TFLOP/s dense bf16 peak",
            "",
        ],
        [
            f"consumed: one GPU at {args.utilisation:.0%} of peak",
            f"{assumed_rate:.1f}",
            f"{args.peak_tflops * args.utilisation:g} TFLOP/s sustained (assumed)",
            "",
        ],
    ]
    if measured_gpu:
        rows.append(
            [
                "consumed: this GPU, measured",
                f"{measured_gpu['samples_per_s']:.1f}",
                f"bf16, {train.batch_size} clips x {train.clip_length} frames per step, "
                f"{measured_gpu['seconds_per_step'] * 1000:.0f} ms / step",
                "",
            ]
        )
    estimates = {}
    for name, result in sources.items():
        core_rate = 1.0 / result["one_core"]["seconds_per_clip"]
        rows.append(
            [
                f"produced from {name}: one core, in process (one worker's work)",
                f"{core_rate:.1f}",
                f"{result['one_core']['seconds_per_clip'] * 1000:.1f} ms / clip (median of {args.clips})",
                f"{core_rate / consumed:.3g}x",
            ]
        )
        for workers, loader in result["loaders"].items():
            note = f"{min(workers, here_cores)} of this machine's {here_cores} cores"
            if workers > here_cores:
                note = f"{workers} workers sharing this machine's {here_cores} cores"
            rows.append(
                [
                    f"produced from {name}: DataLoader, {workers} worker{'s' if workers > 1 else ''}",
                    f"{loader['clips_per_s']:.1f}",
                    note,
                    f"{loader['clips_per_s'] / consumed:.3g}x",
                ]
            )
        worker_rate = result["loaders"][1]["clips_per_s"]
        estimates[name] = (worker_rate, worker_rate * cores_used)
        rows.append(
            [
                f"produced from {name} per GPU on a {args.node_cores}-core {args.node_gpus}-GPU node (estimate)",
                f"{worker_rate * cores_used:.1f}",
                f"one worker's DataLoader rate x {cores_used:g} cores per GPU ({configured_workers} workers per "
                "GPU share them)",
                f"**{worker_rate * cores_used / consumed:.3g}x**",
            ]
        )
    header = ["rate", "clips/s", "how", f"headroom (produced / consumed {consumed_label})"]
    needed_ms = 1000.0 / (2.0 * consumed / cores_used)
    command = "python tools/benchmark.py --data" + (
        f" --config {args.config}" if args.config != "configs/a2d/train.yaml" else ""
    )
    size_text = ", ".join(f"{h} x {w}" for h, w in sizes)
    png_rate, png_node = estimates["PNG frames"]  # one worker's clips/s, and per GPU
    cache_rate, cache_node = estimates["decoded-frame cache"]
    png_bytes = frames_per_clip * written.mean_png_bytes
    cache_bytes = frames_per_clip * cache_bytes_per_frame
    markdown = "\n".join(
        [
            "## Training input pipeline",
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine_description()}; load average {load_before:.1f} before, {load_after:.1f} after "
            "(shared with other jobs)  ",
            f"Config: `{args.config}`: {train.batch_size} clips x {train.clip_length} frames + "
            f"{cfg.model.global_memory.num_frames} global frames per GPU and step, {cfg.model.image_size} px, "
            f"train.amp {train.amp}, {configured_workers} DataLoader workers per GPU. Data: an A2D-like split "
            f"written by `locater.bench.a2d_like` ({written.num_videos} videos of {written.num_frames} PNG frames, "
            f"{size_text}, mean {written.mean_png_bytes / 1024:.0f} KiB a frame; {written.num_items} training "
            f"items) read from its PNG files, then from its decoded-frame cache (`train.data.frame_cache`, "
            f"{cache_bytes_per_frame / 1024:.0f} KiB a frame); the trainer's dataset, loader and augmentation, "
            "files in the page cache.",
            "",
            markdown_table(header, rows),
            "",
            f"- Consumed: the training step's FLOPs are counted on the CPU by FlopCounterMode (matrix products, "
            f"convolutions, attention; forward and backward of one clip) = {flops / 1e12:.3g} TFLOP per clip. At the "
            f"peak of {args.peak_tflops:g} TFLOP/s one GPU would take {peak_rate:.0f} clips/s; at an assumed "
            f"{args.utilisation:.0%} utilisation {assumed_rate:.0f} clips/s. Small per-GPU batches of sequential "
            "frames may sustain less than that (the GPU suite measures it), which lowers the consumption and "
            "raises the headroom.",
            f"- Produced per GPU: {args.node_cores} cores / {args.node_gpus} GPUs = {cores_per_gpu:g} cores per GPU, "
            f"shared by its {configured_workers} workers (and its training process, not counted here). One worker "
            "on one core, handing its batches to the main process, makes from the "
            f"PNG files {png_rate:.1f} clips/s x {cores_used:g} = {png_node:.1f} clips/s, headroom "
            f"{png_node / consumed:.3g}x; from the decoded-frame cache {cache_rate:.1f} x {cores_used:g} = "
            f"{cache_node:.1f} clips/s, headroom {cache_node / consumed:.3g}x. A headroom of 2x needs "
            f"{needed_ms:.1f} ms of CPU a clip. The rows of several workers on this machine's {here_cores} cores "
            "show what its cores make together with the hand-over between the processes "
            "([notes](#notes-on-the-input-pipeline)).",
            f"- Disk: a clip reads {frames_per_clip} frames: {png_bytes / 2**20:.1f} MiB of PNG, "
            f"{cache_bytes / 2**20:.1f} MiB of cache. At the consumed rate one GPU reads "
            f"{png_bytes * consumed / 2**20:.0f} MiB/s of PNG or {cache_bytes * consumed / 2**20:.0f} MiB/s of "
            f"cache, a node of {args.node_gpus} GPUs {png_bytes * consumed * args.node_gpus / 2**30:.1f} or "
            f"{cache_bytes * consumed * args.node_gpus / 2**30:.1f} GiB/s, when the files are not in the page "
            "cache.",
        ]
    )
    print(markdown)
    if not args.no_write:
        write_section("data", markdown, args.out)
    return markdown
