"""The background loader shared by evaluation and inference: order, errors, how far ahead, stopping early."""

import threading
import time

import pytest

from locater.prefetch import Prefetcher


def test_yields_every_loaded_item_in_order():
    with Prefetcher(range(20), lambda i: i * i, depth=3) as prefetcher:
        assert list(prefetcher) == [i * i for i in range(20)]


def test_an_error_while_loading_reaches_the_consumer_after_the_items_before_it():
    def load(i):
        if i == 3:
            raise OSError("frame 3 is unreadable")
        return i

    seen = []
    with Prefetcher(range(10), load, depth=2) as prefetcher, pytest.raises(OSError, match="frame 3"):
        for item in prefetcher:
            seen.append(item)
    assert seen == [0, 1, 2]


def test_loads_at_most_depth_ahead_of_the_consumer():
    loaded = []
    prefetcher = Prefetcher(range(100), lambda i: loaded.append(i) or i, depth=2)
    stream = iter(prefetcher)
    assert next(stream) == 0
    time.sleep(0.3)
    # one taken, two waiting in the queue, one loaded and waiting for room
    assert len(loaded) <= 1 + 2 + 1
    prefetcher.close()


class _Frames:
    """An endless frame source that records being closed (as a video decoder must be)."""

    def __init__(self):
        self.closed = threading.Event()

    def __iter__(self):
        i = 0
        while True:
            yield i
            i += 1

    def close(self):
        self.closed.set()


def test_close_stops_an_unfinished_stream_and_closes_its_source():
    frames = _Frames()
    prefetcher = Prefetcher(frames, lambda i: i, depth=2)
    assert next(iter(prefetcher)) == 0
    prefetcher.close()
    assert not prefetcher._thread.is_alive()  # it saw the stop (close waits at most 10 s for it)
    assert frames.closed.is_set()
