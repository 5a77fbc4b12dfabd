"""The Ref-YouTube-VOS local validation split: a fixed, deterministic share of the train videos held out.

The valid set's masks are not public (its numbers come from the challenge server), and no referring-segmentation
work we know of publishes the list of train videos it held out for local checks (docs/evaluation.md). So the split
is a rule on the video id alone, the one place it is defined:

    held out  <=>  int(sha256("locater-ytvos-local-val/" + video id)[:8 bytes], big-endian) mod 1000 < 50

About 5 % of the videos (about 174 of the 3471 train videos). The rule looks at nothing but the id, so it gives the
same videos on every machine and for any copy of the release, and a video added to or missing from a copy does not
move any other video between the two sides. Training on Ref-YouTube-VOS leaves these videos out
(``train.data.ytvos_exclude_local_val``, on by default); ``eval.ytvos_split=local_val`` scores them with J&F.
``tools/data/ytvos_local_val.py`` writes the list of a release to a text file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from locater.files import write_text_atomic

SALT = "locater-ytvos-local-val/"
BUCKETS = 1000
HELD_OUT_BUCKETS = 50  # 5 %


def local_val_bucket(video: str) -> int:
    """The bucket (0 .. 999) of a video id: the first 8 bytes of ``sha256(SALT + id)`` modulo 1000."""
    digest = hashlib.sha256((SALT + video).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def is_local_val(video: str) -> bool:
    """Whether a Ref-YouTube-VOS train video belongs to the local validation split."""
    return local_val_bucket(video) < HELD_OUT_BUCKETS


def split_local_val(videos: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(train, local_val)``: the ids of each side, each in the order given."""
    train, held_out = [], []
    for video in videos:
        (held_out if is_local_val(video) else train).append(video)
    return train, held_out


def local_val_list_text(videos: Iterable[str], source: str | Path) -> str:
    """The list file's text: a comment naming the rule and the source, then the held-out ids, sorted, one a line."""
    videos = list(videos)
    _, held_out = split_local_val(videos)
    head = (
        f"# Ref-YouTube-VOS local validation split: {len(held_out)} of the {len(videos)} train videos of "
        f"{source}\n# rule (locater/data/ytvos_local_val.py): sha256('{SALT}' + id), first 8 bytes, "
        f"mod {BUCKETS} < {HELD_OUT_BUCKETS}\n"
    )
    return head + "".join(f"{video}\n" for video in sorted(held_out))


def write_local_val_list(videos: Iterable[str], path: str | Path, source: str | Path) -> list[str]:
    """Write :func:`local_val_list_text` to ``path`` (atomically); returns the held-out ids, sorted."""
    videos = list(videos)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, local_val_list_text(videos, source))
    return sorted(split_local_val(videos)[1])
