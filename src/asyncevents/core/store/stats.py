"""The figures behind ``asyncevents stats``: deliveries waiting, retrying and dead, by group.

``pending`` and ``retrying`` count every delivery in that state now, however
old; ``dead_last_hour`` and ``dead_last_day`` count deliveries that are dead
and whose last change (the attempt that killed them) is that recent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, case, func, or_, select

from asyncevents.core.clock import utcnow
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.schema import deliveries, schedule, subscriptions

__all__ = ["DeliveryCounts", "StatsQueries"]


class DeliveryCounts(NamedTuple):
    """Deliveries of one group (an event name, or a subscription) by state."""

    key: str
    """The event name, or the subscription id."""
    pending: int
    retrying: int
    dead_last_hour: int
    dead_last_day: int
    pattern: str | None = None
    """For a subscription: its event name or pattern (None once it is deleted for good)."""
    sink: str | None = None
    """For a subscription: its sink."""


def _counts(now: datetime) -> tuple[list[Any], Any]:
    status, changed = deliveries.c.status, deliveries.c.updated_at
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)
    dead = status == "dead"
    columns = [
        func.sum(case((status == "pending", 1), else_=0)),
        func.sum(case((status == "retrying", 1), else_=0)),
        func.sum(case((and_(dead, changed >= hour), 1), else_=0)),
        func.sum(case((and_(dead, changed >= day), 1), else_=0)),
    ]
    # Only rows that count: the status index keeps this off delivered history.
    where = or_(status.in_(("pending", "retrying")), and_(dead, changed >= day))
    return columns, where


class StatsQueries(StoreBase):
    """Counts for operators: what is waiting, retrying and dying, per event and subscription."""

    def delivery_counts_by_event(self, now: datetime | None = None) -> list[DeliveryCounts]:
        """One row per event name with a pending, retrying or recently dead delivery."""
        columns, where = _counts(now or utcnow())
        name = deliveries.c.event_name
        query = select(name, *columns).where(where).group_by(name).order_by(name)
        with self.begin() as conn:
            return [DeliveryCounts(str(key), int(p or 0), int(r or 0), int(h or 0), int(d or 0))
                    for key, p, r, h, d in conn.execute(query)]

    def delivery_counts_by_subscription(self,
                                        now: datetime | None = None) -> list[DeliveryCounts]:
        """One row per subscription with a pending, retrying or recently dead delivery."""
        columns, where = _counts(now or utcnow())
        sub_id = deliveries.c.subscription_id
        counted = (select(sub_id.label("sid"), *(c.label(f"n{i}") for i, c in enumerate(columns)),
                          func.max(deliveries.c.sink).label("sink"))
                   .where(where).group_by(sub_id).subquery())
        query = (select(counted, subscriptions.c.event_name)
                 .select_from(counted.outerjoin(subscriptions,
                                                subscriptions.c.id == counted.c.sid))
                 .order_by(counted.c.sid))
        with self.begin() as conn:
            return [DeliveryCounts(str(row.sid), int(row.n0 or 0), int(row.n1 or 0),
                                   int(row.n2 or 0), int(row.n3 or 0),
                                   pattern=row.event_name, sink=row.sink)
                    for row in conn.execute(query)]

    def count_scheduled_by_route(self) -> dict[str, int]:
        """Messages waiting in the database retry schedule, by route (``trigger``, ``deliver``)."""
        query = (select(schedule.c.routing_key, func.count())
                 .group_by(schedule.c.routing_key))
        with self.begin() as conn:
            return {str(route): int(count) for route, count in conn.execute(query)}
