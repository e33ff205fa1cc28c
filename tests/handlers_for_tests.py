"""Python handlers for tests/test_handlers.py (``handler_modules = ["tests.handlers_for_tests"]``).

Each records the events it is called with in ``CALLS`` (by handler name), so a
test sees exactly which attempts reached which handler.
"""

from __future__ import annotations

import threading

from asyncevents import Event, PermanentSinkError, RetryableSinkError, handler

CALLS: dict[str, list[Event]] = {}
_lock = threading.Lock()


def _record(name: str, event: Event) -> None:
    with _lock:
        CALLS.setdefault(name, []).append(event)


def calls(name: str) -> list[Event]:
    """The events handler ``name`` was called with, in order."""
    with _lock:
        return list(CALLS.get(name, []))


@handler("test.flaky.*")
def flaky(event: Event) -> None:
    """Fails on its first two attempts, then succeeds (and on every replay)."""
    _record("flaky", event)
    if event.attempt <= 2:
        raise RuntimeError(f"flaky handler, attempt {event.attempt}")


@handler("test.permanent")
def permanent(event: Event) -> None:
    """Refuses every event for good."""
    _record("permanent", event)
    raise PermanentSinkError(f"order {event.data.get('id')} is cancelled")


@handler("test.later")
def later(event: Event) -> None:
    """Asks to be tried again later, once."""
    _record("later", event)
    if event.attempt == 1:
        raise RetryableSinkError("the warehouse is busy", retry_after=0.2)


@handler("test.filtered", filter="data.total:[100 TO *]", retry_policy={"max_deaths": 2})
def big_orders(event: Event) -> None:
    """Only payloads whose total is at least 100."""
    _record("big_orders", event)
