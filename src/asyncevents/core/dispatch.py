"""Dispatch: one trigger message in, one delivery per matching subscription out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from asyncevents.core.catalog import Catalog, matches
from asyncevents.core.clock import utcnow
from asyncevents.core.messages import DeliverMessage, TriggerMessage
from asyncevents.core.models import Delivery, Subscription
from asyncevents.core.retry import RetryManagement, RetryPolicy
from asyncevents.core.store import NewAttempt, Store
from asyncevents.core.transport import Transport

if TYPE_CHECKING:
    from asyncevents.core.deliver import Deliverer

__all__ = ["DISPATCH_SINK", "SUBSCRIPTIONS_FRESH", "Dispatcher", "FilterFn"]

log = structlog.get_logger("asyncevents.dispatch")

# Deliveries of this sink record an event whose dispatch failed for good (its
# resolver kept raising): searchable, traceable and replayable like any other.
DISPATCH_SINK = "(dispatch)"


#: Seconds a worker trusts its copy of the active subscriptions before it asks
#: the store whether they changed (a new subscription gets the events
#: dispatched from then on).
SUBSCRIPTIONS_FRESH = 0.25

#: Evaluates a subscription's filter (a Lucene query) on a payload.
FilterFn = Callable[[str, dict[str, Any]], bool]


class Dispatcher:
    """Resolves the payload, finds the subscriptions, creates and sends deliveries.

    With a ``deliverer``, the first attempt of one new delivery per event is
    made right here, in the thread that dispatched it: no second trip through
    the broker and no second read of the delivery. The others (fan-out) go
    to the delivery queue, all in one confirmed batch, so they run in
    parallel. The trigger message is acked only after that attempt is
    recorded: a crash in between sends the event again (at least once).
    """

    def __init__(self, catalog: Catalog, store: Store, transport: Transport,
                 retries: RetryManagement, policy: RetryPolicy,
                 filter_fn: FilterFn | None = None,
                 deliverer: Deliverer | None = None) -> None:
        self.catalog = catalog
        self.store = store
        self.transport = transport
        self.retries = retries
        self.policy = policy
        self.filter_fn = filter_fn
        self.deliverer = deliverer
        self._lock = threading.Lock()
        self._active: tuple[tuple[int, str], list[Subscription]] | None = None
        self._checked = 0.0

    def active_subscriptions(self) -> list[Subscription]:
        """The active subscriptions, read again only when the table has changed.

        Whether it has is asked at most every ``SUBSCRIPTIONS_FRESH`` seconds:
        a busy worker dispatches hundreds of events a second, and one query
        each for a table that rarely changes is a good share of its work.
        """
        now = time.monotonic()
        with self._lock:
            if self._active is not None and now - self._checked < SUBSCRIPTIONS_FRESH:
                return self._active[1]
        version = self.store.subscriptions_version()
        with self._lock:
            if self._active is not None and self._active[0] == version:
                self._checked = now
                return self._active[1]
        # Read after the version: a change in between only costs one more read.
        found = self.store.list_subscriptions(active=True)
        with self._lock:
            self._active, self._checked = (version, found), now
        return found

    def targets(self, name: str, payload: dict[str, Any]) -> list[Subscription]:
        """Active subscriptions whose pattern and filter match."""
        found = []
        for sub in self.active_subscriptions():
            if not matches(sub.event_name, name):
                continue
            if sub.filter and self.filter_fn is not None and not self.filter_fn(
                sub.filter, payload
            ):
                continue
            found.append(sub)
        return found

    def handle(self, message: TriggerMessage) -> None:
        """Dispatch one event. Safe to repeat: deliveries are unique per subscription."""
        event_id, name = message.event_id, message.name
        bound = log.bind(event_id=event_id, event_name=name)
        published_at = message.published_at
        try:
            payload = self._resolve(name, message.data)
        except Exception as exc:
            self._resolver_failed(message, exc)
            return
        targets = {sub.id: sub for sub in self.targets(name, payload)}
        deliveries = self.store.ensure_deliveries(
            event_id=event_id, event_name=name, published_at=published_at,
            payload=payload, targets=list(targets.values()),
        )
        # Only pending ones: a redelivered trigger must not resend a delivery
        # that already ran or waits for its retry.
        pending = [d for d in deliveries if d.status == "pending"]
        inline = self._pick_inline(pending)
        queued = [DeliverMessage(d.id) for d in pending if d is not inline]
        if queued:
            self.transport.enqueue_many(queued)
        bound.info("event dispatched", deliveries=len(deliveries), sent=len(pending))
        if inline is not None and self.deliverer is not None:
            self.deliverer.attempt(DeliverMessage(inline.id), inline,
                                   targets[inline.subscription_id])

    def give_up(self, message: TriggerMessage, reason: str) -> None:
        """Record an event the queue gave up on as a dead dispatch (searchable, replayable)."""
        self.store.record_dispatch_failure(
            event_id=message.event_id, event_name=message.name, data=message.data,
            published_at=message.published_at, sink=DISPATCH_SINK,
            attempt=NewAttempt(started_at=utcnow(), duration_ms=0.0, success=False,
                               status_code=None, response="", error=reason, status="dead"),
            deaths=message.deaths + 1,
        )
        log.error("event given up by the queue, recorded as dead", event_id=message.event_id,
                  event_name=message.name, error=reason)

    def _pick_inline(self, pending: list[Delivery]) -> Delivery | None:
        """The delivery to attempt in this thread: the first one not known to be slow."""
        if self.deliverer is None:
            return None
        for delivery in pending:
            if not self.deliverer.is_slow(delivery.subscription_id):
                return delivery
        return None

    def _resolve(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        resolver = self.catalog.resolver(name)
        if resolver is None:
            return data
        payload = resolver(data)
        if not isinstance(payload, dict):
            raise TypeError(f"resolver returned {type(payload).__name__}, not a dict")
        return payload

    def _resolver_failed(self, message: TriggerMessage, exc: Exception) -> None:
        retry = message.died()
        deaths = retry.deaths
        error = f"resolver failed: {type(exc).__name__}: {exc}"
        age = (utcnow() - message.published_at).total_seconds()
        bound = log.bind(event_id=message.event_id, event_name=message.name, attempt=deaths)
        if not self.policy.gives_up(deaths, age):
            delay = self.policy.delay(deaths)
            self.retries.schedule(retry, delay)
            bound.warning("resolver failed, dispatch retried", error=error, delay=delay)
            return
        self.store.record_dispatch_failure(
            event_id=message.event_id, event_name=message.name, data=message.data,
            published_at=message.published_at, sink=DISPATCH_SINK,
            attempt=NewAttempt(started_at=utcnow(), duration_ms=0.0, success=False,
                               status_code=None, response="", error=error, status="dead"),
            deaths=deaths,
        )
        bound.error("resolver failed for good, event recorded as dead", error=error)
