"""RetryManagement: the interface that puts a message back in line after a delay.

It serves failed deliveries (with their death count in the body) and delayed
publishes alike. The ``retry_management`` hook picks the implementation for
a transport; the core ships two, registered ``trylast`` so a plugin can win:

- ``AmqpDelayQueues``: RabbitMQ TTL queues that dead-letter back.
- ``DatabaseSchedule``: rows in the store, republished by the worker's pump.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import delete, func, insert, or_, select, update

from asyncevents.core.clock import utcnow
from asyncevents.core.store import Store
from asyncevents.core.store.schema import schedule
from asyncevents.core.topology import Route, delay_ms
from asyncevents.core.transport import Broker

__all__ = ["AmqpDelayQueues", "DatabaseSchedule", "RetryManagement"]


@runtime_checkable
class RetryManagement(Protocol):
    """Puts a message back on ``route`` no earlier than ``delay`` seconds from now."""

    def schedule(self, route: Route, body: dict[str, Any], delay: float) -> None:
        """Hold ``body`` for ``delay`` seconds, then publish it to ``route``."""

    def pump(self) -> int:
        """Publish what is due (called often by the worker); return how many."""

    def seconds_until_due(self) -> float | None:
        """Seconds until the next held message is due, or None when none is known."""

    def close(self) -> None:
        """Release resources."""


class AmqpDelayQueues:
    """RabbitMQ: one TTL queue per distinct delay, dead-lettering into the route."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        # Only what this process parked: enough for --max-idle-time to wait for
        # its own retries; other processes' retries wake it when they arrive.
        self._due: list[float] = []

    def schedule(self, route: Route, body: dict[str, Any], delay: float) -> None:
        """Park ``body`` in the delay queue for ``delay`` (rounded up to 100 ms)."""
        if delay <= 0:
            self.broker.publish(route, body)
            return
        ms = delay_ms(delay)
        self.broker.publish_delayed(route, body, ms)
        self._due.append(time.monotonic() + ms / 1000)

    def pump(self) -> int:
        """RabbitMQ moves due messages itself."""
        now = time.monotonic()
        self._due = [t for t in self._due if t > now]
        return 0

    def seconds_until_due(self) -> float | None:
        """Seconds until the next message this process parked comes back."""
        self.pump()
        return max(0.0, min(self._due) - time.monotonic()) if self._due else None

    def close(self) -> None:
        """Nothing to release: the broker owns the connections."""


class DatabaseSchedule:
    """A schedule table in the store, for transports with no delays of their own.

    A row is claimed with a short lease, published, then deleted: a worker
    killed in between leaves the row to be claimed again when the lease ends
    (a duplicate at worst, never a loss). PostgreSQL and MySQL claim with
    ``SKIP LOCKED`` so several workers pump side by side.
    """

    batch = 100
    lease = timedelta(seconds=30)

    def __init__(self, broker: Broker, store: Store) -> None:
        self.broker = broker
        self.store = store

    def schedule(self, route: Route, body: dict[str, Any], delay: float) -> None:
        """Insert a row due ``delay`` seconds from now."""
        due = utcnow() + timedelta(seconds=max(0.0, delay))
        with self.store.begin() as conn:
            conn.execute(insert(schedule).values(
                due_at=due, routing_key=route, body=json.dumps(body), lease_until=None,
            ))

    def _claim(self) -> list[tuple[int, str, str]]:
        now = utcnow()
        query = (
            select(schedule.c.id, schedule.c.routing_key, schedule.c.body)
            .where(schedule.c.due_at <= now)
            .where(or_(schedule.c.lease_until.is_(None), schedule.c.lease_until < now))
            .order_by(schedule.c.due_at)
            .limit(self.batch)
        )
        with self.store.begin() as conn:
            if conn.dialect.name != "sqlite":
                query = query.with_for_update(skip_locked=True)
            rows = [(r.id, r.routing_key, r.body) for r in conn.execute(query)]
            if not rows:
                return []
            if conn.dialect.name != "sqlite":
                conn.execute(
                    update(schedule).where(schedule.c.id.in_([r[0] for r in rows]))
                    .values(lease_until=now + self.lease)
                )
                return rows
            # SQLite has no row locks: claim row by row on the lease condition,
            # so two workers that read the same rows keep one each.
            claimed = []
            for row in rows:
                result = conn.execute(
                    update(schedule).where(schedule.c.id == row[0]).where(
                        or_(schedule.c.lease_until.is_(None), schedule.c.lease_until < now)
                    ).values(lease_until=now + self.lease)
                )
                if result.rowcount == 1:
                    claimed.append(row)
            return claimed

    def pump(self) -> int:
        """Publish every due row and delete it."""
        rows = self._claim()
        done: list[int] = []
        try:
            for row_id, route, body in rows:
                self.broker.publish(route, json.loads(body))  # type: ignore[arg-type]
                done.append(row_id)
        finally:
            if done:
                with self.store.begin() as conn:
                    conn.execute(delete(schedule).where(schedule.c.id.in_(done)))
        return len(done)

    def seconds_until_due(self) -> float | None:
        """Seconds until the earliest row is due."""
        with self.store.begin() as conn:
            earliest = conn.execute(select(func.min(schedule.c.due_at))).scalar()
        if earliest is None:
            return None
        return max(0.0, float((earliest - utcnow()).total_seconds()))

    def close(self) -> None:
        """The store is shared; nothing to release here."""
