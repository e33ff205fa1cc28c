"""Bad receivers beside a good one: one hangs, one resets, one takes 2 s.

Every event goes to four subscriptions. The fast receiver's copies must not
wait behind the others': each one arrives within ``_FAST_BOUND`` seconds of
its publish, while a slow request alone takes 2 s and a hanging one the whole
timeout. The slow copies must all arrive too; each hanging and resetting one
ends ``dead`` after its retries or, once its subscription's circuit breaker
has opened (at its default settings), waits visibly behind the open circuit;
every request is recorded as an attempt.
"""

from __future__ import annotations

import signal
import statistics
import time
from pathlib import Path

from faults.figures import Row, store_check, tally
from faults.receiver import Receiver
from faults.stack import Stack

__all__ = ["run"]

_GOOD = ["/ok/fast", "/slow/slow"]
_BAD = ["/hang/hang", "/reset/reset"]
_FAST_BOUND = 3.0
_MAX_DEATHS = 1  # two attempts each


def run(transport: str, directory: Path, *, short: bool = False) -> Row:
    """The fast receiver's latency, and every delivery accounted for."""
    row = Row("hanging / resetting / slow receivers", transport)
    events = 8 if short else 20
    receiver = Receiver(slow_seconds=2.0, hang_seconds=6.0)
    try:
        # Short timeouts and two attempts, so the hanging and resetting copies end
        # dead within the run; the lease and the rest are at their defaults.
        with Stack.open(transport, directory, http_timeout=2.5, http_connect_timeout=2.0,
                        max_deaths=_MAX_DEATHS, backoff="fixed", backoff_base=0.5) as stack:
            for path in _GOOD + _BAD:
                stack.subscribe(f"http://127.0.0.1:{receiver.port}{path}")
            worker = stack.worker(concurrency=4)
            published: dict[str, float] = {}
            for n in range(events):
                published[stack.app.publish("fault.receivers", {"n": n})] = time.monotonic()
                time.sleep(0.05)
            arrived = receiver.wait_for(2 * events, timeout=180)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not _settled(stack, 4 * events):
                time.sleep(0.5)
            worker.signal(signal.SIGTERM)
            worker.wait(timeout=30)
            hits = receiver.snapshot()
            checked = store_check(stack.app.store, hits, _GOOD + _BAD)
            dead, held = _bad_outcomes(stack, events)
        counted = tally(hits, published, _GOOD)
    finally:
        receiver.close()
    row.add(counted)
    fast = sorted(h.at - published[h.event_id] for h in hits
                  if h.path == "/ok/fast" and h.status == 200 and h.event_id in published)
    slow = sorted(h.at - published[h.event_id] for h in hits
                  if h.path == "/slow/slow" and h.status == 200 and h.event_id in published)
    worst = fast[-1] if fast else float("inf")
    row.notes.append(
        f"fast receiver: median {_median(fast):.2f} s, worst {worst:.2f} s after publish; "
        f"slow receiver: median {_median(slow):.2f} s, worst {slow[-1] if slow else 0:.2f} s; "
        f"hang/reset: {dead} of {2 * events} deliveries dead after {_MAX_DEATHS + 1} attempts "
        f"each, {held} waiting behind an open circuit; {checked.requests} requests received, "
        f"{checked.attempts} attempts recorded"
    )
    row.check(arrived, "the fast and slow copies did not all arrive within 180 s")
    row.check(worst <= _FAST_BOUND,
              f"the fast receiver was held back: a copy arrived {worst:.1f} s after its publish")
    row.check(dead + held == 2 * events,
              f"only {dead} of {2 * events} hang/reset deliveries are dead and {held} wait "
              "behind an open circuit")
    row.check(checked.unrecorded == 0,
              f"{checked.unrecorded} deliveries got requests that have no attempt row")
    return row


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _bad_outcomes(stack: Stack, events: int) -> tuple[int, int]:
    """Hang/reset deliveries that are dead, and those waiting behind an open circuit."""
    bad = [d for d in stack.app.store.recent_deliveries(limit=10 * events)
           if d.recipient.endswith(tuple(_BAD))]
    circuits = stack.app.store.circuit_health({d.subscription_id for d in bad})
    dead = sum(1 for d in bad if d.status == "dead")
    held = sum(1 for d in bad if d.status != "dead"
               and circuits[d.subscription_id].state != "closed")
    return dead, held


def _settled(stack: Stack, count: int) -> bool:
    deliveries = stack.app.store.recent_deliveries(limit=count * 2)
    good = [d for d in deliveries if not d.recipient.endswith(tuple(_BAD))]
    if len(deliveries) < count or any(d.status != "delivered" for d in good):
        return False
    dead, held = _bad_outcomes(stack, count // 4)
    return dead + held == len(deliveries) - len(good)
