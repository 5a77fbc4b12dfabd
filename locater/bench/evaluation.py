"""Evaluation speed: our streaming evaluator against a re-creation of the official evaluation loop.

The official loop (``tools/evaluate.py`` of leonnnop/Locater) handles one (video, expression) sample at a time:
it rebuilds the global memory for the sample, then runs every listed frame of the video through the network one
by one, re-encoding the sentence at every frame, with the frames read in the same thread. The re-creation below
does exactly that with our model and the same weights, so the two differ only in the loop:

* ours batches all expressions of a video (one vision-encoder pass per frame for all of them),
* stops after the last labelled frame (the scored outputs are unchanged),
* encodes each sentence once and decodes frames ahead in a background thread.

Both score the same frames with the same metrics module; the benchmark checks that every metric is identical
and reports wall time, frames/s and the number of vision-encoder passes of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from locater.bench import machine_description, markdown_table, write_section
from locater.config import load_config
from locater.data.layout import LayoutSplit
from locater.engine.cpu_memory import retain_freed_memory
from locater.engine.evaluator import evaluate_layout_split
from locater.engine.metrics import SegmentationMetrics, score_frame
from locater.model.loading import build_model
from locater.model.locater import Locater
from locater.preprocess import preprocess_frames
from locater.tokenizer import tokenize


@torch.inference_mode()
def official_loop(model: Locater, split: LayoutSplit, device: torch.device) -> dict:
    """The official evaluation loop re-created: per sample, every listed frame, sentence re-encoded per frame."""
    model.eval()
    size = model.image_size[0]
    records, frames_done, vision_passes = [], 0, 0
    start_time = time.perf_counter()
    for sample in split.samples:
        ids = tokenize([sample.sentence]).to(device)
        global_ids = (
            split.global_frames(sample, model.num_global_frames) if model.global_memory is not None else []
        )
        global_frames = (
            torch.stack([preprocess_frames(split.load_frame(sample.video, f), size) for f in global_ids])[
                None
            ]
            if global_ids
            else torch.zeros(1, 0, 3, size, size)
        ).to(device)
        state = model.start(global_frames, ids)
        vision_passes += len(global_ids)
        labels = set(sample.labels)
        for frame in sample.frames:
            tensor = preprocess_frames(split.load_frame(sample.video, frame), size)[None].to(device)
            state.words = model.text_encoder(ids)  # the official forward encodes the sentence at every frame
            logits, state = model.step(tensor, state)
            frames_done += 1
            vision_passes += 1
            if frame in labels:
                target = split.load_mask(sample.video, sample.expression, frame)
                records.append(score_frame(logits[0].float(), target, sample.video, sample.expression, frame))
    seconds = time.perf_counter() - start_time
    metrics = SegmentationMetrics()
    metrics.extend(records)
    return {
        "metrics": metrics.compute(),
        "seconds": seconds,
        "frames": frames_done,
        "vision_passes": vision_passes,
    }


def ours(model: Locater, split: LayoutSplit, device: torch.device, videos_per_batch: int = 1) -> dict:
    result = evaluate_layout_split(model, split, device, progress=False, videos_per_batch=videos_per_batch)
    return {
        "metrics": result.metrics,
        "seconds": result.seconds,
        "frames": result.frames_processed,
        "vision_passes": result.vision_passes,
    }


def compare(
    model: Locater, split: LayoutSplit, device: torch.device, repeats: int, videos_per_batch: int
) -> dict[str, dict]:
    """Median-timed runs of every loop (interleaved); each entry holds its metrics, seconds, frames, passes and
    ``difference``: the largest difference between its metrics and the official loop's."""
    loops = {
        "official loop, re-created": lambda: official_loop(model, split, device),
        "ours, one video at a time": lambda: ours(model, split, device, 1),
    }
    if videos_per_batch > 1:
        loops[f"ours, {videos_per_batch} videos in lockstep"] = lambda: ours(
            model, split, device, videos_per_batch
        )
    runs: dict[str, list[dict]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items():
            runs[name].append(loop())
    picked = {}
    for name, results in runs.items():
        picked[name] = {**results[0], "seconds": statistics.median(r["seconds"] for r in results)}
    reference = picked["official loop, re-created"]["metrics"]
    for entry in picked.values():
        keys = [k for k, v in entry["metrics"].items() if isinstance(v, (int, float)) and k in reference]
        entry["difference"] = max(abs(float(entry["metrics"][k]) - float(reference[k])) for k in keys)
    return picked


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="tools/benchmark.py --eval", description=__doc__)
    parser.add_argument("--model-config", default="configs/synthetic/model.yaml", help="model to time")
    parser.add_argument(
        "--split-dir", type=Path, help="a layout-3.1 split (default: a generated synthetic TEMP)"
    )
    parser.add_argument("--kind", default="TEMP", help="synthetic kind to generate (default: TEMP)")
    parser.add_argument("--num-videos", type=int, default=20, help="generated videos (default: 20)")
    parser.add_argument("--size", type=int, default=64, help="generated frame size (default: 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each loop; the median is kept")
    parser.add_argument(
        "--videos-per-batch", type=int, default=8, help="also time ours with this many videos in lockstep"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # as tools/evaluate.py does; one process, so both loops run with it (the official loop's batch-1 tensors
    # gained nothing from it, ours about a fifth of the wall time)
    retained = retain_freed_memory()
    torch.manual_seed(0)
    model = build_model(load_config(args.model_config)).to(device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        split_dir = args.split_dir
        if split_dir is None:
            from locater.data.synthetic import write_split

            split_dir = write_split(tmp, args.kind, args.num_videos, seed=0, size=args.size)
        split = LayoutSplit.open(split_dir)
        results = compare(model, split, device, args.repeats, args.videos_per_batch)
    header = ["loop", "wall s (median)", "frames/s", "frames processed", "vision-encoder passes"]
    header += ["scored frames", "mean IoU", "overall IoU", "max metric difference to the official loop"]
    rows = []
    for name, result in results.items():
        rows.append(
            [
                name,
                f"{result['seconds']:.2f}",
                f"{result['frames'] / max(result['seconds'], 1e-9):.1f}",
                result["frames"],
                result["vision_passes"],
                result["metrics"]["num_frames"],
                f"{result['metrics']['mean_iou']:.4f}",
                f"{result['metrics']['overall_iou']:.4f}",
                f"{result['difference']:.1e}",
            ]
        )
    official = results["official loop, re-created"]
    speedups = {name: official["seconds"] / max(r["seconds"], 1e-9) for name, r in results.items()}
    videos = len(split.videos())
    lines = [
        f"- {name}: **{speedups[name]:.2f}x** the official loop's speed, "
        f"{official['vision_passes'] / max(r['vision_passes'], 1):.2f}x fewer vision-encoder passes"
        for name, r in results.items()
        if r is not official
    ]
    text = (
        "## Evaluation loop (CPU)\n\n"
        f"Command: `python tools/benchmark.py --eval{' ' + ' '.join(argv) if argv else ''}`  \n"
        f"Machine: {machine_description()}  \n\n"
        f"Split: {'synthetic ' + args.kind + f' ({args.size} px, seed 0)' if args.split_dir is None else split.root}"
        f", {videos} videos, {len(split.samples)} expressions; model `{args.model_config}` with random weights "
        f"(timing does not depend on them). Median of {args.repeats} interleaved runs each. The re-created "
        "official loop runs each (video, expression) separately over every listed frame and re-encodes the "
        "sentence at every frame; ours batches the expressions of a video, stops after the last labelled frame, "
        "decodes ahead and optionally runs several videos in lockstep (`eval.videos_per_batch`). `frames "
        "processed` counts frames through `step`: the official loop runs a frame once per expression, ours once "
        "per video for all its expressions, so compare wall times, not frames/s, across loops. "
        + (
            "Both loops ran with freed CPU memory kept for reuse, as `tools/evaluate.py` runs "
            "(`locater/engine/cpu_memory.py`).\n\n"
            if retained
            else "The C library could not be told to keep freed memory (not glibc): no page-fault saving.\n\n"
        )
        + markdown_table(header, rows)
        + "\n\n"
        + "\n".join(lines)
        + "\n"
    )
    write_section("evaluation", text, args.out)
    if args.json:
        payload = {"header": header, "rows": rows, "speedups": speedups}
        args.json.write_text(json.dumps(payload, indent=2))
    print(text)
    single = results["ours, one video at a time"]["difference"]
    if single > 0:
        raise SystemExit(
            f"ours (one video at a time) disagrees with the official loop (max difference {single:.3g})"
        )
    return text
