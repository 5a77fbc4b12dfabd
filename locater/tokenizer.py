"""Sentence tokenisation: bert-base-uncased WordPiece ids, as the official Locater loader produces them.

The vocabulary ships with the package (``locater/assets/bert-base-uncased-vocab.txt``, Apache-2.0, see
``VOCAB_LICENSE.md`` beside it), so no download ever happens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

VOCAB_PATH = Path(__file__).parent / "assets" / "bert-base-uncased-vocab.txt"
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
MAX_LENGTH = 22  # the official loader: max_query_len 20 + [CLS] + [SEP]
PAD_ID = 0
UNK_ID = 100
EMBEDDING_SIZE = 30000  # rows of the official word embedding; larger ids are mapped to [UNK]
_EXAMINED: set[tuple[str, int]] = set()  # (sentence, max_length) already checked for loss: one warning each
_EXAMINED_LIMIT = 200_000  # forgotten past this many (a few MB), then a sentence may be warned about again


@lru_cache(maxsize=1)
def _bert_tokenizer():
    # ``BertTokenizer(vocab_file=...)`` silently builds a 5-token vocabulary in transformers 5.x;
    # ``vocab=path`` reads the file as intended (checked by tests/test_tokenizer.py).
    from transformers import BertTokenizer

    if not VOCAB_PATH.is_file():
        raise FileNotFoundError(f"bundled vocabulary missing: {VOCAB_PATH} (reinstall the locater package)")
    tokenizer = BertTokenizer(vocab=str(VOCAB_PATH), do_lower_case=True)
    if len(tokenizer.vocab) != 30522:
        raise RuntimeError(
            f"{VOCAB_PATH}: expected 30522 WordPiece entries, the tokenizer read {len(tokenizer.vocab)}"
        )
    return tokenizer


def tokenize(
    sentences: str | Sequence[str], max_length: int = MAX_LENGTH, vocab_limit: int = EMBEDDING_SIZE
) -> torch.Tensor:
    """Turn sentences into bert-base-uncased WordPiece ids.

    Lower-cased, ``[CLS] ... [SEP]``, truncated to ``max_length`` ids and 0-padded. Ids that the word embedding
    cannot hold (``>= vocab_limit``; the vocabulary has 30522 entries, the official embedding 30000 rows) are
    mapped to ``[UNK]`` (100) with a warning. A sentence that loses words is warned about once (per process):
    when it is truncated (the warning says how many tokens were dropped) and when half or more of its word
    tokens are ``[UNK]`` (characters the vocabulary lacks).

    Args:
        sentences: one sentence or a list of ``B`` sentences.
        max_length: number of ids per sentence, ``[CLS]``/``[SEP]`` included.
        vocab_limit: size of the word embedding that will read the ids.

    Returns:
        ``B x max_length`` int64 tensor.
    """
    if isinstance(sentences, str):
        sentences = [sentences]
    sentences = list(sentences)
    if not sentences:
        raise ValueError("tokenize() needs at least one sentence")
    for index, sentence in enumerate(sentences):
        if not isinstance(sentence, str) or not sentence.strip():
            raise ValueError(f"sentence {index} is empty or not a string: {sentence!r}")
    encoded = _bert_tokenizer()(
        [s.lower() for s in sentences], padding="max_length", max_length=max_length, truncation=True
    )
    ids = torch.tensor(encoded["input_ids"], dtype=torch.long)
    _warn_lossy(sentences, encoded["input_ids"], max_length)
    too_large = ids >= vocab_limit
    if too_large.any():
        for row in too_large.any(dim=1).nonzero().flatten().tolist():
            rare = sorted(set(ids[row][too_large[row]].tolist()))
            logger.warning(
                "sentence %r: WordPiece ids %s are beyond the %d-row word embedding; mapped to [UNK]",
                sentences[row],
                rare,
                vocab_limit,
            )
        ids[too_large] = UNK_ID
    return ids


def _warn_lossy(sentences: Sequence[str], rows: Sequence[Sequence[int]], max_length: int) -> None:
    """Warn (once per distinct sentence) about a sentence the model reads only in part: truncated to
    ``max_length`` ids, or with half or more of its word tokens ``[UNK]``. The full tokenisation is only redone for
    a sentence that fills its row (the only ones that can have been cut)."""
    for sentence, row in zip(sentences, rows):
        key = (sentence, max_length)
        if key in _EXAMINED:
            continue
        if len(_EXAMINED) >= _EXAMINED_LIMIT:
            _EXAMINED.clear()
        _EXAMINED.add(key)
        length = sum(1 for i in row if i != PAD_ID)
        words = list(row[1 : length - 1])  # without [CLS] and [SEP]
        if length >= max_length:
            tokens = _bert_tokenizer().tokenize(sentence.lower())
            if len(tokens) > len(words):
                logger.warning(
                    "sentence %r: %d word tokens, the model reads %d; %d dropped (%r)",
                    sentence,
                    len(tokens),
                    len(words),
                    len(tokens) - len(words),
                    _bert_tokenizer().convert_tokens_to_string(tokens[len(words) :]),
                )
        unknown = words.count(UNK_ID)
        if unknown and 2 * unknown >= len(words):
            logger.warning(
                "sentence %r: %d of its %d word tokens are [UNK] (characters the bert-base-uncased vocabulary "
                "lacks); the model reads little of it",
                sentence,
                unknown,
                len(words),
            )
