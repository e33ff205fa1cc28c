"""A plugin replaces the RetryManagement (Magento's RetryManagementInterface).

The example below is the one CONTRIBUTING.md describes: it holds failed
messages in memory and sends them back when the worker's pump finds them due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from asyncevents import DeliveryResult, hookimpl
from asyncevents.core.app import App
from asyncevents.core.messages import DeliverMessage, Message
from asyncevents.core.retry.base import RetryManagement
from asyncevents.core.retry.schedules import TransportDelays
from asyncevents.core.settings import Settings
from asyncevents.core.store import Store
from asyncevents.core.transport import Transport
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.testing import FakeSink, sink_plugin
from tests.helpers import inline_plugins


class InMemoryRetries:
    """Holds messages in this process until due; the worker's pump sends them."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.scheduled: list[tuple[Message, float]] = []
        self._held: list[tuple[float, Message]] = []
        self._lock = threading.Lock()

    def schedule(self, message: Message, delay: float) -> None:
        with self._lock:
            self.scheduled.append((message, delay))
            self._held.append((time.monotonic() + delay, message))

    def pump(self) -> int:
        now = time.monotonic()
        with self._lock:
            due = [m for t, m in self._held if t <= now]
            self._held = [(t, m) for t, m in self._held if t > now]
        for message in due:
            self.transport.enqueue(message)
        return len(due)

    def seconds_until_due(self) -> float | None:
        with self._lock:
            if not self._held:
                return None
            return max(0.0, min(t for t, _ in self._held) - time.monotonic())

    def close(self) -> None:
        pass


class InMemoryRetriesPlugin:
    """Answers the ``retry_management`` hook before the core's trylast default."""

    def __init__(self) -> None:
        self.built: list[InMemoryRetries] = []

    @hookimpl
    def retry_management(self, settings: Settings, transport: Transport,
                         store: Store) -> RetryManagement:
        retries = InMemoryRetries(transport)
        self.built.append(retries)
        return retries


@pytest.mark.parametrize("transport", ["sqla+sqlite", "memory"])
def test_a_plugin_retry_management_carries_every_retry(
        make_settings: Callable[..., Settings], transport: str, tmp_path: Any) -> None:
    url = (f"sqla+sqlite:///{tmp_path / 'queue.db'}" if transport == "sqla+sqlite"
           else "memory://")
    fake = FakeSink(results=[DeliveryResult.failed("down", retryable=True),
                             DeliveryResult.failed("still down", retryable=True)])
    plugin = InMemoryRetriesPlugin()
    plugins = inline_plugins()
    plugins.register(sink_plugin("fake", lambda settings: fake))
    plugins.register(plugin)
    app = App(make_settings(transport_url=url, backoff_base=0.05), plugins=plugins)
    app.subscribe("thing.*", "somewhere", sink="fake", token="t")
    app.publish("thing.done", {"k": 1})
    app.run_worker(WorkerLimits(max_idle_time=1, time_limit=30))

    assert isinstance(app.retries, InMemoryRetries)
    (retries,) = plugin.built
    # Both failures went through the plugin, not through the transport's delays.
    assert [(type(m), m.deaths) for m, _ in retries.scheduled] == [
        (DeliverMessage, 1), (DeliverMessage, 2)]
    assert [round(d, 2) for _, d in retries.scheduled] == [0.05, 0.2]  # quadratic
    assert len(fake.requests) == 3
    (delivery,) = app.store.recent_deliveries()
    assert delivery.status == "delivered"
    assert delivery.attempts == 3
    app.close()


def test_without_a_plugin_the_core_uses_the_transports_own_delays(
        make_settings: Callable[..., Settings]) -> None:
    app = App(make_settings(), plugins=inline_plugins())
    assert isinstance(app.retries, TransportDelays)
    app.close()
