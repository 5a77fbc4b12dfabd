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

The DAVIS measures (region similarity J, contour accuracy F, J&F with mean, recall and decay) are in the section
"J&F" at the end: :func:`score_jf_frame` and :class:`JFMetrics`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils

from locater.files import atomic_output, write_json_atomic
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


Record = TypeVar("Record")  # FrameRecord, JFRecord


class RecordAccumulator(Generic[Record]):
    """Per-frame records from one or many processes; subclasses compute their metrics from them. Records have a
    ``key`` that orders them (split, video, expression, frame), so results do not depend on the order of arrival."""

    def __init__(self, records: list[Record] | None = None) -> None:
        self.records: list[Record] = list(records or [])

    def __len__(self) -> int:
        return len(self.records)

    def add(self, record: Record) -> None:
        self.records.append(record)

    def extend(self, records: list[Record]) -> None:
        self.records.extend(records)

    def merge(self, other: RecordAccumulator[Record]) -> RecordAccumulator[Record]:
        """Add another accumulator's records (e.g. another rank's, after gathering); returns ``self``."""
        self.records.extend(other.records)
        return self

    def sorted_records(self) -> list[Record]:
        """The records sorted by their ``key``."""
        return sorted(self.records, key=lambda record: record.key)


class SegmentationMetrics(RecordAccumulator[FrameRecord]):
    """Accumulates :class:`FrameRecord` objects (from one or many processes) and computes every metric."""

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

    def parse(row: list[str]) -> FrameRecord:
        video, expression, frame, intersection, union, _ = row
        return FrameRecord(video, expression, frame, int(intersection), int(union))

    return read_csv_records(path, ["video", "expression", "frame", "intersection", "union", "iou"], parse)


def read_csv_records(path: str | Path, header: list[str], parse: Callable[[list[str]], Any]) -> list:
    """``parse(row)`` of every row of a CSV file whose first row is ``header``.

    Raises:
        ValueError: the file is missing, has another header, or ``parse`` refuses a row (a ``ValueError``: the
            message names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: missing (did the evaluation run?)")
    records = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        found = next(reader, None)
        if found != header:
            raise ValueError(f"{path}: header {found}, expected {header}")
        for line, row in enumerate(reader, start=2):
            try:
                records.append(parse(row))
            except ValueError as error:
                raise ValueError(f"{path}, line {line}: {error}") from error
    return records


# ---------------------------------------------------------------------------------------------------------------
# J&F: region similarity J and contour accuracy F, as the DAVIS benchmark defines them
#
# An object is one (split, video, expression); its frames are put in time order by sorting their names, which
# holds for DAVIS and Ref-YouTube-VOS names (zero-padded frame numbers). Per frame: J = |P and G| / |P or G|
# (1 when both are empty); F = the F-measure of boundary precision and recall, where a boundary pixel of one mask
# counts as matched when a boundary pixel of the other lies within a disk of radius ceil(0.008 x the image
# diagonal). Per object, as the DAVIS toolkit: mean, recall (fraction of frames > 0.5) and decay (the mean of the
# first quarter of the frames minus the mean of the last quarter); the summary is the mean over objects, and
# J&F = (J-Mean + F-Mean) / 2. Pinned to the DAVIS-2017 evaluation code by tests/test_jf_metrics.py.
# ---------------------------------------------------------------------------------------------------------------

DAVIS_BOUND_TH = 0.008
JF_KEYS = ("J&F", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
JF_FRAME_HEADER = ["split", "video", "expression", "frame", "j", "f"]
JF_EXPRESSION_HEADER = ["split", "video", "expression", "frames", "J", "F", "J&F"]


def _jf_mask(mask: np.ndarray, name: str, what: str) -> np.ndarray:
    """``mask`` as an ``H x W`` bool array; values must be bool or 0/1."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected an H x W {what} mask, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: the {what} mask has no pixels, shape {array.shape}")
    if array.dtype == bool:
        return array
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name}: {what} mask must be bool or 0/1, got dtype {array.dtype}")
    if not ((array == 0) | (array == 1)).all():
        raise ValueError(f"{name}: {what} mask must be bool or 0/1, got other values")
    return array != 0


