"""Each subscription's health, shared by every worker: its circuit breaker and auto-disable.

Two calls per batch of attempts, never one per delivery:
:meth:`HealthQueries.circuit_gate` before the attempts says which
subscriptions are open (their deliveries wait) or may send one probe;
:meth:`HealthQueries.record_health` after them counts the outcomes, opens or
closes circuits and disables subscriptions that failed without a success for
too long, answering what changed (for the operational events).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from asyncevents.core.clock import utcnow
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.schema import in_flight, subscription_health, subscriptions

__all__ = ["CircuitHealth", "CircuitPolicy", "HealthChange", "HealthQueries", "Outcome",
           "circuit_gates", "ensure_health_rows"]

_H = subscription_health.c


@dataclass(frozen=True)
class CircuitPolicy:
    """When circuits open, how long they stay open, and when subscriptions are disabled."""

    consecutive_failures: int = 10
    failure_ratio: float = 0.5
    min_attempts: int = 20
    window: float = 60.0
    cooldown: float = 30.0
    probe_lease: float = 60.0
    disable_after_hours: float = 120.0


@dataclass(frozen=True)
class Outcome:
    """One attempt's result, as the circuit counts it."""

    subscription_id: str
    success: bool
    error: str | None
    at: datetime


@dataclass(frozen=True)
class HealthChange:
    """A circuit that opened or closed, or a subscription disabled, by one batch's outcomes."""

    subscription_id: str
    change: Literal["opened", "closed", "disabled"]
    failure_ratio: float | None
    consecutive_failures: int
    last_error: str | None
    failing_since: datetime | None


@dataclass(frozen=True)
class CircuitHealth:
    """What ``subscriptions show`` and the console show of a subscription's circuit."""

    state: str
    failure_ratio: float | None
    consecutive_failures: int
    last_error: str | None
    last_error_at: datetime | None
    last_success_at: datetime | None
    failing_since: datetime | None
    opened_at: datetime | None

    def public(self) -> dict[str, Any]:
        """JSON-ready."""
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {"state": self.state, "failure_ratio": self.failure_ratio,
                "consecutive_failures": self.consecutive_failures,
                "last_error": self.last_error, "last_error_at": iso(self.last_error_at),
                "last_success_at": iso(self.last_success_at),
                "failing_since": iso(self.failing_since), "opened_at": iso(self.opened_at)}


CLOSED = CircuitHealth("closed", None, 0, None, None, None, None, None)


