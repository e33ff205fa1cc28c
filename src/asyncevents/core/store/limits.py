"""What a batch of deliveries may send now: circuits, rate limits and max-in-flight, shared
by every worker of the installation, in one transaction per batch.

A subscription's rate limit is a token bucket in its health row (``tokens``,
``tokens_at``; it holds at most one second of its rate, and at least one
token); its ``max_in_flight`` counts leased rows of ``asyncevents_in_flight``,
released by :meth:`HealthQueries.record_health` after the attempts (a crashed
worker's leases simply expire). Each subscription's health row is written
first, which makes the workers asking about the same subscription take turns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from asyncevents.core.clock import utcnow
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.health import CircuitPolicy, circuit_gates, ensure_health_rows
from asyncevents.core.store.schema import deliveries, in_flight, subscription_health

__all__ = ["ORDER_WAIT", "Admission", "LimitQueries", "Ordered", "Wanted", "ordering_value"]

_H = subscription_health.c
#: Seconds before a delivery held back by max_in_flight is offered again.
IN_FLIGHT_RETRY = 1.0
#: Seconds before a delivery held back by an earlier one of its ordering key is offered again.
ORDER_WAIT = 1.0
_D = deliveries.c
_WAITING = ("pending", "retrying")


def ordering_value(payload: Any, path: str) -> str:
    """The value at ``path`` (``data.customer_id``) in the event's data ``payload``, as the
    store keeps it.

    ``""`` when the payload has no such value: that delivery is not ordered.
    """
    value = payload
    for part in path.split(".")[1:]:
        if not isinstance(value, Mapping) or part not in value:
            return ""
        value = value[part]
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:255]


@dataclass(frozen=True)
class Ordered:
    """Deliveries of one subscription with an ordering key, as the batch holds them."""

    path: str
    #: (delivery id, its ordering value, published_at)
    deliveries: Sequence[tuple[str, str, datetime]]


@dataclass(frozen=True)
class Wanted:
    """The deliveries of one subscription a batch would like to attempt, and its limits."""

    delivery_ids: Sequence[str]
    rate: float | None = None  # deliveries per second
    max_in_flight: int | None = None


@dataclass
class Admission:
    """The answer for one batch."""

    gates: dict[str, Literal["open", "probe"]] = field(default_factory=dict)
    #: Delivery ids that may go now (those of limited subscriptions only).
    admitted: set[str] = field(default_factory=set)
    #: Delivery id -> seconds to wait, for those held back by a limit.
    waits: dict[str, float] = field(default_factory=dict)


class LimitQueries(StoreBase):
    """The store's shared limits."""

    def admit(self, subscription_ids: Sequence[str], wanted: Mapping[str, Wanted],
              policy: CircuitPolicy, lease: float,
              ordered: Mapping[str, Ordered] | None = None) -> Admission:
        """Circuits of ``subscription_ids``, then permits for the ``wanted`` deliveries.

        A subscription whose circuit is open gets no permit; one on probe gets
        one at most. ``lease``: seconds an in-flight permit lasts if never released.
        ``ordered``: a delivery waits while an earlier one (in publish order) of
        its subscription and ordering value is pending or retrying.
        """
        answer = Admission()
        ids = sorted(set(subscription_ids) | set(wanted) | set(ordered or {}))
        if not ids:
            return answer
        now = utcnow()
        with self.begin() as conn:
            for sub_id, batch in sorted((ordered or {}).items()):
                held, going = _held_by_order(conn, sub_id, batch, now, lease)
                answer.waits.update(held)
                answer.admitted.update(going)
            if answer.waits:
                wanted = {sub_id: Wanted([d for d in want.delivery_ids
                                          if d not in answer.waits],
                                         want.rate, want.max_in_flight)
                          for sub_id, want in wanted.items()}
            answer.gates = circuit_gates(conn, ids, policy, now)
            limited = sorted(s for s in wanted if answer.gates.get(s) != "open")
            for sub_id in (s for s in wanted if answer.gates.get(s) == "open"):
                answer.waits.update(dict.fromkeys(wanted[sub_id].delivery_ids,
                                                  policy.cooldown))
            if not limited:
                return answer
            ensure_health_rows(conn, limited, now)
            for sub_id in limited:
                want = wanted[sub_id]
                ids_wanted = list(want.delivery_ids)
                if answer.gates.get(sub_id) == "probe":
                    answer.waits.update(dict.fromkeys(ids_wanted[1:], policy.cooldown))
                    ids_wanted = ids_wanted[:1]
                # Written first: the row lock (the write lock on SQLite) makes the
                # workers asking about this subscription take turns.
                conn.execute(update(subscription_health).where(_H.subscription_id == sub_id)
                             .values(updated_at=now))
                go = len(ids_wanted)
                if want.max_in_flight is not None:
                    busy = conn.execute(select(func.count()).select_from(in_flight).where(
                        in_flight.c.subscription_id == sub_id,
                        in_flight.c.lease_until > now)).scalar_one()
                    go = min(go, max(0, want.max_in_flight - int(busy)))
                if want.rate is not None:
                    tokens, tokens_at = conn.execute(
                        select(_H.tokens, _H.tokens_at).where(_H.subscription_id == sub_id)
                    ).one()
                    capacity = max(1.0, want.rate)
                    if tokens is None or tokens_at is None:
                        tokens = capacity
                    else:
                        elapsed = max(0.0, (now - tokens_at).total_seconds())
                        tokens = min(capacity, tokens + elapsed * want.rate)
                    go = min(go, math.floor(tokens + 1e-9))
                    tokens -= go
                    conn.execute(update(subscription_health)
                                 .where(_H.subscription_id == sub_id)
                                 .values(tokens=tokens, tokens_at=now))
                    # The rest wait, spread at the rate's spacing (none come back together).
                    for k, delivery_id in enumerate(ids_wanted[go:]):
                        answer.waits[delivery_id] = max(0.05, (k + 1 - tokens) / want.rate)
                else:
                    for delivery_id in ids_wanted[go:]:
                        answer.waits[delivery_id] = IN_FLIGHT_RETRY
                admitted = ids_wanted[:go]
                answer.admitted.update(admitted)
                if want.max_in_flight is not None and admitted:
                    until = now + timedelta(seconds=lease)
                    # A redelivered message's old lease, if any, is replaced.
                    conn.execute(delete(in_flight).where(in_flight.c.delivery_id.in_(admitted)))
                    conn.execute(insert(in_flight), [
                        {"delivery_id": d, "subscription_id": sub_id, "lease_until": until}
                        for d in admitted])
        return answer


