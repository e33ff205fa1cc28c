"""Dispatch: one trigger message in, one delivery per matching subscription out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Container, Sequence
from typing import Any

import structlog

from asyncevents.core.clock import utcnow
from asyncevents.core.events.catalog import Catalog
from asyncevents.core.events.patterns import matches
from asyncevents.core.events.routing import Router
from asyncevents.core.messages import DeliverMessage, TriggerMessage
from asyncevents.core.models import Subscription
from asyncevents.core.pipeline import Job
from asyncevents.core.retry.base import RetryManagement
from asyncevents.core.retry.policy import RetryPolicy
from asyncevents.core.store import EventTargets, NewAttempt, Store
from asyncevents.core.transport import Transport

__all__ = ["DISPATCH_SINK", "SUBSCRIPTIONS_FRESH", "Dispatcher", "FilterFn"]

log = structlog.get_logger("asyncevents.dispatch")

# Deliveries of this sink record an event whose dispatch failed for good (its
# resolver kept raising): searchable, traceable and replayable like any other.
DISPATCH_SINK = "(dispatch)"


#: Seconds a worker trusts its copy of the active subscriptions before it asks
#: the store whether they changed (a new subscription gets the events
#: dispatched from then on).
SUBSCRIPTIONS_FRESH = 0.25

#: Evaluates a subscription's filter (a Lucene query) on a payload and the event's name.
FilterFn = Callable[[str, dict[str, Any], str], bool]


class Dispatcher:
    """Resolves the payload, finds the subscriptions, creates and sends deliveries.

    The first attempts of new deliveries are made by the engine that asked
    (see :meth:`handle_many`); the trigger message is acked only after they
    are recorded: a crash in between sends the event again (at least once).
    """

    def __init__(self, catalog: Catalog, store: Store, transport: Transport,
                 retries: RetryManagement, policy: RetryPolicy,
                 filter_fn: FilterFn | None = None) -> None:
        self.catalog = catalog
        self.store = store
        self.transport = transport
        self.retries = retries
        self.policy = policy
        self.filter_fn = filter_fn
        # Each delivery's queue, by event name and sink ([routing]).
        self.router = Router(transport.settings.routing)
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
                sub.filter, payload, name
            ):
                continue
            found.append(sub)
        return found

    def handle_many(self, messages: Sequence[TriggerMessage], inline: int,
                    slow: Container[str] = frozenset()) -> list[list[Job]]:
        """Dispatch a batch of events; for each, the deliveries to attempt right away.

        Safe to repeat: deliveries are unique per (event, subscription), and
        only pending ones are sent again. All deliveries of the batch are
        written in one statement; of each event's pending deliveries, up to
        ``inline`` whose subscriptions are not in ``slow`` come back to
        be attempted by the caller (no second trip through the queue), and the
        others go to the delivery queue, all in one batch.
        """
        events: list[EventTargets] = []
        subs: dict[str, Subscription] = {}
        for message in messages:
            try:
                payload = self._resolve(message.name, message.data)
            except Exception as exc:
                self._resolver_failed(message, exc)
                events.append(EventTargets(message.event_id, message.name,
                                           message.published_at, {}, ()))
                continue
            targets = self.targets(message.name, payload)
            subs.update((s.id, s) for s in targets)
            events.append(EventTargets(message.event_id, message.name, message.published_at,
                                       payload, targets))
        created = self.store.ensure_deliveries_many(events)
        queued: list[DeliverMessage] = []
        jobs: list[list[Job]] = []
        for message, deliveries in zip(messages, created, strict=True):
            # Only pending ones: a redelivered trigger must not resend a delivery
            # that already ran or waits for its retry.
            pending = [d for d in deliveries if d.status == "pending"]
            now: list[Job] = []
            # Each copy carries the event's trace context (see features/otel), if any.
            trace, state = message.traceparent, message.tracestate
            for delivery in pending:
                # Its routed queue: its retries go there, and a delivery routed
                # elsewhere than the event is left to that queue's workers.
                queue = self.router.deliver_queue(message.name,
                                                  subs[delivery.subscription_id].sink)
                if (len(now) < inline and queue == message.queue
                        and delivery.subscription_id not in slow):
                    now.append(Job(DeliverMessage(delivery.id, traceparent=trace,
                                                  tracestate=state, queue=queue), delivery,
                                   subs[delivery.subscription_id]))
                else:
                    queued.append(DeliverMessage(delivery.id, traceparent=trace,
                                                 tracestate=state, queue=queue))
            jobs.append(now)
            log.info("event dispatched", event_id=message.event_id, event_name=message.name,
                     deliveries=len(deliveries), sent=len(pending))
        if queued:
            self.transport.enqueue_many(queued)
        return jobs

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
