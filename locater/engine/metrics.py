"""Segmentation metrics of referring video segmentation (docs/evaluation.md): the one metrics module.

Per scored frame: prediction ``P`` = sigmoid(logits) resized bilinearly (align_corners=True) to the mask's size,
then ``> 0.5`` (as the official evaluation); ``I = |P and G|``, ``U = |P or G|``, ``IoU = I / U`` and
``IoU = 1`` when ``U = 0`` (empty prediction on an empty ground truth).

Keys of :meth:`SegmentationMetrics.compute` (fractions in [0, 1]):

* ``overall_iou`` = sum I / sum U over all frames; defined as 1.0 when sum U = 0 (every prediction and every
  ground truth empty: nothing was missed, the same convention as the per-frame IoU).
* ``mean_iou`` = mean of the per-frame IoU.
* ``precision@K`` (K = 0.5, 0.6, 0.7, 0.8, 0.9): fraction of frames with IoU >= K (Locater's evaluation);
  ``precision_strict@K``: IoU > K (MTTR and its followers). They differ only for frames exactly at K.
* ``map_locater``: what Locater prints as "mAP" (labelled ``mAP.5:.95`` in its log) = mean of the five
  ``precision@K``; ``map_0.5:0.95``: mean of ``precision@K`` (>=) over K = 0.50:0.05:0.95.
* ``coco_ap`` / ``coco_ap50`` / ``coco_ap75``: COCO segm AP (pycocotools, category 1): one detection per frame
  with a non-empty prediction (its binary mask, scored by the mean probability inside it), one ground-truth
  annotation per frame with a non-empty mask. A frame whose ground truth is empty has no annotation, so a
  non-empty prediction there is a false positive; an empty prediction is not submitted (it could match nothing).
  NaN when the records carry no masks (COCO AP switched off) or no frame has a non-empty ground truth.
* ``num_frames``: number of scored frames.

Records are sorted by (video, expression, frame) before computing, so the numbers do not depend on the order in
which records arrive: one and N processes give identical numbers, bit for bit. The thresholds are the exact
decimal literals, and a per-frame IoU is the correctly rounded ``I / U``, so "IoU = K exactly" compares as equal.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils

from locater.preprocess import logits_to_probabilities

logger = logging.getLogger(__name__)

PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
MAP_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
COCO_KEYS = ("coco_ap", "coco_ap50", "coco_ap75")
MASK_THRESHOLD = 0.5


@dataclass
class FrameRecord:
    """One scored frame; picklable, so records can be gathered across processes.

    ``prediction_rle`` / ``target_rle`` are COCO RLEs (``counts`` as str) of the ``height x width`` binary
    prediction and ground truth; ``target_rle`` is None for an empty ground truth. Both are None when COCO AP is
    not wanted.
    """

    video: str
    expression: str
    frame: str
    intersection: int
    union: int
    score: float = 0.0  # mean probability inside the predicted mask (COCO AP ranking)
    prediction_rle: dict | None = None
    target_rle: dict | None = None
    height: int = 0
    width: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.intersection <= self.union:
            raise ValueError(
                f"{self.video}/{self.expression}/{self.frame}: need 0 <= intersection <= union, "
                f"got intersection={self.intersection}, union={self.union}"
            )

    @property
    def iou(self) -> float:
        """``intersection / union``, 1.0 when the union is empty."""
        return 1.0 if self.union == 0 else self.intersection / self.union

    @property
    def key(self) -> tuple[str, str, str]:
        """``(video, expression, frame)``: the sort key and identity of a record."""
        return (self.video, self.expression, self.frame)


def encode_rle(mask: np.ndarray) -> dict:
    """COCO RLE of an ``H x W`` binary mask, with ``counts`` as str (JSON- and pickle-friendly)."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rle_area(rle: dict) -> int:
    """Number of foreground pixels of an RLE made by :func:`encode_rle`."""
    return int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")}))


def _squeeze_logits(logits: torch.Tensor, name: str) -> torch.Tensor:
    """``h x w``, ``1 x h x w`` or ``1 x 1 x h x w`` -> ``h x w``; anything else is an error."""
    if logits.dim() < 2 or any(size != 1 for size in logits.shape[:-2]):
        raise ValueError(f"{name}: expected h x w (or 1 x h x w) logits, got shape {tuple(logits.shape)}")
    return logits.reshape(logits.shape[-2:])


