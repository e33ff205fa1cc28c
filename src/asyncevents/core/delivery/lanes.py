"""Lanes: slow subscriptions keep to a share of a worker's delivery slots."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

__all__ = ["SLOW", "Slots", "SubscriptionLanes"]

#: A subscription whose deliveries take this long (seconds) is slow.
SLOW = 1.0
_DEFER_MAX = 60.0


class SubscriptionLanes:
    """Keeps slow subscriptions from taking every delivery slot of a worker.

    Owned by the engine's event loop, like the slots: no other thread reads it
    (dispatch, in an I/O thread, is handed :meth:`slow_ids` instead).

    A subscription is fast once its recent deliveries took under a second
    and none has been running (or waiting for a slot) that long, and slow
    once one took longer. Slow and new subscriptions together may hold all
    but a quarter of the slots, and one slow subscription half of them. Past
    that a delivery is deferred (back in line a moment later, no attempt
    recorded), so a hanging receiver
    cannot hold back the others' deliveries. With ``slots`` under 2
    (unknown, or one thread) nothing is ever deferred.

    Deferred deliveries of one subscription are spread out, about one of its
    durations apart per free slot, so a long backlog of a hanging receiver
    comes back roughly when there is room for it instead of churning.
    """

    def __init__(self, slots: int = 0) -> None:
        self.slots = slots
        self._running: dict[str, list[float]] = {}
        self._typical: dict[str, float] = {}  # moving average of durations, seconds
        self._deferred: dict[str, list[float]] = {}  # when deferred deliveries come back

    def _slow(self, key: str, now: float) -> bool:
        running = self._running.get(key)
        return self._typical.get(key, 0.0) >= SLOW or bool(
            running and now - running[0] >= SLOW)

    def slow_ids(self) -> frozenset[str]:
        """The subscriptions slow now: what dispatch leaves to the delivery queue."""
        now = time.monotonic()
        keys = self._typical.keys() | self._running.keys()
        return frozenset(key for key in keys if self._slow(key, now))

    def is_slow(self, key: str) -> bool:
        """True when subscription ``key`` is slow now (see the class docstring)."""
        return self._slow(key, time.monotonic())

    def _fast(self, key: str, now: float) -> bool:
        return key in self._typical and not self._slow(key, now)

    def _full(self, key: str, now: float) -> bool:
        """True when a delivery of ``key`` now would pass the share of its kind."""
        if self.slots < 2 or self._fast(key, now):
            return False
        held = sum(len(r) for k, r in self._running.items() if not self._fast(k, now))
        return held >= self.slots - max(1, self.slots // 4) or (
            self._slow(key, now) and len(self._running.get(key, ())) >= max(1, self.slots // 2))

    @property
    def shared(self) -> int:
        """Slots that slow and new subscriptions may hold together (all but a quarter)."""
        return self.slots - max(1, self.slots // 4) if self.slots >= 2 else max(1, self.slots)

    def is_known_fast(self, key: str) -> bool:
        """True once ``key``'s deliveries have proved quick (and none runs long now)."""
        return self._fast(key, time.monotonic())

    def must_defer(self, key: str) -> bool:
        """True when ``key`` is slow and its kind's share of the slots is taken.

        A new subscription is never deferred here: the engine makes it wait
        for a slot of the shared part instead (see ``shared``).
        """
        now = time.monotonic()
        return self._slow(key, now) and self._full(key, now)

    def start(self, key: str) -> float:
        """Count a delivery of ``key`` as running from now; its start time for ``leave``."""
        now = time.monotonic()
        self._running.setdefault(key, []).append(now)
        return now

    def leave(self, key: str, started: float) -> None:
        """A delivery that ``start`` started is over."""
        took = time.monotonic() - started
        running = self._running.get(key, [])
        if started in running:
            running.remove(started)
        if not running:
            self._running.pop(key, None)
        before = self._typical.get(key)
        self._typical[key] = took if before is None else 0.7 * before + 0.3 * took

    def defer_for(self, key: str) -> float:
        """Seconds to put a deferred delivery of ``key`` back for (and count it as waiting)."""
        now = time.monotonic()
        waiting = [t for t in self._deferred.get(key, ()) if t > now]
        typical = max(self._typical.get(key, 0.5), 0.5)
        delay = min(_DEFER_MAX, typical * (1 + len(waiting) // max(1, self.slots // 2)))
        # Whole half-seconds, then whole 5 s: few distinct RabbitMQ delay queues.
        delay = math.ceil(delay * 2) / 2 if delay < 10 else math.ceil(delay / 5) * 5
        waiting.append(now + delay)
        self._deferred[key] = waiting
        return delay


class Slots:
    """The engine's delivery slots, handed out so that slow receivers cannot hold the rest.

    Used from one event loop. A delivery waits for a slot; when one frees,
    a waiting delivery of a subscription known to be fast goes first (it will
    give the slot back in a moment); otherwise the subscriptions waiting take
    turns, one delivery each, and slow or new subscriptions together never
    hold more than :attr:`SubscriptionLanes.shared` slots, so one at least is
    always there for the fast ones. Whether a subscription is fast is asked
    when a slot frees, not when its delivery started waiting.
    """

    def __init__(self, lanes: SubscriptionLanes) -> None:
        self.lanes = lanes
        self.total = max(1, lanes.slots)
        self.shared = lanes.shared
        self._used = 0
        self._used_shared = 0
        self._waiting: dict[str, deque[asyncio.Future[bool]]] = {}

    async def acquire(self, key: str) -> bool:
        """Wait for a slot for a delivery of ``key``; True when taken as a fast one."""
        if not self._waiting:
            fast = self.lanes.is_known_fast(key)
            if self._room(fast):
                self._take(fast)
                return fast
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(future)
        self._grant()  # a free slot the others may not take may be this one's
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(future.result())  # granted as it was cancelled
            else:
                queue = self._waiting.get(key)
                if queue is not None and future in queue:
                    queue.remove(future)
                    if not queue:
                        del self._waiting[key]
            raise

    def release(self, fast: bool) -> None:
        """Give back a slot taken as ``fast`` (what ``acquire`` returned)."""
        self._used -= 1
        if not fast:
            self._used_shared -= 1
        self._grant()

    def _room(self, fast: bool) -> bool:
        """True when a delivery (fast or not) may take a slot now."""
        return self._used < self.total and (fast or self._used_shared < self.shared)

    def _take(self, fast: bool) -> None:
        self._used += 1
        if not fast:
            self._used_shared += 1

    def _grant(self) -> None:
        while self._waiting and self._used < self.total:
            key = next((k for k in self._waiting if self.lanes.is_known_fast(k)), None)
            fast = key is not None
            if key is None:
                if self._used_shared >= self.shared:
                    return
                key = next(iter(self._waiting))
            queue = self._waiting.pop(key)
            future = queue.popleft()
            if queue:
                self._waiting[key] = queue  # to the back: the others take their turn
            if future.cancelled():
                continue
            self._take(fast)
            future.set_result(fast)
