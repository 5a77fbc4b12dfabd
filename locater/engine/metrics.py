"""Segmentation metrics of referring video segmentation (DESIGN §4): the one metrics module.

Per scored frame: prediction = sigmoid(logits) resized bilinearly (align_corners=True) to the mask's size and
thresholded at 0.5; ``I = |P and G|``, ``U = |P or G|``, ``IoU = I / U`` and ``IoU = 1`` when ``U = 0``.

* ``overall_iou`` = sum I / sum U (1.0 when every frame has U = 0); ``mean_iou`` = mean per-frame IoU.
* ``precision@K`` (K = 0.5 .. 0.9): fraction of frames with IoU >= K (Locater's evaluation);
  ``precision_strict@K``: IoU > K (MTTR and its followers).
* ``map_locater``: what Locater prints as "mAP" = mean of the five ``precision@K``;
  ``map_0.5:0.95``: mean of ``precision@K`` over K = 0.50:0.05:0.95.
* ``coco_ap`` / ``coco_ap50`` / ``coco_ap75``: COCO segm AP (pycocotools): one prediction per scored frame
  (its binary mask, scored by the mean probability inside it), one ground truth per frame with a non-empty mask
  (a frame whose ground truth is empty has no annotation, so any prediction there is a false positive; an empty
  prediction is not submitted).
Records are sorted by (video, expression, frame) before computing, so the numbers do not depend on the order in
which they arrive (1 and N processes agree bit for bit).
"""

from __future__ import annotations

import contextlib
import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from locater.preprocess import logits_to_probabilities

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
COCO_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


@dataclass
class FrameRecord:
    """One scored frame."""

    video: str
    expression: str
    frame: str
    intersection: int
    union: int
    score: float = 0.0  # mean probability inside the predicted mask (COCO AP)
    prediction_rle: dict | None = None
    target_rle: dict | None = None
    height: int = 0
    width: int = 0

    @property
    def iou(self) -> float:
        return 1.0 if self.union == 0 else self.intersection / self.union

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.video, self.expression, self.frame)


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def score_frame(
    logits: torch.Tensor,
    target: torch.Tensor | np.ndarray,
    video: str,
    expression: str,
    frame: str,
    coco: bool = True,
) -> FrameRecord:
    """Score one frame.

    Args:
        logits: ``h x w`` (or ``1 x 1 x h x w``) logits at model resolution.
        target: ``H x W`` ground-truth mask (bool or 0/1).
        coco: also keep the RLEs needed for COCO AP.
    """
    target = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target)
    target = target.to(logits.device).bool()
    while logits.dim() > 2:
        logits = logits[0]
    probabilities = logits_to_probabilities(logits, tuple(target.shape))
    prediction = probabilities > 0.5
    intersection = int((prediction & target).sum())
    union = int((prediction | target).sum())
    score = float(probabilities[prediction].mean()) if bool(prediction.any()) else 0.0
    record = FrameRecord(
        video, expression, frame, intersection, union, score, height=target.shape[0], width=target.shape[1]
    )
    if coco:
        record.prediction_rle = _rle(prediction.cpu().numpy())
        record.target_rle = _rle(target.cpu().numpy()) if bool(target.any()) else None
    return record


