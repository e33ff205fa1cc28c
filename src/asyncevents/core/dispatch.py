"""Dispatch: one trigger message in, one delivery per matching subscription out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from asyncevents.core.catalog import Catalog
from asyncevents.core.clock import utcnow
from asyncevents.core.messages import TriggerMessage, deliver_message
from asyncevents.core.models import Subscription
from asyncevents.core.patterns import matches
from asyncevents.core.retry import RetryPolicy
from asyncevents.core.retrymanagement import RetryManagement
from asyncevents.core.store import Store
from asyncevents.core.store.store import NewAttempt
from asyncevents.core.transport import Broker

__all__ = ["DISPATCH_SINK", "Dispatcher", "FilterFn"]

log = structlog.get_logger("asyncevents.dispatch")

# Deliveries of this sink record an event whose dispatch failed for good (its
# resolver kept raising): searchable, traceable and replayable like any other.
DISPATCH_SINK = "(dispatch)"


#: Evaluates a subscription's filter (a Lucene query) on a payload.
FilterFn = Callable[[str, dict[str, Any]], bool]


class Dispatcher:
    """Resolves the payload, finds the subscriptions, creates and sends deliveries."""

    def __init__(self, catalog: Catalog, store: Store, broker: Broker,
                 retries: RetryManagement, policy: RetryPolicy,
                 filter_fn: FilterFn | None = None) -> None:
        self.catalog = catalog
        self.store = store
        self.broker = broker
        self.retries = retries
        self.policy = policy
        self.filter_fn = filter_fn

    def targets(self, name: str, payload: dict[str, Any]) -> list[Subscription]:
        """Active subscriptions whose pattern and filter match."""
        found = []
        for sub in self.store.list_subscriptions(active=True):
            if not matches(sub.event_name, name):
                continue
            if sub.filter and self.filter_fn is not None and not self.filter_fn(
                sub.filter, payload
            ):
                continue
            found.append(sub)
        return found

    def handle(self, body: TriggerMessage) -> None:
        """Dispatch one event. Safe to repeat: deliveries are unique per subscription."""
        event_id, name = body["event_id"], body["name"]
        bound = log.bind(event_id=event_id, event_name=name)
        published_at = datetime.fromisoformat(body["published_at"])
        try:
            payload = self._resolve(name, body["data"])
        except Exception as exc:
            self._resolver_failed(body, published_at, exc)
            return
        deliveries = self.store.ensure_deliveries(
            event_id=event_id, event_name=name, published_at=published_at,
            payload=payload, targets=self.targets(name, payload),
        )
        sent = 0
        for delivery in deliveries:
            # Only pending ones: a redelivered trigger must not resend a delivery
            # that already ran or waits for its retry.
            if delivery.status == "pending":
                self.broker.publish("deliver", dict(deliver_message(delivery.id)))
                sent += 1
        bound.info("event dispatched", deliveries=len(deliveries), sent=sent)

    def _resolve(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        resolver = self.catalog.resolver(name)
        if resolver is None:
            return data
        payload = resolver(data)
        if not isinstance(payload, dict):
            raise TypeError(f"resolver returned {type(payload).__name__}, not a dict")
        return payload

    def _resolver_failed(self, body: TriggerMessage, published_at: datetime,
                         exc: Exception) -> None:
        deaths = body["deaths"] + 1
        error = f"resolver failed: {type(exc).__name__}: {exc}"
        age = (utcnow() - published_at).total_seconds()
        bound = log.bind(event_id=body["event_id"], event_name=body["name"], attempt=deaths)
        if not self.policy.gives_up(deaths, age):
            delay = self.policy.delay(deaths)
            self.retries.schedule("trigger", {**body, "deaths": deaths}, delay)
            bound.warning("resolver failed, dispatch retried", error=error, delay=delay)
            return
        self.store.record_dispatch_failure(
            event_id=body["event_id"], event_name=body["name"], data=body["data"],
            published_at=published_at, sink=DISPATCH_SINK,
            attempt=NewAttempt(started_at=utcnow(), duration_ms=0.0, success=False,
                               status_code=None, response="", error=error, status="dead"),
            deaths=deaths,
        )
        bound.error("resolver failed for good, event recorded as dead", error=error)
