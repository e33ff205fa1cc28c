"""Deliver: one delivery message in, one attempt recorded, a retry or a final state out."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import structlog

from asyncevents.core.clock import utcnow
from asyncevents.core.messages import DeliverMessage
from asyncevents.core.models import Delivery, DeliveryStatus, Subscription
from asyncevents.core.plugins import Plugins
from asyncevents.core.retry import RetryPolicy
from asyncevents.core.retrymanagement import RetryManagement
from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, DeliveryResult, Sink
from asyncevents.core.store import Store
from asyncevents.core.store.store import NewAttempt
from asyncevents.errors import PermanentSinkError, RetryableSinkError

__all__ = ["Deliverer"]

log = structlog.get_logger("asyncevents.deliver")

_ERROR_LIMIT = 1000


def _call_sink(sink: Sink, request: DeliveryRequest) -> DeliveryResult:
    # Whatever a sink does, the attempt is recorded: its own errors say whether
    # to retry, anything else is a retryable failure.
    try:
        return sink.deliver(request)
    except RetryableSinkError as exc:
        return DeliveryResult.failed(str(exc), retryable=True, retry_after=exc.retry_after)
    except PermanentSinkError as exc:
        return DeliveryResult.failed(str(exc), retryable=False)
    except Exception as exc:
        return DeliveryResult.failed(f"{type(exc).__name__}: {exc}", retryable=True)


class Deliverer:
    """Calls the subscription's sink and decides what happens next."""

    def __init__(self, settings: Settings, store: Store, plugins: Plugins,
                 retries: RetryManagement, policy: RetryPolicy) -> None:
        self.settings = settings
        self.store = store
        self.plugins = plugins
        self.retries = retries
        self.policy = policy
        self._sinks: dict[str, Sink] = {}
        self._lock = threading.Lock()

    def sink(self, name: str) -> Sink:
        """The one instance of sink ``name`` this worker uses."""
        with self._lock:
            if name not in self._sinks:
                self._sinks[name] = self.plugins.build_sink(name, self.settings)
            return self._sinks[name]

    def close(self) -> None:
        """Close every sink."""
        with self._lock:
            sinks, self._sinks = list(self._sinks.values()), {}
        for sink in sinks:
            sink.close()

    def handle(self, body: DeliverMessage) -> None:
        """Make one attempt at one delivery."""
        delivery = self.store.get_delivery(body["delivery_id"])
        bound = log.bind(delivery_id=delivery.id, event_id=delivery.event_id,
                         subscription_id=delivery.subscription_id)
        if delivery.status in ("delivered", "dead"):
            # A duplicate message (redelivery after a crash): the work is done.
            bound.info("delivery already final, message dropped", status=delivery.status)
            return
        subscription = self.store.get_subscription(delivery.subscription_id, deleted=True)
        request = DeliveryRequest(
            delivery_id=delivery.id, event_id=delivery.event_id,
            event_name=delivery.event_name, subscription_id=subscription.id,
            recipient=subscription.recipient, token=subscription.token,
            payload=delivery.payload, published_at=delivery.published_at,
            attempt=delivery.attempts + 1, source=self.settings.event_source,
            metadata=subscription.metadata,
        )
        started = utcnow()
        clock = time.perf_counter()
        if not subscription.active:
            result = DeliveryResult.failed("subscription is disabled or deleted", retryable=False)
        else:
            self.plugins.hook.before_delivery(request=request)
            result = _call_sink(self.sink(subscription.sink), request)
        duration_ms = (time.perf_counter() - clock) * 1000
        self._record(body, delivery, subscription, request, result, started, duration_ms)
        if subscription.active:
            self.plugins.hook.after_delivery(request=request, result=result)

    def _record(self, body: DeliverMessage, delivery: Delivery, subscription: Subscription,
                request: DeliveryRequest, result: DeliveryResult,
                started: datetime, duration_ms: float) -> None:
        deaths = body["deaths"] + (0 if result.success else 1)
        policy = self.policy.override(subscription.retry_policy)
        status: DeliveryStatus
        delay: float | None = None
        if result.success:
            status = "delivered"
        elif result.retryable and not policy.gives_up(
            deaths, (utcnow() - delivery.created_at).total_seconds()
        ):
            status = "retrying"
            delay = policy.delay(deaths)
            if result.retry_after is not None:
                delay = min(max(delay, result.retry_after), self.settings.max_retry_after)
        else:
            status = "dead"
        error = result.error
        if result.disable_subscription:
            self.store.update_subscription(subscription.id, active=False)
            error = f"{error or 'gone'}; subscription {subscription.id} disabled"
        next_at = utcnow() + timedelta(seconds=delay) if delay is not None else None
        number = self.store.record_attempt(delivery.id, NewAttempt(
            started_at=started,
            duration_ms=duration_ms, success=result.success,
            status_code=result.status_code, response=result.response,
            error=error[:_ERROR_LIMIT] if error else None, status=status,
            next_attempt_at=next_at, replay=body.get("replay", False) and body["deaths"] == 0,
        ))
        if delay is not None:
            self.retries.schedule("deliver", {**body, "deaths": deaths}, delay)
        log.bind(delivery_id=delivery.id, event_id=delivery.event_id,
                 subscription_id=subscription.id, attempt=number).info(
            "delivery attempted", status=status, status_code=result.status_code,
            duration_ms=round(duration_ms, 1), retry_in=delay, error=error,
        )
