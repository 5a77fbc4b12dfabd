"""The Ref-YouTube-VOS local validation split: the rule, the list tool, training without those videos, bad input."""

import hashlib
import random

import numpy as np
import pytest
from fake_refvos import YTVOS_FRAMES, make_fake_ytvos_train, write_palette_png

import locater
from locater.cli import ytvos_local_val as tool
from locater.data.ytvos import YTVOSError, YTVOSSplit
from locater.data.ytvos_local_val import is_local_val, local_val_bucket, split_local_val
from locater.engine.sampler import build_train_dataset


def test_the_rule_is_the_documented_hash_and_holds_out_about_five_percent():
    # the formula of the docs, computed here independently, and two pinned ids of the real release's id style
    for video in ("005a527edd", "003234408d", "a9f23c9150"):
        digest = hashlib.sha256(f"locater-ytvos-local-val/{video}".encode()).digest()
        assert local_val_bucket(video) == int.from_bytes(digest[:8], "big") % 1000
    assert (local_val_bucket("005a527edd"), is_local_val("005a527edd")) == (44, True)
    assert (local_val_bucket("003234408d"), is_local_val("003234408d")) == (306, False)
    generator = random.Random(0)
    ids = ["".join(generator.choice("0123456789abcdef") for _ in range(10)) for _ in range(3471)]
    train, held_out = split_local_val(ids)
    assert 0.035 < len(held_out) / len(ids) < 0.065
    assert sorted(train + held_out) == sorted(ids) and not set(train) & set(held_out)
    # a video's side depends on its id alone: dropping other videos moves nothing
    assert split_local_val(ids[:100])[1] == [v for v in held_out if v in set(ids[:100])]


def test_list_tool_writes_the_held_out_ids(tmp_path, capsys):
    fake = make_fake_ytvos_train(tmp_path / "ytvos", held_out=2, kept=3)
    out = tmp_path / "lists" / "local_val.txt"
    assert tool.main(["--root", str(fake.root), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == fake.local_val
    assert "2 of the 5 train videos" in lines[0] and "mod 1000 < 50" in lines[1]
    assert f"local validation: 2 of 5 train videos, 4 expressions: {out}" in capsys.readouterr().out
    assert tool.main(["--root", str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_training_on_ytvos_leaves_the_local_val_videos_out(tmp_path):
    fake = make_fake_ytvos_train(tmp_path, held_out=2, kept=2)
    overrides = ["train.data.source=ytvos", f"train.data.ytvos_root={tmp_path}", "train.clip_length=2"]
    cfg = locater.load_config("configs/model/tiny.yaml", overrides)
    assert cfg.train.data.ytvos_exclude_local_val  # on by default
    dataset = build_train_dataset(cfg)
    assert sorted({s.video for s in dataset.source.samples}) == fake.train
    assert len(dataset) == 2 * 2 * len(YTVOS_FRAMES)  # 2 videos x 2 expressions x 4 labelled frames
    item = dataset[0]
    assert item["video"] in fake.train and item["frames"].shape[0] == 2
    everything = build_train_dataset(
        locater.load_config(
            "configs/model/tiny.yaml", [*overrides, "train.data.ytvos_exclude_local_val=false"]
        )
    )
    assert sorted({s.video for s in everything.source.samples}) == sorted(fake.train + fake.local_val)
    assert locater.load_config("configs/ytvos/train.yaml").train.data.ytvos_exclude_local_val


def test_subset_and_the_annotation_check_name_the_file(tmp_path):
    fake = make_fake_ytvos_train(tmp_path)
    split = YTVOSSplit.open(tmp_path, "train")
    held = split.subset(fake.local_val)
    assert list(held.videos()) == fake.local_val and set(held.object_ids) == {
        (v, e) for v in fake.local_val for e in "01"
    }
    held.check_referred_objects()
    with pytest.raises(YTVOSError, match="1 requested video.*not in the meta file: nope"):
        split.subset(["nope"])
    video = fake.local_val[0]
    annotation = tmp_path / "train/Annotations" / video / "00010.png"
    write_palette_png(annotation, np.zeros((5, 5), np.uint8))  # a mask of the wrong size
    with pytest.raises(
        YTVOSError, match=r"00010.png: annotation is 5 x 5 \(H x W\), its frame .* is 24 x 32"
    ):
        held.check_referred_objects()
    annotation.unlink()  # a missing annotation
    with pytest.raises(YTVOSError, match=f"annotation file missing: .*{video}/00010.png"):
        held.check_referred_objects()
    for frame in YTVOS_FRAMES:  # object 2 drawn nowhere: its expression has no mask
        ids = np.array(split.load_annotation(fake.local_val[1], frame))
        ids[ids == 2] = 0
        write_palette_png(tmp_path / "train/Annotations" / fake.local_val[1] / f"{frame}.png", ids)
    with pytest.raises(
        YTVOSError,
        match=f"meta_expressions.json: video '{fake.local_val[1]}', expression '1': object 2 has no mask",
    ):
        split.subset(fake.local_val[1:]).check_referred_objects()
