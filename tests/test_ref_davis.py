"""Ref-DAVIS17 reader (original release files) and the unsupervised-task protocol's steps."""

import re

import numpy as np
import pytest
from fake_refvos import DAVIS_SIZE, DAVIS_VAL, FILE_NAMES, davis_ids, make_fake_davis, write_palette_png

from locater.data.frames import DataError
from locater.data.ref_davis import SENTENCE_SETS, RefDAVIS, RefDAVISError, read_sentence_file
from locater.engine.davis_protocol import combine_by_argmax, match_objects, pair_scores


@pytest.fixture
def fake(tmp_path):
    return make_fake_davis(tmp_path)


def test_reader_reads_both_annotators_and_both_kinds(fake):
    davis = RefDAVIS.open(fake.root, "val", unsupervised=True)
    assert list(davis.videos()) == list(DAVIS_VAL)
    ids = [(s.video, s.expression) for s in davis.samples if s.video == "bike-packing"]
    assert ids == [
        ("bike-packing", f"{name}-{obj}") for name in (s.name for s in SENTENCE_SETS) for obj in (1, 2)
    ]
    by_id = {(s.video, s.expression): s for s in davis.samples}
    assert (
        by_id[("bike-packing", "annot2-first-1")].raw_sentence == "the person near the café"
    )  # Latin-1 file
    assert by_id[("bike-packing", "annot2-full-1")].sentence == "a man pushing his bike"
    assert by_id[("blackswan", "annot1-full-1")].sentence == "a swan swimming"
    sample = by_id[("blackswan", "annot1-first-1")]
    assert sample.frames == sample.labels == fake.frames["blackswan"] and sample.num_frames == 5
    assert davis.object_ids[("bike-packing", "annot2-full-2")] == 2
    assert davis.group("bike-packing", "annot2-full-2") == "annot2-full"
    assert (
        davis.sentence_set[("bike-packing", "annot1-first-1")].annotator,
        davis.sentence_set[("bike-packing", "annot1-first-1")].kind,
    ) == (1, "first")
    np.testing.assert_array_equal(
        davis.load_mask("bike-packing", "annot1-full-2", "00003"), davis_ids(2, 3) == 2
    )
    assert davis.load_frame("blackswan", "00000").shape == (*DAVIS_SIZE, 3)
    # Annotations_unsupervised numbers bike-packing's objects the other way round
    assert davis.unsupervised_objects == {"bike-packing": 2, "blackswan": 1}
    truth = davis.load_unsupervised_objects("bike-packing", "00002")
    np.testing.assert_array_equal(truth, np.stack([davis_ids(2, 2) == 2, davis_ids(2, 2) == 1]))
    assert davis.global_frames(sample, 3) == ["00000", "00001", "00002"]  # 1-indexed 1, 2, 3 of 5
    # the train image set, with the sentence files' misspelt "clasic-car" read as classic-car
    train = RefDAVIS.open(fake.root, "train")
    assert [(s.video, s.expression) for s in train.samples] == [
        ("classic-car", f"{s.name}-1") for s in SENTENCE_SETS
    ]
    assert train.unsupervised_objects == {}
    with pytest.raises(RefDAVISError, match="unsupervised annotations were not opened"):
        train.load_unsupervised_objects("classic-car", "00000")


def test_missing_or_wrong_size_annotation_is_named(fake):
    annotations = fake.root / "DAVIS/Annotations/480p/blackswan"
    write_palette_png(annotations / "00003.png", np.zeros((7, 9), np.uint8))
    with pytest.raises(
        RefDAVISError,
        match=r"blackswan/00003.png: annotation is 7 x 9 \(H x W\), its frame .*00003.jpg is 30 x 48",
    ):
        RefDAVIS.open(fake.root)
    (annotations / "00003.png").unlink()
    with pytest.raises(
        RefDAVISError, match="annotation file missing: .*Annotations/480p/blackswan/00003.png"
    ):
        RefDAVIS.open(fake.root)
    write_palette_png(annotations / "00003.png", davis_ids(1, 3))
    RefDAVIS.open(fake.root)  # back to a good release
    unsupervised = fake.root / "DAVIS/Annotations_unsupervised/480p/bike-packing/00001.png"
    write_palette_png(unsupervised, np.zeros((30, 47), np.uint8))
    RefDAVIS.open(fake.root)  # not read unless asked for
    with pytest.raises(
        RefDAVISError, match=r"Annotations_unsupervised/480p/bike-packing/00001.png: annotation is 30 x 47"
    ):
        RefDAVIS.open(fake.root, unsupervised=True)
    (fake.root / "DAVIS/Annotations_unsupervised").rename(fake.root / "elsewhere")
    with pytest.raises(RefDAVISError, match="Annotations_unsupervised/480p: folder missing"):
        RefDAVIS.open(fake.root, unsupervised=True)