def _held_by_order(conn: Connection, sub_id: str, batch: Ordered, now: datetime,
                   lease: float) -> tuple[dict[str, float], list[str]]:
    """Which of the batch's deliveries of ``sub_id`` wait for another of their key, and
    which go (each then holds its key with an in-flight lease until its outcome is written).

    One waits while an earlier-published delivery of its key is pending or
    retrying, or while another delivery of its key is in flight anywhere.
    """
    ensure_health_rows(conn, [sub_id], now)
    # Written first: the workers asking about this subscription take turns.
    conn.execute(update(subscription_health).where(_H.subscription_id == sub_id)
                 .values(updated_at=now))
    # Each waiting delivery gets its value once (dispatch leaves it empty): later
    # batches find the earlier ones of a key by the indexed column.
    unset = conn.execute(select(_D.id, _D.payload).where(
        _D.subscription_id == sub_id, _D.status.in_(_WAITING), _D.ordering_key.is_(None))).all()
    for delivery_id, payload in unset:
        conn.execute(update(deliveries).where(_D.id == delivery_id)
                     .values(ordering_key=ordering_value(payload, batch.path)))
    held: dict[str, float] = {}
    going: list[str] = []
    until = now + timedelta(seconds=lease)
    for delivery_id, value, published_at in batch.deliveries:
        if not value:
            continue
        earlier = conn.execute(select(_D.id).where(
            _D.subscription_id == sub_id, _D.ordering_key == value, _D.status.in_(_WAITING),
            _D.id != delivery_id,
            or_(_D.published_at < published_at,
                and_(_D.published_at == published_at, _D.id < delivery_id))).limit(1)).first()
        busy = conn.execute(select(in_flight.c.delivery_id).select_from(
            in_flight.join(deliveries, _D.id == in_flight.c.delivery_id)).where(
            _D.subscription_id == sub_id, _D.ordering_key == value,
            in_flight.c.lease_until > now, in_flight.c.delivery_id != delivery_id)
            .limit(1)).first()
        if earlier is not None or busy is not None:
            held[delivery_id] = ORDER_WAIT
            continue
        conn.execute(delete(in_flight).where(in_flight.c.delivery_id == delivery_id))
        conn.execute(insert(in_flight).values(delivery_id=delivery_id, subscription_id=sub_id,
                                              lease_until=until))
        going.append(delivery_id)
    return held, going
