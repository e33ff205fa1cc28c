"""The pipeline: middleware that features attach to the path of an event, per batch.

The kernel (publish → transport → dispatch → attempt → record → retry) calls
the pipeline at fixed points of each batch; the features that act on that path
— receiver protection, operational events, tracing, a plugin's quota — are
:class:`Middleware`, made for each engine by the factories that plugins
register with the ``register_middleware`` hook (the built-in ones through the
same ``asyncevents`` entry point as any third-party plugin, so
``ASYNCEVENTS_DISABLE_PLUGINS`` turns them off by name).

Every method runs on the engine's event loop, which owns the middleware's
state: no lock is needed, and blocking calls (the store, the broker) go
through :attr:`PipelineContext.io`, which runs them in an I/O thread and
hands the result back to the loop.

=====================  ================================================  ==================
method                 when                                              may
=====================  ================================================  ==================
``before_dispatch``    the batch's events are about to be dispatched     replace messages
``after_dispatch``     they were dispatched (or failed to be)            read the error
``before_attempts``    the batch's deliveries are loaded, none started   hold back, refuse
``after_attempts``     the attempts are recorded, the messages not       read the outcomes
                       acked yet
``idle``               the worker has had nothing to do for a second     flush what it held
``close``              the engine stops                                  flush, release
=====================  ================================================  ==================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import structlog

from asyncevents.core.messages import DeliverMessage, TriggerMessage
from asyncevents.core.models import Delivery, DeliveryStatus, Subscription

if TYPE_CHECKING:
    from asyncevents.core.settings import Settings
    from asyncevents.core.store import Store

__all__ = ["IO", "Batch", "DispatchBatch", "Job", "Middleware", "MiddlewareFactory", "Pipeline",
           "PipelineContext", "Publish", "Settled"]

log = structlog.get_logger("asyncevents.pipeline")

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: Publishes an event (name, data) through the application's normal publish path.
Publish = Callable[[str, dict[str, Any]], object]


@dataclass(frozen=True)
class Job:
    """One delivery to attempt, with the message that asked for it."""

    message: DeliverMessage
    delivery: Delivery
    subscription: Subscription | None


@dataclass(frozen=True)
class Settled:
    """A recorded attempt, as the pipeline's middleware sees it."""

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
    #: How long the sink took (0 for an outcome decided without it).
    duration_ms: float = 0.0
    #: The receiver's HTTP status, when it answered.
    status_code: int | None = None
    #: The failure was one to retry (a timeout, a 5xx), whatever the policy then decided.
    retryable: bool = False


@dataclass
class DispatchBatch:
    """The events a batch is about to dispatch; middleware may replace the messages
    (with ones that carry a trace context, say) before they are dispatched."""

    messages: list[TriggerMessage]
    #: Per-batch notes of the middleware (by its name), from before to after the dispatch.
    notes: dict[str, Any] = field(default_factory=dict)


class IO(Protocol):
    """Runs a blocking call in an I/O thread and awaits its result on the loop."""

    def __call__(self, fn: Callable[_P, _T], /, *args: _P.args,
                 **kwargs: _P.kwargs) -> Awaitable[_T]:
        """``await io(store.method, arg)``."""
        ...


@dataclass(frozen=True)
class PipelineContext:
    """What a middleware factory is given when an engine is made."""

    settings: Settings
    store: Store
    io: IO
    #: Publishes an event through the application's publish path (None: nowhere to publish).
    publish: Publish | None = None

    async def announce(self, name: str, data: dict[str, Any]) -> None:
        """Publish event ``name`` (in an I/O thread); a failure is logged, never raised:
        the attempts it is about are recorded already."""
        if self.publish is None:
            return
        try:
            await self.io(self.publish, name, data)
        except Exception as exc:  # the broker is down: the event is lost, the log says so
            log.error("cannot publish an operational event", event_name=name,
                      error=str(exc), subscription_id=data.get("subscription_id"))