def test_an_object_without_a_mask_is_named_with_its_sentence_line(fake):
    for t, frame in enumerate(fake.frames["bike-packing"]):  # object 2 erased from every frame
        ids = davis_ids(2, t)
        ids[ids == 2] = 0
        write_palette_png(fake.root / "DAVIS/Annotations/480p/bike-packing" / f"{frame}.png", ids)
    with pytest.raises(
        RefDAVISError,
        match=r"Davis17_annot1.txt, line 2: video 'bike-packing', object 2 has no mask in any annotation of .*Annotations/480p/bike-packing",
    ):
        RefDAVIS.open(fake.root)


@pytest.mark.parametrize(
    "line, message",
    [
        ("blackswan 1", "expected '<video> <object id> \"<sentence>\"'"),
        ('blackswan one "a swan"', "object id must be an integer in 1..254, got 'one'"),
        ('blackswan 255 "a swan"', "object id must be an integer in 1..254, got '255'"),
        ("blackswan 2 a swan", "the sentence must be in double quotes, got 'a swan'"),
        ('blackswan 2 "  "', "empty sentence"),
        ('black-swan 2 "a swan"', "video 'black-swan' is in no DAVIS/ImageSets/2017 list"),
        ('blackswan 1 "the same object again"', "video 'blackswan', object 1 already described on line 3"),
        ('../x 1 "escape"', "unsafe video name '../x'"),
    ],
)
def test_malformed_sentence_lines_are_named(fake, line, message):
    path = fake.root / "davis_text_annotations" / FILE_NAMES[(1, "full")]
    path.write_text(path.read_text() + "\n" + line + "\n")
    with pytest.raises(DataError, match=f"Davis17_annot1_full_video.txt, line 6: {re.escape(message)}"):
        RefDAVIS.open(fake.root)


def test_missing_files_and_sentences(fake):
    text = fake.root / "davis_text_annotations"
    path = text / FILE_NAMES[(2, "full")]
    lines = path.read_bytes().decode("latin-1").splitlines()
    path.write_text("\n".join(line for line in lines if not line.startswith("blackswan")) + "\n")
    with pytest.raises(
        RefDAVISError, match="Davis17_annot2_full_video.txt: no sentence for video 'blackswan' of .*val.txt"
    ):
        RefDAVIS.open(fake.root)
    path.unlink()
    with pytest.raises(RefDAVISError, match="sentence file missing: .*Davis17_annot2_full_video.txt"):
        RefDAVIS.open(fake.root)
    with pytest.raises(RefDAVISError, match="unknown DAVIS-2017 image set 'test'"):
        RefDAVIS.open(fake.root, "test")
    with pytest.raises(RefDAVISError, match="DAVIS/JPEGImages/480p: folder missing"):
        RefDAVIS.open(fake.root / "nowhere")
    assert (
        read_sentence_file(text / FILE_NAMES[(1, "first")], {"blackswan", "bike-packing", "classic-car"})[
            "classic-car"
        ][1].text
        == "an old car"
    )


def test_combine_by_argmax_keeps_what_is_above_half_and_the_larger_score():
    probabilities = np.array(
        [[[0.9, 0.6, 0.5, 0.2]], [[0.7, 0.8, 0.5, 0.05]]], np.float32
    )  # 2 objects, 1 x 4
    np.testing.assert_array_equal(combine_by_argmax(probabilities), [[1, 2, 0, 0]])
    tie = np.full((2, 1, 1), 0.75, np.float32)
    assert combine_by_argmax(tie)[0, 0] == 1  # a tie goes to the lower index
    # the same labels as the rule written out (zero what is not above 0.5, background 0.1 in front, arg-max)
    maps = (
        np.round(np.random.default_rng(0).random((3, 20, 30)) * 4).astype(np.float32) / 4
    )  # ties, exact 0.5
    background = np.full((1, 20, 30), 0.1, np.float32)
    literal = np.concatenate([background, np.where(maps > 0.5, maps, 0)]).argmax(axis=0)
    np.testing.assert_array_equal(combine_by_argmax(maps), literal)
    with pytest.raises(ValueError, match="N x H x W"):
        combine_by_argmax(np.zeros((3, 3)))


def test_pairing_finds_swapped_objects_and_pads_missing_predictions():
    truth = np.stack([davis_ids(2, 0) == 1, davis_ids(2, 0) == 2])
    j, f = pair_scores(truth[::-1], truth)  # predictions in the other order
    assert j.shape == f.shape == (2, 2)
    np.testing.assert_array_equal(j, [[0.0, 1.0], [1.0, 0.0]])
    assert match_objects(j[None], f[None]) == [(1, 0), (0, 1)]
    j, f = pair_scores(truth[:1], truth)  # one prediction for two objects: an empty one is added
    assert j.shape == (2, 2) and j[1].tolist() == [0.0, 0.0] and f[1].tolist() == [0.0, 0.0]
    assert match_objects(j[None], f[None]) == [(0, 0), (1, 1)]
    with pytest.raises(ValueError, match="T x P x M"):
        match_objects(np.zeros((0, 2, 2)), np.zeros((0, 2, 2)))
