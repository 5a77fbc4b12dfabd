"""J&F (DAVIS region similarity and contour accuracy) in locater/engine/metrics.py.

The reference numbers below were produced by the public DAVIS-2017 evaluation code (repository
davisvideochallenge/davis2017-evaluation): ``davis2017/metrics.py`` (``db_eval_iou(gt, pred, void)`` and
``db_eval_boundary(gt, pred, void)`` with its default bound_th = 0.008) per frame, ``davis2017/utils.py``
(``db_statistics``) per object, and the summary as ``evaluation_method.py`` forms it (means over objects, J&F-Mean =
(J-Mean + F-Mean) / 2). "Skip" is the same with each object's first and last frame dropped, as
``davis2017/evaluation.py`` does for the semi-supervised task. The masks are :func:`jf_fixture.jf_fixture`; the
DAVIS code ran on exactly those arrays (numpy 2.4, scikit-image 0.26, OpenCV 5.1), and our numbers agree with its
numbers to the last bit per frame and within 3e-16 for the summaries.
"""

import json
import math
import random

import cv2
import numpy as np
import pytest
from jf_fixture import ellipse, jf_fixture, rect

from locater.engine.metrics import (
    JF_KEYS,
    JFMetrics,
    JFRecord,
    boundary_map,
    boundary_radius,
    contour_accuracy,
    davis_statistics,
    disk_kernel,
    read_jf_per_frame_csv,
    region_similarity,
    score_jf_frame,
    write_jf_per_expression_csv,
    write_jf_per_expression_json,
    write_jf_per_frame_csv,
)

TOL = 1e-9

# (split, video, expression, frame, J, F): db_eval_iou and db_eval_boundary on each fixture frame
DAVIS_FRAMES = [
    ("valid", "walk", "0", "00000", 1.0, 1.0),
    ("valid", "walk", "0", "00005", 0.8792134831460674, 0.8629032258064516),
    ("valid", "walk", "0", "00010", 0.65389369592089, 0.27419354838709675),
    ("valid", "walk", "0", "00015", 1.0, 1.0),
    ("valid", "walk", "0", "00020", 0.0, 0.0),
    ("valid", "walk", "0", "00025", 0.5844544095665172, 0.03636363636363637),
    ("valid", "walk", "0", "00030", 0.8814229249011858, 0.5794392523364486),
    ("valid", "walk", "0", "00035", 0.8370702541106129, 0.8266666666666667),
    ("valid", "walk", "1", "00000", 0.9397024275646045, 0.6546546546546547),
    ("valid", "walk", "1", "00005", 0.893, 0.5423728813559322),
    ("valid", "walk", "1", "00010", 1.0, 1.0),
    ("valid", "walk", "1", "00015", 0.1834710743801653, 0.6301369863013699),
    ("valid", "walk", "1", "00020", 0.0, 0.0),
    ("valid", "walk", "1", "00025", 0.25096666666666667, 0.0),
    ("valid", "walk", "1", "00030", 0.0, 0.25),
    ("valid", "skate", "0", "00000", 0.9616588858014558, 1.0),
    ("valid", "skate", "0", "00005", 0.9569732700634297, 0.9038929440389294),
    ("valid", "skate", "0", "00010", 0.4931801010060842, 0.6004656406872205),
    ("valid", "skate", "0", "00015", 0.7481205286770947, 0.6231236026828489),
    ("valid", "skate", "0", "00020", 0.5640282483569417, 0.0),
    ("valid", "skate", "0", "00025", 0.9836065573770492, 1.0),
]

DAVIS_SUMMARY = {
    "J&F": 0.6134650291932817,
    "J-Mean": 0.6602785847681006,
    "J-Recall": 0.7123015873015873,
    "J-Decay": 0.3603231159166209,
    "F-Mean": 0.5666514736184628,
    "F-Recall": 0.6765873015873015,
    "F-Decay": 0.4302771300995308,
}

DAVIS_SUMMARY_SKIP = {
    "J&F": 0.54129160583728,
    "J-Mean": 0.6075201680525658,
    "J-Recall": 0.6611111111111111,
    "J-Decay": 0.3078779619946776,
    "F-Mean": 0.4750630436219942,
    "F-Recall": 0.6166666666666667,
    "F-Decay": 0.49081695814878273,
}

