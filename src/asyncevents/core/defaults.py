"""The core's own hook implementations, registered before any plugin."""

from __future__ import annotations

from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.retry import DatabaseSchedule, RetryManagement, TransportDelays
from asyncevents.core.settings import Settings
from asyncevents.core.store import Store
from asyncevents.core.transport import Transport

__all__ = ["retry_management"]


@hookimpl(trylast=True)
def retry_management(settings: Settings, transport: Transport, store: Store) -> RetryManagement:
    """The transport's own delays when it has them, else the database schedule."""
    if transport.native_delays:
        return TransportDelays(transport)
    return DatabaseSchedule(transport, store)
