"""What the console's dashboard and pages read: outcomes over time, failing subscriptions,
each subscription's health, and pages of a search in both directions.

Every query is portable: the time buckets are computed with each database's
own way of counting seconds (SQLite ``strftime('%s')``, PostgreSQL
``EXTRACT(EPOCH)``, MySQL/MariaDB ``TIMESTAMPDIFF``) on the naive UTC times
the store keeps, so no session time zone can shift them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, and_, case, cast, func, literal, or_, select, text

from asyncevents.core.models import Delivery
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.deliveries import delivery_from_row
from asyncevents.core.store.schema import attempts, deliveries, subscriptions
from asyncevents.core.store.search import time_limited

__all__ = ["DashboardQueries", "FailingSubscription", "OutcomeBucket", "SubscriptionHealth"]


@dataclass(frozen=True)
class OutcomeBucket:
    """Attempts that started in one time bucket, by outcome."""

    start: datetime
    succeeded: int
    failed: int


@dataclass(frozen=True)
class FailingSubscription:
    """A subscription and its failed attempts in a window (deleted ones included)."""

    subscription_id: str
    event_name: str
    sink: str
    recipient: str
    failed: int
    attempts: int
    deleted: bool


@dataclass(frozen=True)
class SubscriptionHealth:
    """A subscription's deliveries by status, and its latest failed attempt."""

    subscription_id: str
    delivered: int = 0
    dead: int = 0
    pending: int = 0
    retrying: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None

    @property
    def success_ratio(self) -> float | None:
        """Delivered among the finished deliveries (delivered or dead); None before any."""
        done = self.delivered + self.dead
        return self.delivered / done if done else None


