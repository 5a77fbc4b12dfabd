import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from locater.data.layout import LayoutSplit
from locater.data.synthetic import (
    KINDS,
    SyntheticError,
    generate_benchmark,
    generate_video,
    referents,
    validate_split,
)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(folder)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    generate_benchmark(root / "a", seed=3, num_train=6, num_test=5, size=48)
    return root


def test_deterministic_and_seed_dependent(bench, tmp_path):
    generate_benchmark(tmp_path / "again", seed=3, num_train=6, num_test=5, size=48)
    generate_benchmark(tmp_path / "other", seed=4, num_train=6, num_test=5, size=48)
    assert _digest(bench / "a") == _digest(tmp_path / "again")
    assert _digest(bench / "a") != _digest(tmp_path / "other")


def test_layout_is_read_by_the_project_reader(bench):
    for split in ("train", *KINDS):
        data = LayoutSplit.open(bench / "a" / split)
        assert len(data.videos()) == (6 if split == "train" else 5)
        for sample in data.samples:
            assert 12 <= sample.num_frames <= 24
            assert len(sample.labels) >= 3
            if split == "train":
                assert sample.labels == sample.frames
            mask = data.load_mask(sample.video, sample.expression, sample.labels[0])
            assert mask.shape == (48, 48) and mask.any()
            assert data.load_frame(sample.video, sample.frames[0]).shape == (48, 48, 3)


def test_validator_accepts_every_split_and_rejects_ambiguity(bench):
    for split in ("train", *KINDS):
        assert validate_split(bench / "a" / split, 48) >= 5
    video = generate_video("SPAT", [1, 2], 64)
    expression = video.expressions[0]
    expression.query.relation = None  # "the square" alone is ambiguous between the twins
    from locater.data.synthetic import validate_expression

    with pytest.raises(SyntheticError):
        validate_expression(video, expression, 64)


def test_sentences_use_single_wordpieces():
    from locater.tokenizer import _bert_tokenizer

    vocab = _bert_tokenizer().vocab
    for kind in KINDS:
        for i in range(20):
            for e in generate_video(kind, [0, i], 48).expressions:
                assert all(word in vocab for word in e.sentence.split()), e.sentence


def test_temp_twins_cannot_be_told_apart_in_any_single_frame():
    for i in range(15):
        video = generate_video("TEMP", [7, i], 64)
        e = video.expressions[0]
        target = video.objects[e.target]
        twins = [
            j
            for j, o in enumerate(video.objects)
            if j != e.target and (o.shape, o.colour, o.size) == (target.shape, target.colour, target.size)
        ]
        assert len(twins) == 1
        twin = video.objects[twins[0]]
        # identical appearance: the same pixels when drawn alone
        assert (target.shape, target.colour, target.size, target.radius) == (
            twin.shape,
            twin.colour,
            twin.size,
            twin.radius,
        )
        # position does not identify it: left/right (or up/down) order flips across the labelled frames
        axis = 0 if abs(target.velocity[0]) + abs(twin.velocity[0]) > 0 else 1
        signs = {np.sign(target.centre(f - 1)[axis] - twin.centre(f - 1)[axis]) for f in e.labels}
        assert {-1.0, 1.0} <= signs
        # every spatial relation fails on some labelled frame (same margin as the validator)
        from locater.data.synthetic import Query

        for relation in ("left", "right", "top", "bottom"):
            query = Query(shape=e.query.shape, colour=e.query.colour, relation=relation)
            assert any(referents(video.objects, query, f - 1, 0.12 * 64) != [e.target] for f in e.labels)
        assert e.query.motion in ("left", "right", "up", "down", "still") and target.motion != twin.motion


def test_command_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "scripts/make_synthetic.py",
            "--out",
            str(tmp_path / "s"),
            "--num-train",
            "2",
            "--num-test",
            "2",
            "--size",
            "32",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "TEMP" in result.stdout and (tmp_path / "s" / "TEMP" / "SYN_TEMP_test_expressions.json").is_file()