def _jf_inputs(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The three masks as bool arrays of one ``H x W`` shape; a size mismatch names both sizes."""
    pred_b, gt_b = _jf_mask(pred, name, "predicted"), _jf_mask(gt, name, "ground-truth")
    if pred_b.shape != gt_b.shape:
        raise ValueError(
            f"{name}: predicted mask {pred_b.shape} and ground truth {gt_b.shape} differ in size"
        )
    void_b = None
    if void is not None:
        void_b = _jf_mask(void, name, "void")
        if void_b.shape != gt_b.shape:
            raise ValueError(f"{name}: void mask {void_b.shape} and ground truth {gt_b.shape} differ in size")
    return pred_b, gt_b, void_b


def _region(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None) -> float:
    union = pred | gt
    inter = pred & gt
    if void is not None:
        union &= ~void
        inter &= ~void
    n_union = int(np.count_nonzero(union))
    return 1.0 if n_union == 0 else int(np.count_nonzero(inter)) / n_union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The one-pixel boundary of an ``H x W`` bool mask, as the DAVIS toolkit draws it (``H x W`` bool).

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour; the pixels of the
    last row compare with their right neighbour only, those of the last column with their lower neighbour only,
    and the bottom-right pixel is never on it. So the image border is not a boundary, and the drawn line lies
    half a pixel towards the origin from the true edge.
    """
    boundary = np.zeros(mask.shape, dtype=bool)
    boundary[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    boundary[:-1, :] |= mask[:-1, :] != mask[1:, :]
    boundary[:-1, :-1] |= mask[:-1, :-1] != mask[1:, 1:]
    return boundary


def boundary_radius(height: int, width: int, bound_th: float = DAVIS_BOUND_TH) -> int:
    """The match tolerance in pixels: ``ceil(bound_th x diagonal)`` for ``bound_th < 1``, else ``bound_th``.

    For 480 x 854 (DAVIS 480p) the radius is 8 pixels.
    """
    if not (math.isfinite(bound_th) and bound_th > 0):
        raise ValueError(f"bound_th must be a positive number, got {bound_th}")
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"bound_th >= 1 is a radius in pixels and must be whole, got {bound_th}")
        return int(bound_th)
    # sqrt of the exact integer h^2 + w^2, as the toolkit's norm: a product landing on a whole number (0.008 x
    # 250 for 150 x 200) must not be pushed over it by a rounding difference
    return math.ceil(bound_th * math.sqrt(height * height + width * width))


_DISKS: dict[int, np.ndarray] = {}


def disk_kernel(radius: int) -> np.ndarray:
    """The ``(2r + 1) x (2r + 1)`` uint8 disk ``x^2 + y^2 <= r^2`` (the DAVIS toolkit's structuring element).

    ``cv2.getStructuringElement(cv2.MORPH_ELLIPSE, ...)`` is a different shape for every radius above 1, so the
    disk is built here.
    """
    if radius not in _DISKS:
        offsets = np.arange(-radius, radius + 1)
        _DISKS[radius] = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)
    return _DISKS[radius]