@dataclass
class Batch:
    """The deliveries a batch is about to attempt; middleware may hold some back.

    A held delivery waits ``seconds`` and comes back without an attempt used; a
    refused one is recorded dead with the reason, without calling its sink, and
    says nothing of the receiver's health.
    """

    jobs: Sequence[Job]
    holds: dict[str, float] = field(default_factory=dict)
    refusals: dict[str, str] = field(default_factory=dict)
    #: Per-batch notes of the middleware (by its name), from before to after the attempts.
    notes: dict[str, Any] = field(default_factory=dict)

    def hold(self, delivery_id: str, seconds: float) -> None:
        """Let ``delivery_id`` wait ``seconds`` (the longest of the holds asked wins)."""
        self.holds[delivery_id] = max(seconds, self.holds.get(delivery_id, 0.0))

    def refuse(self, delivery_id: str, reason: str) -> None:
        """Record ``delivery_id`` dead with ``reason``, its sink never called."""
        self.refusals.setdefault(delivery_id, reason)


class Middleware:
    """A feature on the delivery path; every method is optional (a no-op here)."""

    #: The name its notes are kept under, and that its log lines give.
    name: str = "middleware"

    def before_dispatch(self, batch: DispatchBatch) -> None:
        """Before ``batch``'s events are dispatched (on the loop: keep it short)."""

    def after_dispatch(self, batch: DispatchBatch, error: BaseException | None) -> None:
        """After ``batch``'s events were dispatched, or failed to be."""

    async def before_attempts(self, batch: Batch) -> None:
        """Before any of ``batch``'s attempts: hold back or refuse deliveries."""

    async def after_attempts(self, batch: Batch, settled: Sequence[Settled]) -> None:
        """After ``batch``'s attempts are recorded, before the messages are acked."""

    async def idle(self) -> None:
        """The worker had nothing to do for a while: write what was held back."""

    async def close(self) -> None:
        """The engine stops: write what was held back, release resources."""


#: Builds a middleware for an engine, or None when it has nothing to do there.
MiddlewareFactory = Callable[[PipelineContext], Middleware | None]


class Pipeline:
    """The middleware of one engine, called in order at each point of a batch."""

    def __init__(self, middleware: Sequence[Middleware]) -> None:
        self.middleware = list(middleware)
        self._after = [m for m in self.middleware
                       if type(m).after_attempts is not Middleware.after_attempts]
        self._before = [m for m in self.middleware
                        if type(m).before_attempts is not Middleware.before_attempts]
        self._dispatch = [m for m in self.middleware
                          if type(m).before_dispatch is not Middleware.before_dispatch
                          or type(m).after_dispatch is not Middleware.after_dispatch]

    def dispatching(self, messages: list[TriggerMessage]) -> DispatchBatch | None:
        """Each middleware's ``before_dispatch``; None when none has one (nothing to tell)."""
        if not self._dispatch:
            return None
        batch = DispatchBatch(messages)
        for middleware in self._dispatch:
            middleware.before_dispatch(batch)
        return batch

    def dispatched(self, batch: DispatchBatch | None, error: BaseException | None) -> None:
        """Each middleware's ``after_dispatch``; one that fails is logged."""
        if batch is None:
            return
        for middleware in self._dispatch:
            try:
                middleware.after_dispatch(batch, error)
            except Exception as exc:
                log.warning("middleware failed after the dispatch", middleware=middleware.name,
                            error=f"{type(exc).__name__}: {exc}")

    async def before_attempts(self, batch: Batch) -> None:
        """Each middleware's ``before_attempts``, in order."""
        for middleware in self._before:
            await middleware.before_attempts(batch)

    async def after_attempts(self, batch: Batch, settled: Sequence[Settled]) -> None:
        """Each middleware's ``after_attempts``; one that fails is logged, the others run.

        The attempts are recorded already: what comes after is advisory, and
        must not send the messages again.
        """
        for middleware in self._after:
            try:
                await middleware.after_attempts(batch, settled)
            except Exception as exc:
                log.warning("middleware failed after the attempts", middleware=middleware.name,
                            error=f"{type(exc).__name__}: {exc}")

    async def idle(self) -> None:
        """Each middleware's ``idle``; failures are logged."""
        await self._each("idle")

    async def close(self) -> None:
        """Each middleware's ``close``; failures are logged."""
        await self._each("close")

    async def _each(self, method: str) -> None:
        for middleware in self.middleware:
            try:
                await getattr(middleware, method)()
            except Exception as exc:
                log.warning(f"middleware failed in {method}", middleware=middleware.name,
                            error=f"{type(exc).__name__}: {exc}")
