"""Attempts: each try of a delivery, written with the delivery's next state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from asyncevents.core.clock import utcnow
from asyncevents.core.models import Attempt, DeliveryStatus
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.schema import attempts, deliveries
from asyncevents.errors import StoreError

__all__ = ["AttemptQueries", "NewAttempt"]

# Many attempts in one transaction (a batch): the number of each is read
# from its delivery's counter, just incremented in the same transaction.
_COUNT_ATTEMPT = update(deliveries).where(deliveries.c.id == bindparam("b_id")).values(
    attempts=deliveries.c.attempts + 1, status=bindparam("b_status"),
    next_attempt_at=bindparam("b_next"), updated_at=bindparam("b_updated"),
)
_INSERT_ATTEMPT = insert(attempts).values(
    delivery_id=bindparam("b_id"),
    number=select(deliveries.c.attempts).where(deliveries.c.id == bindparam("b_id"))
    .scalar_subquery(),
    started_at=bindparam("b_started"), duration_ms=bindparam("b_duration"),
    success=bindparam("b_success"), status_code=bindparam("b_code"),
    response=bindparam("b_response"), error=bindparam("b_error"), replay=bindparam("b_replay"),
)


class NewAttempt:
    """What ``record_attempt`` writes: one attempt and the delivery's next state."""

    __slots__ = ("duration_ms", "error", "next_attempt_at", "replay", "response", "started_at",
                 "status", "status_code", "success")

    def __init__(
        self, *, started_at: datetime, duration_ms: float, success: bool,
        status_code: int | None, response: str, error: str | None,
        status: DeliveryStatus, next_attempt_at: datetime | None = None, replay: bool = False,
    ) -> None:
        self.started_at = started_at
        self.duration_ms = duration_ms
        self.success = success
        self.status_code = status_code
        self.response = response
        self.error = error
        self.status = status
        self.next_attempt_at = next_attempt_at
        self.replay = replay


def _attempt(row: Any) -> Attempt:
    return Attempt(
        delivery_id=row["delivery_id"], number=row["number"], started_at=row["started_at"],
        duration_ms=row["duration_ms"], success=bool(row["success"]),
        status_code=row["status_code"], response=row["response"], error=row["error"],
        replay=bool(row["replay"]),
    )


def _record_attempts_many(conn: Connection, items: Sequence[tuple[str, NewAttempt]]) -> list[int]:
    now = utcnow()
    conn.execute(_COUNT_ATTEMPT, [
        {"b_id": did, "b_status": a.status, "b_next": a.next_attempt_at, "b_updated": now}
        for did, a in items])
    conn.execute(_INSERT_ATTEMPT, [
        {"b_id": did, "b_started": a.started_at, "b_duration": a.duration_ms,
         "b_success": a.success, "b_code": a.status_code, "b_response": a.response,
         "b_error": a.error, "b_replay": a.replay}
        for did, a in items])
    ids = [did for did, _ in items]
    numbers = {row[0]: row[1] for row in conn.execute(
        select(deliveries.c.id, deliveries.c.attempts).where(deliveries.c.id.in_(ids)))}
    # A delivery that is not there fails the batch: each is then written alone.
    return [int(numbers[did]) for did in ids]


class AttemptQueries(StoreBase):
    """The store's attempts."""

    def record_attempt(self, delivery_id: str, attempt: NewAttempt) -> int:
        """Write one attempt and the delivery's new state together; return its number."""
        return self._record_attempt_one((delivery_id, attempt))

    def record_attempts(self, items: Sequence[tuple[str, NewAttempt]]) -> list[int | None]:
        """Write many attempts (and their deliveries' new states) in one transaction.

        Returns each attempt's number, in order. When the shared transaction
        fails for something other than the database being away (a delivery
        purged meanwhile, say), each is written on its own and one that still
        fails is ``None``; a database that cannot be reached raises ``StoreError``.
        """
        if not items:
            return []
        ids = [did for did, _ in items]
        if len(set(ids)) == len(ids):  # two attempts at one delivery read each other
            try:
                with self.begin() as conn:
                    return list(_record_attempts_many(conn, items))
            except StoreError:
                raise
            except Exception:  # sorted out one by one below
                pass
        numbers: list[int | None] = []
        for item in items:
            try:
                numbers.append(self._record_attempt_one(item))
            except StoreError:
                raise
            except Exception:  # that delivery is gone: the caller logs it
                numbers.append(None)
        return numbers

    def _record_attempt_one(self, item: tuple[str, NewAttempt]) -> int:
        delivery_id, attempt = item
        change = update(deliveries).where(deliveries.c.id == delivery_id).values(
            attempts=deliveries.c.attempts + 1, status=attempt.status,
            next_attempt_at=attempt.next_attempt_at, updated_at=utcnow(),
        )
        with self.begin() as conn:
            if conn.dialect.update_returning:  # PostgreSQL, SQLite: one round trip
                number = conn.execute(change.returning(deliveries.c.attempts)).scalar_one()
            else:  # MariaDB
                conn.execute(change)
                number = conn.execute(
                    select(deliveries.c.attempts).where(deliveries.c.id == delivery_id)
                ).scalar_one()
            conn.execute(insert(attempts).values(
                delivery_id=delivery_id, number=number, started_at=attempt.started_at,
                duration_ms=attempt.duration_ms, success=attempt.success,
                status_code=attempt.status_code, response=attempt.response,
                error=attempt.error, replay=attempt.replay,
            ))
        return int(number)

    def list_attempts(self, delivery_id: str) -> list[Attempt]:
        """Every attempt of a delivery, first first."""
        query = select(attempts).where(attempts.c.delivery_id == delivery_id).order_by(
            attempts.c.number, attempts.c.id
        )
        with self.begin() as conn:
            return [_attempt(r) for r in conn.execute(query).mappings()]
