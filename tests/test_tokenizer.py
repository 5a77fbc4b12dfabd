import hashlib
import logging

import pytest
import torch

import locater
from locater.tokenizer import VOCAB_PATH, VOCAB_SHA256


def test_vocabulary_file_is_the_bert_base_uncased_one():
    data = VOCAB_PATH.read_bytes()
    assert hashlib.sha256(data).hexdigest() == VOCAB_SHA256
    assert len(data.decode("utf-8").splitlines()) == 30522


def test_reference_sentence_ids():
    ids = locater.tokenize(["the man in red is running on the left"])
    expected = [101, 1996, 2158, 1999, 2417, 2003, 2770, 2006, 1996, 2187, 102] + [0] * 11
    assert ids.dtype == torch.long
    assert ids.tolist() == [expected]


def test_lower_casing_and_batch_padding():
    ids = locater.tokenize(["The MAN In Red", "the man in red"])
    assert ids.shape == (2, 22)
    assert ids[0].tolist() == ids[1].tolist()
    assert ids[0, :6].tolist() == [101, 1996, 2158, 1999, 2417, 102]


def test_truncation_keeps_cls_and_sep():
    ids = locater.tokenize(" ".join(["dog"] * 40))
    assert ids.shape == (1, 22)
    assert ids[0, 0] == 101 and ids[0, -1] == 102
    assert (ids[0, 1:-1] == 3899).all()  # "dog"


def test_ids_beyond_the_embedding_become_unk_with_a_warning(caplog):
    # "x₤" -> "x", "##₤" (id 30100): the vocabulary's last 522 rows lie outside the 30000-row embedding
    with caplog.at_level(logging.WARNING, logger="locater.tokenizer"):
        ids = locater.tokenize(["a x₤ dog"])
    unmapped = locater.tokenize(["a x₤ dog"], vocab_limit=10**6)
    assert unmapped[0, :6].tolist() == [101, 1037, 1060, 30100, 3899, 102]
    assert ids[0, :6].tolist() == [101, 1037, 1060, 100, 3899, 102]
    assert "mapped to [UNK]" in caplog.text


def test_empty_sentence_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        locater.tokenize(["a dog", "  "])
