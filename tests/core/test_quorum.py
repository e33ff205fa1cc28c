"""RabbitMQ quorum queues (ASYNCEVENTS_AMQP_QUEUE_TYPE=quorum) on the local node."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kombu import Connection

from asyncevents import DeliveryResult
from asyncevents.core.app import App
from asyncevents.core.clock import utcnow
from asyncevents.core.messages import DeliverMessage, TriggerMessage
from asyncevents.core.settings import Settings
from asyncevents.core.transport.amqp import AmqpTransport
from asyncevents.core.worker.worker import WorkerLimits
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
    # Delay queues stay classic: a quorum queue's x-expires deletes it with retries inside.
    assert types[f"{prefix}.delay.deliver.100"] == "classic"
    app.close()


def test_a_message_past_the_delivery_limit_is_dead_lettered(quorum: Settings) -> None:
    transport = AmqpTransport(quorum)
    transport.check()
    transport.enqueue(TriggerMessage("poison", "thing.done", {}, utcnow()))
    handed: list[Any] = []
    dead: list[Any] = []

    def received(message: Any) -> None:
        if message.dead:
            dead.append(message)  # left unacked: it stays in the dead queue
        else:
            handed.append(message)
            message.requeue()  # a handler that never finishes it

    session = transport.consume(["trigger"], received, lambda _: None, prefetch=1)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not dead:
            session.drain(0.1)
    finally:
        session.close()
    # Handed out the first time and twice more (the limit), then dead-lettered,
    # and the consumer got it back from the dead-letter queue marked dead.
    assert len(handed) == 3
    assert [r.message.event_id for r in dead] == ["poison"]
    sizes = transport.queue_sizes()
    transport.close()
    assert sizes[f"{quorum.queue_prefix}.trigger.dead"] == 1
    assert sizes[f"{quorum.queue_prefix}.trigger"] == 0


def test_what_the_queue_gave_up_on_is_recorded_dead_and_replayable(quorum: Settings) -> None:
    fake = FakeSink()
    plugins = inline_plugins()
    plugins.register(sink_plugin("fake", lambda settings: fake))
    app = App(quorum, plugins=plugins)
    sub = app.subscribe("thing.*", "there", sink="fake", token="t")
    app.transport.check()
    now = utcnow()
    (pending,) = app.store.ensure_deliveries(event_id="e-deliver", event_name="thing.done",
                                             published_at=now, payload={"k": 1}, targets=[sub])
    prefix = quorum.queue_prefix
    # As RabbitMQ dead-letters past the delivery limit: straight into the dead queues.
    with Connection(quorum.transport_url) as conn:
        producer = conn.Producer(serializer="json")
        producer.publish(DeliverMessage(pending.id).body(), exchange="",
                         routing_key=f"{prefix}.deliver.dead")
        producer.publish(TriggerMessage("e-trigger", "thing.done", {"k": 2}, now).body(),
                         exchange="", routing_key=f"{prefix}.trigger.dead")
    app.run_worker(WorkerLimits(max_idle_time=1, time_limit=30))
    given_up = app.store.get_delivery(pending.id)
    assert given_up.status == "dead"
    (attempt,) = app.store.list_attempts(pending.id)
    assert "handed out 2 times without an ack" in (attempt.error or "")
    dispatch = [d for d in app.store.recent_deliveries() if d.event_id == "e-trigger"]
    assert [d.status for d in dispatch] == ["dead"]
    assert fake.requests == []
    # Replay brings the delivery back to the sink.
    app.replay(pending.id)
    app.run_worker(WorkerLimits(max_idle_time=1, time_limit=30))
    assert app.store.get_delivery(pending.id).status == "delivered"
    assert [r.delivery_id for r in fake.requests] == [pending.id]
    app.close()
