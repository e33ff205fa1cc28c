"""asyncevents: deliver application events reliably and asynchronously.

The public names are imported when first used (PEP 562), so that
``import asyncevents`` (and with it ``asyncevents --help``) stays quick: the
store, the transports and the plugins are loaded by the code that needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from asyncevents.core.app import App
    from asyncevents.core.hookspecs import hookimpl
    from asyncevents.core.settings import EventDefinition, Settings, load_settings
    from asyncevents.core.sink import DeliveryRequest, DeliveryResult, Sink, cloudevent
    from asyncevents.core.subscribing.handlers import Event, handler
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

# Where each public name not imported above lives.
_LAZY = {
    "App": "asyncevents.core.app",
    "hookimpl": "asyncevents.core.hookspecs",
    "EventDefinition": "asyncevents.core.settings",
    "Settings": "asyncevents.core.settings",
    "load_settings": "asyncevents.core.settings",
    "DeliveryRequest": "asyncevents.core.sink",
    "DeliveryResult": "asyncevents.core.sink",
    "Sink": "asyncevents.core.sink",
    "cloudevent": "asyncevents.core.sink",
    "Event": "asyncevents.core.subscribing.handlers",
    "handler": "asyncevents.core.subscribing.handlers",
    "Address": "asyncevents.sinks.addresses",
    "check_address": "asyncevents.sinks.addresses",
    "guarded_addresses": "asyncevents.sinks.addresses",
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asyncevents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the ones not imported yet included."""
    return sorted({*globals(), *_LAZY})


_default_app: App | None = None


def publish(name: str, data: Any, *, delay: float | None = None) -> str:
    """Publish with a process-wide ``App()`` built from the environment; return the event id."""
    global _default_app
    if _default_app is None:
        from asyncevents.core.app import App

        _default_app = App()
    return _default_app.publish(name, data, delay=delay)