class SegmentationMetrics:
    """Accumulates :class:`FrameRecord` objects and computes every metric variant."""

    def __init__(self) -> None:
        self.records: list[FrameRecord] = []

    def add(self, record: FrameRecord) -> None:
        self.records.append(record)

    def extend(self, records: list[FrameRecord]) -> None:
        self.records.extend(records)

    def sorted_records(self) -> list[FrameRecord]:
        return sorted(self.records, key=lambda r: r.key)

    def compute(self) -> dict[str, float]:
        """Every metric (keys in the module docstring); raises when no frame was scored."""
        records = self.sorted_records()
        if not records:
            raise ValueError("no scored frame: the split is empty or has no labelled frames")
        keys = [r.key for r in records]
        if len(set(keys)) != len(keys):
            raise ValueError("a (video, expression, frame) was scored twice")
        ious = np.array([r.iou for r in records], dtype=np.float64)
        total_i = sum(r.intersection for r in records)
        total_u = sum(r.union for r in records)
        result: dict[str, float] = {
            "overall_iou": 1.0 if total_u == 0 else total_i / total_u,
            "mean_iou": float(ious.mean()),
        }
        for k in THRESHOLDS:
            result[f"precision@{k}"] = float((ious >= k - 1e-12).mean())
        for k in THRESHOLDS:
            result[f"precision_strict@{k}"] = float((ious > k + 1e-12).mean())
        result["map_locater"] = float(np.mean([result[f"precision@{k}"] for k in THRESHOLDS]))
        result["map_0.5:0.95"] = float(np.mean([(ious >= k - 1e-12).mean() for k in COCO_THRESHOLDS]))
        if all(r.prediction_rle is not None for r in records):
            result.update(coco_ap(records))
        result["num_frames"] = len(records)
        return result


def coco_ap(records: list[FrameRecord]) -> dict[str, float]:
    """COCO segm AP over the frames (module docstring)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, detections = [], [], []
    for index, record in enumerate(records, start=1):
        images.append({"id": index, "height": record.height, "width": record.width})
        if record.target_rle is not None:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": 1,
                    "segmentation": record.target_rle,
                    "area": float(_rle_area(record.target_rle)),
                    "iscrowd": 0,
                }
            )
        if record.prediction_rle is not None and _rle_area(record.prediction_rle) > 0:
            detections.append(
                {
                    "image_id": index,
                    "category_id": 1,
                    "segmentation": record.prediction_rle,
                    "score": record.score,
                }
            )
    if not annotations:
        return {"coco_ap": float("nan"), "coco_ap50": float("nan"), "coco_ap75": float("nan")}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": 1, "name": "referred"}],
        }
        ground_truth.createIndex()
        if detections:
            predictions = ground_truth.loadRes(detections)
            evaluator = COCOeval(ground_truth, predictions, iouType="segm")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            stats = evaluator.stats
        else:
            stats = [0.0, 0.0, 0.0]
    return {"coco_ap": float(stats[0]), "coco_ap50": float(stats[1]), "coco_ap75": float(stats[2])}


def _rle_area(rle: dict) -> int:
    from pycocotools import mask as mask_utils

    return int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")}))


LABELS = [
    ("overall_iou", "Overall IoU"),
    ("mean_iou", "Mean IoU"),
    *[(f"precision@{k}", f"P@{k} (IoU>=K, Locater)") for k in THRESHOLDS],
    *[(f"precision_strict@{k}", f"P@{k} (IoU>K, MTTR)") for k in THRESHOLDS],
    ("map_locater", "mAP (mean P@0.5:0.9, Locater)"),
    ("map_0.5:0.95", "mAP (mean P@0.5:0.05:0.95)"),
    ("coco_ap", "AP (COCO segm)"),
    ("coco_ap50", "AP50 (COCO segm)"),
    ("coco_ap75", "AP75 (COCO segm)"),
    ("num_frames", "scored frames"),
]


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    """One row per metric (each variant clearly labelled), one column per split (``{split: metrics}``)."""
    present = [(key, label) for key, label in LABELS if any(key in m for m in results.values())]
    lines = ["| metric | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for key, label in present:
        cells = []
        for metrics in results.values():
            value = metrics.get(key, float("nan"))
            cells.append(str(int(value)) if key == "num_frames" else f"{100 * value:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nValues in %, except scored frames.\n"


def write_per_frame_csv(records: list[FrameRecord], path: str | Path) -> Path:
    """``per_frame.csv``: video, expression id, frame, intersection, union, IoU (sorted)."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "expression", "frame", "intersection", "union", "iou"])
        for r in sorted(records, key=lambda r: r.key):
            writer.writerow([r.video, r.expression, r.frame, r.intersection, r.union, f"{r.iou:.6f}"])
    return path
