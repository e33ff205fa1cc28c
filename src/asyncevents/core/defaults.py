"""The core's own hook implementations, registered before any plugin."""

from __future__ import annotations

from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.retrymanagement import AmqpDelayQueues, DatabaseSchedule, RetryManagement
from asyncevents.core.settings import Settings
from asyncevents.core.store import Store
from asyncevents.core.transport import Broker

__all__ = ["retry_management"]


@hookimpl(trylast=True)
def retry_management(settings: Settings, transport: Broker, store: Store) -> RetryManagement:
    """RabbitMQ's delay queues when the transport has them, else the database schedule."""
    if transport.has_native_delays:
        return AmqpDelayQueues(transport)
    return DatabaseSchedule(transport, store)
