"""The Store facade: every read and write the core makes, in SQLAlchemy Core."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from asyncevents.core.clock import utcnow
from asyncevents.core.crypto import TokenCipher
from asyncevents.core.models import Attempt, Delivery, DeliveryStatus, Subscription
from asyncevents.core.store import migrate
from asyncevents.core.store.engine import make_engine
from asyncevents.core.store.groupcommit import GroupCommit, Kind
from asyncevents.core.store.schema import attempts, deliveries, subscriptions
from asyncevents.errors import NotFound, StoreError

__all__ = ["NewAttempt", "Store", "delivery_from_row"]


_SUB_COLUMNS = {c.name: c.label(f"sub_{c.name}") for c in subscriptions.c}
_SUB_ID = _SUB_COLUMNS["id"]
# Built once: the delivery hot path runs it for every attempt.
_DELIVERY_AND_SUBSCRIPTION = (
    select(deliveries, *_SUB_COLUMNS.values())
    .select_from(deliveries.outerjoin(
        subscriptions, subscriptions.c.id == deliveries.c.subscription_id))
    .where(deliveries.c.id == bindparam("id"))
)


_SUBSCRIPTIONS_VERSION = select(func.count(), func.max(subscriptions.c.updated_at))
# Many attempts in one transaction (group commit): the number of each is read
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


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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


class Store:
    """Reads and writes subscriptions, deliveries and attempts."""

    def __init__(self, engine: Engine, cipher: TokenCipher | None = None) -> None:
        self.engine = engine
        self.cipher = cipher or TokenCipher(None)
        self.group: GroupCommit | None = None
        self._insert_kind: Kind[list[dict[str, Any]], None] = Kind(
            "deliveries", self._insert_deliveries_many, self._insert_deliveries_one)
        self._attempt_kind: Kind[tuple[str, NewAttempt], int] = Kind(
            "attempts", self._record_attempts_many, self._record_attempt_one,
            key=lambda item: item[0])

    def use_group_commit(self) -> None:
        """Write new deliveries and attempts of concurrent threads in shared transactions.

        For a worker running several threads; see :mod:`.groupcommit`.
        """
        if self.group is None:
            self.group = GroupCommit(self.begin)

    @classmethod
    def open(cls, url: str, *, auto_migrate: bool | None = None,
             cipher: TokenCipher | None = None) -> Store:
        """Connect to ``url`` and check the schema (created on first use with SQLite)."""
        engine = make_engine(url)
        store = cls(engine, cipher)
        if auto_migrate is None:
            auto_migrate = engine.dialect.name == "sqlite"
        with store._errors():
            if not migrate.has_schema(engine):
                if not auto_migrate:
                    raise StoreError(
                        "the database has no asyncevents schema; run 'asyncevents migrate'"
                    )
                migrate.upgrade(engine)
        return store

    def migrate(self) -> None:
        """Create or upgrade the schema."""
        with self._errors():
            migrate.upgrade(self.engine)

    def close(self) -> None:
        """Finish queued writes and release pooled connections."""
        if self.group is not None:
            self.group.close()
        self.engine.dispose()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, IntegrityError):
                raise
            where = self.engine.url.render_as_string(hide_password=True)
            raise StoreError(f"database error at {where}: {_short(exc)}") from exc

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction, with database failures turned into ``StoreError``."""
        with self._errors(), self.engine.begin() as conn:
            yield conn

    # -- subscriptions -----------------------------------------------------------------

    def create_subscription(
        self, *, event_name: str, sink: str, recipient: str, token: str,
        filter: str | None = None, retry_policy: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None, active: bool = True,
    ) -> Subscription:
        """Insert a subscription and return it."""
        now = utcnow()
        values = {
            "id": str(uuid.uuid4()), "event_name": event_name, "sink": sink,
            "recipient": recipient, "token": self.cipher.encrypt(token), "active": active,
            "filter": filter,
            "retry_policy": retry_policy, "metadata": metadata or {},
            "created_at": now, "updated_at": now, "deleted_at": None,
        }
        with self.begin() as conn:
            conn.execute(insert(subscriptions).values(**values))
        return self._subscription(values)

    def _subscription(self, row: Any) -> Subscription:
        return _subscription(row, self.cipher.decrypt(row["token"]))

    def get_subscription(self, subscription_id: str, *, deleted: bool = False) -> Subscription:
        """The subscription with this id, or ``NotFound``."""
        query = select(subscriptions).where(subscriptions.c.id == subscription_id)
        if not deleted:
            query = query.where(subscriptions.c.deleted_at.is_(None))
        with self.begin() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"no subscription with id {subscription_id!r}")
        return self._subscription(row)

    def list_subscriptions(self, *, active: bool | None = None) -> list[Subscription]:
        """Subscriptions that are not deleted, oldest first."""
        query = select(subscriptions).where(subscriptions.c.deleted_at.is_(None))
        if active is not None:
            query = query.where(subscriptions.c.active.is_(active))
        query = query.order_by(subscriptions.c.created_at, subscriptions.c.id)
        with self.begin() as conn:
            return [self._subscription(r) for r in conn.execute(query).mappings()]

    def subscriptions_version(self) -> tuple[int, str]:
        """Changes whenever a subscription is created, changed or deleted (one cheap query).

        Every write of a subscription sets ``updated_at``; deletes are soft.
        """
        with self.begin() as conn:
            count, latest = conn.execute(_SUBSCRIPTIONS_VERSION).one()
        return int(count), str(latest)

    def update_subscription(self, subscription_id: str, **values: Any) -> Subscription:
        """Change fields of a subscription (``active``, ``recipient``, ``token``...)."""
        values["updated_at"] = utcnow()
        if "token" in values:
            values["token"] = self.cipher.encrypt(values["token"])
        with self.begin() as conn:
            result = conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id == subscription_id, subscriptions.c.deleted_at.is_(None))
                .values(**values)
            )
        if result.rowcount == 0:
            raise NotFound(f"no subscription with id {subscription_id!r}")
        return self.get_subscription(subscription_id, deleted=True)

    def delete_subscription(self, subscription_id: str) -> None:
        """Soft-delete: the subscription stops receiving; its deliveries stay searchable."""
        self.update_subscription(subscription_id, active=False, deleted_at=utcnow())

    # -- deliveries --------------------------------------------------------------------

    def ensure_deliveries(
        self, *, event_id: str, event_name: str, published_at: datetime,
        payload: dict[str, Any], targets: Sequence[Subscription],
    ) -> list[Delivery]:
        """One delivery per (event, subscription), created once however often asked."""
        if not targets:
            return []
        wanted = {s.id: s for s in targets}
        now = utcnow()
        rows = {
            s.id: {
                "id": str(uuid.uuid4()), "event_id": event_id, "event_name": event_name,
                "subscription_id": s.id, "sink": s.sink, "recipient": s.recipient,
                "status": "pending", "attempts": 0, "payload": payload,
                "published_at": published_at, "created_at": now, "updated_at": now,
                "next_attempt_at": None,
            }
            for s in targets
        }
        # The first time (the usual case) is one insert; a redelivered trigger
        # hits the unique (event, subscription) key and keeps the rows it finds.
        existing: dict[str, Delivery] = {}
        if self.group is not None:
            try:
                self.group.write(self._insert_kind, list(rows.values()))
            except IntegrityError:
                pass  # a redelivered trigger: sorted out below
            else:
                return [delivery_from_row(rows[sid]) for sid in wanted]
        for _ in range(3):
            missing = [row for sid, row in rows.items() if sid not in existing]
            if not missing:
                break
            try:
                with self.begin() as conn:
                    conn.execute(insert(deliveries), missing)
            except IntegrityError:
                existing = self._deliveries_of(event_id, list(wanted))
                continue
            existing.update({str(r["subscription_id"]): delivery_from_row(r) for r in missing})
            break
        return [existing[sid] for sid in wanted if sid in existing]

    def delivery_and_subscription(self, delivery_id: str) -> tuple[Delivery,
                                                                   Subscription | None]:
        """A delivery and its subscription (deleted ones included) in one query."""
        with self.begin() as conn:
            row = conn.execute(_DELIVERY_AND_SUBSCRIPTION, {"id": delivery_id}).first()
        if row is None:
            raise NotFound(f"no delivery with uuid {delivery_id!r}")
        values = row._mapping
        delivery = delivery_from_row({c.name: values[c] for c in deliveries.c})
        if values[_SUB_ID] is None:
            return delivery, None
        sub_row = {c.name: values[_SUB_COLUMNS[c.name]] for c in subscriptions.c}
        return delivery, self._subscription(sub_row)

    def _deliveries_of(self, event_id: str, subscription_ids: list[str]) -> dict[str, Delivery]:
        query = select(deliveries).where(
            and_(deliveries.c.event_id == event_id,
                 deliveries.c.subscription_id.in_(subscription_ids))
        )
        with self.begin() as conn:
            rows = conn.execute(query).mappings()
            return {r["subscription_id"]: delivery_from_row(r) for r in rows}

    def record_dispatch_failure(
        self, *, event_id: str, event_name: str, data: dict[str, Any], published_at: datetime,
        sink: str, attempt: NewAttempt, deaths: int,
    ) -> str:
        """Keep an event whose dispatch failed for good as a dead delivery; return its uuid."""
        now = utcnow()
        delivery_id = str(uuid.uuid4())
        try:
            with self.begin() as conn:
                conn.execute(insert(deliveries).values(
                    id=delivery_id, event_id=event_id, event_name=event_name,
                    subscription_id="", sink=sink, recipient="", status="dead",
                    attempts=deaths, payload=data, published_at=published_at,
                    created_at=now, updated_at=now, next_attempt_at=None,
                ))
                conn.execute(insert(attempts).values(
                    delivery_id=delivery_id, number=deaths, started_at=attempt.started_at,
                    duration_ms=attempt.duration_ms, success=False, status_code=None,
                    response="", error=attempt.error, replay=attempt.replay,
                ))
        except IntegrityError:
            # Already recorded by an earlier run of the same trigger message.
            existing = self._deliveries_of(event_id, [""])
            return existing[""].id
        return delivery_id

    def get_delivery(self, delivery_id: str) -> Delivery:
        """The delivery with this uuid, or ``NotFound``."""
        with self.begin() as conn:
            row = conn.execute(
                select(deliveries).where(deliveries.c.id == delivery_id)
            ).mappings().first()
        if row is None:
            raise NotFound(f"no delivery with uuid {delivery_id!r}")
        return delivery_from_row(row)

    def recent_deliveries(self, limit: int = 50) -> list[Delivery]:
        """The newest deliveries first."""
        query = select(deliveries).order_by(
            deliveries.c.created_at.desc(), deliveries.c.id.desc()
        ).limit(limit)
        with self.begin() as conn:
            return [delivery_from_row(r) for r in conn.execute(query).mappings()]

    def set_delivery_status(
        self, delivery_id: str, status: DeliveryStatus, *, next_attempt_at: datetime | None = None
    ) -> None:
        """Move a delivery to ``status`` without an attempt (replay, scheduling)."""
        with self.begin() as conn:
            conn.execute(
                update(deliveries).where(deliveries.c.id == delivery_id)
                .values(status=status, next_attempt_at=next_attempt_at, updated_at=utcnow())
            )

    def _insert_deliveries_one(self, rows: list[dict[str, Any]]) -> None:
        with self.begin() as conn:
            conn.execute(insert(deliveries), rows)

    @staticmethod
    def _insert_deliveries_many(conn: Connection,
                                items: Sequence[list[dict[str, Any]]]) -> list[None]:
        conn.execute(insert(deliveries), [row for rows in items for row in rows])
        return [None] * len(items)

    def record_attempt(self, delivery_id: str, attempt: NewAttempt) -> int:
        """Write one attempt and the delivery's new state together; return its number."""
        if self.group is not None:
            return self.group.write(self._attempt_kind, (delivery_id, attempt))
        return self._record_attempt_one((delivery_id, attempt))

    @staticmethod
    def _record_attempts_many(conn: Connection,
                              items: Sequence[tuple[str, NewAttempt]]) -> list[int]:
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

    def purge_before(self, cutoff: datetime, *, batch: int = 1000,
                     dry_run: bool = False) -> int:
        """Delete final deliveries created before ``cutoff`` with their attempts.

        Works in batches of ``batch`` rows, each its own short transaction, so a
        large clean-up never holds long locks. Pending and retrying deliveries stay.
        """
        final = and_(deliveries.c.created_at < cutoff,
                     deliveries.c.status.in_(("delivered", "dead")))
        if dry_run:
            with self.begin() as conn:
                return int(conn.execute(
                    select(func.count()).select_from(deliveries).where(final)
                ).scalar_one())
        removed = 0
        while True:
            with self.begin() as conn:
                ids = list(conn.execute(select(deliveries.c.id).where(final).limit(batch))
                           .scalars())
                if not ids:
                    return removed
                conn.execute(delete(attempts).where(attempts.c.delivery_id.in_(ids)))
                conn.execute(delete(deliveries).where(deliveries.c.id.in_(ids)))
            removed += len(ids)

    def rotate_tokens(self, old: TokenCipher) -> int:
        """Re-encrypt every stored token from ``old`` to this store's cipher."""
        changed = 0
        with self.begin() as conn:
            rows = conn.execute(select(subscriptions.c.id, subscriptions.c.token)).all()
            for row_id, stored in rows:
                token = old.decrypt(stored) if TokenCipher.is_encrypted(stored) else stored
                fresh = self.cipher.encrypt(token)
                if fresh != stored:
                    conn.execute(update(subscriptions).where(subscriptions.c.id == row_id)
                                 .values(token=fresh))
                    changed += 1
        return changed

    def list_attempts(self, delivery_id: str) -> list[Attempt]:
        """Every attempt of a delivery, first first."""
        query = select(attempts).where(attempts.c.delivery_id == delivery_id).order_by(
            attempts.c.number, attempts.c.id
        )
        with self.begin() as conn:
            return [_attempt(r) for r in conn.execute(query).mappings()]


def _subscription(row: Any, token: str) -> Subscription:
    return Subscription(
        id=row["id"], event_name=row["event_name"], sink=row["sink"],
        recipient=row["recipient"], token=token, active=bool(row["active"]),
        filter=row["filter"], retry_policy=row["retry_policy"],
        metadata=row["metadata"] or {}, created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def delivery_from_row(row: Any) -> Delivery:
    """A ``Delivery`` from a row of the deliveries table."""
    return Delivery(
        id=row["id"], event_id=row["event_id"], event_name=row["event_name"],
        subscription_id=row["subscription_id"], sink=row["sink"], recipient=row["recipient"],
        status=row["status"], attempts=row["attempts"], payload=row["payload"],
        published_at=row["published_at"], created_at=row["created_at"],
        updated_at=row["updated_at"], next_attempt_at=row["next_attempt_at"],
    )


def _attempt(row: Any) -> Attempt:
    return Attempt(
        delivery_id=row["delivery_id"], number=row["number"], started_at=row["started_at"],
        duration_ms=row["duration_ms"], success=bool(row["success"]),
        status_code=row["status_code"], response=row["response"], error=row["error"],
        replay=bool(row["replay"]),
    )
