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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from sqlalchemy import delete, func, insert, select, update

from asyncevents.core.clock import utcnow
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.health import CircuitPolicy, circuit_gates, ensure_health_rows
from asyncevents.core.store.schema import in_flight, subscription_health

__all__ = ["Admission", "LimitQueries", "Wanted"]

_H = subscription_health.c
#: Seconds before a delivery held back by max_in_flight is offered again.
IN_FLIGHT_RETRY = 1.0


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
              policy: CircuitPolicy, lease: float) -> Admission:
        """Circuits of ``subscription_ids``, then permits for the ``wanted`` deliveries.

        A subscription whose circuit is open gets no permit; one on probe gets
        one at most. ``lease``: seconds an in-flight permit lasts if never released.
        """
        answer = Admission()
        ids = sorted(set(subscription_ids))
        if not ids:
            return answer
        now = utcnow()
        with self.begin() as conn:
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
