"""The core's RetryManagement implementations, registered ``trylast`` so a plugin can win.

- :class:`TransportDelays`: the transport holds the message itself (RabbitMQ
  TTL queues, a future ``visible_at`` on the SQL queue).
- :class:`DatabaseSchedule`: rows in the store, published by the worker's
  pump when due: for transports with no delays of their own.

:func:`retry_management` is the core's ``trylast`` implementation of the hook.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from asyncevents.core.clock import utcnow
from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.messages import MalformedMessage, Message, as_route, decode
from asyncevents.core.retry.base import RetryManagement
from asyncevents.core.settings import Settings
from asyncevents.core.store import Schedule

if TYPE_CHECKING:
    from asyncevents.core.store import Store
    from asyncevents.core.transport import Transport

__all__ = ["DatabaseSchedule", "TransportDelays", "retry_management"]

log = structlog.get_logger("asyncevents.retry")


class TransportDelays:
    """The transport's own delays (``transport.native_delays``)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        # What this process parked: enough for --max-idle-time to wait for its
        # own retries where the transport cannot tell (RabbitMQ). The engine's I/O
        # threads add to it while the worker's checks read it: one lock.
        self._due: list[float] = []
        self._due_lock = threading.Lock()

    def schedule(self, message: Message, delay: float) -> None:
        """Enqueue ``message`` with ``delay``."""
        self.transport.enqueue(message, delay=max(0.0, delay))
        if delay > 0:
            with self._due_lock:
                self._due.append(time.monotonic() + delay)

    def pump(self) -> int:
        """The transport moves due messages itself."""
        now = time.monotonic()
        with self._due_lock:
            self._due = [t for t in self._due if t > now]
        return 0

    def seconds_until_due(self) -> float | None:
        """The transport's answer, or else when the next message parked here comes back."""
        self.pump()
        with self._due_lock:
            soonest = min(self._due) if self._due else None
        candidates = [max(0.0, soonest - time.monotonic())] if soonest is not None else []
        told = self.transport.seconds_until_due()
        if told is not None:
            candidates.append(told)
        return min(candidates) if candidates else None

    def close(self) -> None:
        """Nothing to release: the transport owns its connections."""


class DatabaseSchedule:
    """A schedule table in the store, for transports with no delays of their own."""

    batch = 100
    lease = timedelta(seconds=30)

    def __init__(self, transport: Transport, store: Store) -> None:
        self.transport = transport
        self.store = store
        self.rows = Schedule(store)

    def schedule(self, message: Message, delay: float) -> None:
        """Hold ``message`` in the store; send it now when there is no delay."""
        if delay <= 0:
            self.transport.enqueue(message)
            return
        due = utcnow() + timedelta(seconds=delay)
        self.rows.add(message.route, json.dumps(message.body()), due)

    def pump(self) -> int:
        """Send every due row, then delete it."""
        rows = self.rows.claim(self.batch, self.lease)
        done: list[int] = []
        try:
            for row_id, route, body in rows:
                try:
                    message = decode(as_route(route), json.loads(body))
                except (MalformedMessage, ValueError) as exc:
                    log.error("malformed scheduled message dropped", problem=str(exc),
                              body=body[:200])
                else:
                    self.transport.enqueue(message)
                done.append(row_id)
        finally:
            self.rows.delete(done)
        return len(done)

    def seconds_until_due(self) -> float | None:
        """Seconds until the earliest row is due."""
        earliest = self.rows.next_due()
        if earliest is None:
            return None
        return max(0.0, float((earliest - utcnow()).total_seconds()))

    def close(self) -> None:
        """The store is shared; nothing to release here."""


@hookimpl(trylast=True)
def retry_management(settings: Settings, transport: Transport, store: Store) -> RetryManagement:
    """The core's default: the transport's own delays when it has them, else the schedule."""
    if transport.native_delays:
        return TransportDelays(transport)
    return DatabaseSchedule(transport, store)
