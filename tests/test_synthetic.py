"""The synthetic benchmark: determinism, layout, validator, kind rules, vocabulary and the TEMP property."""

import hashlib
import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from locater.data.check import check_split
from locater.data.layout import LayoutSplit
from locater.data.synthetic import (
    COLOURS,
    KINDS,
    SCENES_FILE,
    WORDS,
    Query,
    SyntheticError,
    generate_benchmark,
    generate_video,
    identical_twins,
    read_scenes,
    referents,
    train_kinds,
    validate_expression,
    validate_split,
    write_split,
)
from locater.data.synthetic.language import RELATION_MARGIN
from locater.data.synthetic.scenes import TEMP_TRACK_GAP, crossing_frame
from locater.tokenizer import UNK_ID, VOCAB_PATH, tokenize

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "data" / "make_synthetic.py"
SMALL = {"seed": 3, "num_train": 6, "num_test": 4, "size": 48}


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "bench"
    generate_benchmark(root, **SMALL)
    return root


def test_same_seed_same_bytes_other_seed_other_bytes(bench, tmp_path):
    generate_benchmark(tmp_path / "again", **SMALL, workers=2)  # the process pool must not change a byte
    generate_benchmark(tmp_path / "other", **{**SMALL, "seed": 4})
    assert _digest(bench) == _digest(tmp_path / "again")
    assert _digest(bench) != _digest(tmp_path / "other")


