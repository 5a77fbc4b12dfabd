import math
import random

import numpy as np
import pytest
import torch

from locater.engine.metrics import (
    FrameRecord,
    SegmentationMetrics,
    markdown_table,
    read_per_frame_csv,
    score_frame,
    write_per_frame_csv,
)


def _logits(mask: np.ndarray) -> torch.Tensor:
    """Confident logits (+-10) for a binary mask."""
    return torch.where(torch.from_numpy(mask), 10.0, -10.0)


def _mask(h: int, w: int, pixels: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    for y, x in pixels:
        mask[y, x] = True
    return mask


def _square(h, w, y0, y1, x0, x1):
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _records(pairs):
    return [FrameRecord("v", "0", f"{i:05d}", inter, union) for i, (inter, union) in enumerate(pairs)]


def test_frame_intersection_union_by_hand():
    gt = _square(8, 8, 0, 4, 0, 4)  # 16 px
    perfect = score_frame(_logits(gt), gt, "v", "0", "00001")
    assert (perfect.intersection, perfect.union, perfect.iou) == (16, 16, 1.0)
    disjoint = score_frame(_logits(_square(8, 8, 4, 8, 4, 8)), gt, "v", "0", "00002")
    assert (disjoint.intersection, disjoint.union, disjoint.iou) == (0, 32, 0.0)
    half = score_frame(_logits(_square(8, 8, 0, 4, 0, 2)), gt, "v", "0", "00003")
    assert (half.intersection, half.union, half.iou) == (8, 16, 0.5)
    empty = np.zeros((8, 8), bool)
    both_empty = score_frame(_logits(empty), empty, "v", "0", "00004")
    assert (both_empty.intersection, both_empty.union, both_empty.iou) == (0, 0, 1.0)
    false_alarm = score_frame(_logits(gt), empty, "v", "0", "00005")
    assert (false_alarm.intersection, false_alarm.union, false_alarm.iou) == (0, 16, 0.0)
    # 1 x 1 x h x w logits and a 0/1 uint8 torch target are accepted too
    batched = score_frame(_logits(gt)[None, None], torch.from_numpy(gt.astype(np.uint8)), "v", "0", "6")
    assert (batched.intersection, batched.union) == (16, 16)


def test_score_is_mean_probability_inside_the_prediction():
    logits = torch.tensor([[0.0, 1.0], [2.0, -3.0]])  # sigmoid(0) = 0.5 is not > 0.5: not predicted
    record = score_frame(logits, np.ones((2, 2), bool), "v", "0", "00001")
    assert (record.intersection, record.union) == (2, 4)
    assert record.score == pytest.approx(
        (torch.sigmoid(torch.tensor(1.0)) + torch.sigmoid(torch.tensor(2.0))) / 2
    )
    assert score_frame(torch.full((2, 2), -5.0), np.ones((2, 2), bool), "v", "0", "2").score == 0.0


def test_prediction_is_resized_bilinearly_with_align_corners():
    # 2 x 2 logits, top row p = 0.7, bottom row p ~ 0, resized to 4 x 4. align_corners=True samples rows at
    # t = 0, 1/3, 2/3, 1 -> p = 0.7, 0.467, 0.233, 0: only the top row is > 0.5 (align_corners=False: two rows).
    top = math.log(0.7 / 0.3)
    logits = torch.tensor([[top, top], [-30.0, -30.0]])
    record = score_frame(logits, _square(4, 4, 0, 1, 0, 4), "v", "0", "00001")
    assert (record.intersection, record.union) == (4, 4)


def test_precision_at_exactly_the_threshold_from_masks():
    gt = _mask(4, 4, [(0, 0), (0, 1), (0, 2)])
    prediction = _mask(4, 4, [(0, 1), (0, 2), (0, 3)])  # I = 2, U = 4: IoU = 0.5 exactly
    record = score_frame(_logits(prediction), gt, "v", "0", "00001")
    assert (record.intersection, record.union, record.iou) == (2, 4, 0.5)
    result = SegmentationMetrics([record]).compute()
    assert result["precision@0.5"] == 1.0  # IoU >= 0.5 (Locater)
    assert result["precision_strict@0.5"] == 0.0  # IoU > 0.5 (MTTR)


def test_precisions_and_map_definitions():
    # IoUs 1.0, 0.5, 0.0, 0.75, 0.6 (3/5), 0.7 (7/10), 0.55 (11/20): thresholds hit exactly count for >=
    metrics = SegmentationMetrics(_records([(4, 4), (2, 4), (0, 4), (3, 4), (3, 5), (7, 10), (11, 20)]))
    result = metrics.compute()
    ious = [1.0, 0.5, 0.0, 0.75, 0.6, 0.7, 0.55]
    assert result["overall_iou"] == pytest.approx(30 / 51)
    assert result["mean_iou"] == pytest.approx(sum(ious) / 7)
    expected = {0.5: 6, 0.6: 4, 0.7: 3, 0.8: 1, 0.9: 1}
    strict = {0.5: 5, 0.6: 3, 0.7: 2, 0.8: 1, 0.9: 1}
    for k in expected:
        assert result[f"precision@{k}"] == expected[k] / 7
        assert result[f"precision_strict@{k}"] == strict[k] / 7
    assert result["map_locater"] == pytest.approx(sum(expected.values()) / 35)
    # K = 0.50 .. 0.95: counts with IoU >= K
    ten = [6, 5, 4, 3, 3, 2, 1, 1, 1, 1]
    assert result["map_0.5:0.95"] == pytest.approx(sum(ten) / 70)
    assert result["num_frames"] == 7
    assert all(math.isnan(result[k]) for k in ("coco_ap", "coco_ap50", "coco_ap75"))  # no masks kept


def test_compute_keys_are_exact():
    result = SegmentationMetrics(_records([(1, 2)])).compute()
    thresholds = ("0.5", "0.6", "0.7", "0.8", "0.9")
    assert list(result) == [
        "overall_iou",
        "mean_iou",
        *(f"precision@{k}" for k in thresholds),
        *(f"precision_strict@{k}" for k in thresholds),
        "map_locater",
        "map_0.5:0.95",
        "coco_ap",
        "coco_ap50",
        "coco_ap75",
        "num_frames",
    ]


def test_all_frames_empty_gives_overall_iou_one():
    result = SegmentationMetrics(_records([(0, 0), (0, 0)])).compute()
    assert (
        result["overall_iou"] == 1.0 and result["mean_iou"] == 1.0 and result["precision_strict@0.9"] == 1.0
    )


def _scored_frames(count: int, seed: int) -> list[FrameRecord]:
    generator = torch.Generator().manual_seed(seed)
    records = []
    for index in range(count):
        gt = _square(12, 12, index % 5, index % 5 + 6, 1, 9)
        logits = torch.randn(6, 6, generator=generator) * 3 + 2 * torch.from_numpy(gt[::2, ::2]).float()
        records.append(score_frame(logits, gt, f"video{index % 4}", str(index % 3), f"{index:05d}"))
    return records


def test_order_and_partition_independence_bit_for_bit():
    records = _scored_frames(24, seed=0)
    reference = SegmentationMetrics(records).compute()
    assert not math.isnan(reference["coco_ap"])
    shuffled = list(records)
    random.Random(1).shuffle(shuffled)
    assert SegmentationMetrics(shuffled).compute() == reference
    # three "ranks" holding strided shards, merged
    merged = SegmentationMetrics(shuffled[0::3])
    merged.merge(SegmentationMetrics(shuffled[1::3])).merge(SegmentationMetrics(shuffled[2::3]))
    assert merged.compute() == reference


def test_duplicate_empty_and_inconsistent_inputs_are_errors():
    metrics = SegmentationMetrics(_records([(1, 2), (2, 2)]))
    metrics.add(_records([(1, 2)])[0])
    with pytest.raises(ValueError, match="scored twice: v/0/00000"):
        metrics.compute()
    with pytest.raises(ValueError, match="no scored frame"):
        SegmentationMetrics().compute()
    with pytest.raises(ValueError, match="intersection <= union"):
        FrameRecord("v", "0", "1", 3, 2)
    mixed = SegmentationMetrics(_scored_frames(2, seed=0) + [FrameRecord("w", "0", "1", 1, 1)])
    with pytest.raises(ValueError, match="only 2 of 3 records carry masks"):
        mixed.compute()


def test_bad_frame_inputs_name_the_frame():
    gt = np.zeros((4, 4), bool)
    with pytest.raises(ValueError, match="vid/2/00007: expected h x w"):
        score_frame(torch.zeros(2, 1, 4, 4), gt, "vid", "2", "00007")
    with pytest.raises(ValueError, match="vid/2/00007: expected an H x W ground-truth"):
        score_frame(torch.zeros(4, 4), np.zeros((1, 2, 4, 4)), "vid", "2", "00007")
    with pytest.raises(ValueError, match="bool or 0/1"):
        score_frame(torch.zeros(4, 4), np.full((4, 4), 255, np.uint8), "vid", "2", "00007")
    nan_logits = torch.zeros(4, 4)
    nan_logits[1, 2] = float("nan")
    with pytest.raises(ValueError, match="vid/2/00007: 1 logits are NaN"):
        score_frame(nan_logits, gt, "vid", "2", "00007")


def test_coco_ap_perfect_and_confidently_wrong(capsys):
    squares = [_square(16, 16, k, k + 6, 2, 9) for k in range(5)]
    perfect = SegmentationMetrics(
        [score_frame(_logits(g), g, "v", "0", f"{k:05d}") for k, g in enumerate(squares)]
    )
    result = perfect.compute()
    assert (result["coco_ap"], result["coco_ap50"], result["coco_ap75"]) == (1.0, 1.0, 1.0)
    assert capsys.readouterr().out == ""  # pycocotools' prints are silenced

    # frame 0: a confident miss (score ~1), the others are right but less confident (score ~0.73)
    wrong = SegmentationMetrics()
    for k, gt in enumerate(squares):
        logits = (
            _logits(_square(16, 16, 10, 16, 10, 16))
            if k == 0
            else torch.where(torch.from_numpy(gt), 1.0, -1.0)
        )
        wrong.add(score_frame(logits, gt, "v", "0", f"{k:05d}"))
    assert wrong.compute()["coco_ap"] < 0.8

    # empty ground truth: an empty prediction there changes nothing, a non-empty one is a false positive
    empty = np.zeros((16, 16), bool)
    quiet = SegmentationMetrics(perfect.records + [score_frame(_logits(empty), empty, "w", "0", "00000")])
    assert quiet.compute()["coco_ap"] == 1.0
    for k in range(3):
        # more confident than the true positives (logits 20 vs 10): ranked first
        frame = score_frame(2 * _logits(squares[k]), empty, "x", "0", f"{k:05d}")
        perfect.add(frame)
    assert perfect.compute()["coco_ap"] == pytest.approx(5 / 8, abs=0.01)  # 3 FPs, then 5 TPs


def test_coco_ap_is_nan_without_any_ground_truth():
    empty = np.zeros((4, 4), bool)
    records = [score_frame(_logits(_square(4, 4, 0, 2, 0, 2)), empty, "v", "0", "00001")]
    assert math.isnan(SegmentationMetrics(records).compute()["coco_ap"])


def test_table_and_csv(tmp_path):
    metrics = SegmentationMetrics(
        [FrameRecord("v", "1", "00003", 1, 2), FrameRecord("v", "0", "00001", 2, 2)]
    )
    table = markdown_table({"A2D-NORM": metrics.compute(), "JHMDB": metrics.compute()})
    lines = table.splitlines()
    assert lines[0] == "| metric | A2D-NORM | JHMDB |"
    for label, cell in (
        ("Overall IoU", "75.00"),
        ("P@0.5 (IoU>=K, Locater)", "100.00"),
        ("P@0.5 (IoU>K, MTTR)", "50.00"),
        ("mAP (mean P@0.5:0.9, Locater)", "60.00"),
        ("mAP (mean P@0.5:0.05:0.95)", "55.00"),
        ("AP (COCO segm)", "n/a"),
        ("scored frames", "2"),
    ):
        assert f"| {label} | {cell} | {cell} |" in lines
    path = write_per_frame_csv(metrics.records, tmp_path / "per_frame.csv")
    assert path.read_text().splitlines() == [
        "video,expression,frame,intersection,union,iou",
        "v,0,00001,2,2,1.000000",
        "v,1,00003,1,2,0.500000",
    ]
    again = read_per_frame_csv(path)
    assert [(r.key, r.intersection, r.union) for r in again] == [
        (r.key, r.intersection, r.union) for r in metrics.sorted_records()
    ]
    assert SegmentationMetrics(again).compute()["mean_iou"] == pytest.approx(0.75)
    path.write_text("video,expression,frame,intersection,union,iou\nv,0,00001,3,2,1.5\n")
    with pytest.raises(ValueError, match="per_frame.csv, line 2: .*intersection"):
        read_per_frame_csv(path)
    path.write_text("video,frame,iou\n")
    with pytest.raises(ValueError, match="per_frame.csv: header"):
        read_per_frame_csv(path)
