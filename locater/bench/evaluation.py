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
from locater.engine.evaluator import evaluate_layout_split
from locater.engine.metrics import SegmentationMetrics, score_frame
from locater.model.build import build_model
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
        global_ids = split.global_frames(sample, model.num_global_frames) if model.global_memory else []
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


def ours(model: Locater, split: LayoutSplit, device: torch.device) -> dict:
    result = evaluate_layout_split(model, split, device, progress=False)
    return {
        "metrics": result.metrics,
        "seconds": result.seconds,
        "frames": result.frames_processed,
        "vision_passes": result.vision_passes,
    }


def compare(
    model: Locater, split: LayoutSplit, device: torch.device, repeats: int
) -> tuple[dict, dict, float]:
    """Median-timed runs of both loops (alternating); returns (ours, official, max metric difference)."""
    runs: dict[str, list[dict]] = {"ours": [], "official": []}
    for _ in range(repeats):
        runs["ours"].append(ours(model, split, device))
        runs["official"].append(official_loop(model, split, device))
    picked = {}
    for name, results in runs.items():
        median = statistics.median(r["seconds"] for r in results)
        picked[name] = {**results[0], "seconds": median}
    a, b = picked["ours"]["metrics"], picked["official"]["metrics"]
    keys = [k for k in a if isinstance(a[k], (int, float)) and k in b]
    difference = max(abs(float(a[k]) - float(b[k])) for k in keys)
    return picked["ours"], picked["official"], difference


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
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(load_config(args.model_config)).to(device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        split_dir = args.split_dir
        if split_dir is None:
            from locater.data.synthetic import write_split

            split_dir = write_split(tmp, args.kind, args.num_videos, seed=0, size=args.size)
        split = LayoutSplit.open(split_dir)
        ours_result, official_result, difference = compare(model, split, device, args.repeats)
    header = ["loop", "wall s (median)", "frames/s", "frames processed", "vision-encoder passes"]
    header += ["scored frames", "mean IoU", "overall IoU"]
    rows = []
    for name, result in (
        ("ours (streaming evaluator)", ours_result),
        ("official loop, re-created", official_result),
    ):
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
            ]
        )
    speedup = official_result["seconds"] / max(ours_result["seconds"], 1e-9)
    videos = len(split.videos())
    text = (
        "## Evaluation loop (CPU)\n\n"
        f"Command: `python tools/benchmark.py --eval{' ' + ' '.join(argv) if argv else ''}`  \n"
        f"Machine: {machine_description()}  \n"
        f"Date: {time.strftime('%Y-%m-%d')}.\n\n"
        f"Split: {'synthetic ' + args.kind + f' ({args.size} px, seed 0)' if args.split_dir is None else split.root}"
        f", {videos} videos, {len(split.samples)} expressions; model `{args.model_config}` with random weights "
        f"(timing and equality do not depend on them). Median of {args.repeats} alternating runs each. "
        "The re-created official loop runs each (video, expression) separately over every listed frame and "
        "re-encodes the sentence at every frame; ours batches the expressions of a video, stops after the last "
        "labelled frame and decodes ahead.\n\n"
        + markdown_table(header, rows)
        + f"\n\nOurs is **{speedup:.2f}x** faster in wall time, with "
        f"{official_result['vision_passes'] / max(ours_result['vision_passes'], 1):.2f}x fewer vision-encoder "
        f"passes; the largest difference between any two metrics of the two loops is {difference:.1e}.\n"
    )
    write_section("evaluation", text, args.out)
    if args.json:
        payload = {"header": header, "rows": rows, "speedup": speedup, "max_metric_difference": difference}
        args.json.write_text(json.dumps(payload, indent=2))
    print(text)
    if difference > 1e-9:
        raise SystemExit(f"the two loops disagree (max metric difference {difference:.3g})")
    return text