def test_splits_are_read_by_the_project_reader(bench):
    assert sorted(p.name for p in bench.iterdir()) == sorted(["train", *KINDS])
    for split in ("train", *KINDS):
        report = check_split(bench / split, decode=True)
        assert report.ok, report.problems
        data = LayoutSplit.open(bench / split)
        assert data.expressions_file.name == (
            "SYN_TRAIN_expressions.json" if split == "train" else f"SYN_{split}_test_expressions.json"
        )
        assert len(data.videos()) == (6 if split == "train" else 4)
        for sample in data.samples:
            assert sample.video.startswith(f"syn_{split.lower()}_")
            assert 12 <= sample.num_frames <= 24 and len(sample.frames) == sample.num_frames
            if split == "train":
                assert sample.labels == sample.frames
            else:
                assert max(3, sample.num_frames // 3) <= len(sample.labels) < sample.num_frames
            mask = data.load_mask(sample.video, sample.expression, sample.labels[0])
            assert mask.shape == (48, 48) and mask.any()
            assert data.load_frame(sample.video, sample.frames[0]).shape == (48, 48, 3)


def test_validator_accepts_every_split(bench):
    for split in ("train", *KINDS):
        records = read_scenes(bench / split)["videos"].values()
        assert len(records) == (6 if split == "train" else 4)
        per_kind = {"NORM": 1, "MUL": 1, "SPAT": 2, "TEMP": 2}  # SPAT, TEMP: one expression per twin
        assert validate_split(bench / split) == sum(per_kind[r["kind"]] for r in records)
        kinds = {record["kind"] for record in records}
        assert kinds <= set(KINDS) if split == "train" else kinds == {split}


def test_validator_rejects_an_ambiguous_expression():
    video = generate_video("SPAT", [1, 2], 64)
    expression = video.expressions[0]
    validate_expression(video, expression)
    expression.query.relation = None  # "the square" alone fits both twins
    with pytest.raises(SyntheticError, match="refers to"):
        validate_expression(video, expression)


def _twin_in_record(record: dict) -> int:
    objects = record["objects"]
    target = record["expressions"][0]["target"]
    key = [(o["shape"], o["colour"], o["size"]) for o in objects]
    return next(i for i, k in enumerate(key) if i != target and k == key[target])


def test_validator_rejects_edited_files(tmp_path):
    folder = write_split(tmp_path, "SPAT", 2, seed=0, size=48)
    scenes_path = folder / SCENES_FILE
    scenes = json.loads(scenes_path.read_text())
    record = scenes["videos"]["syn_spat_0000"]
    twin = _twin_in_record(record)
    # move the twin onto the target: the relation no longer picks one object
    target = record["objects"][record["expressions"][0]["target"]]
    record["objects"][twin].update(
        start=target["start"], velocity=target["velocity"], centres=target["centres"]
    )
    scenes_path.write_text(json.dumps(scenes))
    with pytest.raises(SyntheticError, match="syn_spat_0000"):
        validate_split(folder)

    folder = write_split(tmp_path, "NORM", 2, seed=0, size=48)
    expressions_path = folder / "SYN_NORM_test_expressions.json"
    written = json.loads(expressions_path.read_text())
    next(iter(written["syn_norm_0001"]["expressions"].values()))["exp"] = "the red circle"
    expressions_path.write_text(json.dumps(written))
    with pytest.raises(SyntheticError, match="syn_norm_0001"):
        validate_split(folder)


def test_videos_follow_the_rules_of_their_kind():
    for kind in KINDS:
        for index in range(12):
            video = generate_video(kind, [5, index], 64)
            expression = video.expressions[0]
            objects, target = video.objects, video.objects[expression.target]
            assert 2 <= len(objects) <= 5 and 12 <= video.num_frames <= 24
            assert video.frames.shape == (video.num_frames, 64, 64, 3) and video.frames.dtype == np.uint8
            assert video.masks.shape == (len(objects), video.num_frames, 64, 64)
            assert not (video.masks.sum(axis=0) > 1).any()  # visible pixels belong to one object only
            others = [o for i, o in enumerate(objects) if i != expression.target]
            if kind == "NORM":
                assert all(o.shape != target.shape for o in others) or all(
                    o.colour != target.colour for o in others
                )
            elif kind == "MUL":
                assert any(o.shape == target.shape for o in others) and not identical_twins(
                    objects, expression.target
                )
            elif kind == "SPAT":
                assert identical_twins(objects, expression.target) and expression.query.relation is not None
            else:
                assert identical_twins(objects, expression.target) and expression.query.motion is not None


def test_spat_and_temp_videos_describe_both_twins_on_the_same_frames():
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
    for kind in ("SPAT", "TEMP"):
        for index in range(10):
            video = generate_video(kind, [9, index], 64)
            first, second = video.expressions
            assert identical_twins(video.objects, first.target) == [second.target]
            assert first.labels == second.labels and first.sentence != second.sentence
            if kind == "SPAT":
                assert second.query.relation == opposite[first.query.relation]
            else:
                assert {first.query.motion, second.query.motion} == {
                    video.objects[first.target].motion,
                    video.objects[second.target].motion,
                }
                assert first.query.motion != second.query.motion
            for expression in (first, second):
                validate_expression(video, expression)
    for kind in ("NORM", "MUL"):
        assert len(generate_video(kind, [9, 0], 64).expressions) == 1


def test_sentences_are_single_wordpieces_of_bert_base_uncased():
    vocab = {word: index for index, word in enumerate(VOCAB_PATH.read_text().splitlines())}
    assert all(vocab.get(word, 30000) < 30000 for word in WORDS), sorted(w for w in WORDS if w not in vocab)
    sentences = {
        generate_video(kind, [0, i], 32).expressions[0].sentence for kind in KINDS for i in range(25)
    }
    assert len(sentences) > 40  # varied templates
    for sentence in sentences:
        assert set(sentence.split()) <= WORDS, sentence
    ids = tokenize(sorted(sentences))
    assert not (ids == UNK_ID).any()
    lengths = (ids != 0).sum(dim=1)
    assert torch.equal(lengths, torch.tensor([len(s.split()) + 2 for s in sorted(sentences)]))


def test_temp_twins_cannot_be_told_apart_in_any_single_frame():
    nearer_centre = {"target still": [], "twin still": [], "both move": []}
    for index in range(60):
        video = generate_video("TEMP", [7, index], 64)
        expression = video.expressions[0]
        twins = identical_twins(video.objects, expression.target)
        assert len(twins) == 1
        target, twin = video.objects[expression.target], video.objects[twins[0]]
        # appearance: the same shape, radius and colour, so the same pixels wherever both are visible
        assert (target.shape, target.colour, target.size, target.radius) == (
            twin.shape,
            twin.colour,
            twin.size,
            twin.radius,
        )
        for t in range(video.num_frames):
            for which in (expression.target, twins[0]):
                assert (video.frames[t][video.masks[which, t]] == COLOURS[target.colour]).all()
        # position: every left/right/top/bottom description fails on some labelled frame, because the two swap
        for relation in ("left", "right", "top", "bottom"):
            query = Query(shape=target.shape, colour=target.colour, relation=relation)
            assert any(
                referents(video.objects, query, f - 1, 64) != [expression.target] for f in expression.labels
            )
        # and absolute position gives nothing either: "the one nearer the frame centre" is right half the time
        pattern = (
            "target still"
            if target.motion == "still"
            else "twin still"
            if twin.motion == "still"
            else "both move"
        )
        for f in expression.labels:
            distance = [abs(np.subtract(o.centre(f - 1), 32)).sum() for o in (target, twin)]
            nearer_centre[pattern].append(distance[0] < distance[1])
        # the motion does tell them apart
        assert target.motion != twin.motion and expression.query.motion == target.motion
        # they pass on parallel tracks TEMP_TRACK_GAP apart: never closer than that, so one never hides the other
        # completely, yet closer than the 12% margin, so "upper" / "lower" never single one out
        axis = 0 if target.velocity[0] != 0 or twin.velocity[0] != 0 else 1
        gaps = {round(abs(target.centre(t)[1 - axis] - twin.centre(t)[1 - axis]), 6) for t in range(3)}
        assert len(gaps) == 1
        gap = gaps.pop()
        assert TEMP_TRACK_GAP[0] * 64 <= gap <= TEMP_TRACK_GAP[1] * 64 < RELATION_MARGIN * 64
        # crossing_frame: the first frame whose order along the motion axis differs from frame 0's, for both twins
        order = [np.sign(target.centre(t)[axis] - twin.centre(t)[axis]) for t in range(video.num_frames)]
        crossing = crossing_frame(video.objects, expression.target)
        assert 1 <= crossing < video.num_frames
        assert set(order[:crossing]) == {order[0]} and order[crossing] != order[0]
        assert crossing_frame(video.objects, twins[0]) == crossing
    for pattern, hits in nearer_centre.items():
        assert len(hits) > 50 and 0.35 < np.mean(hits) < 0.65, (pattern, np.mean(hits))
    # objects that never cross, or a target without exactly one twin: no crossing frame
    still = generate_video("NORM", 0, 64)
    assert crossing_frame(still.objects, still.expressions[0].target) is None


def test_train_mix_and_bad_arguments(tmp_path):
    assert set(train_kinds(30, seed=0, mix={"TEMP": 1.0})) == {"TEMP"}
    assert set(train_kinds(200, seed=0)) == set(KINDS)
    for bad in ({"NORM": -1.0, "TEMP": 1.0}, {"NORM": 0.0}, {"WALK": 1.0}):
        with pytest.raises(ValueError, match="train mix"):
            train_kinds(10, seed=0, mix=bad)
    with pytest.raises(ValueError, match="unknown kind"):
        generate_video("PLAIN", 0)
    foreign = tmp_path / "NORM"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not ours")
    with pytest.raises(SyntheticError, match="not a synthetic split"):
        write_split(tmp_path, "NORM", 1, seed=0, size=32)
    assert (foreign / "keep.txt").is_file()


def test_command_line_replaces_an_older_split(tmp_path, capsys):
    main = runpy.run_path(str(SCRIPT))["main"]
    arguments = ["--out", str(tmp_path), "--num-train", "0", "--size", "32", "--workers", "1"]
    main([*arguments, "--num-test", "3"])
    main([*arguments, "--num-test", "2"])
    output = capsys.readouterr().out
    assert "TEMP" in output and "2 expressions validated" in output
    assert not (tmp_path / "train").exists()
    assert sorted(p.name for p in (tmp_path / "MUL" / "allPngs320H").iterdir()) == [
        "syn_mul_0000",
        "syn_mul_0001",
    ]
    assert len(LayoutSplit.open(tmp_path / "MUL").samples) == 2
