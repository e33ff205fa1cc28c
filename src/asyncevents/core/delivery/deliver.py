"""Deliver: attempts at deliveries, made concurrently, recorded together.

A batch of deliveries (the first attempts of newly dispatched events, and the
messages of the delivery queue) is attempted at once on the engine's event
loop: asynchronous sinks (``deliver_async``) are awaited there, synchronous
ones (third-party sinks included) run in the engine's sink threads. The
outcomes are then written in one transaction, retries scheduled, and only
then does the worker ack the messages: a crash before that sends them again.
Features that act on the attempts (receiver protection, operational events, a
plugin's quota) are the pipeline's middleware
(:mod:`~asyncevents.core.pipeline`), asked before and told after.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from asyncevents.core.clock import utcnow
from asyncevents.core.delivery.lanes import Slots, SubscriptionLanes
from asyncevents.core.delivery.threads import SinkOverrun
from asyncevents.core.messages import DeliverMessage
from asyncevents.core.models import DeliveryStatus, Subscription
from asyncevents.core.pipeline import Batch, Job, Pipeline, Settled
from asyncevents.core.plugins import Plugins
from asyncevents.core.retry.base import RetryManagement
from asyncevents.core.retry.outage import through_outage
from asyncevents.core.retry.policy import RetryPolicy
from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, DeliveryResult, Sink
from asyncevents.core.store import NewAttempt, Store
from asyncevents.errors import PermanentSinkError, RetryableSinkError, UnknownSink

if TYPE_CHECKING:
    from asyncevents.core.delivery.threads import Threads

__all__ = ["Deliverer", "Job", "call_sink", "call_sink_async"]

log = structlog.get_logger("asyncevents.deliver")

_ERROR_LIMIT = 1000
_T = TypeVar("_T")


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


@dataclass(frozen=True)
class _Deferred:
    """A delivery put back in line for ``seconds``, no attempt used (held, or over its share)."""

    job: Job
    seconds: float


class _Unattempted(Enum):
    """A delivery left alone: already final (a duplicate message, done), or not started
    because the worker stops (its message goes back to the queue)."""

    FINAL = "final"
    STOPPING = "stopping"


#: What became of one job of a batch.
_Attempt = _Done | _Deferred | _Unattempted

#: Seconds between two looks of a disabled subscription's waiting delivery at its state.
_DISABLED_WAIT = 15.0


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


async def call_sink_async(sink: Any, request: DeliveryRequest, *,
                          deadline: float | None = None) -> DeliveryResult:
    """``await sink.deliver_async(request)``, with what it raises turned into a result.

    With a ``deadline`` (seconds), an attempt still running then is cancelled
    and is a retryable failure at once: its end is not awaited, so a sink that
    ignores the cancellation cannot hold the attempt either.
    """
    if deadline is None:
        return await _awaited(sink, request)
    task = asyncio.ensure_future(_awaited(sink, request))
    try:
        finished, _ = await asyncio.wait({task}, timeout=deadline)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if finished:
        return task.result()
    task.cancel()
    task.add_done_callback(_retrieve)
    return DeliveryResult.failed(f"no answer within {deadline:g} s: the attempt's deadline "
                                 "(ASYNCEVENTS_ATTEMPT_DEADLINE) ended it", retryable=True)


async def _awaited(sink: Any, request: DeliveryRequest) -> DeliveryResult:
    try:
        result: DeliveryResult = await sink.deliver_async(request)
    except Exception as exc:
        return _exception_result(exc)
    return result


def _retrieve(task: asyncio.Future[Any]) -> None:
    # An abandoned attempt's outcome, read so that asyncio does not log it as lost.
    if not task.cancelled():
        task.exception()


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
        #: The features on the path (set by the engine): asked before, told after.
        self.pipeline = Pipeline([])

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

    async def attempt_many(self, jobs: Sequence[Job], threads: Threads) -> list[bool]:
        """Attempt every job at once (up to the slots), record them; True where recorded.

        A job already final (a duplicate message) needs nothing and counts as
        done; one the lanes or the pipeline's middleware hold back is scheduled
        again without an attempt.
        """
        if self._slots is None:
            self._slots = Slots(self.lanes)
        batch = Batch(jobs)
        await self.pipeline.before_attempts(batch)
        settled = await asyncio.gather(*(self._attempt(job, threads, batch) for job in jobs))
        done = [d for d in settled if isinstance(d, _Done)]
        deferred = [d for d in settled if isinstance(d, _Deferred)]
        if not done and not deferred and not any(batch.notes.values()):
            return [outcome is not _Unattempted.STOPPING for outcome in settled]
        recorded, told = await threads.io(self._record_all, done, deferred)
        await self.pipeline.after_attempts(batch, told)
        by_job = {id(d.job): ok for d, ok in zip(done, recorded, strict=True)}
        return [False if outcome is _Unattempted.STOPPING else by_job.get(id(job), True)
                for job, outcome in zip(jobs, settled, strict=True)]

    async def _attempt(self, job: Job, threads: Threads,
                       batch: Batch) -> _Attempt:
        delivery, subscription = job.delivery, job.subscription
        if delivery.status in ("delivered", "dead"):
            # A duplicate message (redelivery after a crash): the work is done.
            log.info("delivery already final, message dropped", delivery_id=delivery.id,
                     status=delivery.status)
            return _Unattempted.FINAL
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
            return _Deferred(job, _DISABLED_WAIT)
        if not subscription.active:
            return _Done(job, DeliveryResult.failed("subscription is disabled or deleted",
                                                    retryable=False), started, 0.0, request,
                         counted=False)
        refused = batch.refusals.get(delivery.id)
        if refused is not None:  # a middleware's rule: dead, its sink never called
            return _Done(job, DeliveryResult.failed(refused, retryable=False), started, 0.0,
                         request, counted=False)
        wait = batch.holds.get(delivery.id)
        if wait is not None:  # a middleware holds it back (a limit, a circuit): no attempt used
            return _Deferred(job, wait)
        assert self._slots is not None
        key = subscription.id
        # A slow subscription over its share leaves the batch at once (deferred,
        # no attempt) rather than wait for a slot; the slots go to the fast
        # subscriptions first (see Slots).
        if self.lanes.must_defer(key):
            return _Deferred(job, self.lanes.defer_for(key))
        fast = await self._slots.acquire(key)
        try:
            if self.stopping.is_set():
                return _Unattempted.STOPPING  # the worker stops: requeued
            if not fast and self.lanes.must_defer(key):
                return _Deferred(job, self.lanes.defer_for(key))  # found slow meanwhile
            lane = self.lanes.start(key)
            started = utcnow()
            clock = time.perf_counter()
            try:
                result, reached = await self._deliver(subscription.sink, request, threads)
            finally:
                self.lanes.leave(key, lane)
            duration_ms = (time.perf_counter() - clock) * 1000
        finally:
            self._slots.release(fast)
        # A sink that is not installed says nothing about the receiver: its
        # failures do not count towards the circuit breaker (the policy makes
        # them dead, replayable once the plugin is back).
        return _Done(job, result, started, duration_ms, request, counted=reached)

    async def _deliver(self, sink_name: str, request: DeliveryRequest,
                       threads: Threads) -> tuple[DeliveryResult, bool]:
        """The attempt's result, and whether a sink was there to make it."""
        try:
            sink = self.sink(sink_name)
        except UnknownSink as exc:
            # Uninstalled or disabled since the subscription was made: an attempt
            # that failed, retried by the policy until dead (visible, replayable
            # once the plugin is back), never a message requeued in a loop.
            return DeliveryResult.failed(str(exc), retryable=True), False
        except Exception as exc:  # the sink's own start-up failed (a client, a setting)
            return DeliveryResult.failed(
                f"sink {sink_name!r} could not be started: {type(exc).__name__}: {exc}",
                retryable=True), True
        if self._hooked:
            self.plugins.hook.before_delivery(request=request)
        # The attempt's deadline, which nothing the receiver does can extend (an
        # answer trickled byte by byte, an interim 100 Continue never sent): past
        # it the attempt is a retryable failure and its slot is free again.
        deadline = self.settings.attempt_seconds
        if hasattr(sink, "deliver_async"):
            return await call_sink_async(sink, request, deadline=deadline), True
        try:
            return await threads.sink(deadline, call_sink, sink, request), True
        except SinkOverrun as exc:
            log.warning("sink call past the attempt's deadline", sink=sink_name,
                        delivery_id=request.delivery_id, deadline=deadline,
                        started=exc.started, stuck_threads=exc.stuck)
            return DeliveryResult.failed(str(exc), retryable=True), True

    def _record_all(self, done: list[_Done], deferred: list[_Deferred]
                    ) -> tuple[list[bool], list[Settled]]:
        """Write the attempts in one transaction, then schedule what comes back later;
        what was recorded, for the pipeline's ``after_attempts``."""
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
        for later in deferred:
            self._hold(lambda d=later: self.retries.schedule(d.job.message, d.seconds),  # type: ignore[misc]
                       retrying)
            log.debug("delivery deferred (held back, or a slow subscription at its share)",
                      delivery_id=later.job.delivery.id, retry_in=later.seconds)
        told = [Settled(item.job.delivery, item.job.subscription, item.result.success,
                        attempt.error, item.started, attempt.status, number, item.counted,
                        gone=item.result.disable_subscription, duration_ms=item.duration_ms,
                        status_code=item.result.status_code,
                        retryable=item.result.retryable)
                for item, (_, attempt), number in zip(done, writes, numbers, strict=True)
                if number is not None and item.job.subscription is not None]
        return recorded, told

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
