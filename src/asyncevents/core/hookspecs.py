"""The hooks a plugin can implement (pluggy project ``asyncevents``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from asyncevents.core.messages import TriggerMessage
    from asyncevents.core.pipeline import MiddlewareFactory
    from asyncevents.core.retry.base import RetryManagement
    from asyncevents.core.settings import Settings
    from asyncevents.core.sink import DeliveryRequest, DeliveryResult
    from asyncevents.core.store import Store
    from asyncevents.core.transport import Transport

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("asyncevents")
hookimpl = pluggy.HookimplMarker("asyncevents")


@hookspec
def register_sinks(register: Callable[[str, Any], None]) -> None:
    """Register sink classes: ``register("http", HttpSink)``."""


@hookspec
def register_events(register: Callable[[str, Any], None]) -> None:
    """Register event definitions: ``register("sales.order.created", {"description": ...})``."""


@hookspec
def register_transports(register: Callable[[str, type[Transport]], None]) -> None:
    """Register transports by URL scheme: ``register("amqp", AmqpTransport)``."""


@hookspec
def register_handlers(register: Callable[[Any], None]) -> None:
    """Register Python handlers: ``register(on_order)`` for a function decorated with
    ``@asyncevents.handler``, or ``register(module)`` for every handler declared in it."""


@hookspec(firstresult=True)
def retry_management(
    settings: Settings, transport: Transport, store: Store
) -> RetryManagement | None:
    """Return the RetryManagement for ``transport`` (``transport.scheme``), or None to pass.

    ``store`` is the application's store, for implementations that keep a
    schedule. ``transport.native_delays`` tells whether the transport can
    hold a message back itself (``transport.enqueue(message, delay=...)``).
    """


@hookspec
def register_middleware(register: Callable[[MiddlewareFactory], None]) -> None:
    """Register pipeline middleware: ``register(factory)``, where ``factory(context)``
    builds a :class:`~asyncevents.core.pipeline.Middleware` for each engine
    (or returns None). Its methods run on the engine's event loop, batch by batch:
    ``before_attempts(batch)`` may hold deliveries back or refuse them,
    ``after_attempts(batch, settled)`` sees what was recorded, before the ack."""


@hookspec(firstresult=True)
def publish_messages(
    messages: Sequence[TriggerMessage], send: Callable[[Sequence[TriggerMessage]], None]
) -> Sequence[TriggerMessage] | None:
    """Send ``messages`` by calling ``send`` yourself, around it what you need (a producer
    span per event); return the messages as sent (they may carry a trace context), or None
    to pass (then the core calls ``send``). The first plugin that answers wins."""


@hookspec
def before_delivery(request: DeliveryRequest) -> None:
    """Called before a sink delivers ``request`` (metrics, audit)."""


@hookspec
def after_delivery(request: DeliveryRequest, result: DeliveryResult) -> None:
    """Called after every attempt with its result, success or not."""
