"""Known deliveries that the query tests search."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from asyncevents.core.clock import utcnow
from asyncevents.core.models import Delivery
from asyncevents.core.store import NewAttempt, Store
from asyncevents.core.store.schema import deliveries


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# label: (event_name, status, attempts, sink, recipient, created, payload)
# ``created`` None means "one hour ago", "3d" three days ago.
ROWS: dict[str, tuple[str, str, int, str, str, datetime | str, dict[str, Any]]] = {
    "a": ("order.created", "delivered", 1, "http", "https://a.example.com/hook",
          at("2026-01-01T10:00:00"),
          {"customer": {"email": "alice@example.com", "name": "Alice Smith"}, "total": 42,
           "items": [{"sku": "ABC", "qty": 2}, {"sku": "XYZ-1", "qty": 1}],
           "tags": ["vip", "new"], "paid": True}),
    "b": ("order.created", "dead", 5, "http", "https://b.example.org/x",
          at("2026-01-05T00:00:00"),
          {"customer": {"email": "bob@EXAMPLE.com", "name": "Bob"}, "total": 7.5,
           "items": [{"sku": "abc", "qty": 1}], "tags": "vip", "paid": False}),
    "c": ("customer.created", "pending", 0, "eventbridge",
          "arn:aws:events:eu-west-1:123456789012:event-bus/main",
          at("2026-01-31T23:59:59"),
          {"customer": {"email": "carol@example.com"}, "total": "42", "note": "50% off_now",
           "paid": None}),
    "d": ("customer.updated", "retrying", 2, "http", "https://c.example.com",
          at("2026-02-01T00:00:00"),
          {"customer": {"email": "dave@example.com", "name": "Dave O'Brien"}, "total": -3,
           "items": [], "nested": [[{"sku": "ABC"}]], "note": 'It\'s "quoted"'}),
    "e": ("invoice.paid", "delivered", 3, "http", "https://e.example.com",
          at("2026-02-10T08:30:00.250000"),
          {"amount": 1000.0, "customer": [{"email": "eve@example.com"},
                                          {"email": "EVE@example.com"}],
           "tags": ["a b", "é", "ABC "]}),
    "f": ("order.created", "delivered", 1, "http", "https://f.example.com",
          "1h", {"customer": {"email": "frank@example.net"}, "total": 100,
                 "items": [{"sku": "CK-123"}, {"sku": "ck-999"}]}),
    "g": ("order.failed", "dead", 1, "(dispatch)", "", "3d",
          {"weird key": 1, "x": {"y": {"z": "deep"}}, "data": {"x": 1},
           # numeric keys of an object (PHP's json_encode of a sparse array), arrays in arrays
           "lines": {"0": {"sku": "OBJ"}, "12": "twelve"}, "matrix": [[1, 2], [3]]}),
}

SUBSCRIPTIONS = ("sub-1", "sub-2")


@dataclass
class Seeded:
    """The store and which uuid each label got."""

    store: Store
    ids: dict[str, str]
    now: datetime
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = {v: k for k, v in self.ids.items()}

    def names(self, items: list[Delivery]) -> set[str]:
        return {self.labels[d.id] for d in items}


def delivery_row(*, event_name: str = "test.event", status: str = "pending",
                 attempts: int = 0, sink: str = "http", recipient: str = "https://x.test",
                 created: datetime | None = None, payload: dict[str, Any] | None = None,
                 subscription_id: str = "sub-1", delivery_id: str | None = None) -> dict[str, Any]:
    created = created or utcnow()
    return {
        "id": delivery_id or str(uuid.uuid4()), "event_id": str(uuid.uuid4()),
        "event_name": event_name, "subscription_id": subscription_id, "sink": sink,
        "recipient": recipient, "status": status, "attempts": attempts,
        "payload": payload if payload is not None else {}, "published_at": created,
        "created_at": created, "updated_at": created, "next_attempt_at": None,
    }


def seed(store: Store) -> Seeded:
    now = utcnow()
    ids: dict[str, str] = {}
    rows = []
    for n, (label, (name, status, tries, sink, recipient, created, payload)) in enumerate(
        ROWS.items()
    ):
        if isinstance(created, str):
            created = now - (timedelta(hours=1) if created == "1h" else timedelta(days=3))
        row = delivery_row(event_name=name, status=status, attempts=tries, sink=sink,
                           recipient=recipient, created=created, payload=payload,
                           subscription_id="" if sink == "(dispatch)"
                           else SUBSCRIPTIONS[n % 2])
        ids[label] = row["id"]
        rows.append(row)
    with store.begin() as conn:
        conn.execute(insert(deliveries), rows)
    # The store's own write path, for one delivery: an attempt that succeeded.
    store.record_attempt(ids["e"], NewAttempt(
        started_at=now, duration_ms=1.0, success=True, status_code=200, response="ok",
        error=None, status="delivered"))
    return Seeded(store, ids, now)
