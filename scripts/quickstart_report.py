"""Collect evaluation outputs into results.json, a markdown table and overlay GIFs.

  python scripts/quickstart_report.py --runs full=runs/quickstart/eval/full [no_local_memory=...] \
      --out runs/quickstart [--gifs 3]

Each ``VARIANT=DIR`` names a folder holding one evaluation output folder per split (``DIR/<SPLIT>/metrics.json``,
or ``DIR/<split>/`` as ``tools/evaluate.py eval.dataset=SYN eval.testing_type=ALL`` writes them).
``results.json`` is ``{variant: {split: {"mean_iou": ..., "overall_iou": ...}}}``.
With ``--gifs N`` the first N videos of each split of the first variant get an overlay GIF (needs the evaluation
to have run with --save-masks and the split folder recorded in its metrics.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from locater.data.layout import LayoutSplit

SPLITS = ("NORM", "MUL", "SPAT", "TEMP")


def split_folder(folder: Path, split: str) -> Path:
    """``folder/<SPLIT>`` (one evaluation per split), else ``folder/<split>`` (testing type ALL)."""
    upper = folder / split
    return upper if upper.is_dir() else folder / split.lower()


def collect(runs: dict[str, Path]) -> dict[str, dict[str, dict[str, float]]]:
    results: dict = {}
    for variant, folder in runs.items():
        for split in SPLITS:
            path = split_folder(folder, split) / "metrics.json"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing (did the evaluation of {variant}/{split} run?)")
            metrics = json.loads(path.read_text())
            results.setdefault(variant, {})[split] = {
                "mean_iou": metrics["mean_iou"],
                "overall_iou": metrics["overall_iou"],
                "map_locater": metrics.get("map_locater"),
            }
    return results


def table(results: dict) -> str:
    lines = [
        "| variant | " + " | ".join(f"{s} mIoU / oIoU" for s in SPLITS) + " |",
        "|---|" + "---|" * len(SPLITS),
    ]
    for variant, splits in results.items():
        cells = [f"{100 * splits[s]['mean_iou']:.1f} / {100 * splits[s]['overall_iou']:.1f}" for s in SPLITS]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(results: dict, path: Path, metric: str = "mean_iou") -> Path:
    """Grouped bars: one group per split, one bar per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(results)
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, variant in enumerate(variants):
        values = [results[variant][s][metric] for s in SPLITS]
        ax.bar(np.arange(len(SPLITS)) + i * width - 0.4 + width / 2, values, width, label=variant)
    ax.set_xticks(np.arange(len(SPLITS)), SPLITS)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fit_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``mask`` (bool) resized to ``size`` = (H, W) by nearest neighbour when the sizes differ."""
    if mask.shape == tuple(size):
        return mask
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize((size[1], size[0]), Image.NEAREST)
    return np.asarray(image) > 127


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """``H x W`` bool: the pixels of ``mask`` with a 4-neighbour outside it (or on the frame border)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def overlay_gif(split_dir: Path, masks_dir: Path, out: Path, videos: int) -> list[Path]:
    """GIFs of the first ``videos`` videos, first expression: the predicted mask in magenta, and on labelled frames
    the ground truth's outline in green."""
    split = LayoutSplit.open(split_dir)
    written = []
    for video, samples in list(split.videos().items())[:videos]:
        sample = samples[0]
        frames = []
        for frame in sample.frames:
            rgb = split.load_frame(video, frame).astype(np.float32)
            mask_path = masks_dir / video / sample.expression / f"{frame}.png"
            if mask_path.is_file():
                mask = fit_mask(np.asarray(Image.open(mask_path)) > 127, rgb.shape[:2])
                rgb[mask] = 0.45 * rgb[mask] + 0.55 * np.array([255, 0, 255])
            if frame in sample.labels:
                truth = fit_mask(split.load_mask(video, sample.expression, frame) > 0, rgb.shape[:2])
                rgb[mask_outline(truth)] = (40, 255, 40)
            image = Image.fromarray(rgb.astype(np.uint8)).resize(
                (rgb.shape[1] * 3, rgb.shape[0] * 3), Image.NEAREST
            )
            frames.append(image)
        path = out / f"{split_dir.name}_{video}.gif"
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=150, loop=0)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", nargs="+", required=True, help="VARIANT=DIR pairs")
    parser.add_argument("--out", type=Path, required=True, help="where results.json / results.md go")
    parser.add_argument("--gifs", type=int, default=0, help="overlay GIFs per split (first variant)")
    parser.add_argument(
        "--data-root", type=Path, default=Path("datasets/synthetic"), help="synthetic split folders"
    )
    parser.add_argument("--plot", type=Path, default=None, help="also write a bar chart of mean IoU (PNG)")
    args = parser.parse_args()
    runs = dict(item.split("=", 1) for item in args.runs)
    runs = {variant: Path(folder) for variant, folder in runs.items()}
    results = collect(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    markdown = table(results)
    (args.out / "results.md").write_text(markdown)
    print(markdown)
    if args.plot is not None:
        print(f"wrote {bar_chart(results, args.plot)}")
    if args.gifs:
        first = next(iter(runs.values()))
        for split in SPLITS:
            masks = split_folder(first, split) / "masks"
            if masks.is_dir():
                for path in overlay_gif(args.data_root / split, masks, args.out, args.gifs):
                    print(f"wrote {path}")


if __name__ == "__main__":
    main()
