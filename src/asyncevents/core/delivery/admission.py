"""Receiver protection around the attempts: who may go now, and what the outcomes did.

Before a batch's attempts, :meth:`Guard.admit` asks the store (one call for
the whole batch, and none at all for a batch without open circuits, limited
or ordered subscriptions) which deliveries may go: an open circuit, a rate
limit, ``max_in_flight`` or an ordering key makes the others wait, without an
attempt. After the attempts are recorded, :meth:`Guard.after` counts their
outcomes into the subscriptions' health (circuits, auto-disable) and
publishes the operational events those changes call for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from asyncevents.core.events.catalog import OPERATIONAL_EVENTS
from asyncevents.core.models import Delivery, DeliveryStatus, Subscription
from asyncevents.core.settings import Settings
from asyncevents.core.store import (
    Admission,
    CircuitPolicy,
    HealthChange,
    Ordered,
    Outcome,
    Store,
    Wanted,
    ordering_value,
)

if TYPE_CHECKING:
    from asyncevents.core.delivery.engine import Threads

__all__ = ["Guard", "OperationalPublish", "Settled"]

log = structlog.get_logger("asyncevents.deliver")

#: Seconds between two reads of the installation's open circuits by one worker.
_OPEN_CIRCUITS_EVERY = 1.0
#: Publishes an operational event (name, data) through the normal publish path.
OperationalPublish = Callable[[str, dict[str, Any]], object]
_CHANGE_EVENTS = {"opened": "asyncevents.subscription.circuit_opened",
                  "closed": "asyncevents.subscription.circuit_closed",
                  "disabled": "asyncevents.subscription.disabled"}


@dataclass(frozen=True)
class Settled:
    """A recorded attempt, as receiver protection sees it."""

    delivery: Delivery
    subscription: Subscription
    success: bool
    error: str | None
    started: datetime
    status: DeliveryStatus
    #: The attempt's number.
    number: int
    #: False for an outcome decided without the receiver (it says nothing of its health).
    counted: bool
    #: The receiver answered 410 Gone: the subscription was disabled.
    gone: bool = False


class Guard:
    """Circuits, limits and ordering for one worker's deliveries, and operational events."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.store = store
        self.circuits = CircuitPolicy(
            consecutive_failures=settings.circuit_consecutive_failures,
            failure_ratio=settings.circuit_failure_ratio,
            min_attempts=settings.circuit_min_attempts, window=settings.circuit_window,
            cooldown=settings.circuit_cooldown,
            probe_lease=settings.http_timeout + settings.http_connect_timeout + 30,
            disable_after_hours=settings.disable_after)
        #: Set by the App: publishes the operational events (None: not published).
        self.operational: OperationalPublish | None = None
        # The installation's open circuits, asked at most once a second: a batch
        # without them (nor limited or ordered subscriptions) needs no admission call.
        self._open: set[str] = set()
        self._open_at = -_OPEN_CIRCUITS_EVERY
        # Successes of subscriptions whose last written outcomes were all
        # successes: counted in the store at most once a second, not in every
        # batch (each write locks the subscription's health row, which all the
        # installation's workers share). A failure is written at once.
        self._healthy: set[str] = set()
        self._held_ok: list[Outcome] = []
        self._held_since = 0.0
        self._held_lock = threading.Lock()  # ``after`` runs in the I/O threads

    async def admit(self, deliveries: Sequence[tuple[Delivery, Subscription | None]],
                    threads: Threads) -> Admission:
        """The batch's open circuits and the permits of its rate-limited,
        max-in-flight or ordered subscriptions: one store call for the whole batch."""
        ids: set[str] = set()
        wanted: dict[str, list[str]] = {}
        limits: dict[str, Subscription] = {}
        ordered: dict[str, Ordered] = {}
        for delivery, sub in deliveries:
            if sub is None or not sub.active or delivery.status in ("delivered", "dead"):
                continue
            ids.add(sub.id)
            if sub.rate is not None or sub.max_in_flight is not None:
                wanted.setdefault(sub.id, []).append(delivery.id)
                limits[sub.id] = sub
            if sub.ordering_key:
                batch = ordered.setdefault(sub.id, Ordered(sub.ordering_key, []))
                assert isinstance(batch.deliveries, list)
                batch.deliveries.append((delivery.id, ordering_value(
                    delivery.payload, sub.ordering_key), delivery.published_at))
        if not ids:
            return Admission()
        clock = time.monotonic()
        if clock - self._open_at >= _OPEN_CIRCUITS_EVERY:
            self._open = await threads.io(self.store.open_circuits)
            self._open_at = clock
        gated = ids & self._open
        if not gated and not wanted and not ordered:
            return Admission()
        asks = {sub_id: Wanted(delivery_ids, limits[sub_id].rate_per_second,
                               limits[sub_id].max_in_flight)
                for sub_id, delivery_ids in wanted.items()}
        admission: Admission = await threads.io(self.store.admit, sorted(gated), asks,
                                                self.circuits, self.circuits.probe_lease,
                                                ordered)
        return admission

    def wait(self, delivery: Delivery, subscription: Subscription,
             admission: Admission) -> float | None:
        """Seconds ``delivery`` must wait without an attempt, or None: it may go now.

        The first delivery of a subscription whose cool-down is over is the
        circuit's probe; the batch's others wait for its outcome.
        """
        wait = admission.waits.get(delivery.id)
        if wait is not None:  # over a limit, or ordered behind an earlier one
            return wait
        gate = admission.gates.get(subscription.id)
        if gate == "open":
            return self.circuits.cooldown
        if gate == "probe":
            admission.gates[subscription.id] = "open"  # one probe only
        return None

    @staticmethod
    def about_itself(delivery: Delivery, subscription: Subscription) -> bool:
        """True for an operational event about ``subscription`` itself (never sent: no loops)."""
        return (delivery.event_name in OPERATIONAL_EVENTS
                and delivery.payload.get("subscription_id") == subscription.id)

    def after(self, settled: Sequence[Settled], released: Sequence[str]) -> None:
        """Count recorded outcomes into the subscriptions' health (one store call),
        give back ``max_in_flight`` permits, publish the operational events."""
        outcomes = [Outcome(s.subscription.id, s.success, s.error, s.started)
                    for s in settled if s.counted]
        overrides = {s.subscription.id: s.subscription.disable_after for s in settled
                     if s.subscription.disable_after is not None}
        with self._held_lock:
            outcomes = self._coalesce(outcomes)
        changes: list[HealthChange] = []
        if outcomes or released:
            try:
                changes = self.store.record_health(outcomes, self.circuits, overrides,
                                                   released)
            except Exception as exc:  # health is advisory: the attempts are recorded
                log.warning("cannot record the subscriptions' health", error=str(exc))
        self._changed(changes, {s.subscription.id: s.subscription for s in settled})
        for s in settled:
            if s.gone:  # 410 Gone disabled it
                self._publish("asyncevents.subscription.disabled", {
                    "subscription_id": s.subscription.id,
                    "recipient": s.subscription.recipient, "failure_ratio": None,
                    "consecutive_failures": None, "last_error": s.error,
                    "failing_since": None})
            if (s.status == "dead" and s.counted
                  and s.delivery.event_name not in OPERATIONAL_EVENTS):
                self._publish("asyncevents.delivery.dead", {
                    "delivery_id": s.delivery.id, "event_id": s.delivery.event_id,
                    "event_name": s.delivery.event_name,
                    "subscription_id": s.delivery.subscription_id, "attempts": s.number,
                    "error": s.error})

    def flush(self, older_than: float = 0.0) -> None:
        """Write the successes held back for ``older_than`` seconds or more
        (called when the worker is idle, and when it stops)."""
        with self._held_lock:
            if not self._held_ok or time.monotonic() - self._held_since < older_than:
                return
            held, self._held_ok = self._held_ok, []
        try:
            changes = self.store.record_health(held, self.circuits, {}, ())
        except Exception as exc:  # advisory, as in ``after``
            log.warning("cannot record the subscriptions' health", error=str(exc))
            return
        self._changed(changes, {})

    def _changed(self, changes: Sequence[HealthChange],
                 subs: Mapping[str, Subscription]) -> None:
        for change in changes:
            if change.change == "opened":
                self._open.add(change.subscription_id)  # this worker holds back at once
            elif change.change == "closed":
                self._open.discard(change.subscription_id)
            sub = subs.get(change.subscription_id)
            log.warning(f"subscription circuit {change.change}",
                        subscription_id=change.subscription_id, error=change.last_error)
            self._publish(_CHANGE_EVENTS[change.change], {
                "subscription_id": change.subscription_id,
                "recipient": sub.recipient if sub else None,
                "failure_ratio": change.failure_ratio,
                "consecutive_failures": change.consecutive_failures,
                "last_error": change.last_error,
                "failing_since": change.failing_since.isoformat()
                if change.failing_since else None})

    def _coalesce(self, outcomes: list[Outcome]) -> list[Outcome]:
        """The outcomes to write now; healthy subscriptions' successes wait (a second at most)."""
        failing = {o.subscription_id for o in outcomes if not o.success}
        now = time.monotonic()
        if not self._held_ok:
            self._held_since = now
        write: list[Outcome] = []
        for outcome in outcomes:
            if outcome.subscription_id in self._healthy and outcome.subscription_id not in failing:
                self._held_ok.append(outcome)
            else:
                write.append(outcome)
        if self._held_ok and (failing or now - self._held_since >= 1.0):
            write.extend(self._held_ok)
            self._held_ok = []
        written = {o.subscription_id for o in write}
        self._healthy -= failing
        self._healthy |= written - failing - self._open
        return write

    def _publish(self, name: str, data: dict[str, Any]) -> None:
        if self.operational is None:
            return
        try:
            self.operational(name, data)
        except Exception as exc:  # the broker is down: the event is lost, the log says so
            log.error("cannot publish an operational event", event_name=name,
                      error=str(exc), subscription_id=data.get("subscription_id"))