class HealthQueries(StoreBase):
    """The store's subscription health rows."""

    def circuit_gate(self, subscription_ids: Iterable[str],
                     policy: CircuitPolicy) -> dict[str, Literal["open", "probe"]]:
        """For the subscriptions whose circuit is open: ``open`` (wait) or ``probe``.

        ``probe``: the cool-down is over and this caller won the one probe (a
        lease of ``probe_lease`` seconds, so a crashed prober is replaced).
        Closed circuits are left out. One transaction.
        """
        ids = sorted(set(subscription_ids))
        if not ids:
            return {}
        with self.begin() as conn:
            return circuit_gates(conn, ids, policy, utcnow())

    def open_circuits(self) -> set[str]:
        """The subscriptions whose circuit is open now (one small query)."""
        with self.begin() as conn:
            return set(conn.execute(select(_H.subscription_id)
                                    .where(_H.state == "open")).scalars())

    def record_health(self, outcomes: Sequence[Outcome], policy: CircuitPolicy,
                      disable_after: Mapping[str, float] | None = None,
                      released: Sequence[str] = ()) -> list[HealthChange]:
        """Count a batch's outcomes; open, close, disable; return what changed. One transaction.

        ``disable_after``: hours by subscription, overriding the policy's;
        ``released``: deliveries no longer in flight (``max_in_flight``).
        """
        by_sub: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            by_sub.setdefault(outcome.subscription_id, []).append(outcome)
        if not by_sub and not released:
            return []
        now = utcnow()
        ids = sorted(by_sub)
        changes: list[HealthChange] = []
        with self.begin() as conn:
            if released:
                conn.execute(delete(in_flight).where(in_flight.c.delivery_id.in_(released)))
            if not ids:
                return []
            query = select(subscription_health).where(_H.subscription_id.in_(ids))
            rows = {r["subscription_id"]: dict(r)
                    for r in conn.execute(query.with_for_update()).mappings()}
            for sub_id in ids:
                if sub_id in rows:
                    continue
                fresh = {"subscription_id": sub_id, "state": "closed", "window_attempts": 0,
                         "window_failures": 0, "consecutive_failures": 0, "updated_at": now}
                try:
                    with conn.begin_nested():
                        conn.execute(insert(subscription_health).values(**fresh))
                except IntegrityError:  # another worker made it first: take its row
                    fresh = dict(conn.execute(
                        query.where(_H.subscription_id == sub_id).with_for_update())
                        .mappings().one())
                rows[sub_id] = fresh
            for sub_id in ids:
                row = rows[sub_id]
                change = self._count(row, by_sub[sub_id], policy, now)
                hours = (disable_after or {}).get(sub_id) or policy.disable_after_hours
                since = row.get("failing_since")
                if (since is not None and not any(o.success for o in by_sub[sub_id])
                        and (now - since).total_seconds() >= hours * 3600):
                    disabled = conn.execute(
                        update(subscriptions)
                        .where(subscriptions.c.id == sub_id, subscriptions.c.active.is_(True))
                        .values(active=False, updated_at=now)).rowcount
                    if disabled:
                        changes.append(_change(sub_id, "disabled", row))
                if change is not None:
                    changes.append(_change(sub_id, change, row))
                values = {k: v for k, v in row.items() if k != "subscription_id"}
                conn.execute(update(subscription_health)
                             .where(_H.subscription_id == sub_id).values(**values))
        return changes

    @staticmethod
    def _count(row: dict[str, Any], outcomes: list[Outcome], policy: CircuitPolicy,
               now: datetime) -> Literal["opened", "closed"] | None:
        """Update ``row`` with ``outcomes``; the circuit's change, if any."""
        started = row.get("window_started_at")
        if started is None or (now - started).total_seconds() > policy.window:
            row.update(window_started_at=now, window_attempts=0, window_failures=0)
        for outcome in outcomes:
            row["window_attempts"] += 1
            if outcome.success:
                row.update(consecutive_failures=0, last_success_at=outcome.at,
                           failing_since=None)
            else:
                row["window_failures"] += 1
                row["consecutive_failures"] += 1
                row.update(last_error=(outcome.error or "failed")[:1000],
                           last_error_at=outcome.at)
                if row.get("failing_since") is None:
                    row["failing_since"] = outcome.at
        row["updated_at"] = now
        if row["state"] == "open":
            if any(o.success for o in outcomes):
                row.update(state="closed", opened_at=None, probe_until=None,
                           window_started_at=now, window_attempts=0, window_failures=0)
                return "closed"
            row.update(opened_at=now, probe_until=None)  # the probe failed: cool down again
            return None
        attempts, failures = row["window_attempts"], row["window_failures"]
        if (row["consecutive_failures"] >= policy.consecutive_failures
                or (attempts >= policy.min_attempts
                    and failures / attempts >= policy.failure_ratio)):
            row.update(state="open", opened_at=now, probe_until=None)
            return "opened"
        return None

    def circuit_health(self, subscription_ids: Iterable[str]) -> dict[str, CircuitHealth]:
        """Each subscription's circuit (closed and empty when it has no row yet)."""
        ids = sorted(set(subscription_ids))
        found = dict.fromkeys(ids, CLOSED)
        if not ids:
            return found
        with self.begin() as conn:
            rows = conn.execute(select(subscription_health)
                                .where(_H.subscription_id.in_(ids))).mappings()
            for row in rows:
                attempts = row["window_attempts"]
                found[row["subscription_id"]] = CircuitHealth(
                    state=row["state"],
                    failure_ratio=round(row["window_failures"] / attempts, 3)
                    if attempts else None,
                    consecutive_failures=row["consecutive_failures"],
                    last_error=row["last_error"], last_error_at=row["last_error_at"],
                    last_success_at=row["last_success_at"],
                    failing_since=row["failing_since"], opened_at=row["opened_at"])
        return found


def circuit_gates(conn: Connection, ids: Sequence[str], policy: CircuitPolicy,
                  now: datetime) -> dict[str, Literal["open", "probe"]]:
    """:meth:`HealthQueries.circuit_gate` inside the caller's transaction."""
    gates: dict[str, Literal["open", "probe"]] = {}
    rows = conn.execute(select(_H.subscription_id, _H.opened_at, _H.probe_until)
                        .where(_H.subscription_id.in_(ids), _H.state == "open")).all()
    for sub_id, opened_at, probe_until in rows:
        cooling = opened_at is not None and (now - opened_at).total_seconds() < policy.cooldown
        if cooling or (probe_until is not None and probe_until > now):
            gates[sub_id] = "open"
            continue
        claimed = conn.execute(
            update(subscription_health)
            .where(_H.subscription_id == sub_id, _H.state == "open",
                   or_(_H.probe_until.is_(None), _H.probe_until <= now))
            .values(probe_until=now + timedelta(seconds=policy.probe_lease))).rowcount
        gates[sub_id] = "probe" if claimed else "open"
    return gates


def ensure_health_rows(conn: Connection, ids: Sequence[str], now: datetime) -> None:
    """Make the health rows of ``ids`` that do not exist yet (another worker may race)."""
    existing = set(conn.execute(select(_H.subscription_id)
                                .where(_H.subscription_id.in_(ids))).scalars())
    for sub_id in ids:
        if sub_id in existing:
            continue
        try:
            with conn.begin_nested():
                conn.execute(insert(subscription_health).values(
                    subscription_id=sub_id, state="closed", window_attempts=0,
                    window_failures=0, consecutive_failures=0, updated_at=now))
        except IntegrityError:
            pass  # another worker made it first


def _change(sub_id: str, change: Literal["opened", "closed", "disabled"],
            row: Mapping[str, Any]) -> HealthChange:
    attempts = row["window_attempts"]
    return HealthChange(
        subscription_id=sub_id, change=change,
        failure_ratio=round(row["window_failures"] / attempts, 3) if attempts else None,
        consecutive_failures=row["consecutive_failures"], last_error=row.get("last_error"),
        failing_since=row.get("failing_since"))