def _epoch_seconds(column: Any, dialect: str) -> ColumnElement[Any]:
    """Whole seconds since 1970 of a stored (naive UTC) time, on this database."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), BigInteger)
    if dialect == "postgresql":
        return cast(func.floor(func.extract("epoch", column)), BigInteger)
    return cast(func.timestampdiff(text("SECOND"), literal(datetime(1970, 1, 1)), column),
                BigInteger)


def _newer(position: tuple[datetime, str]) -> ColumnElement[bool]:
    created, delivery_id = position
    col = deliveries.c
    return or_(col.created_at > created, and_(col.created_at == created, col.id > delivery_id))


class DashboardQueries(StoreBase):
    """Aggregates for the console's dashboard, and the newer-first half of its paging."""

    def outcomes_per_bucket(self, since: datetime, until: datetime,
                            bucket: timedelta) -> list[OutcomeBucket]:
        """Attempts started in ``[since, until)``, counted per ``bucket``, oldest first.

        Every bucket is listed, empty ones too, so a chart needs no gap filling.
        """
        size = max(1, int(bucket.total_seconds()))
        count = max(1, int((until - since).total_seconds()) // size)
        offset = _epoch_seconds(attempts.c.started_at, self.dialect) - int(since.timestamp())
        # Integer division of non-negative offsets (the WHERE keeps them so) on every database.
        index = offset // size
        query = (select(index.label("bucket"),
                        func.sum(case((attempts.c.success.is_(True), 1), else_=0)),
                        func.sum(case((attempts.c.success.is_(True), 0), else_=1)))
                 .where(attempts.c.started_at >= since, attempts.c.started_at < until)
                 .group_by(text("bucket")))
        found: dict[int, tuple[int, int]] = {}
        with self.begin() as conn:
            for number, ok, failed in conn.execute(query):
                found[int(number)] = (int(ok or 0), int(failed or 0))
        return [OutcomeBucket(since + i * timedelta(seconds=size), *found.get(i, (0, 0)))
                for i in range(count)]

    def failing_subscriptions(self, since: datetime, *,
                              limit: int = 10) -> list[FailingSubscription]:
        """The subscriptions with the most failed attempts since ``since``, most first."""
        failed = func.sum(case((attempts.c.success.is_(True), 0), else_=1))
        ranked = (select(deliveries.c.subscription_id.label("sid"), failed.label("failed"),
                         func.count().label("total"))
                  .select_from(attempts.join(deliveries,
                                             attempts.c.delivery_id == deliveries.c.id))
                  .where(attempts.c.started_at >= since, deliveries.c.subscription_id != "")
                  .group_by(deliveries.c.subscription_id)
                  .having(failed > 0)
                  .order_by(failed.desc(), deliveries.c.subscription_id)
                  .limit(limit)
                  .subquery())
        sub = subscriptions.c
        query = (select(ranked.c.sid, ranked.c.failed, ranked.c.total, sub.event_name, sub.sink,
                        sub.recipient, sub.deleted_at)
                 .select_from(ranked.outerjoin(subscriptions, sub.id == ranked.c.sid))
                 .order_by(ranked.c.failed.desc(), ranked.c.sid))
        with self.begin() as conn:
            return [FailingSubscription(str(sid), str(event or ""), str(sink or ""),
                                        str(recipient or ""), int(n_failed), int(total),
                                        deleted_at is not None or event is None)
                    for sid, n_failed, total, event, sink, recipient, deleted_at
                    in conn.execute(query)]

    def subscription_health(self, ids: Sequence[str]) -> dict[str, SubscriptionHealth]:
        """For each subscription in ``ids``: deliveries by status and the latest failure."""
        if not ids:
            return {}
        wanted = list(dict.fromkeys(ids))
        counts: dict[str, dict[str, int]] = {sid: {} for sid in wanted}
        by_status = (select(deliveries.c.subscription_id, deliveries.c.status, func.count())
                     .where(deliveries.c.subscription_id.in_(wanted))
                     .group_by(deliveries.c.subscription_id, deliveries.c.status))
        # Attempt ids grow with time: the largest failed one is the latest failure.
        latest = (select(func.max(attempts.c.id))
                  .select_from(attempts.join(deliveries,
                                             attempts.c.delivery_id == deliveries.c.id))
                  .where(deliveries.c.subscription_id.in_(wanted), attempts.c.success.is_(False))
                  .group_by(deliveries.c.subscription_id)
                  .scalar_subquery())
        failures = (select(deliveries.c.subscription_id, attempts.c.error,
                           attempts.c.status_code, attempts.c.started_at)
                    .select_from(attempts.join(deliveries,
                                               attempts.c.delivery_id == deliveries.c.id))
                    .where(attempts.c.id.in_(latest)))
        errors: dict[str, tuple[str, datetime]] = {}
        with self.begin() as conn:
            for sid, status, n in conn.execute(by_status):
                counts[str(sid)][str(status)] = int(n)
            for sid, error, code, started in conn.execute(failures):
                errors[str(sid)] = (error or (f"HTTP {code}" if code is not None
                                              else "failed"), started)
        health = {}
        for sid in wanted:
            error, at = errors.get(sid, (None, None))
            health[sid] = SubscriptionHealth(sid, **counts[sid], last_error=error,
                                             last_error_at=at)
        return health

    def delivery_position(self, delivery_id: str) -> tuple[datetime, str] | None:
        """Where a delivery sits in the newest-first order (its created time and uuid)."""
        query = select(deliveries.c.created_at).where(deliveries.c.id == delivery_id)
        with self.begin() as conn:
            created = conn.execute(query).scalar_one_or_none()
        return None if created is None else (created, delivery_id)

    def search_page_newer(self, where: ColumnElement[bool], *, limit: int,
                          after: tuple[datetime, str]) -> list[Delivery]:
        """Up to ``limit`` deliveries matching ``where`` just newer than ``after``, newest first.

        The other direction of ``search_page``: the page before a page.
        """
        col = deliveries.c
        query = (select(deliveries).where(where, _newer(after))
                 .order_by(col.created_at, col.id).limit(limit))
        with self.begin() as conn, time_limited(conn):
            rows = [delivery_from_row(row) for row in conn.execute(query).mappings()]
        return rows[::-1]

    def count_newer(self, where: ColumnElement[bool], after: tuple[datetime, str]) -> int:
        """How many deliveries matching ``where`` are newer than ``after`` (a page's offset)."""
        query = select(func.count()).select_from(deliveries).where(where, _newer(after))
        with self.begin() as conn, time_limited(conn):
            return int(conn.execute(query).scalar_one())