# (split, video, expression, J-Mean, F-Mean) per object: every frame, then first and last dropped
DAVIS_OBJECTS = [
    ("valid", "walk", "0", 0.7295068459556591, 0.5724457911950375),
    ("valid", "walk", "1", 0.4667343098016338, 0.439594931758851),
    ("valid", "skate", "0", 0.7845945985470092, 0.6879136979014998),
]
DAVIS_OBJECTS_SKIP = [
    ("valid", "walk", "0", 0.6664974189224434, 0.4588166104822722),
    ("valid", "walk", "1", 0.46548754820936644, 0.4345019735314605),
    ("valid", "skate", "0", 0.6905755370258876, 0.5318705468522498),
]

# db_statistics on the first n of these values: (n, mean, recall, decay)
STAT_VALUES = [0.9, 0.2, 0.7, 0.6, 0.4, 0.95, 0.1, 0.55, 0.3, 0.8, 0.65, 0.45, 0.05]
DAVIS_STATISTICS = [
    (1, 0.9, 1.0, 0.0),
    (2, 0.55, 0.5, 0.7),
    (3, 0.6, 0.6666666666666666, -0.1499999999999999),
    (4, 0.6, 0.75, -0.09999999999999987),
    (5, 0.5599999999999999, 0.6, 0.050000000000000044),
    (6, 0.625, 0.6666666666666666, -0.125),
    (7, 0.55, 0.5714285714285714, 0.07499999999999996),
    (8, 0.55, 0.625, 0.06666666666666665),
    (9, 0.5222222222222223, 0.5555555555555556, 0.2833333333333333),
    (10, 0.55, 0.6, 0.04999999999999993),
    (11, 0.5590909090909091, 0.6363636363636364, 0.016666666666666607),
    (12, 0.55, 0.5833333333333334, 0.04999999999999993),
    (13, 0.5115384615384616, 0.5384615384615384, 0.11249999999999993),
]


@pytest.fixture(scope="module")
def fixture_records() -> list[JFRecord]:
    return [
        score_jf_frame(pred, gt, split, video, expression, frame, void=void)
        for split, video, expression, frame, pred, gt, void in jf_fixture()
    ]


def test_per_frame_matches_davis_code(fixture_records):
    assert [record.key for record in fixture_records] == [row[:4] for row in DAVIS_FRAMES]
    for record, (*_, j, f) in zip(fixture_records, DAVIS_FRAMES):
        assert record.j == pytest.approx(j, abs=TOL), record.key
        assert record.f == pytest.approx(f, abs=TOL), record.key
    # the functions of one frame give the same numbers
    for split, video, expression, frame, pred, gt, void in jf_fixture()[:8]:
        record = next(r for r in fixture_records if r.key == (split, video, expression, frame))
        assert region_similarity(pred, gt, void) == record.j
        assert contour_accuracy(pred, gt, void) == record.f


@pytest.mark.parametrize(
    "skip, summary, objects",
    [(False, DAVIS_SUMMARY, DAVIS_OBJECTS), (True, DAVIS_SUMMARY_SKIP, DAVIS_OBJECTS_SKIP)],
)
def test_summary_matches_davis_code(fixture_records, skip, summary, objects):
    result = JFMetrics(fixture_records).compute(skip_first_last=skip)
    assert set(JF_KEYS) <= set(result)
    for key, value in summary.items():
        assert result[key] == pytest.approx(value, abs=TOL), key
    assert result["num_objects"] == 3
    assert result["num_frames"] == len(DAVIS_FRAMES) - (6 if skip else 0)
    rows = JFMetrics(fixture_records).per_expression(skip_first_last=skip)
    # sorted by (split, video, expression): skate before walk
    expected = sorted(objects, key=lambda row: row[:3])
    assert [(r["split"], r["video"], r["expression"]) for r in rows] == [row[:3] for row in expected]
    for row, (*_, j, f) in zip(rows, expected):
        assert row["J"] == pytest.approx(j, abs=TOL)
        assert row["F"] == pytest.approx(f, abs=TOL)
        assert row["J&F"] == pytest.approx((j + f) / 2, abs=TOL)
    assert [row["frames"] for row in rows] == [n - (2 if skip else 0) for n in (6, 8, 7)]


@pytest.mark.parametrize("n, mean, recall, decay", DAVIS_STATISTICS)
def test_statistics_match_davis_code(n, mean, recall, decay):
    assert davis_statistics(np.array(STAT_VALUES[:n])) == pytest.approx((mean, recall, decay), abs=TOL)


