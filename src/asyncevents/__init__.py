"""asyncevents: deliver application events reliably and asynchronously."""

from __future__ import annotations

from typing import Any

from asyncevents.core.app import App
from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.settings import EventDefinition, Settings, load_settings
from asyncevents.core.sink import DeliveryRequest, DeliveryResult, Sink, cloudevent
from asyncevents.core.subscribing.handlers import Event, handler
from asyncevents.errors import (
    AsyncEventsError,
    AsyncEventsWarning,
    ConfigError,
    ConfigWarning,
    InvalidPayload,
    InvalidQuery,
    InvalidRecipient,
    NotFound,
    PermanentSinkError,
    RecipientWarning,
    RetryableSinkError,
    SinkError,
    StoreError,
    TransportError,
    UnknownEvent,
    UnknownSink,
    UnverifiedRecipient,
)
from asyncevents.sinks.addresses import Address, check_address, guarded_addresses

__all__ = [
    "Address",
    "App",
    "AsyncEventsError",
    "AsyncEventsWarning",
    "ConfigError",
    "ConfigWarning",
    "DeliveryRequest",
    "DeliveryResult",
    "Event",
    "EventDefinition",
    "InvalidPayload",
    "InvalidQuery",
    "InvalidRecipient",
    "NotFound",
    "PermanentSinkError",
    "RecipientWarning",
    "RetryableSinkError",
    "Settings",
    "Sink",
    "SinkError",
    "StoreError",
    "TransportError",
    "UnknownEvent",
    "UnknownSink",
    "UnverifiedRecipient",
    "check_address",
    "cloudevent",
    "guarded_addresses",
    "handler",
    "hookimpl",
    "load_settings",
    "publish",
]

_default_app: App | None = None


def publish(name: str, data: Any, *, delay: float | None = None) -> str:
    """Publish with a process-wide ``App()`` built from the environment; return the event id."""
    global _default_app
    if _default_app is None:
        _default_app = App()
    return _default_app.publish(name, data, delay=delay)
