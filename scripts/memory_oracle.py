"""Does a model use the masks it remembers? TEMP on fresh synthetic videos with every frame labelled, each
expression read twice: with the model's own masks written into the local memory (as evaluation does) and with the
true masks (teacher forcing at every frame). A model that follows its target through the local memory scores far
higher with the true masks, after the twins' crossing above all; one that ignores its mask history scores the same.

  python scripts/memory_oracle.py --config configs/synthetic/train.yaml --checkpoint CKPT [key=value ...] \\
      [--videos 40] [--seed 99] [--out FILE.md]

Overrides must rebuild the model the checkpoint was trained with (e.g. ``model.local_memory.write=window``).
The table has the columns of ``scripts/temp_crossing.py`` (frame "before" / "after" the crossing, scene pattern;
mean IoU / precision@0.7 in %, frames), one row per way of writing the memory.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import locater
from locater.data.indices import global_frame_numbers
from locater.data.synthetic import generate_video, identical_twins
from locater.data.synthetic_scenes import crossing_frame
from locater.engine.metrics import FrameRecord, SegmentationMetrics, score_frame
from locater.preprocess import preprocess_frames

sys.path.insert(0, str(Path(__file__).resolve().parent))
from temp_crossing import GROUPS, PRECISION, report  # noqa: E402

MODES = {"own masks": False, "true masks": True}


@torch.no_grad()
def read_video(model: locater.Locater, video, expression, true_masks: bool) -> list[torch.Tensor]:
    """Logits ``1 x 1 x S x S`` of every frame of one expression, online."""
    size = model.image_size[0]
    frames = preprocess_frames(video.frames, size)
    numbers = global_frame_numbers(video.num_frames, model.num_global_frames if model.global_memory else 0)
    state = model.start(frames[[n - 1 for n in numbers]][None], locater.tokenize([expression.sentence]))
    masks = torch.from_numpy(video.masks[expression.target].astype(np.float32))[:, None]  # T x 1 x H x W
    masks = torch.nn.functional.interpolate(masks, size=(size, size), mode="nearest")
    outputs = []
    for t in range(video.num_frames):
        logits, state = model.step(
            frames[t : t + 1], state, memory_mask=masks[t : t + 1] if true_masks else None
        )
        outputs.append(logits)
    return outputs


def oracle_metrics(
    model: locater.Locater, num_videos: int, seed: int, size: int
) -> dict[str, dict[tuple[str, str], dict[str, float]]]:
    """Per mode of :data:`MODES`, the metrics of each ``(pattern, side)`` group of ``GROUPS``."""
    records: dict[str, dict[tuple[str, str], list[FrameRecord]]] = {m: defaultdict(list) for m in MODES}
    for index in range(num_videos):
        video = generate_video("TEMP", [seed, index], size=size, all_labelled=True)
        for expression in video.expressions:
            twin = video.objects[identical_twins(video.objects, expression.target)[0]]
            target = video.objects[expression.target]
            pattern = "both move" if "still" not in (target.motion, twin.motion) else "one still"
            crossing = crossing_frame(video.objects, expression.target)
            for mode, true_masks in MODES.items():
                for t, logits in enumerate(read_video(model, video, expression, true_masks)):
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
    return {
        mode: {group: SegmentationMetrics(groups[group]).compute() for group in GROUPS if groups[group]}
        for mode, groups in records.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--videos", type=int, default=40, help="fresh TEMP videos (two expressions each)")
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    cfg = locater.load_config(args.config, args.overrides)
    model = locater.build_model(cfg).eval()
    locater.load_checkpoint(model, args.checkpoint)
    results = oracle_metrics(model, args.videos, args.seed, cfg.train.data.synthetic_size)
    title = (
        f"TEMP ({args.videos} fresh videos, seed {args.seed}) with the model's own or the true masks in the local "
        f"memory: mean IoU / {PRECISION} in % (frames)"
    )
    report(title, results, args.out)


if __name__ == "__main__":
    main()