def test_statistics_by_hand():
    # recall counts frames strictly above 0.5
    assert davis_statistics(np.array([0.5, 0.5, 0.75, 0.25]))[1] == 0.25
    # 9 frames: quarters are frames 0-2, 2-4, 4-6, 6-8 (edges round(k * 8 / 4) = 0, 2, 4, 6, 8)
    values = np.array([1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0])
    assert davis_statistics(values)[2] == 1.0
    # 5 frames: edges 0, 1, 2, 3, 4 -> first quarter frames 0-1, last quarter frames 3-4
    assert davis_statistics(np.array([1.0, 0.0, 0.4, 0.0, 1.0]))[2] == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        davis_statistics(np.array([]))


def test_boundary_map_by_hand():
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    expected = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(boundary_map(mask), expected)
    # the image border is not a boundary: a full mask has none
    assert not boundary_map(np.ones((5, 7), bool)).any()


def test_radius_and_disk():
    assert boundary_radius(480, 854) == 8  # DAVIS 480p
    assert boundary_radius(150, 200) == 2  # 0.008 x 250 is exactly 2: not rounded up to 3
    assert boundary_radius(60, 90) == 1
    assert boundary_radius(60, 90, bound_th=3) == 3
    for bad in (0.0, -1.0, math.nan, 2.5):
        with pytest.raises(ValueError, match="bound_th"):
            boundary_radius(60, 90, bound_th=bad)
    np.testing.assert_array_equal(
        disk_kernel(2),
        np.array(
            [[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]], np.uint8
        ),
    )
    # why the disk is built by hand: OpenCV's ellipse element is another shape at the 480p radius
    assert not np.array_equal(disk_kernel(8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (17, 17)))
    offsets = np.arange(-8, 9)
    np.testing.assert_array_equal(disk_kernel(8), offsets[:, None] ** 2 + offsets[None, :] ** 2 <= 64)


def test_perfect_and_empty_conventions():
    s = (60, 90)
    empty = np.zeros(s, bool)
    for mask in (ellipse(s, 30, 45, 10, 20), rect(s, 0, 60, 0, 30), rect(s, 10, 11, 5, 80), np.ones(s, bool)):
        assert region_similarity(mask, mask) == 1.0
        assert contour_accuracy(mask, mask) == 1.0
    assert (region_similarity(empty, empty), contour_accuracy(empty, empty)) == (1.0, 1.0)
    gt = ellipse(s, 30, 45, 10, 20)
    assert (region_similarity(empty, gt), contour_accuracy(empty, gt)) == (0.0, 0.0)
    assert (region_similarity(gt, empty), contour_accuracy(gt, empty)) == (0.0, 0.0)
    # a prediction inside the void only: nothing counts, as both empty
    void = rect(s, 0, 20, 0, 90)
    pred = rect(s, 5, 15, 10, 40)
    assert region_similarity(pred, empty, void) == 1.0
    assert contour_accuracy(pred, empty, void) == 1.0
    # 0/1 integer masks are accepted
    assert region_similarity(gt.astype(np.uint8), gt.astype(np.float32)) == 1.0


def test_contour_tolerance_at_480p():
    s = (480, 854)
    gt = rect(s, 100, 300, 200, 600)
    # shifted by the radius (8 px) every boundary pixel still has a match; by 9 the two vertical sides do not
    assert contour_accuracy(rect(s, 100, 300, 208, 608), gt) == 1.0
    assert contour_accuracy(rect(s, 100, 300, 209, 609), gt) < 1.0


def test_bad_input_is_named():
    gt = np.zeros((6, 8), bool)
    with pytest.raises(
        ValueError, match=r"valid/v/0/00003: predicted mask \(6, 9\) and ground truth \(6, 8\)"
    ):
        score_jf_frame(np.zeros((6, 9), bool), gt, "valid", "v", "0", "00003")
    with pytest.raises(ValueError, match=r"void mask \(5, 8\)"):
        score_jf_frame(gt, gt, "valid", "v", "0", "00003", void=np.zeros((5, 8), bool))
    with pytest.raises(ValueError, match="H x W predicted mask"):
        region_similarity(np.zeros((1, 6, 8), bool), gt)
    with pytest.raises(ValueError, match="bool or 0/1"):
        contour_accuracy(np.full((6, 8), 255, np.uint8), gt)
    with pytest.raises(ValueError, match="bool or 0/1"):
        region_similarity(np.full((6, 8), "a"), gt)
    with pytest.raises(ValueError, match="no pixels"):
        region_similarity(np.zeros((0, 8), bool), np.zeros((0, 8), bool))
    with pytest.raises(ValueError, match="j must be a number in"):
        JFRecord("valid", "v", "0", "00001", math.nan, 0.5)
    with pytest.raises(ValueError, match="f must be a number in"):
        JFRecord("valid", "v", "0", "00001", 0.5, 1.5)


