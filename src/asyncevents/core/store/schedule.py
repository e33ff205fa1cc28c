"""The retry schedule: messages held in the store until they are due.

Serves the transports that cannot delay a message themselves (``memory://``,
``redis://``). A row is claimed with a short lease, published, then deleted:
a worker killed in between leaves it to be claimed again when the lease
ends (a duplicate at worst, never a loss). PostgreSQL and MySQL claim with
``SKIP LOCKED`` so several workers pump side by side.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from asyncevents.core.clock import utcnow
from asyncevents.core.store.schema import schedule

if TYPE_CHECKING:
    from asyncevents.core.store.store import Store

__all__ = ["Schedule", "ScheduledRow"]

#: A claimed row: its id, route and JSON body.
ScheduledRow = tuple[int, str, str]


class Schedule:
    """The schedule table of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, route: str, body: str, due: datetime) -> None:
        """Hold ``body`` (JSON) for ``route`` until ``due``."""
        with self.store.begin() as conn:
            conn.execute(insert(schedule).values(due_at=due, routing_key=route, body=body,
                                                 lease_until=None))

    def claim(self, batch: int, lease: timedelta) -> list[ScheduledRow]:
        """Lease up to ``batch`` due rows for this caller."""
        now = utcnow()
        query = (
            select(schedule.c.id, schedule.c.routing_key, schedule.c.body)
            .where(schedule.c.due_at <= now)
            .where(or_(schedule.c.lease_until.is_(None), schedule.c.lease_until < now))
            .order_by(schedule.c.due_at)
            .limit(batch)
        )
        with self.store.begin() as conn:
            if conn.dialect.name != "sqlite":
                query = query.with_for_update(skip_locked=True)
            rows = [(r.id, r.routing_key, r.body) for r in conn.execute(query)]
            if not rows:
                return []
            if conn.dialect.name != "sqlite":
                conn.execute(update(schedule).where(schedule.c.id.in_([r[0] for r in rows]))
                             .values(lease_until=now + lease))
                return rows
            return _claim_one_by_one(conn, rows, now, lease)

    def delete(self, ids: list[int]) -> None:
        """Forget rows that were published."""
        if ids:
            with self.store.begin() as conn:
                conn.execute(delete(schedule).where(schedule.c.id.in_(ids)))

    def next_due(self) -> datetime | None:
        """When the earliest row is due."""
        with self.store.begin() as conn:
            earliest: datetime | None = conn.execute(select(func.min(schedule.c.due_at))).scalar()
        return earliest



def _claim_one_by_one(conn: Connection, rows: list[ScheduledRow], now: datetime,
                      lease: timedelta) -> list[ScheduledRow]:
    # SQLite has no row locks: claim row by row on the lease condition, so two
    # workers that read the same rows keep one each.
    claimed = []
    for row in rows:
        result = conn.execute(
            update(schedule).where(schedule.c.id == row[0]).where(
                or_(schedule.c.lease_until.is_(None), schedule.c.lease_until < now)
            ).values(lease_until=now + lease)
        )
        if result.rowcount == 1:
            claimed.append(row)
    return claimed
