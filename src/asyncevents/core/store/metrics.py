"""The figures behind ``/metrics`` and ``/healthz``: counts and histograms, read at scrape time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import case, func, select, text

from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.schema import attempts, deliveries, schedule

__all__ = ["AttemptDurations", "MetricsQueries"]


class AttemptDurations(NamedTuple):
    """The attempts of one sink: how many, their total duration, a cumulative histogram."""

    sink: str
    attempts: int
    total_ms: float
    buckets: list[int]
    """How many took at most each bound, in the order the bounds were given."""


class MetricsQueries(StoreBase):
    """Aggregates over the whole store, for monitoring."""

    def ping(self) -> None:
        """Run the cheapest query; raises when the database does not answer."""
        with self.begin() as conn:
            conn.execute(text("SELECT 1"))

    def count_deliveries_by_status(self) -> list[tuple[str, str, int]]:
        """``(sink, status, count)`` for every sink and status that has deliveries."""
        query = (select(deliveries.c.sink, deliveries.c.status, func.count())
                 .group_by(deliveries.c.sink, deliveries.c.status))
        with self.begin() as conn:
            return [(str(sink), str(status), int(count))
                    for sink, status, count in conn.execute(query)]

    def attempt_durations(self, since: datetime,
                          bounds: Sequence[float]) -> list[AttemptDurations]:
        """Per sink, the attempts started since ``since``, against ``bounds`` in seconds."""
        ms = attempts.c.duration_ms
        columns: list[Any] = [deliveries.c.sink, func.count(), func.sum(ms)]
        columns += [func.sum(case((ms <= bound * 1000, 1), else_=0)) for bound in bounds]
        query = (select(*columns)
                 .select_from(attempts.join(deliveries, attempts.c.delivery_id == deliveries.c.id))
                 .where(attempts.c.started_at >= since)
                 .group_by(deliveries.c.sink))
        with self.begin() as conn:
            return [AttemptDurations(str(sink), int(count), float(total_ms or 0),
                                     [int(n or 0) for n in counts])
                    for sink, count, total_ms, *counts in conn.execute(query)]

    def count_scheduled(self) -> int:
        """How many messages wait in the database retry schedule."""
        with self.begin() as conn:
            return int(conn.execute(select(func.count()).select_from(schedule)).scalar_one())
