"""The results of a recipe's variants: results.json, a markdown table, a bar chart and overlay GIFs.

Each variant's evaluation folder holds one folder per split (``<split>/metrics.json``, as ``tools/evaluate.py``
writes with ``eval.testing_type=ALL``) or a single ``metrics.json``. ``results.json`` is
``{variant: {split: {metric: value}}}``; the table shows the report's metrics in % per split.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from locater.data.layout import LayoutSplit

SPLIT_ORDER = ("NORM", "MUL", "SPAT", "TEMP")
METRIC_LABELS = {"mean_iou": "mIoU", "overall_iou": "oIoU"}


def split_folders(folder: Path, single: str = "ALL") -> dict[str, Path]:
    """``{SPLIT: folder holding its metrics.json}`` of one evaluation output (A2D-S+ order first); an evaluation of
    one split (a single ``metrics.json``) is named ``single``."""
    found = {p.parent.name.upper(): p.parent for p in sorted(folder.glob("*/metrics.json"))}
    if not found and (folder / "metrics.json").is_file():
        found = {single: folder}
    order = [s for s in SPLIT_ORDER if s in found] + sorted(s for s in found if s not in SPLIT_ORDER)
    return {split: found[split] for split in order}


def collect(
    runs: dict[str, Path],
    metrics: list[str] | tuple[str, ...] = ("mean_iou", "overall_iou"),
    single: str = "ALL",
) -> dict[str, dict[str, dict[str, float]]]:
    """``{variant: {split: {metric: value}}}`` from each variant's evaluation folder.

    Raises:
        FileNotFoundError: a folder without metrics; KeyError (named) for a metric the evaluation lacks.
    """
    results: dict = {}
    for variant, folder in runs.items():
        splits = split_folders(folder, single)
        if not splits:
            raise FileNotFoundError(f"{folder}: no metrics.json (did the evaluation of {variant} run?)")
        for split, split_dir in splits.items():
            path = split_dir / "metrics.json"
            values = json.loads(path.read_text())
            missing = [m for m in metrics if m not in values]
            if missing:
                raise KeyError(f"{path}: no metric {missing} (has {sorted(values)})")
            results.setdefault(variant, {})[split] = {m: values[m] for m in metrics}
    return results


def table(results: dict, metrics: list[str] | tuple[str, ...] = ("mean_iou", "overall_iou")) -> str:
    """Markdown: one row per variant, one column per split, the metrics in % joined by ' / '."""
    splits = list(next(iter(results.values())))
    label = " / ".join(METRIC_LABELS.get(m, m) for m in metrics)
    lines = [
        "| variant | " + " | ".join(f"{s} {label}" for s in splits) + " |",
        "|---|" + "---|" * len(splits),
    ]
    for variant, values in results.items():
        cells = [" / ".join(f"{100 * values[s][m]:.1f}" for m in metrics) for s in splits]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(results: dict, path: Path, metric: str = "mean_iou") -> Path:
    """Grouped bars: one group per split, one bar per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(results)
    splits = list(next(iter(results.values())))
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, variant in enumerate(variants):
        values = [results[variant][s][metric] for s in splits]
        ax.bar(np.arange(len(splits)) + i * width - 0.4 + width / 2, values, width, label=variant)
    ax.set_xticks(np.arange(len(splits)), splits)
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
        # a file name from data content: every character outside [A-Za-z0-9_.-] becomes "_", no leading dot, so
        # the GIF stays in ``out`` whatever the video id holds (JHMDB ids are action/video)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{split_dir.name}_{video}").lstrip(".") or "video"
        path = out / f"{safe}.gif"
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=150, loop=0)
        written.append(path)
    return written