def _contour(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None, bound_th: float) -> float:
    radius = boundary_radius(*gt.shape, bound_th)
    if void is not None:
        pred, gt = pred & ~void, gt & ~void
    pred_boundary, gt_boundary = boundary_map(pred), boundary_map(gt)
    n_pred, n_gt = int(np.count_nonzero(pred_boundary)), int(np.count_nonzero(gt_boundary))
    if n_pred == 0 and n_gt == 0:
        return 1.0  # precision = recall = 1
    if n_pred == 0 or n_gt == 0:
        return 0.0  # one of precision and recall is 0, the other 1
    # every boundary pixel lies in this box, so dilating inside it gives the same matches as the whole frame
    rows = np.flatnonzero((pred_boundary | gt_boundary).any(axis=1))
    cols = np.flatnonzero((pred_boundary | gt_boundary).any(axis=0))
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    pred_boundary, gt_boundary = pred_boundary[box], gt_boundary[box]
    kernel = disk_kernel(radius)
    near_gt = cv2.dilate(gt_boundary.view(np.uint8), kernel).view(bool)
    near_pred = cv2.dilate(pred_boundary.view(np.uint8), kernel).view(bool)
    precision = int(np.count_nonzero(pred_boundary & near_gt)) / n_pred
    recall = int(np.count_nonzero(gt_boundary & near_pred)) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def region_similarity(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """DAVIS region similarity J of one frame: ``|P and G| / |P or G|`` outside the void pixels.

    Args:
        pred, gt: ``H x W`` masks (bool or 0/1).
        void: optional ``H x W`` mask (bool or 0/1) of pixels that count for neither mask (DAVIS label 255).

    Returns:
        J in [0, 1]; 1.0 when the union is empty (nothing to find, nothing predicted).
    """
    return _region(*_jf_inputs(pred, gt, void, "region_similarity"))


def contour_accuracy(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = DAVIS_BOUND_TH
) -> float:
    """DAVIS contour accuracy F of one frame: the F-measure of boundary precision and recall.

    Both masks lose their void pixels, then their boundaries are drawn (:func:`boundary_map`). Precision is the
    fraction of predicted boundary pixels within ``r`` (:func:`boundary_radius`) of a ground-truth boundary pixel,
    recall the converse, with "within r" meaning inside the disk :func:`disk_kernel`. No boundary in either
    mask gives 1.0; a boundary in only one of them gives 0.0.

    Args:
        pred, gt: ``H x W`` masks (bool or 0/1).
        void: optional ``H x W`` mask (bool or 0/1) of pixels removed from both masks first.
        bound_th: the tolerance as a fraction of the image diagonal (< 1), or in whole pixels (>= 1).
    """
    pred_b, gt_b, void_b = _jf_inputs(pred, gt, void, "contour_accuracy")
    return _contour(pred_b, gt_b, void_b, bound_th)


@dataclass
class JFRecord:
    """J and F of one frame of one object; picklable, so records can be gathered across processes."""

    split: str
    video: str
    expression: str
    frame: str
    j: float
    f: float

    def __post_init__(self) -> None:
        for name in ("j", "f"):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not 0.0 <= number <= 1.0:  # NaN fails too
                raise ValueError(f"{'/'.join(self.key)}: {name} must be a number in [0, 1], got {value!r}")
            setattr(self, name, number)

    @property
    def key(self) -> tuple[str, str, str, str]:
        """``(split, video, expression, frame)``: the sort key and identity of a record."""
        return (self.split, self.video, self.expression, self.frame)

    @property
    def object_key(self) -> tuple[str, str, str]:
        """``(split, video, expression)``: the object the frame belongs to."""
        return (self.split, self.video, self.expression)


def score_jf_frame(
    pred: np.ndarray,
    gt: np.ndarray,
    split: str,
    video: str,
    expression: str,
    frame: str,
    void: np.ndarray | None = None,
    bound_th: float = DAVIS_BOUND_TH,
) -> JFRecord:
    """J and F of one frame (:func:`region_similarity`, :func:`contour_accuracy`).

    Args:
        pred, gt: ``H x W`` binary masks (bool or 0/1) of the same size.
        split, video, expression, frame: identity of the frame (sorting, grouping and error messages).
        void: optional ``H x W`` mask of pixels that count for neither mask.
        bound_th: the contour tolerance (:func:`boundary_radius`).

    Raises:
        ValueError: a mask that is not ``H x W`` bool or 0/1, or masks of different sizes (named in the message).
    """
    name = f"{split}/{video}/{expression}/{frame}"
    pred_b, gt_b, void_b = _jf_inputs(pred, gt, void, name)
    return JFRecord(
        split,
        video,
        expression,
        frame,
        _region(pred_b, gt_b, void_b),
        _contour(pred_b, gt_b, void_b, bound_th),
    )


def davis_statistics(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, recall and decay of one object's per-frame values (``n``, in time order), as the DAVIS toolkit.

    Recall is the fraction of frames above 0.5. Decay splits the frames into four overlapping quarters, the
    i-th from frame ``e_i`` to frame ``e_(i+1)`` inclusive with ``e_k = round(k (n - 1) / 4)`` (halves rounded
    up), and is the mean of the first quarter minus the mean of the last. The values are never NaN here (a
    record holds a number in [0, 1]), so the toolkit's NaN-skipping means are plain means. The toolkit keeps the
    edges in uint8, which wraps above 255 frames; here they are plain integers (the same up to 255 frames).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"need a non-empty 1-d array of per-frame values, got shape {values.shape}")
    n = values.size
    edges = [(k * (n - 1) + 2) // 4 for k in range(5)]
    first, last = values[edges[0] : edges[1] + 1], values[edges[3] : edges[4] + 1]
    return float(values.mean()), float((values > 0.5).mean()), float(first.mean() - last.mean())


class JFMetrics(RecordAccumulator[JFRecord]):
    """Accumulates :class:`JFRecord` objects (from one or many processes) and computes the DAVIS summary.

    ``skip_first_last=False`` (the default) scores every frame of an object, as referring segmentation does;
    ``skip_first_last=True`` drops each object's first and last frame, the DAVIS toolkit's semi-supervised
    convention (there the first frame's mask is given to the method).
    """

    def objects(
        self, skip_first_last: bool = False
    ) -> list[tuple[tuple[str, str, str], np.ndarray, np.ndarray]]:
        """Per object, in sorted order: ``(split, video, expression)``, its J values and its F values (``n``).

        Raises:
            ValueError: no record, a frame scored twice, or (with ``skip_first_last``) an object of fewer than
                three frames.
        """
        records = self.sorted_records()
        if not records:
            raise ValueError("no J&F record: nothing was scored")
        for previous, current in zip(records, records[1:]):
            if previous.key == current.key:
                raise ValueError(f"frame scored twice: {'/'.join(current.key)}")
        groups: dict[tuple[str, str, str], list[JFRecord]] = {}
        for record in records:
            groups.setdefault(record.object_key, []).append(record)
        result = []
        for key, group in groups.items():
            if skip_first_last:
                if len(group) < 3:
                    raise ValueError(
                        f"{'/'.join(key)}: {len(group)} frame(s); dropping the first and last frame "
                        "(skip_first_last) needs at least 3"
                    )
                group = group[1:-1]
            j = np.array([record.j for record in group], dtype=np.float64)
            f = np.array([record.f for record in group], dtype=np.float64)
            result.append((key, j, f))
        return result

    def compute(self, skip_first_last: bool = False) -> dict[str, float]:
        """``J&F``, ``J-Mean``, ``J-Recall``, ``J-Decay``, ``F-Mean``, ``F-Recall``, ``F-Decay`` (each the mean
        over objects of :func:`davis_statistics`; ``J&F`` = (J-Mean + F-Mean) / 2), ``num_objects`` and
        ``num_frames`` (the frames scored).
        """
        objects = self.objects(skip_first_last)
        j_stats = np.array([davis_statistics(j) for _, j, _ in objects])
        f_stats = np.array([davis_statistics(f) for _, _, f in objects])
        j_mean, j_recall, j_decay = (float(x) for x in j_stats.mean(axis=0))
        f_mean, f_recall, f_decay = (float(x) for x in f_stats.mean(axis=0))
        num_frames = sum(len(j) for _, j, _ in objects)
        logger.debug(
            "J&F over %d objects, %d frames (skip_first_last=%s)", len(objects), num_frames, skip_first_last
        )
        return {
            "J&F": (j_mean + f_mean) / 2,
            "J-Mean": j_mean,
            "J-Recall": j_recall,
            "J-Decay": j_decay,
            "F-Mean": f_mean,
            "F-Recall": f_recall,
            "F-Decay": f_decay,
            "num_objects": len(objects),
            "num_frames": num_frames,
        }

    def per_expression(self, skip_first_last: bool = False) -> list[dict]:
        """One row per object, sorted: split, video, expression, frames (scored), J, F (their means), J&F."""
        rows = []
        for (split, video, expression), j, f in self.objects(skip_first_last):
            j_mean, f_mean = float(j.mean()), float(f.mean())
            rows.append(
                {
                    "split": split,
                    "video": video,
                    "expression": expression,
                    "frames": int(j.size),
                    "J": j_mean,
                    "F": f_mean,
                    "J&F": (j_mean + f_mean) / 2,
                }
            )
        return rows


def write_jf_per_frame_csv(records: list[JFRecord], path: str | Path) -> Path:
    """Write the per-frame J and F (split, video, expression, frame, j, f), sorted, atomically.

    The values are written in full (``repr``), so :func:`read_jf_per_frame_csv` gives back the same numbers.
    """
    path = Path(path)
    with atomic_output(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(JF_FRAME_HEADER)
        for record in sorted(records, key=lambda r: r.key):
            writer.writerow([*record.key, repr(float(record.j)), repr(float(record.f))])
    return path


def read_jf_per_frame_csv(path: str | Path) -> list[JFRecord]:
    """The records of a file written by :func:`write_jf_per_frame_csv`.

    Raises:
        ValueError: the file is missing, has another header or a bad row (the message names the file and line).
    """

    def parse(row: list[str]) -> JFRecord:
        split, video, expression, frame, j, f = row
        return JFRecord(split, video, expression, frame, float(j), float(f))

    return read_csv_records(path, JF_FRAME_HEADER, parse)


def write_jf_per_expression_csv(rows: list[dict], path: str | Path) -> Path:
    """Write :meth:`JFMetrics.per_expression` rows as CSV (J, F, J&F with 6 decimals), atomically."""
    path = Path(path)
    with atomic_output(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(JF_EXPRESSION_HEADER)
        for row in rows:
            writer.writerow(
                [row["split"], row["video"], row["expression"], row["frames"]]
                + [f"{row[key]:.6f}" for key in ("J", "F", "J&F")]
            )
    return path


def write_jf_per_expression_json(rows: list[dict], path: str | Path) -> Path:
    """Write :meth:`JFMetrics.per_expression` rows as a JSON list (full precision), atomically."""
    return write_json_atomic(path, [{key: row[key] for key in JF_EXPRESSION_HEADER} for row in rows])
