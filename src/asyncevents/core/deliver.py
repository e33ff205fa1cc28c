"""Deliver: one delivery message in, one attempt recorded, a retry or a final state out."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

import structlog

from asyncevents.core.clock import utcnow
from asyncevents.core.messages import DeliverMessage
from asyncevents.core.models import Delivery, DeliveryStatus, Subscription
from asyncevents.core.plugins import Plugins
from asyncevents.core.retry import RetryManagement, RetryPolicy, through_outage
from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, DeliveryResult, Sink
from asyncevents.core.store import NewAttempt, Store
from asyncevents.errors import PermanentSinkError, RetryableSinkError, UnknownSink

__all__ = ["Deliverer", "SubscriptionLanes"]

log = structlog.get_logger("asyncevents.deliver")

_ERROR_LIMIT = 1000
_T = TypeVar("_T")
# A subscription whose deliveries take this long (seconds) is slow.
_SLOW = 1.0
_DEFER_MAX = 60.0


class SubscriptionLanes:
    """Keeps slow subscriptions from taking every delivery slot of a worker.

    A subscription is fast once its recent deliveries took under a second
    and none has been running that long, and slow once one took longer. Slow
    and new subscriptions together may hold all but a quarter of the slots,
    and one slow subscription half of them. Past that a delivery is deferred
    (back in line a moment later, no attempt recorded), so a hanging receiver
    cannot hold back the others' deliveries. With ``slots`` under 2
    (unknown, or one thread) nothing is ever deferred.

    Deferred deliveries of one subscription are spread out, about one of its
    durations apart per free slot, so a long backlog of a hanging receiver
    comes back roughly when there is room for it instead of churning.
    """

    def __init__(self, slots: int = 0) -> None:
        self.slots = slots
        self._lock = threading.Lock()
        self._running: dict[str, list[float]] = {}
        self._typical: dict[str, float] = {}  # moving average of durations, seconds
        self._deferred: dict[str, list[float]] = {}  # when deferred deliveries come back

    def _slow(self, key: str, now: float) -> bool:
        running = self._running.get(key)
        return self._typical.get(key, 0.0) >= _SLOW or bool(
            running and now - running[0] >= _SLOW)

    def is_slow(self, key: str) -> bool:
        """True when subscription ``key`` is slow now (see the class docstring)."""
        with self._lock:
            return self._slow(key, time.monotonic())

    def _fast(self, key: str, now: float) -> bool:
        return key in self._typical and not self._slow(key, now)

    def enter(self, key: str) -> float | None:
        """Start a delivery for subscription ``key``: its start time, or None to defer it."""
        now = time.monotonic()
        with self._lock:
            if self.slots >= 2 and not self._fast(key, now):
                held = sum(len(r) for k, r in self._running.items() if not self._fast(k, now))
                full = held >= self.slots - max(1, self.slots // 4)
                if full or (self._slow(key, now)
                            and len(self._running.get(key, ())) >= max(1, self.slots // 2)):
                    return None
            self._running.setdefault(key, []).append(now)
            return now

    def leave(self, key: str, started: float) -> None:
        """A delivery that ``enter`` started is over."""
        took = time.monotonic() - started
        with self._lock:
            running = self._running.get(key, [])
            if started in running:
                running.remove(started)
            if not running:
                self._running.pop(key, None)
            before = self._typical.get(key)
            self._typical[key] = took if before is None else 0.7 * before + 0.3 * took

    def defer_for(self, key: str) -> float:
        """Seconds to put a deferred delivery of ``key`` back for (and count it as waiting)."""
        now = time.monotonic()
        with self._lock:
            waiting = [t for t in self._deferred.get(key, ()) if t > now]
            typical = max(self._typical.get(key, 0.5), 0.5)
            delay = min(_DEFER_MAX, typical * (1 + len(waiting) // max(1, self.slots // 2)))
            # Whole half-seconds, then whole 5 s: few distinct RabbitMQ delay queues.
            delay = math.ceil(delay * 2) / 2 if delay < 10 else math.ceil(delay / 5) * 5
            waiting.append(now + delay)
            self._deferred[key] = waiting
        return delay


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
        #: Seconds an attempt's outcome is held while the store (or, for the
        #: retry, the broker) does not answer, before the message is requeued.
        self.patience = 30.0
        self.lanes = SubscriptionLanes()

    def use_slots(self, slots: int) -> None:
        """Tell the deliverer how many deliveries its worker runs at once."""
        self.lanes.slots = slots

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

    def handle(self, message: DeliverMessage) -> None:
        """Make one attempt at one delivery."""
        # One query for both: this runs for every attempt.
        delivery, subscription = self.store.delivery_and_subscription(message.delivery_id)
        self.attempt(message, delivery, subscription)

    def give_up(self, message: DeliverMessage, reason: str) -> None:
        """Record ``message``'s delivery as dead without an attempt at it (the queue gave up)."""
        delivery = self.store.get_delivery(message.delivery_id)
        if delivery.status in ("delivered", "dead"):
            return
        self.store.record_attempt(delivery.id, NewAttempt(
            started_at=utcnow(), duration_ms=0.0, success=False, status_code=None,
            response="", error=reason, status="dead"))
        log.error("delivery given up by the queue, recorded as dead", delivery_id=delivery.id,
                  event_id=delivery.event_id, error=reason)

    def attempt(self, message: DeliverMessage, delivery: Delivery,
                subscription: Subscription | None) -> None:
        """Make one attempt at ``delivery``, already read from the store (or just created)."""
        bound = log.bind(delivery_id=delivery.id, event_id=delivery.event_id,
                         subscription_id=delivery.subscription_id)
        if delivery.status in ("delivered", "dead"):
            # A duplicate message (redelivery after a crash): the work is done.
            bound.info("delivery already final, message dropped", status=delivery.status)
            return
        if subscription is None:
            # Nothing to deliver to, ever: dead and visible, not requeued forever.
            self.store.record_attempt(delivery.id, NewAttempt(
                started_at=utcnow(), duration_ms=0.0, success=False, status_code=None,
                response="", error="the subscription no longer exists", status="dead"))
            bound.error("delivery without a subscription recorded as dead")
            return
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
            lane = self.lanes.enter(subscription.id)
            if lane is None:
                delay = self.lanes.defer_for(subscription.id)
                self.retries.schedule(message, delay)
                bound.debug("slow subscription at its share of the slots, delivery deferred",
                            retry_in=delay)
                return
            try:
                result = self._deliver(subscription.sink, request)
            finally:
                self.lanes.leave(subscription.id, lane)
        duration_ms = (time.perf_counter() - clock) * 1000
        self._record(message, delivery, subscription, request, result, started, duration_ms)
        if subscription.active:
            self.plugins.hook.after_delivery(request=request, result=result)

    def _deliver(self, sink_name: str, request: DeliveryRequest) -> DeliveryResult:
        try:
            sink = self.sink(sink_name)
        except UnknownSink as exc:
            # Uninstalled or disabled since the subscription was made: an attempt
            # that failed, retried by the policy until dead (visible, replayable
            # once the plugin is back), never a message requeued in a loop.
            return DeliveryResult.failed(str(exc), retryable=True)
        except Exception as exc:  # the sink's own start-up failed (a client, a setting)
            return DeliveryResult.failed(
                f"sink {sink_name!r} could not be started: {type(exc).__name__}: {exc}",
                retryable=True)
        self.plugins.hook.before_delivery(request=request)
        return _call_sink(sink, request)

    def is_slow(self, subscription_id: str) -> bool:
        """True when this subscription's recent deliveries took a second or more."""
        return self.lanes.is_slow(subscription_id)

    def _record(self, message: DeliverMessage, delivery: Delivery, subscription: Subscription,
                request: DeliveryRequest, result: DeliveryResult,
                started: datetime, duration_ms: float) -> None:
        deaths = message.deaths + (0 if result.success else 1)
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
        bound = log.bind(delivery_id=delivery.id, event_id=delivery.event_id,
                         subscription_id=subscription.id)
        if result.disable_subscription:
            self._hold(bound, lambda: self.store.update_subscription(subscription.id,
                                                                     active=False))
            error = f"{error or 'gone'}; subscription {subscription.id} disabled"
        next_at = utcnow() + timedelta(seconds=delay) if delay is not None else None
        attempt = NewAttempt(
            started_at=started,
            duration_ms=duration_ms, success=result.success,
            status_code=result.status_code, response=result.response,
            error=error[:_ERROR_LIMIT] if error else None, status=status,
            next_attempt_at=next_at, replay=message.replay and message.deaths == 0,
        )
        number = self._hold(bound, lambda: self.store.record_attempt(delivery.id, attempt))
        if delay is not None:
            retry = message.with_deaths(deaths)
            self._hold(bound, lambda: self.retries.schedule(retry, delay))
        bound.bind(attempt=number).info(
            "delivery attempted", status=status, status_code=result.status_code,
            duration_ms=round(duration_ms, 1), retry_in=delay, error=error,
        )

    def _hold(self, bound: structlog.typing.FilteringBoundLogger,
              work: Callable[[], _T]) -> _T:
        """Run ``work``, retrying through a short store or broker outage.

        The receiver already has this attempt: giving up at the first error
        would requeue the message, send the event again and leave the first
        request without its attempt row. Past ``patience`` the error goes up
        and the message is requeued after all.
        """
        def retrying(exc: Exception, wait: float) -> None:
            bound.warning("cannot record the attempt yet, retrying", error=str(exc),
                          retry_in=wait)

        return through_outage(work, patience=self.patience, first=0.25, longest=4.0,
                              on_retry=retrying)
