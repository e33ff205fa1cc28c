"""RabbitMQ quorum queues (ASYNCEVENTS_AMQP_QUEUE_TYPE=quorum) on the local node."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from asyncevents import DeliveryResult
from asyncevents.core.app import App
from asyncevents.core.clock import utcnow
from asyncevents.core.messages import TriggerMessage
from asyncevents.core.settings import Settings
from asyncevents.core.transport.amqp import AmqpTransport
from asyncevents.core.worker import WorkerLimits
from asyncevents.testing import FakeSink, sink_plugin
from faults.stack import delete_amqp
from tests.helpers import inline_plugins


@pytest.fixture
def quorum(make_settings: Callable[..., Settings], amqp_url: str) -> Iterator[Settings]:
    settings = make_settings(transport_url=amqp_url, amqp_queue_type="quorum",
                             amqp_delivery_limit=2, backoff_base=0.1)
    yield settings
    delete_amqp(settings.queue_prefix, amqp_url)


def _queue_types(prefix: str) -> dict[str, str]:
    listing = subprocess.run(["rabbitmqctl", "list_queues", "-q", "name", "type"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    rows = (line.split("\t") for line in listing.splitlines() if line.startswith(prefix))
    return {name: kind for name, kind in rows}


def test_events_are_delivered_and_retried_through_quorum_queues(quorum: Settings) -> None:
    fake = FakeSink(results=[DeliveryResult.failed("once", retryable=True)])
    plugins = inline_plugins()
    plugins.register(sink_plugin("fake", lambda settings: fake))
    app = App(quorum, plugins=plugins)
    app.subscribe("thing.*", "there", sink="fake", token="t")
    app.publish("thing.done", {"k": 1})
    app.run_worker(WorkerLimits(max_idle_time=1.5, time_limit=30, concurrency=2))
    (delivery,) = app.store.recent_deliveries()
    assert delivery.status == "delivered" and delivery.attempts == 2
    prefix = quorum.queue_prefix
    types = _queue_types(prefix)
    assert types[f"{prefix}.trigger"] == types[f"{prefix}.deliver"] == "quorum"
    assert types[f"{prefix}.delay.deliver.100"] == "quorum"  # the retry's delay queue
    app.close()


def test_a_message_past_the_delivery_limit_is_dead_lettered(quorum: Settings) -> None:
    transport = AmqpTransport(quorum)
    transport.check()
    transport.enqueue(TriggerMessage("poison", "thing.done", {}, utcnow()))
    handed: list[Any] = []
    session = transport.consume(["trigger"], lambda r: (handed.append(r), r.requeue()),
                                lambda _: None, prefetch=1)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            session.drain(0.1)
            if transport.queue_sizes().get(f"{quorum.queue_prefix}.trigger.dead"):
                break
    finally:
        session.close()
        transport.close()
    # Handed out the first time and twice more (the limit), then dead-lettered.
    assert len(handed) == 3
    assert transport.queue_sizes()[f"{quorum.queue_prefix}.trigger.dead"] == 1
    assert transport.queue_sizes()[f"{quorum.queue_prefix}.trigger"] == 0
