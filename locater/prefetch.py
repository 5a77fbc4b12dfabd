"""Loading ahead of the model: one background thread that reads and pre-processes items while the model runs."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")

_END = object()


class Prefetcher(Generic[Item, Loaded]):
    """Yields ``load(item)`` for each of ``items`` in order, computed in a background thread at most ``depth`` ahead
    (``depth`` 0: no thread, each item is read and loaded when the consumer asks for it).

    An error in ``items`` or ``load`` is re-raised in the consumer, at the position where it happened. :meth:`close`
    (also on leaving a ``with`` block) stops the thread even when the consumer stopped early, and calls ``close()`` of
    ``items`` when it has one (a video decoder is released then, not at garbage collection). Close it (or use it as
    a context manager) whenever the consumer may stop early: the thread otherwise waits for room in its queue.
    """

    def __init__(self, items: Iterable[Item], load: Callable[[Item], Loaded], depth: int = 4) -> None:
        self._items: Iterable[Item] | None = None
        if depth <= 0:  # no thread: each item is loaded in the consumer's turn, nothing ahead of it
            self._items, self._load = items, load
            return
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items, load), daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items: Iterable[Item], load: Callable[[Item], Loaded]) -> None:
        try:
            for item in items:
                if not self._put(load(item)):
                    return
            self._put(_END)
        except BaseException as error:  # handed to the consumer
            self._put(error)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[Loaded]:
        if self._items is not None:
            for item in self._items:
                yield self._load(item)
            return
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the thread (it finishes the item it is loading) and wait for it."""
        if self._items is not None:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()
            return
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> Prefetcher[Item, Loaded]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
