"""Deliver: attempts at deliveries, made concurrently, recorded together.

A batch of deliveries (the first attempts of newly dispatched events, and the
messages of the delivery queue) is attempted at once on the engine's event
loop: asynchronous sinks (``deliver_async``) are awaited there, synchronous
ones (third-party sinks included) run in the engine's sink threads. The
outcomes are then written in one transaction, retries scheduled, and only
then does the worker ack the messages: a crash before that sends them again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from asyncevents.core.catalog import OPERATIONAL_EVENTS
from asyncevents.core.clock import utcnow
from asyncevents.core.lanes import Slots, SubscriptionLanes
from asyncevents.core.messages import DeliverMessage
from asyncevents.core.models import Delivery, DeliveryStatus, Subscription
from asyncevents.core.plugins import Plugins
from asyncevents.core.retry import RetryManagement, RetryPolicy, through_outage
from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, DeliveryResult, Sink
from asyncevents.core.store import (
    Admission,
    CircuitPolicy,
    HealthChange,
    NewAttempt,
    Ordered,
    Outcome,
    Store,
    Wanted,
    ordering_value,
)
from asyncevents.errors import PermanentSinkError, RetryableSinkError, UnknownSink

if TYPE_CHECKING:
    from asyncevents.core.engine import Threads

__all__ = ["Deliverer", "Job", "call_sink", "call_sink_async"]

log = structlog.get_logger("asyncevents.deliver")

_ERROR_LIMIT = 1000
# How the error of an attempt whose sink is not installed starts (UnknownSink's text).
_UNKNOWN_SINK = "unknown sink "
_T = TypeVar("_T")


@dataclass(frozen=True)
class Job:
    """One delivery to attempt, with the message that asked for it."""

    message: DeliverMessage
    delivery: Delivery
    subscription: Subscription | None


@dataclass
class _Done:
    """An attempt made (or decided without the sink), waiting to be recorded."""

    job: Job
    result: DeliveryResult
    started: datetime
    duration_ms: float
    request: DeliveryRequest | None = None
    #: False for an outcome decided without calling the sink (it says nothing of
    #: the receiver's health).
    counted: bool = True


#: Seconds between two looks of a disabled subscription's waiting delivery at its state.
_DISABLED_WAIT = 15.0
#: Seconds between two reads of the installation's open circuits by one worker.
_OPEN_CIRCUITS_EVERY = 1.0
#: Publishes an operational event (name, data) through the normal publish path.
OperationalPublish = Callable[[str, dict[str, Any]], object]
_CHANGE_EVENTS = {"opened": "asyncevents.subscription.circuit_opened",
                  "closed": "asyncevents.subscription.circuit_closed",
                  "disabled": "asyncevents.subscription.disabled"}


def _exception_result(exc: BaseException) -> DeliveryResult:
    # Whatever a sink does, the attempt is recorded: its own errors say whether
    # to retry, anything else is a retryable failure.
    if isinstance(exc, RetryableSinkError):
        return DeliveryResult.failed(str(exc), retryable=True, retry_after=exc.retry_after)
    if isinstance(exc, PermanentSinkError):
        return DeliveryResult.failed(str(exc), retryable=False)
    return DeliveryResult.failed(f"{type(exc).__name__}: {exc}", retryable=True)


def _in_grace(subscription: Subscription, now: datetime) -> str:
    """The rotated token while its grace lasts (it signs too), else nothing."""
    until = subscription.previous_token_until
    if subscription.previous_token and until is not None and now < until:
        return subscription.previous_token
    return ""


def call_sink(sink: Sink, request: DeliveryRequest) -> DeliveryResult:
    """``sink.deliver(request)``, with what it raises turned into a result."""
    try:
        return sink.deliver(request)
    except Exception as exc:
        return _exception_result(exc)


async def call_sink_async(sink: Any, request: DeliveryRequest) -> DeliveryResult:
    """``await sink.deliver_async(request)``, with what it raises turned into a result."""
    try:
        result: DeliveryResult = await sink.deliver_async(request)
    except Exception as exc:
        return _exception_result(exc)
    return result


class Deliverer:
    """Calls the subscriptions' sinks and decides what happens next."""

    def __init__(self, settings: Settings, store: Store, plugins: Plugins,
                 retries: RetryManagement, policy: RetryPolicy) -> None:
        self.settings = settings
        self.store = store
        self.plugins = plugins
        self.retries = retries
        self.policy = policy
        self._sinks: dict[str, Sink] = {}
        #: Seconds an attempt's outcome is held while the store (or, for the
        #: retry, the broker) does not answer, before the message is requeued.
        self.patience = 30.0
        self.lanes = SubscriptionLanes()
        self._slots: Slots | None = None
        #: Set when the worker stops: deliveries not started yet are left
        #: unattempted (their messages go back to the queue).
        self.stopping = threading.Event()
        self._hooked = bool(plugins.hook.before_delivery.get_hookimpls()
                            or plugins.hook.after_delivery.get_hookimpls())
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
        self._held_lock = threading.Lock()  # _after runs in the I/O threads

    def use_slots(self, slots: int) -> None:
        """Tell the deliverer how many deliveries its worker runs at once."""
        self.lanes.slots = slots
        self._slots = None

    def sink(self, name: str) -> Sink:
        """The one instance of sink ``name`` this worker uses."""
        sink = self._sinks.get(name)
        if sink is None:
            sink = self._sinks[name] = self.plugins.build_sink(name, self.settings)
        return sink

    async def aclose(self) -> None:
        """Close every sink (an asynchronous one's clients in the loop that made them)."""
        sinks, self._sinks = list(self._sinks.values()), {}
        for sink in sinks:
            closing = getattr(sink, "aclose", None)
            if closing is not None:
                await closing()
            sink.close()

    def load(self, messages: Sequence[DeliverMessage]) -> list[Job | None]:
        """The deliveries of ``messages`` and their subscriptions in one query (None: gone)."""
        found = self.store.deliveries_and_subscriptions([m.delivery_id for m in messages])
        jobs: list[Job | None] = []
        for message in messages:
            pair = found.get(message.delivery_id)
            jobs.append(None if pair is None else Job(message, *pair))
        return jobs

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

    def is_slow(self, subscription_id: str) -> bool:
        """True when this subscription's recent deliveries took a second or more."""
        return self.lanes.is_slow(subscription_id)

    async def attempt_many(self, jobs: Sequence[Job], threads: Threads) -> list[bool]:
        """Attempt every job at once (up to the slots), record them; True where recorded.

        A job already final (a duplicate message) needs nothing and counts as
        done; one the lanes hold back is scheduled again without an attempt.
        """
        if self._slots is None:
            self._slots = Slots(self.lanes)
        admission = await self._admit(jobs, threads)
        settled = await asyncio.gather(*(self._attempt(job, threads, admission)
                                         for job in jobs))
        done = [d for d in settled if isinstance(d, _Done)]
        deferred = [(job, delay) for job, delay in
                    (d for d in settled if isinstance(d, tuple))]
        released = sorted(admission.admitted)  # max_in_flight permits given back after
        if not done and not deferred and not released:
            return [outcome is not False for outcome in settled]
        recorded = await threads.io(self._record_all, done, deferred, released)
        by_job = {id(d.job): ok for d, ok in zip(done, recorded, strict=True)}
        return [False if outcome is False else by_job.get(id(job), True)
                for job, outcome in zip(jobs, settled, strict=True)]

    async def _admit(self, jobs: Sequence[Job], threads: Threads) -> Admission:
        """The batch's open circuits and the permits of its rate-limited or
        max-in-flight subscriptions: one store call for the whole batch."""
        ids: set[str] = set()
        wanted: dict[str, list[str]] = {}
        limits: dict[str, Subscription] = {}
        ordered: dict[str, Ordered] = {}
        for job in jobs:
            sub = job.subscription
            if sub is None or not sub.active or job.delivery.status in ("delivered", "dead"):
                continue
            ids.add(sub.id)
            if sub.rate is not None or sub.max_in_flight is not None:
                wanted.setdefault(sub.id, []).append(job.delivery.id)
                limits[sub.id] = sub
            if sub.ordering_key:
                batch = ordered.setdefault(sub.id, Ordered(sub.ordering_key, []))
                assert isinstance(batch.deliveries, list)
                batch.deliveries.append((job.delivery.id, ordering_value(
                    job.delivery.payload, sub.ordering_key), job.delivery.published_at))
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

    async def _attempt(self, job: Job, threads: Threads,
                       admission: Admission) -> _Done | tuple[Job, float] | bool | None:
        delivery, subscription = job.delivery, job.subscription
        if delivery.status in ("delivered", "dead"):
            # A duplicate message (redelivery after a crash): the work is done.
            log.info("delivery already final, message dropped", delivery_id=delivery.id,
                     status=delivery.status)
            return None
        started = utcnow()
        if subscription is None:
            # Nothing to deliver to, ever: dead and visible, not requeued forever.
            return _Done(job, DeliveryResult.failed("the subscription no longer exists",
                                                    retryable=False), started, 0.0)
        request = DeliveryRequest(
            delivery_id=delivery.id, event_id=delivery.event_id,
            event_name=delivery.event_name, subscription_id=subscription.id,
            recipient=subscription.recipient, token=subscription.token,
            payload=delivery.payload, published_at=delivery.published_at,
            attempt=delivery.attempts + 1, source=self.settings.event_source,
            metadata=subscription.metadata, headers=subscription.headers,
            signature=subscription.signature, signing_key=subscription.signing_key,
            previous_token=_in_grace(subscription, started),
        )
        if not subscription.active and not subscription.deleted:
            # Disabled (by hand, by 410 Gone, or for failing too long): its deliveries
            # wait, visible, without an attempt, and resume once it is enabled again.
            return job, _DISABLED_WAIT
        if not subscription.active:
            return _Done(job, DeliveryResult.failed("subscription is disabled or deleted",
                                                    retryable=False), started, 0.0, request,
                         counted=False)
        if (delivery.event_name in OPERATIONAL_EVENTS
                and delivery.payload.get("subscription_id") == subscription.id):
            # No loops: a subscription never receives operational events about itself.
            return _Done(job, DeliveryResult.failed(
                "not sent: an operational event about this subscription itself",
                retryable=False), started, 0.0, request, counted=False)
        gates = admission.gates
        wait = admission.waits.get(delivery.id)
        if wait is not None:  # over a limit, or the circuit is open: waits, no attempt used
            return job, wait
        gate = gates.get(subscription.id)
        if gate == "open":  # waits, without an attempt, until the cool-down's probe
            return job, self.circuits.cooldown
        if gate == "probe":
            gates[subscription.id] = "open"  # one probe: the batch's others wait
        assert self._slots is not None
        key = subscription.id
        # A slow subscription over its share leaves the batch at once (deferred,
        # no attempt) rather than wait for a slot; the slots go to the fast
        # subscriptions first (see Slots).
        if self.lanes.must_defer(key):
            return job, self.lanes.defer_for(key)
        fast = await self._slots.acquire(key)
        try:
            if self.stopping.is_set():
                return False  # the worker stops: not started, requeued
            if not fast and self.lanes.must_defer(key):
                return job, self.lanes.defer_for(key)  # found slow while it waited
            lane = self.lanes.start(key)
            started = utcnow()
            clock = time.perf_counter()
            try:
                result = await self._deliver(subscription.sink, request, threads)
            finally:
                self.lanes.leave(key, lane)
            duration_ms = (time.perf_counter() - clock) * 1000
        finally:
            self._slots.release(fast)
        # A sink that is not installed says nothing about the receiver: its
        # failures do not count towards the circuit breaker (the policy makes
        # them dead, replayable once the plugin is back).
        local = result.error is not None and result.error.startswith(_UNKNOWN_SINK)
        return _Done(job, result, started, duration_ms, request, counted=not local)

    async def _deliver(self, sink_name: str, request: DeliveryRequest,
                       threads: Threads) -> DeliveryResult:
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
        if self._hooked:
            self.plugins.hook.before_delivery(request=request)
        if hasattr(sink, "deliver_async"):
            return await call_sink_async(sink, request)
        return await threads.sink(call_sink, sink, request)

    def _record_all(self, done: list[_Done], deferred: list[tuple[Job, float]],
                    released: Sequence[str] = ()) -> list[bool]:
        """Write the attempts in one transaction, then schedule what comes back later."""
        writes: list[tuple[str, NewAttempt]] = []
        retries: list[tuple[DeliverMessage, float] | None] = []
        for item in done:
            attempt, retry = self._decide(item)
            writes.append((item.job.delivery.id, attempt))
            retries.append(retry)

        def retrying(exc: Exception, wait: float) -> None:
            log.warning("cannot record the attempts yet, retrying", error=str(exc),
                        retry_in=wait, attempts=len(writes))

        # The receivers already have these attempts: giving up at the first
        # error would requeue the messages, send the events again and leave
        # the first requests without their rows. Past ``patience`` the error
        # goes up and the messages are requeued after all.
        numbers = self._hold(lambda: self.store.record_attempts(writes), retrying)
        recorded = []
        for item, (_, attempt), retry, number in zip(done, writes, retries, numbers,
                                                     strict=True):
            if number is None:
                log.error("delivery vanished before its attempt was recorded",
                          delivery_id=item.job.delivery.id)
                recorded.append(True)  # nothing left to do for that message
                continue
            if retry is not None:
                self._hold(lambda r=retry: self.retries.schedule(*r), retrying)  # type: ignore[misc]
            self._report(item, attempt, number, retry)
            recorded.append(True)
        for job, delay in deferred:
            self._hold(lambda j=job, d=delay: self.retries.schedule(j.message, d),  # type: ignore[misc]
                       retrying)
            log.debug("delivery deferred (slow subscription at its share, or circuit open)",
                      delivery_id=job.delivery.id, retry_in=delay)
        self._after(done, writes, numbers, released)
        return recorded

    def _coalesced(self, outcomes: list[Outcome]) -> list[Outcome]:
        """The outcomes to write now; healthy subscriptions' successes wait (a second at most)."""
        with self._held_lock:
            return self._coalesce(outcomes)

    def _coalesce(self, outcomes: list[Outcome]) -> list[Outcome]:
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

    def _after(self, done: list[_Done], writes: list[tuple[str, NewAttempt]],
               numbers: Sequence[int | None], released: Sequence[str]) -> None:
        """The subscriptions' health (one store call) and the operational events."""
        outcomes = [Outcome(item.job.subscription.id, item.result.success, item.result.error,
                            item.started)
                    for item, number in zip(done, numbers, strict=True)
                    if item.counted and number is not None and item.job.subscription is not None]
        overrides = {item.job.subscription.id: item.job.subscription.disable_after
                     for item in done if item.job.subscription is not None
                     and item.job.subscription.disable_after is not None}
        outcomes = self._coalesced(outcomes)
        changes: list[HealthChange] = []
        if outcomes or released:
            try:
                changes = self.store.record_health(outcomes, self.circuits, overrides,
                                                   released)
            except Exception as exc:  # health is advisory: the attempts are recorded
                log.warning("cannot record the subscriptions' health", error=str(exc))
        subs = {item.job.subscription.id: item.job.subscription for item in done
                if item.job.subscription is not None}
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
        for item, number in zip(done, numbers, strict=True):
            gone = item.job.subscription
            if item.result.disable_subscription and gone is not None and number is not None:
                self._publish("asyncevents.subscription.disabled", {  # 410 Gone
                    "subscription_id": gone.id, "recipient": gone.recipient,
                    "failure_ratio": None, "consecutive_failures": None,
                    "last_error": item.result.error, "failing_since": None})
        for item, (_, attempt), number in zip(done, writes, numbers, strict=True):
            delivery = item.job.delivery
            if (attempt.status == "dead" and number is not None and item.counted
                    and delivery.event_name not in OPERATIONAL_EVENTS):
                self._publish("asyncevents.delivery.dead", {
                    "delivery_id": delivery.id, "event_id": delivery.event_id,
                    "event_name": delivery.event_name,
                    "subscription_id": delivery.subscription_id, "attempts": number,
                    "error": attempt.error})

    def _publish(self, name: str, data: dict[str, Any]) -> None:
        if self.operational is None:
            return
        try:
            self.operational(name, data)
        except Exception as exc:  # the broker is down: the event is lost, the log says so
            log.error("cannot publish an operational event", event_name=name,
                      error=str(exc), subscription_id=data.get("subscription_id"))

    def _decide(self, item: _Done) -> tuple[NewAttempt, tuple[DeliverMessage, float] | None]:
        """The attempt row for one outcome, and the retry it calls for."""
        job, result = item.job, item.result
        message, delivery, subscription = job.message, job.delivery, job.subscription
        deaths = message.deaths + (0 if result.success else 1)
        policy = self.policy.override(subscription.retry_policy if subscription else None)
        status: DeliveryStatus
        delay: float | None = None
        if result.success:
            status = "delivered"
        elif result.retryable and subscription is not None and not policy.gives_up(
            deaths, (utcnow() - delivery.created_at).total_seconds()
        ):
            status = "retrying"
            delay = policy.delay(deaths)
            if result.retry_after is not None:
                delay = min(max(delay, result.retry_after), self.settings.max_retry_after)
        else:
            status = "dead"
        error = result.error
        if result.disable_subscription and subscription is not None:
            self._hold(lambda: self.store.update_subscription(subscription.id, active=False),
                       None)
            error = f"{error or 'gone'}; subscription {subscription.id} disabled"
        attempt = NewAttempt(
            started_at=item.started, duration_ms=item.duration_ms, success=result.success,
            status_code=result.status_code, response=result.response,
            error=error[:_ERROR_LIMIT] if error else None, status=status,
            next_attempt_at=utcnow() + timedelta(seconds=delay) if delay is not None else None,
            replay=message.replay and message.deaths == 0,
        )
        return attempt, (message.with_deaths(deaths), delay) if delay is not None else None

    def _report(self, item: _Done, attempt: NewAttempt, number: int,
                retry: tuple[DeliverMessage, float] | None) -> None:
        delivery, subscription = item.job.delivery, item.job.subscription
        if subscription is None:
            log.error("delivery without a subscription recorded as dead",
                      delivery_id=delivery.id, event_id=delivery.event_id)
            return
        log.info("delivery attempted", delivery_id=delivery.id, event_id=delivery.event_id,
                 subscription_id=subscription.id, attempt=number, status=attempt.status,
                 status_code=attempt.status_code, duration_ms=round(item.duration_ms, 1),
                 retry_in=retry[1] if retry else None, error=attempt.error)
        if self._hooked and subscription.active and item.request is not None:
            self.plugins.hook.after_delivery(request=item.request, result=item.result)

    def _hold(self, work: Callable[[], _T],
              on_retry: Callable[[Exception, float], None] | None) -> _T:
        """Run ``work``, retrying through a short store or broker outage."""
        def retrying(exc: Exception, wait: float) -> None:
            log.warning("cannot record the attempt yet, retrying", error=str(exc), retry_in=wait)

        return through_outage(work, patience=self.patience, first=0.25, longest=4.0,
                              on_retry=on_retry or retrying)
