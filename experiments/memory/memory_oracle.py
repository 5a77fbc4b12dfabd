"""Does a model use the masks it remembers? TEMP on fresh synthetic videos with every frame labelled, each
expression read twice: with the model's own masks written into the local memory (as evaluation does) and with the
true masks (teacher forcing at every frame). A model that follows its target through the local memory scores far
higher with the true masks, after the twins' crossing above all; one that ignores its mask history scores the same.

  python -m experiments.memory.memory_oracle --config configs/synthetic/train.yaml --checkpoint CKPT [key=value ...] \\
      [--videos 40] [--seed 99] [--out FILE.md]

Overrides must rebuild the model the checkpoint was trained with (e.g. ``model.local_memory.write=window``).
The table has the columns of ``experiments/memory/temp_crossing.py`` (frame "before" / "after" the crossing, scene pattern;
mean IoU / precision@0.7 in %, frames), one row per way of writing the memory. A second table says whom the model
segments at the first frames: mean IoU with the target and with its twin at frames 1, 2, 3 and over the later
frames. At frame 1 nothing is remembered yet, so both rows agree there; a model that covers both twins at frame 1
(about 0.4 / 0.4) has nothing in its own memory to tell them apart later.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import locater
from experiments.memory.temp_crossing import GROUPS, PRECISION, report, twin_crossing
from locater.data.indices import global_frame_numbers
from locater.data.synthetic import generate_video
from locater.engine.metrics import FrameRecord, SegmentationMetrics, score_frame
from locater.preprocess import preprocess_frames

MODES = {"own masks": False, "true masks": True}
FIRST_FRAMES = ("frame 1", "frame 2", "frame 3", "later frames")


@torch.no_grad()
def read_video(
    model: locater.Locater, frames: torch.Tensor, input_ids: torch.Tensor, masks: torch.Tensor | None
) -> list[torch.Tensor]:
    """Logits ``1 x 1 x S x S`` of every frame of one expression, online.

    Args:
        frames: ``T x 3 x S x S`` pre-processed frames; input_ids: ``1 x L``.
        masks: ``T x 1 x S x S`` true masks to write into the local memory, or ``None`` for the model's own.
    """
    numbers = global_frame_numbers(len(frames), model.num_global_frames if model.global_memory else 0)
    state = model.start(frames[[n - 1 for n in numbers]][None], input_ids)
    outputs = []
    for t in range(len(frames)):
        logits, state = model.step(
            frames[t : t + 1], state, memory_mask=None if masks is None else masks[t : t + 1]
        )
        outputs.append(logits)
    return outputs


def oracle_metrics(
    model: locater.Locater, num_videos: int, seed: int, size: int
) -> tuple[dict[str, dict[tuple[str, str], dict[str, float]]], dict[str, dict[tuple[str, str], float]]]:
    """Per mode of :data:`MODES`: the metrics of each ``(pattern, side)`` group of ``GROUPS``, and the mean IoU
    with the target and with its twin (``(bucket, "target" | "twin")``) in each bucket of :data:`FIRST_FRAMES`."""
    records: dict[str, dict[tuple[str, str], list[FrameRecord]]] = {m: defaultdict(list) for m in MODES}
    first: dict[str, dict[tuple[str, str], list[FrameRecord]]] = {m: defaultdict(list) for m in MODES}
    model_size = model.image_size[0]
    for index in range(num_videos):
        video = generate_video("TEMP", [seed, index], size=size, all_labelled=True)
        frames = preprocess_frames(video.frames, model_size)
        for expression in video.expressions:
            where = f"TEMP video {index} (seed {seed}), target {expression.target}"
            pattern, crossing, twin = twin_crossing(video.objects, expression.target, where)
            truth = torch.from_numpy(video.masks[expression.target].astype(np.float32))[
                :, None
            ]  # T x 1 x H x W
            truth = torch.nn.functional.interpolate(truth, size=(model_size, model_size), mode="nearest")
            input_ids = locater.tokenize([expression.sentence])
            for mode, true_masks in MODES.items():
                outputs = read_video(model, frames, input_ids, truth if true_masks else None)
                for t, logits in enumerate(outputs):
                    record = score_frame(
                        logits,
                        video.masks[expression.target, t],
                        f"temp_{index}",
                        str(expression.target),
                        str(t + 1),
                        coco=False,
                    )
                    side = "before" if t < crossing else "after"
                    records[mode][(pattern, side)].append(record)
                    records[mode][("all", side)].append(record)
                    bucket = FIRST_FRAMES[min(t, len(FIRST_FRAMES) - 1)]
                    first[mode][(bucket, "target")].append(record)
                    first[mode][(bucket, "twin")].append(
                        score_frame(
                            logits, video.masks[twin, t], f"temp_{index}", str(twin), str(t + 1), coco=False
                        )
                    )
    crossing_results = {
        mode: {group: SegmentationMetrics(groups[group]).compute() for group in GROUPS if groups[group]}
        for mode, groups in records.items()
    }
    first_results = {
        mode: {key: SegmentationMetrics(found).compute()["mean_iou"] for key, found in buckets.items()}
        for mode, buckets in first.items()
    }
    return crossing_results, first_results


def first_frames_table(results: dict[str, dict[tuple[str, str], float]]) -> str:
    """Markdown table: one row per mode, a "target / twin" mean IoU cell (%) per bucket of :data:`FIRST_FRAMES`."""
    lines = ["| memory | " + " | ".join(FIRST_FRAMES) + " |", "|---" * (len(FIRST_FRAMES) + 1) + "|"]
    for mode, cells in results.items():
        row = [
            f"{100 * cells[(b, 'target')]:.1f} / {100 * cells[(b, 'twin')]:.1f}"
            if (b, "target") in cells
            else ""
            for b in FIRST_FRAMES
        ]
        lines.append(f"| {mode} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--videos", type=int, default=40, help="fresh TEMP videos (two expressions each)")
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    cfg = locater.load_config(args.config, args.overrides)
    model = locater.build_model(cfg).eval()
    locater.load_checkpoint(model, args.checkpoint)
    results, first = oracle_metrics(model, args.videos, args.seed, cfg.train.data.synthetic_size)
    title = (
        f"TEMP ({args.videos} fresh videos, seed {args.seed}) with the model's own or the true masks in the local "
        f"memory: mean IoU / {PRECISION} in % (frames)"
    )
    report(title, results, args.out)
    text = (
        "Whom it segments at the first frames: mean IoU in % with the target / with its twin\n\n"
        f"{first_frames_table(first)}\n"
    )
    print(text)
    if args.out:
        with args.out.open("a") as handle:
            handle.write(f"\n{text}")


if __name__ == "__main__":
    main()
