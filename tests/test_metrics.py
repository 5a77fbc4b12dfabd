import numpy as np
import pytest
import torch

from locater.engine.metrics import (
    FrameRecord,
    SegmentationMetrics,
    markdown_table,
    score_frame,
    write_per_frame_csv,
)


def _logits(mask: np.ndarray) -> torch.Tensor:
    return torch.where(torch.from_numpy(mask), 10.0, -10.0)


def _square(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_frame_scores_by_hand():
    gt = _square(8, 8, 0, 4, 0, 4)  # 16 px
    perfect = score_frame(_logits(gt), gt, "v", "0", "00001")
    assert (perfect.intersection, perfect.union, perfect.iou) == (16, 16, 1.0)
    disjoint = score_frame(_logits(_square(8, 8, 4, 8, 4, 8)), gt, "v", "0", "00002")
    assert (disjoint.intersection, disjoint.union, disjoint.iou) == (0, 32, 0.0)
    half = score_frame(_logits(_square(8, 8, 0, 4, 0, 2)), gt, "v", "0", "00003")
    assert (half.intersection, half.union, half.iou) == (8, 16, 0.5)
    empty = np.zeros((8, 8), bool)
    both_empty = score_frame(_logits(empty), empty, "v", "0", "00004")
    assert (both_empty.union, both_empty.iou) == (0, 1.0)
    false_alarm = score_frame(_logits(gt), empty, "v", "0", "00005")
    assert false_alarm.iou == 0.0


def test_prediction_is_resized_to_the_mask_with_align_corners():
    gt = _square(16, 16, 0, 8, 0, 16)
    low = _logits(_square(4, 4, 0, 2, 0, 4))  # model resolution 4 x 4, top half
    record = score_frame(low, gt, "v", "0", "00001")
    assert record.iou > 0.75


def test_precision_variants_at_the_threshold_and_maps():
    metrics = SegmentationMetrics()
    # IoUs: 1.0, 0.5 exactly (2/4), 0.0, 0.75
    for frame, (i, u) in enumerate([(4, 4), (2, 4), (0, 4), (3, 4)]):
        metrics.add(FrameRecord("v", "0", f"{frame:05d}", i, u))
    result = metrics.compute()
    assert result["mean_iou"] == pytest.approx((1 + 0.5 + 0 + 0.75) / 4)
    assert result["overall_iou"] == pytest.approx(9 / 16)
    assert result["precision@0.5"] == 0.75  # >=: 1.0, 0.5, 0.75
    assert result["precision_strict@0.5"] == 0.5  # >: 1.0, 0.75
    assert result["precision@0.7"] == 0.5 and result["precision@0.9"] == 0.25
    p = [result[f"precision@{k}"] for k in (0.5, 0.6, 0.7, 0.8, 0.9)]
    assert result["map_locater"] == pytest.approx(np.mean(p))
    ten = [np.mean([iou >= k - 1e-12 for iou in (1, 0.5, 0, 0.75)]) for k in np.arange(0.5, 0.951, 0.05)]
    assert result["map_0.5:0.95"] == pytest.approx(np.mean(ten))
    assert result["num_frames"] == 4


def test_order_independence_and_duplicates():
    records = [FrameRecord(f"v{i % 3}", str(i % 2), f"{i:05d}", i % 5, 5) for i in range(20)]
    a, b = SegmentationMetrics(), SegmentationMetrics()
    a.extend(records)
    b.extend(list(reversed(records)))
    assert a.compute() == b.compute()
    a.add(records[0])
    with pytest.raises(ValueError, match="twice"):
        a.compute()
    with pytest.raises(ValueError, match="no scored frame"):
        SegmentationMetrics().compute()


def test_coco_ap_perfect_and_confidently_wrong():
    perfect = SegmentationMetrics()
    for k in range(5):
        gt = _square(16, 16, k, k + 6, 2, 9)
        perfect.add(score_frame(_logits(gt), gt, "v", "0", f"{k:05d}"))
    assert perfect.compute()["coco_ap"] == pytest.approx(1.0)
    wrong = SegmentationMetrics()
    for k in range(5):
        gt = _square(16, 16, k, k + 6, 2, 9)
        pred = gt if k else _square(16, 16, 10, 16, 10, 16)  # the first frame: a confident miss
        wrong.add(score_frame(_logits(pred), gt, "v", "0", f"{k:05d}"))
    assert wrong.compute()["coco_ap"] < 0.9


def test_table_and_csv(tmp_path):
    metrics = SegmentationMetrics()
    metrics.add(FrameRecord("v", "1", "00003", 1, 2))
    metrics.add(FrameRecord("v", "0", "00001", 2, 2))
    table = markdown_table({"NORM": metrics.compute()})
    assert (
        "P@0.5 (IoU>=K, Locater)" in table
        and "P@0.5 (IoU>K, MTTR)" in table
        and "mAP (mean P@0.5:0.9, Locater)" in table
    )
    path = write_per_frame_csv(metrics.records, tmp_path / "per_frame.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "video,expression,frame,intersection,union,iou"
    assert lines[1] == "v,0,00001,2,2,1.000000" and lines[2] == "v,1,00003,1,2,0.500000"
