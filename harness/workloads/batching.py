"""Dynamic batching: queries arrive one by one, batches leave, as a serving system forms them.

The oldest waiting query decides when a batch leaves: as soon as ``max_batch`` queries are
waiting, or once it has waited ``max_wait_s`` since it arrived, whichever comes first (what
Triton calls the maximum queue delay). Under load the oldest query has usually waited that
long already while the previous batch ran, so the next batch leaves at once with everything
queued, up to ``max_batch``; with few queries in flight a batch leaves after at most the
wait, with what came in meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Batching:
    """The batcher's two settings, recorded in every serving row."""

    max_batch: int  # the most queries run together in one call (>= 1)
    max_wait_s: float  # the longest the oldest query waits for others to join it (>= 0)


@dataclass(frozen=True)
class Query:
    id: int  # LoadGen's response id
    index: int  # which sample of the query sample library
    arrived_s: float  # when the system under test received it, on the batcher's clock


class BatchQueue:
    """A thread-safe queue that hands out batches under ``Batching``'s rule.

    ``put`` may be called from any thread (LoadGen's); ``next_batch`` from one consumer;
    ``close`` ends the stream: ``next_batch`` then drains what is left and returns None.
    """

    def __init__(self, batching: Batching, clock: Callable[[], float] = time.perf_counter) -> None:
        self.batching = batching
        self._clock = clock
        self._items: deque[Query] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self.sizes: Counter[int] = Counter()  # batch size -> how many batches of that size

    def put(self, queries: Iterable[tuple[int, int]]) -> None:
        """(response id, sample index) pairs, arriving now."""
        now = self._clock()
        with self._ready:
            self._items.extend(Query(qid, index, now) for qid, index in queries)
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()

    def next_batch(self) -> list[Query] | None:
        """The next batch, once the rule lets it leave; None when closed and drained."""
        limit, wait = self.batching.max_batch, self.batching.max_wait_s
        with self._ready:
            while not self._items and not self._closed:
                self._ready.wait()
            if not self._items:
                return None
            deadline = self._items[0].arrived_s + wait
            while len(self._items) < limit and not self._closed:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            batch = [self._items.popleft() for _ in range(min(limit, len(self._items)))]
        self.sizes[len(batch)] += 1
        return batch