def _synthetic_records() -> list[JFRecord]:
    records = []
    for split in ("train", "valid"):
        for video in ("a", "b"):
            for expression in ("0", "1"):
                n = 4 + len(records) % 5
                for t in range(n):
                    j = ((t * 7 + len(records) * 3) % 11) / 10
                    records.append(JFRecord(split, video, expression, f"{t:05d}", j, 1 - j / 2))
    return records


def test_order_of_arrival_does_not_matter():
    records = _synthetic_records()
    reference = JFMetrics(records)
    expected = reference.compute(), reference.per_expression(), reference.compute(skip_first_last=True)
    for seed in range(3):
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        rank0, rank1 = JFMetrics(shuffled[::2]), JFMetrics()
        rank1.extend(shuffled[1::2])
        merged = JFMetrics().merge(rank1).merge(rank0)
        assert merged.sorted_records() == reference.sorted_records()
        got = merged.compute(), merged.per_expression(), merged.compute(skip_first_last=True)
        assert got == expected  # bit for bit


def test_skip_first_last_drops_exactly_those_frames():
    # frames arrive out of order and their names sort in time order: 00002 < 00010 < 00011 < 00100
    records = [
        JFRecord("valid", "v", "0", "00100", 0.0, 0.0),  # last
        JFRecord("valid", "v", "0", "00010", 0.8, 0.6),
        JFRecord("valid", "v", "0", "00002", 0.0, 0.0),  # first
        JFRecord("valid", "v", "0", "00011", 0.6, 0.4),
    ]
    metrics = JFMetrics(records)
    skipped = metrics.compute(skip_first_last=True)
    assert skipped["J-Mean"] == pytest.approx(0.7) and skipped["F-Mean"] == pytest.approx(0.5)
    assert skipped["num_frames"] == 2
    every = metrics.compute()
    assert every["J-Mean"] == pytest.approx(0.35) and every["num_frames"] == 4
    assert metrics.per_expression(skip_first_last=True)[0]["frames"] == 2


def test_errors_of_the_accumulator():
    with pytest.raises(ValueError, match="nothing was scored"):
        JFMetrics().compute()
    short = JFMetrics([JFRecord("valid", "v", "0", f"{t:05d}", 1.0, 1.0) for t in range(2)])
    assert short.compute()["J-Mean"] == 1.0  # fine when every frame counts
    with pytest.raises(ValueError, match=r"valid/v/0: 2 frame\(s\); .* needs at least 3"):
        short.compute(skip_first_last=True)
    twice = JFMetrics([JFRecord("valid", "v", "0", "00001", 1.0, 1.0)] * 2)
    with pytest.raises(ValueError, match="frame scored twice: valid/v/0/00001"):
        twice.compute()


def test_files_round_trip(tmp_path, fixture_records):
    metrics = JFMetrics(list(reversed(fixture_records)))
    path = write_jf_per_frame_csv(metrics.records, tmp_path / "jf_per_frame.csv")
    again = read_jf_per_frame_csv(path)
    assert again == metrics.sorted_records()
    assert JFMetrics(again).compute() == metrics.compute()
    rows = metrics.per_expression()
    csv_text = write_jf_per_expression_csv(rows, tmp_path / "jf.csv").read_text().splitlines()
    assert csv_text[0] == "split,video,expression,frames,J,F,J&F"
    assert csv_text[1] == f"valid,skate,0,6,{rows[0]['J']:.6f},{rows[0]['F']:.6f},{rows[0]['J&F']:.6f}"
    assert json.loads(write_jf_per_expression_json(rows, tmp_path / "jf.json").read_text()) == rows
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporary file
    (tmp_path / "bad.csv").write_text("video,frame\n")
    with pytest.raises(ValueError, match="header"):
        read_jf_per_frame_csv(tmp_path / "bad.csv")
    (tmp_path / "bad_row.csv").write_text("split,video,expression,frame,j,f\nvalid,v,0,00001,0.5\n")
    with pytest.raises(ValueError, match="line 2"):
        read_jf_per_frame_csv(tmp_path / "bad_row.csv")
    with pytest.raises(ValueError, match="missing"):
        read_jf_per_frame_csv(tmp_path / "nothing.csv")
