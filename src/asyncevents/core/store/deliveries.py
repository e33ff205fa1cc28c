"""Deliveries: one per (event, subscription), their status, and the purge of old ones."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from asyncevents.core.clock import utcnow
from asyncevents.core.models import Delivery, DeliveryStatus, Subscription
from asyncevents.core.store.attempts import NewAttempt
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.schema import attempts, deliveries, subscriptions
from asyncevents.core.store.subscriptions import subscription_from_row
from asyncevents.errors import NotFound

__all__ = ["DeliveryQueries", "EventTargets", "delivery_from_row"]

_SUB_COLUMNS = {c.name: c.label(f"sub_{c.name}") for c in subscriptions.c}
_SUB_ID = _SUB_COLUMNS["id"]
# Built once: the delivery hot path runs it for every attempt.
_DELIVERY_AND_SUBSCRIPTION = (
    select(deliveries, *_SUB_COLUMNS.values())
    .select_from(deliveries.outerjoin(
        subscriptions, subscriptions.c.id == deliveries.c.subscription_id))
    .where(deliveries.c.id == bindparam("id"))
)


_DELIVERIES_AND_SUBSCRIPTIONS = (
    select(deliveries, *_SUB_COLUMNS.values())
    .select_from(deliveries.outerjoin(
        subscriptions, subscriptions.c.id == deliveries.c.subscription_id))
    .where(deliveries.c.id.in_(bindparam("ids", expanding=True)))
)


@dataclass(frozen=True)
class EventTargets:
    """One event and the subscriptions it goes to (``ensure_deliveries_many``)."""

    event_id: str
    event_name: str
    published_at: datetime
    payload: dict[str, Any]
    targets: Sequence[Subscription]


def delivery_from_row(row: Any) -> Delivery:
    """A ``Delivery`` from a row of the deliveries table."""
    return Delivery(
        id=row["id"], event_id=row["event_id"], event_name=row["event_name"],
        subscription_id=row["subscription_id"], sink=row["sink"], recipient=row["recipient"],
        status=row["status"], attempts=row["attempts"], payload=row["payload"],
        published_at=row["published_at"], created_at=row["created_at"],
        updated_at=row["updated_at"], next_attempt_at=row["next_attempt_at"],
    )


class DeliveryQueries(StoreBase):
    """The store's deliveries."""

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

    def ensure_deliveries_many(self, events: Sequence[EventTargets]) -> list[list[Delivery]]:
        """``ensure_deliveries`` for many events: one insert for all of them, as a rule.

        When one of them was dispatched before (a redelivered trigger hits the
        unique key), each event is sorted out on its own.
        """
        now = utcnow()
        planned: list[list[dict[str, Any]]] = []
        for event in events:
            seen: set[str] = set()
            rows = []
            for s in event.targets:
                if s.id in seen:
                    continue
                seen.add(s.id)
                rows.append({
                    "id": str(uuid.uuid4()), "event_id": event.event_id,
                    "event_name": event.event_name, "subscription_id": s.id, "sink": s.sink,
                    "recipient": s.recipient, "status": "pending", "attempts": 0,
                    "payload": event.payload, "published_at": event.published_at,
                    "created_at": now, "updated_at": now, "next_attempt_at": None,
                })
            planned.append(rows)
        every = [row for rows in planned for row in rows]
        if not every:
            return [[] for _ in events]
        try:
            with self.begin() as conn:
                conn.execute(insert(deliveries), every)
        except IntegrityError:
            return [self.ensure_deliveries(
                event_id=e.event_id, event_name=e.event_name, published_at=e.published_at,
                payload=e.payload, targets=e.targets) for e in events]
        return [[delivery_from_row(row) for row in rows] for rows in planned]

    def deliveries_and_subscriptions(
        self, delivery_ids: Sequence[str],
    ) -> dict[str, tuple[Delivery, Subscription | None]]:
        """Deliveries and their subscriptions by uuid, in one query (missing ones left out)."""
        if not delivery_ids:
            return {}
        with self.begin() as conn:
            rows = conn.execute(_DELIVERIES_AND_SUBSCRIPTIONS,
                                {"ids": list(dict.fromkeys(delivery_ids))}).all()
        found: dict[str, tuple[Delivery, Subscription | None]] = {}
        for row in rows:
            pair = self._pair(row._mapping)
            found[pair[0].id] = pair
        return found

    def _pair(self, values: Any) -> tuple[Delivery, Subscription | None]:
        delivery = delivery_from_row({c.name: values[c] for c in deliveries.c})
        if values[_SUB_ID] is None:
            return delivery, None
        sub_row = {c.name: values[_SUB_COLUMNS[c.name]] for c in subscriptions.c}
        return delivery, subscription_from_row(sub_row, self.cipher.decrypt(sub_row["token"]),
                                               self.cipher)

    def delivery_and_subscription(self, delivery_id: str) -> tuple[Delivery,
                                                                   Subscription | None]:
        """A delivery and its subscription (deleted ones included) in one query."""
        with self.begin() as conn:
            row = conn.execute(_DELIVERY_AND_SUBSCRIPTION, {"id": delivery_id}).first()
        if row is None:
            raise NotFound(f"no delivery with uuid {delivery_id!r}")
        return self._pair(row._mapping)

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