def _binary_target(target: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """The ground truth as an ``H x W`` bool tensor; values must be bool or 0/1."""
    tensor = torch.as_tensor(target)
    if tensor.dim() != 2:
        raise ValueError(f"{name}: expected an H x W ground-truth mask, got shape {tuple(tensor.shape)}")
    if tensor.dtype != torch.bool:
        if not bool(((tensor == 0) | (tensor == 1)).all()):
            raise ValueError(f"{name}: ground-truth mask must be bool or 0/1, got other values")
        tensor = tensor != 0
    return tensor


def score_frame(
    logits: torch.Tensor,
    target: torch.Tensor | np.ndarray,
    video: str,
    expression: str,
    frame: str,
    coco: bool = True,
) -> FrameRecord:
    """Score one frame; the arithmetic runs in torch on the device of ``logits`` (one host sync).

    Args:
        logits: ``h x w`` (or ``1 x h x w``, ``1 x 1 x h x w``) logits at model resolution.
        target: ``H x W`` ground-truth mask (bool or 0/1, numpy or torch).
        video, expression, frame: identity of the frame (used for sorting and in error messages).
        coco: also keep the RLEs of the prediction and the ground truth, needed for COCO AP.
    """
    name = f"{video}/{expression}/{frame}"
    logits = _squeeze_logits(logits, name)
    target_cpu = _binary_target(target, name).cpu()
    height, width = target_cpu.shape
    target_device = target_cpu.to(logits.device, non_blocking=True)
    probabilities = logits_to_probabilities(logits, (height, width))
    prediction = probabilities > MASK_THRESHOLD
    stats = torch.stack(
        [
            (prediction & target_device).sum(dtype=torch.float64),
            (prediction | target_device).sum(dtype=torch.float64),
            prediction.sum(dtype=torch.float64),
            (probabilities * prediction).sum(dtype=torch.float64),
            (~torch.isfinite(logits)).sum(dtype=torch.float64),
        ]
    ).tolist()
    intersection, union, predicted, probability_sum, non_finite = stats
    if non_finite:
        raise ValueError(f"{name}: {int(non_finite)} logits are NaN or infinite")
    record = FrameRecord(
        video,
        expression,
        frame,
        intersection=int(intersection),
        union=int(union),
        score=probability_sum / predicted if predicted else 0.0,
        height=height,
        width=width,
    )
    if coco:
        record.prediction_rle = encode_rle(prediction.cpu().numpy())
        record.target_rle = encode_rle(target_cpu.numpy()) if bool(target_cpu.any()) else None
    return record


class SegmentationMetrics:
    """Accumulates :class:`FrameRecord` objects (from one or many processes) and computes every metric."""

    def __init__(self, records: list[FrameRecord] | None = None) -> None:
        self.records: list[FrameRecord] = list(records or [])

    def __len__(self) -> int:
        return len(self.records)

    def add(self, record: FrameRecord) -> None:
        self.records.append(record)

    def extend(self, records: list[FrameRecord]) -> None:
        self.records.extend(records)

    def merge(self, other: SegmentationMetrics) -> SegmentationMetrics:
        """Add another accumulator's records (e.g. another rank's, after gathering); returns ``self``."""
        self.records.extend(other.records)
        return self

    def sorted_records(self) -> list[FrameRecord]:
        """The records sorted by (video, expression, frame)."""
        return sorted(self.records, key=lambda record: record.key)

    def compute(self) -> dict[str, float]:
        """Every metric (keys in the module docstring).

        Raises:
            ValueError: no record, a frame scored twice, or only some records carrying COCO masks.
        """
        records = self.sorted_records()
        if not records:
            raise ValueError("no scored frame: the split is empty or has no labelled frames")
        for previous, current in zip(records, records[1:]):
            if previous.key == current.key:
                raise ValueError(f"frame scored twice: {'/'.join(current.key)}")
        ious = np.array([record.iou for record in records], dtype=np.float64)
        total_intersection = sum(record.intersection for record in records)
        total_union = sum(record.union for record in records)
        result: dict[str, float] = {
            "overall_iou": 1.0 if total_union == 0 else total_intersection / total_union,
            "mean_iou": float(ious.mean()),
        }
        for k in PRECISION_THRESHOLDS:
            result[f"precision@{k}"] = float((ious >= k).mean())
        for k in PRECISION_THRESHOLDS:
            result[f"precision_strict@{k}"] = float((ious > k).mean())
        result["map_locater"] = float(np.mean([result[f"precision@{k}"] for k in PRECISION_THRESHOLDS]))
        result["map_0.5:0.95"] = float(np.mean([(ious >= k).mean() for k in MAP_THRESHOLDS]))
        with_masks = sum(record.prediction_rle is not None for record in records)
        if with_masks == len(records):
            result.update(coco_ap(records))
        elif with_masks == 0:
            result.update(dict.fromkeys(COCO_KEYS, math.nan))
        else:
            raise ValueError(
                f"only {with_masks} of {len(records)} records carry masks for COCO AP: score every frame "
                "with the same coco setting"
            )
        result["num_frames"] = len(records)
        return result


def coco_ap(records: list[FrameRecord]) -> dict[str, float]:
    """COCO segm AP, AP50 and AP75 over the frames, in the given order (module docstring for the protocol)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, detections = [], [], []
    for image_id, record in enumerate(records, start=1):
        if record.prediction_rle is None:
            raise ValueError(f"{'/'.join(record.key)}: no prediction mask for COCO AP")
        images.append({"id": image_id, "height": record.height, "width": record.width})
        if record.target_rle is not None:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": record.target_rle,
                    "area": float(rle_area(record.target_rle)),
                    "iscrowd": 0,
                }
            )
        if rle_area(record.prediction_rle) > 0:
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": record.prediction_rle,
                    "score": record.score,
                }
            )
    if not annotations:
        return dict.fromkeys(COCO_KEYS, math.nan)
    if not detections:
        return dict.fromkeys(COCO_KEYS, 0.0)
    chatter = io.StringIO()
    # pycocotools prints progress to stdout; keep it out of the tools' output, errors still propagate
    with contextlib.redirect_stdout(chatter):
        ground_truth = COCO()
        ground_truth.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": 1, "name": "referred object"}],
        }
        ground_truth.createIndex()
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(detections), iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    logger.debug("pycocotools output:\n%s", chatter.getvalue())
    stats = evaluator.stats
    return {"coco_ap": float(stats[0]), "coco_ap50": float(stats[1]), "coco_ap75": float(stats[2])}


METRIC_LABELS = (
    ("overall_iou", "Overall IoU"),
    ("mean_iou", "Mean IoU"),
    *((f"precision@{k}", f"P@{k} (IoU>=K, Locater)") for k in PRECISION_THRESHOLDS),
    *((f"precision_strict@{k}", f"P@{k} (IoU>K, MTTR)") for k in PRECISION_THRESHOLDS),
    ("map_locater", "mAP (mean P@0.5:0.9, Locater)"),
    ("map_0.5:0.95", "mAP (mean P@0.5:0.05:0.95)"),
    ("coco_ap", "AP (COCO segm)"),
    ("coco_ap50", "AP50 (COCO segm)"),
    ("coco_ap75", "AP75 (COCO segm)"),
    ("num_frames", "scored frames"),
)


def _cell(key: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return str(int(value)) if key == "num_frames" else f"{100 * value:.2f}"


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    """Paper-style markdown table: one row per metric (each variant labelled), one column per split.

    Args:
        results: ``{split name: metrics}`` with metrics as returned by :meth:`SegmentationMetrics.compute`.
    """
    rows = [(key, label) for key, label in METRIC_LABELS if any(key in m for m in results.values())]
    lines = ["| metric | " + " | ".join(results) + " |", "|---|" + "---:|" * len(results)]
    for key, label in rows:
        cells = [_cell(key, metrics.get(key)) for metrics in results.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nValues in %, except scored frames; n/a: not computed.\n"


def write_per_frame_csv(records: list[FrameRecord], path: str | Path) -> Path:
    """Write ``per_frame.csv`` (video, expression, frame, intersection, union, iou), sorted by frame key."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "expression", "frame", "intersection", "union", "iou"])
        for record in sorted(records, key=lambda r: r.key):
            writer.writerow(
                [
                    record.video,
                    record.expression,
                    record.frame,
                    record.intersection,
                    record.union,
                    f"{record.iou:.6f}",
                ]
            )
    return path


def read_per_frame_csv(path: str | Path) -> list[FrameRecord]:
    """The records of a ``per_frame.csv`` written by :func:`write_per_frame_csv` (no COCO masks).

    Raises:
        ValueError: the file is missing, has another header or a bad row (the message names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: missing (did the evaluation run?)")
    records = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        expected = ["video", "expression", "frame", "intersection", "union", "iou"]
        if header != expected:
            raise ValueError(f"{path}: header {header}, expected {expected}")
        for line, row in enumerate(reader, start=2):
            try:
                video, expression, frame, intersection, union, _ = row
                records.append(FrameRecord(video, expression, frame, int(intersection), int(union)))
            except ValueError as error:
                raise ValueError(f"{path}, line {line}: {error}") from error
    return records
