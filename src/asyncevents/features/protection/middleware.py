"""Receiver protection around the attempts: who may go now, and what the outcomes did.

Before a batch's attempts, :meth:`Protection.before_attempts` asks the store
(one call for the whole batch, and none at all for a batch without open
circuits, limited or ordered subscriptions) which deliveries may go: an open
circuit, a rate limit, ``max_in_flight`` or an ordering key makes the others
wait, without an attempt. After the attempts are recorded,
:meth:`Protection.after_attempts` counts their outcomes into the
subscriptions' health (circuits, auto-disable) and publishes the
``asyncevents.subscription.circuit_*`` / ``.disabled`` events those changes
call for.

Its state (the open circuits it knows of, the successes it holds back) is
the engine loop's: every method runs there, and the store calls go through
the pipeline's I/O threads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import structlog

from asyncevents.core.models import Subscription, shown_recipient
from asyncevents.core.pipeline import Batch, Middleware, PipelineContext, Settled
from asyncevents.core.store import (
    Admission,
    CircuitPolicy,
    HealthChange,
    Ordered,
    Outcome,
    Wanted,
    ordering_value,
)

__all__ = ["Protection"]

log = structlog.get_logger("asyncevents.deliver")

#: Seconds between two reads of the installation's open circuits by one worker.
_OPEN_CIRCUITS_EVERY = 1.0
#: A healthy subscription's successes are written at most this often (seconds).
_HOLD_SUCCESSES = 1.0
_CHANGE_EVENTS = {"opened": "asyncevents.subscription.circuit_opened",
                  "closed": "asyncevents.subscription.circuit_closed",
                  "disabled": "asyncevents.subscription.disabled"}


class Protection(Middleware):
    """Circuits, limits and ordering for one engine's deliveries."""

    name = "protection"

    def __init__(self, context: PipelineContext) -> None:
        settings = context.settings
        self.context = context
        self.store = context.store
        self.circuits = CircuitPolicy(
            consecutive_failures=settings.circuit_consecutive_failures,
            failure_ratio=settings.circuit_failure_ratio,
            min_attempts=settings.circuit_min_attempts, window=settings.circuit_window,
            cooldown=settings.circuit_cooldown,
            probe_lease=settings.http_timeout + settings.http_connect_timeout + 30,
            disable_after_hours=settings.disable_after)
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

    @classmethod
    def for_engine(cls, context: PipelineContext) -> Protection:
        """The factory registered with ``register_middleware``."""
        return cls(context)

    async def before_attempts(self, batch: Batch) -> None:
        """Hold back what an open circuit, a limit or an ordering key keeps waiting."""
        admission = await self._admit(batch)
        batch.notes[self.name] = sorted(admission.admitted)  # permits given back after
        for job in batch.jobs:
            sub = job.subscription
            if sub is None or not sub.active or job.delivery.status in ("delivered", "dead"):
                continue
            wait = admission.waits.get(job.delivery.id)
            if wait is not None:  # over a limit, or ordered behind an earlier one
                batch.hold(job.delivery.id, wait)
                continue
            gate = admission.gates.get(sub.id)
            if gate == "open":
                batch.hold(job.delivery.id, self.circuits.cooldown)
            elif gate == "probe":
                # The first delivery of a subscription whose cool-down is over is
                # the circuit's probe; the batch's others wait for its outcome.
                admission.gates[sub.id] = "open"

    async def _admit(self, batch: Batch) -> Admission:
        ids: set[str] = set()
        wanted: dict[str, list[str]] = {}
        limits: dict[str, Subscription] = {}
        ordered: dict[str, Ordered] = {}
        for job in batch.jobs:
            delivery, sub = job.delivery, job.subscription
            if sub is None or not sub.active or delivery.status in ("delivered", "dead"):
                continue
            ids.add(sub.id)
            if sub.rate is not None or sub.max_in_flight is not None:
                wanted.setdefault(sub.id, []).append(delivery.id)
                limits[sub.id] = sub
            if sub.ordering_key:
                group = ordered.setdefault(sub.id, Ordered(sub.ordering_key, []))
                assert isinstance(group.deliveries, list)
                group.deliveries.append((delivery.id, ordering_value(
                    delivery.payload, sub.ordering_key), delivery.published_at))
        if not ids:
            return Admission()
        clock = time.monotonic()
        if clock - self._open_at >= _OPEN_CIRCUITS_EVERY:
            self._open = await self.context.io(self.store.open_circuits)
            self._open_at = clock
        gated = ids & self._open
        if not gated and not wanted and not ordered:
            return Admission()
        asks = {sub_id: Wanted(delivery_ids, limits[sub_id].rate_per_second,
                               limits[sub_id].max_in_flight)
                for sub_id, delivery_ids in wanted.items()}
        admission: Admission = await self.context.io(
            self.store.admit, sorted(gated), asks, self.circuits, self.circuits.probe_lease,
            ordered)
        return admission

    async def after_attempts(self, batch: Batch, settled: Sequence[Settled]) -> None:
        """Count recorded outcomes into the subscriptions' health (one store call),
        give back ``max_in_flight`` permits, publish the circuit events."""
        released: list[str] = batch.notes.get(self.name, [])
        outcomes = self._coalesce([Outcome(s.subscription.id, s.success, s.error, s.started)
                                   for s in settled if s.counted])
        overrides = {s.subscription.id: s.subscription.disable_after for s in settled
                     if s.subscription.disable_after is not None}
        if outcomes or released:
            await self._record(outcomes, overrides, released,
                               {s.subscription.id: s.subscription for s in settled})

    async def idle(self) -> None:
        """Write the successes held back for a second or more."""
        await self._flush(older_than=_HOLD_SUCCESSES)

    async def close(self) -> None:
        """Write every success held back."""
        await self._flush(older_than=0.0)

    async def _flush(self, older_than: float) -> None:
        if not self._held_ok or time.monotonic() - self._held_since < older_than:
            return
        held, self._held_ok = self._held_ok, []
        await self._record(held, {}, [], {})

    async def _record(self, outcomes: list[Outcome], overrides: dict[str, float],
                      released: Sequence[str], subs: Mapping[str, Subscription]) -> None:
        try:
            changes: list[HealthChange] = await self.context.io(
                self.store.record_health, outcomes, self.circuits, overrides, released)
        except Exception as exc:  # health is advisory: the attempts are recorded
            log.warning("cannot record the subscriptions' health", error=str(exc))
            return
        await self._changed(changes, subs)

    async def _changed(self, changes: Sequence[HealthChange],
                       subs: Mapping[str, Subscription]) -> None:
        for change in changes:
            if change.change == "opened":
                self._open.add(change.subscription_id)  # this worker holds back at once
            elif change.change == "closed":
                self._open.discard(change.subscription_id)
            sub = subs.get(change.subscription_id)
            log.warning(f"subscription circuit {change.change}",
                        subscription_id=change.subscription_id, error=change.last_error)
            await self.context.announce(_CHANGE_EVENTS[change.change], {
                "subscription_id": change.subscription_id,
                "recipient": shown_recipient(sub.recipient) if sub else None,
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
        if self._held_ok and (failing or now - self._held_since >= _HOLD_SUCCESSES):
            write.extend(self._held_ok)
            self._held_ok = []
        written = {o.subscription_id for o in write}
        self._healthy -= failing
        self._healthy |= written - failing - self._open
        return write
