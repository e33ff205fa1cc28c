"""Lanes: slow subscriptions keep to a share of a worker's delivery slots."""

from __future__ import annotations

import math
import threading
import time

__all__ = ["SLOW", "SubscriptionLanes"]

#: A subscription whose deliveries take this long (seconds) is slow.
SLOW = 1.0
_DEFER_MAX = 60.0


class SubscriptionLanes:
    """Keeps slow subscriptions from taking every delivery slot of a worker.

    A subscription is fast while its recent deliveries took under a second
    and none has been running that long (a new one too: a burst of its
    deliveries after a restart goes out at once), and slow once one took
    longer. Slow subscriptions together may hold all but a quarter of the
    slots, and one slow subscription half of them. Past that a delivery is deferred
    (back in line a moment later, no attempt recorded), so a hanging receiver
    cannot hold back the others' deliveries. With ``slots`` under 2
    (unknown, or one thread) nothing is ever deferred.

    Deferred deliveries of one subscription are spread out, about one of its
    durations apart per free slot, so a long backlog of a hanging receiver
    comes back roughly when there is room for it instead of churning.
    """

    def __init__(self, slots: int = 0) -> None:
        self.slots = slots
        self._lock = threading.Lock()
        self._running: dict[str, list[float]] = {}
        self._typical: dict[str, float] = {}  # moving average of durations, seconds
        self._deferred: dict[str, list[float]] = {}  # when deferred deliveries come back

    def _slow(self, key: str, now: float) -> bool:
        running = self._running.get(key)
        return self._typical.get(key, 0.0) >= SLOW or bool(
            running and now - running[0] >= SLOW)

    def is_slow(self, key: str) -> bool:
        """True when subscription ``key`` is slow now (see the class docstring)."""
        with self._lock:
            return self._slow(key, time.monotonic())

    def _fast(self, key: str, now: float) -> bool:
        return not self._slow(key, now)

    def enter(self, key: str) -> float | None:
        """Start a delivery for subscription ``key``: its start time, or None to defer it."""
        now = time.monotonic()
        with self._lock:
            if self.slots >= 2 and not self._fast(key, now):
                held = sum(len(r) for k, r in self._running.items() if not self._fast(k, now))
                full = held >= self.slots - max(1, self.slots // 4)
                if full or (self._slow(key, now)
                            and len(self._running.get(key, ())) >= max(1, self.slots // 2)):
                    return None
            self._running.setdefault(key, []).append(now)
            return now

    def leave(self, key: str, started: float) -> None:
        """A delivery that ``enter`` started is over."""
        took = time.monotonic() - started
        with self._lock:
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
        with self._lock:
            waiting = [t for t in self._deferred.get(key, ()) if t > now]
            typical = max(self._typical.get(key, 0.5), 0.5)
            delay = min(_DEFER_MAX, typical * (1 + len(waiting) // max(1, self.slots // 2)))
            # Whole half-seconds, then whole 5 s: few distinct RabbitMQ delay queues.
            delay = math.ceil(delay * 2) / 2 if delay < 10 else math.ceil(delay / 5) * 5
            waiting.append(now + delay)
            self._deferred[key] = waiting
        return delay
