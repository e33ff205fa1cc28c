"""When a worker stops by itself (:class:`WorkerLimits`), what it did (:class:`WorkerReport`),
and how a ``--burst`` worker tells that its queues are drained (:class:`BurstWatch`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from asyncevents.core.retry.base import RetryManagement
from asyncevents.core.transport import describe

__all__ = ["BurstWatch", "WorkerLimits", "WorkerReport", "rss_mb"]

log = structlog.get_logger("asyncevents.worker")

# Burst: the queues are looked at once nothing came for this long (seconds),
# and at most this often...
BURST_QUIET = 0.1
# ...a retry due within this many seconds is waited for (later ones are left
# to the next worker)...
BURST_RETRIES = 1.0
# ...and this long past its due time: a TTL queue dead-letters it back a little
# late, the retry pump runs every 0.2 s.
_BURST_GRACE = 0.5
# Where the transport cannot count what waits: nothing received for this long.
_BURST_BLIND = 1.0
# The longest wait for the retry pump to end its turn before a look.
_PUMP_WAIT = 0.05


@dataclass(frozen=True)
class WorkerLimits:
    """When a worker stops by itself (None: never)."""

    concurrency: int = 1
    limit: int | None = None
    time_limit: float | None = None
    memory_limit_mb: float | None = None
    max_idle_time: float | None = None
    """Stop after this many seconds with nothing received and no retry due within them.

    On the SQL queue, messages leased by a worker that has not beaten since
    the idle worker first looked are not idle time (a killed worker's: they
    come back when their lease ends); a live holder beats within one period.
    """
    failure_limit: int | None = None
    """Stop after this many failed handlings in a row (requeued messages; a success resets)."""
    only_if_waiting: bool = False
    """Return at once, without consuming, when no message waits on the worker's queues."""
    burst: bool = False
    """Stop once the queues are drained (``asyncevents worker --burst``; report reason ``drained``).

    Drained means, at two looks 0.1 s apart with nothing received between
    them: nothing in the worker's hands (received, in a batch, or waiting to
    be settled); nothing received for 0.1 s; no message ready on its queues
    (the transport's count, through the consuming connection: on the SQL queue
    the rows claimed for it too, and those a silent worker holds, as with
    ``max_idle_time``); and no retry due within 1 s, nor one seen
    due that was not back yet (0.5 s of grace past its due time). A retry
    due later stays in its queue or schedule for the next worker. Where the
    transport cannot count its ready messages, drained is nothing received
    for 1 s. A message that keeps failing is requeued and taken again: use
    ``failure_limit`` or ``time_limit`` to bound that.
    """


@dataclass
class WorkerReport:
    """What a worker did before it stopped."""

    handled: int = 0
    failed: int = 0
    dropped: int = 0
    """Messages no handler could take (undecodable, malformed, pointing at nothing)."""
    reconnects: int = 0
    reason: str = ""
    skipped: bool = False
    """True when ``only_if_waiting`` found nothing waiting and the worker never consumed."""


def rss_mb() -> float:
    """This process's resident memory in MB."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1_048_576
    except (OSError, ValueError):  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class BurstWatch:
    """Tells a ``burst`` worker when its queues are drained (see :attr:`WorkerLimits.burst`).

    Asked on the consuming thread, only while nothing is in the worker's
    hands. ``waiting`` counts the ready messages of the worker's queues (None:
    the transport cannot tell). ``pump`` is held by the retry pump while it
    moves due retries to their queue, when they are in neither count.
    """

    def __init__(self, retries: RetryManagement, waiting: Callable[[], int | None],
                 pump: threading.Lock) -> None:
        self.retries = retries
        self.waiting = waiting
        self.pump = pump
        self._next = 0.0  # the next look, not before
        self._hold = 0.0  # a retry seen due soon: not before it came back
        self._first: float | None = None  # the look that found the queues drained

    def drained(self, last_activity: float, now: float) -> bool:
        """True once two looks in a row found nothing to do, with nothing received between."""
        if self._first is not None and last_activity > self._first:
            self._first = None  # something came since: look again from the start
        if now - last_activity < BURST_QUIET or now < self._next or now < self._hold:
            return False
        self._next = now + BURST_QUIET
        if not self._empty(last_activity, now):
            self._first = None
            return False
        if self._first is None:
            self._first = now
            return False
        return True

    def _empty(self, last_activity: float, now: float) -> bool:
        if not self.pump.acquire(timeout=_PUMP_WAIT):
            return False  # moving due retries to their queue right now
        try:
            due = self.retries.seconds_until_due()
            waiting = self.waiting()
        except Exception as exc:  # the store or broker away: the consuming loop rides it out
            log.warning("cannot tell whether the queues are drained", error=describe(exc))
            return False
        finally:
            self.pump.release()
        if due is not None and due <= BURST_RETRIES:
            self._hold = now + due + _BURST_GRACE
            return False
        if waiting is None:
            return now - last_activity >= _BURST_BLIND
        return waiting == 0
