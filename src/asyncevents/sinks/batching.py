"""A small micro-batcher: calls that arrive together for the same key share one send.

The worker calls ``sink.deliver()`` from several threads at once. A sink whose
service takes many items per call (EventBridge ``PutEvents`` takes 10) hands
each item to ``MicroBatcher.submit(key, item)``: the first caller for a key
opens a batch and becomes its leader; callers arriving within ``window``
seconds join it; the leader sends the batch when the window ends or as soon
as it is full, and every caller gets the result at its own position.

There is no background thread: the leader sends from its own thread, so a
lone call waits at most ``window`` and nothing is left running after the
sink is closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["MicroBatcher"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Batch(Generic[T, R]):
    items: list[T] = field(default_factory=list)
    weight: int = 0
    closed: bool = False
    results: Sequence[R] = ()
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class MicroBatcher(Generic[K, T, R]):
    """Groups concurrent ``submit`` calls per key into calls of ``send(key, items)``.

    ``send`` must answer one result per item, in the same order. A batch
    holds at most ``max_items`` items whose weights add up to at most
    ``max_weight`` (an item heavier than that on its own is sent alone).
    ``window`` (seconds) is how long a batch stays open for more items;
    0 sends every item on its own, at once.
    """

    def __init__(self, send: Callable[[K, list[T]], Sequence[R]], *,
                 max_items: int, window: float, max_weight: int | None = None) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        if window < 0:
            raise ValueError("window must not be negative")
        self._send = send
        self._max_items = max_items
        self._max_weight = max_weight
        self._window = window
        self._cond = threading.Condition()
        self._open: dict[K, _Batch[T, R]] = {}

    def submit(self, key: K, item: T, weight: int = 0) -> R:
        """Send ``item`` with whatever else arrives for ``key`` now; return its own result.

        An exception raised by ``send`` is raised in every caller of that batch.
        """
        with self._cond:
            batch = self._open.get(key)
            if batch is not None and not self._fits(batch, weight):
                self._close(key, batch)  # its leader sends it now; we start the next one
                batch = None
            leader = batch is None
            if batch is None:
                batch = _Batch()
                self._open[key] = batch
            index = len(batch.items)
            batch.items.append(item)
            batch.weight += weight
            if len(batch.items) >= self._max_items or self._window == 0:
                self._close(key, batch)
            if leader:
                deadline = time.monotonic() + self._window
                while not batch.closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._close(key, batch)
                        break
                    self._cond.wait(remaining)
        if leader:
            self._run(key, batch)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.results[index]

    def _fits(self, batch: _Batch[T, R], weight: int) -> bool:
        if len(batch.items) >= self._max_items:
            return False
        return self._max_weight is None or batch.weight + weight <= self._max_weight

    def _close(self, key: K, batch: _Batch[T, R]) -> None:
        # Called with the condition held: no one may join a closed batch.
        batch.closed = True
        if self._open.get(key) is batch:
            del self._open[key]
        self._cond.notify_all()

    def _run(self, key: K, batch: _Batch[T, R]) -> None:
        try:
            results = self._send(key, list(batch.items))
            if len(results) != len(batch.items):
                raise RuntimeError(
                    f"batch send answered {len(results)} results for {len(batch.items)} items"
                )
            batch.results = results
        except BaseException as exc:
            batch.error = exc
        finally:
            batch.done.set()
