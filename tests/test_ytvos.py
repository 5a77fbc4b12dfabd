import json
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from locater.data.ytvos import SubmissionError, SubmissionWriter, YTVOSError, YTVOSSplit

FRAMES = ["00000", "00005", "00010", "00015", "00020", "00025"]


def _fake_ytvos(root, split="train"):
    """Two videos; video "v0" holds objects 1 and 2 (palette PNGs), "v1" object 1 only."""
    meta = {"videos": {}}
    for v, frames in (("v0", FRAMES), ("v1", FRAMES[:3])):
        expressions = {"0": {"exp": "A  Red Ball", "obj_id": "1"}, "1": {"exp": "the dog", "obj_id": "2"}}
        if v == "v1":
            expressions = {"0": {"exp": "a cat", "obj_id": "1"}}
        if split == "valid":
            expressions = {k: {"exp": e["exp"]} for k, e in expressions.items()}
        meta["videos"][v] = {"expressions": expressions, "frames": frames}
        for t, frame in enumerate(frames):
            image = np.full((8, 10, 3), 20 * t, np.uint8)
            (root / split / "JPEGImages" / v).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / "JPEGImages" / v / f"{frame}.jpg"), image)
            if split == "train":
                ids = np.zeros((8, 10), np.uint8)
                ids[1:3, t : t + 2] = 1
                ids[5:7, 6:9] = 2
                png = Image.fromarray(ids, mode="P")
                png.putpalette([0, 0, 0, 236, 95, 103, 249, 145, 87] + [0] * (256 * 3 - 9))
                (root / split / "Annotations" / v).mkdir(parents=True, exist_ok=True)
                png.save(root / split / "Annotations" / v / f"{frame}.png")
    (root / "meta_expressions" / split).mkdir(parents=True, exist_ok=True)
    (root / "meta_expressions" / split / "meta_expressions.json").write_text(json.dumps(meta))


def test_train_reader(tmp_path):
    _fake_ytvos(tmp_path)
    split = YTVOSSplit.open(tmp_path, "train")
    assert [(s.video, s.expression) for s in split.samples] == [("v0", "0"), ("v0", "1"), ("v1", "0")]
    first = split.samples[0]
    assert first.sentence == "a red ball" and first.frames == FRAMES and first.labels == FRAMES
    assert first.num_frames == 6 and list(split.videos()) == ["v0", "v1"]
    mask = split.load_mask("v0", "0", "00010")  # object 1 at columns 2..3 in the third frame
    assert mask.shape == (8, 10) and mask.sum() == 4 and mask[1:3, 2:4].all()
    assert split.load_mask("v0", "1", "00010").sum() == 6
    assert split.load_frame("v0", "00000").shape == (8, 10, 3)
    assert split.global_frames(first, 3) == ["00000", "00010", "00020"]  # step 2: 1-indexed 1, 3, 5
    picks = split.random_global_frames(first, 3, np.random.default_rng(0))
    assert all(p in FRAMES[2 * i : 2 * i + 2] for i, p in enumerate(picks))


def test_valid_reader_and_errors(tmp_path):
    _fake_ytvos(tmp_path, "valid")
    split = YTVOSSplit.open(tmp_path, "valid")
    assert not split.has_masks and all(s.labels == [] for s in split.samples)
    with pytest.raises(YTVOSError, match="has no masks"):
        split.load_mask("v0", "0", "00000")
    with pytest.raises(YTVOSError, match="train/JPEGImages: folder missing"):
        YTVOSSplit.open(tmp_path, "train")
    (tmp_path / "train/JPEGImages").mkdir(parents=True)
    with pytest.raises(YTVOSError, match="meta file not found"):
        YTVOSSplit.open(tmp_path, "train")
    (tmp_path / "meta_expressions/valid/meta_expressions.json").write_text("{}")
    with pytest.raises(YTVOSError, match="meta_expressions.json: malformed JSON"):
        YTVOSSplit.open(tmp_path, "valid")


def test_rgb_annotation_is_refused(tmp_path):
    _fake_ytvos(tmp_path)
    cv2.imwrite(str(tmp_path / "train/Annotations/v1/00000.png"), np.zeros((8, 10, 3), np.uint8))
    split = YTVOSSplit.open(tmp_path)
    with pytest.raises(YTVOSError, match="00000.png: expected a palette"):
        split.load_mask("v1", "0", "00000")


def test_submission_zip(tmp_path):
    _fake_ytvos(tmp_path, "valid")
    split = YTVOSSplit.open(tmp_path, "valid")
    out = tmp_path / "out" / "submission.zip"
    with SubmissionWriter(out, split) as writer:
        for sample in split.samples:
            for i, frame in enumerate(sample.frames):
                writer.add(sample.video, sample.expression, frame, np.eye(8, 10, k=i, dtype=bool))
    with zipfile.ZipFile(out) as archive:
        names = sorted(archive.namelist())
        assert len(names) == 6 + 6 + 3 and "Annotations/v0/1/00025.png" in names
        data = np.frombuffer(archive.read("Annotations/v1/0/00005.png"), np.uint8)
    mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    assert mask.shape == (8, 10) and set(np.unique(mask)) == {0, 255} and mask[0, 1] == 255


def test_submission_refuses_incomplete_or_unknown(tmp_path):
    _fake_ytvos(tmp_path, "valid")
    split = YTVOSSplit.open(tmp_path, "valid")
    out = tmp_path / "submission.zip"
    writer = SubmissionWriter(out, split)
    with pytest.raises(SubmissionError, match="frame '00030' not listed"):
        writer.add("v1", "0", "00030", np.zeros((8, 10)))
    with pytest.raises(SubmissionError, match="expression '7' not in the meta file"):
        writer.add("v1", "7", "00000", np.zeros((8, 10)))
    writer.add("v1", "0", "00000", np.zeros((8, 10)))
    with pytest.raises(SubmissionError, match="added twice"):
        writer.add("v1", "0", "00000", np.zeros((8, 10)))
    with pytest.raises(SubmissionError, match="14 of 15 masks missing .*v0/0/00000"):
        writer.close()
    assert not out.exists() and not list(tmp_path.glob(".*.tmp*"))
