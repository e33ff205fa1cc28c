"""The EventBridge sink against moto: what arrives, batching, the worker (see also _stubbed)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, cloudevent
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.errors import ConfigError, InvalidRecipient
from asyncevents.sinks.eventbridge import (
    EventBridgeSettings,
    EventBridgeSink,
    EventBus,
    entry_size,
    parse_recipient,
    register_sinks,
)
from asyncevents.testing import FailureCase, SinkContract, make_request
from tests.sinks.aws import ACCOUNT, REGION, fake_aws_env, options

BUS_ARN = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/orders"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_aws_env(monkeypatch, tmp_path)


@dataclass
class Bus:
    """A moto event bus with a rule sending everything to an SQS queue."""

    name: str
    arn: str
    queue_url: str
    received: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def messages(self) -> list[dict[str, Any]]:
        """Every envelope waiting in the queue (drained)."""
        sqs = boto3.client("sqs", region_name=REGION)
        found = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            if not batch.get("Messages"):
                return found
            for message in batch["Messages"]:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url,
                                   ReceiptHandle=message["ReceiptHandle"])

    def check_received(self, request: DeliveryRequest) -> None:
        """SinkContract's ``received``: the CloudEvent of ``request`` came through."""
        with self.lock:
            for envelope in self.messages():
                self.received[envelope["detail"]["id"]] = envelope
            envelope = self.received.get(request.event_id)
        if envelope is None:
            raise AssertionError(f"event {request.event_id} did not reach the bus's target")
        if envelope["detail"] != cloudevent(request):
            raise AssertionError("the detail is not the request's CloudEvent")


def make_bus(name: str = "orders", region: str = REGION, pattern: dict[str, Any] | None = None
             ) -> Bus:
    events = boto3.client("events", region_name=region)
    sqs = boto3.client("sqs", region_name=region)
    if name == "default":
        arn = f"arn:aws:events:{region}:{ACCOUNT}:event-bus/default"
    else:
        arn = events.create_event_bus(Name=name)["EventBusArn"]
    queue_url = sqs.create_queue(QueueName=f"{name}-target")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="everything", EventBusName=name,
                    EventPattern=json.dumps(pattern or {"source": [{"prefix": ""}]}))
    events.put_targets(Rule="everything", EventBusName=name,
                       Targets=[{"Id": "queue", "Arn": queue_arn}])
    return Bus(name, arn, queue_url)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def bus(aws: None) -> Bus:
    return make_bus()


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(http_connect_timeout=1.0, http_timeout=2.0)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- recipients and sizes ---------------------------------------------------------------------

@pytest.mark.parametrize(("recipient", "expected"), [
    ("orders", EventBus("orders")),
    ("aws.partner/example.com/123/feed", EventBus("aws.partner/example.com/123/feed")),
    (BUS_ARN, EventBus(BUS_ARN, REGION)),
    (f"arn:aws:events:us-east-2:{ACCOUNT}:rule/send-orders", EventBus("default", "us-east-2")),
    (f"arn:aws:events:us-east-2:{ACCOUNT}:rule/orders/send-orders",
     EventBus(f"arn:aws:events:us-east-2:{ACCOUNT}:event-bus/orders", "us-east-2")),
    (f"arn:aws-cn:events:cn-north-1:{ACCOUNT}:event-bus/b",
     EventBus(f"arn:aws-cn:events:cn-north-1:{ACCOUNT}:event-bus/b", "cn-north-1")),
])
def test_recipients(recipient: str, expected: EventBus) -> None:
    assert parse_recipient(recipient) == expected


@pytest.mark.parametrize("recipient", [
    "", "has space", "x" * 257, "arn:aws:sqs:eu-west-1:123456789012:queue",
    "arn:aws:events:eu-west-1:123:event-bus/orders",
    "arn:aws:events:nowhere:123456789012:event-bus/x",
    "arn:aws:events:eu-west-1:123456789012:connection/x",
    "arn:aws:events:eu-west-1:123456789012:rule/",
    "arn:aws:events:eu-west-1:123456789012:event-bus/bad name",
])
def test_bad_recipients(recipient: str) -> None:
    with pytest.raises(InvalidRecipient):
        parse_recipient(recipient)


def test_entry_size_is_computed_as_aws_does() -> None:
    entry = {"Source": "shop", "DetailType": "größe", "Detail": '{"a":"✓"}',
             "Resources": ["arn:x", "é"]}
    assert entry_size(entry) == 4 + 7 + 11 + 5 + 2
    assert entry_size({**entry, "Time": 1}) == entry_size(entry) + 14


def test_validate_recipient_needs_a_region(settings: Settings) -> None:
    sink = EventBridgeSink(settings, EventBridgeSettings())
    sink.validate_recipient(BUS_ARN)  # the ARN names its region
    with pytest.raises(InvalidRecipient, match="no AWS region"):
        sink.validate_recipient("orders")
    EventBridgeSink(settings, options()).validate_recipient("orders")
    sink.close()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                            settings: Settings) -> None:
    monkeypatch.setenv("ASYNCEVENTS_EVENTBRIDGE_SOURCE", "shop.events")
    monkeypatch.setenv("ASYNCEVENTS_EVENTBRIDGE_MAX_ENTRY_BYTES", "262144")
    monkeypatch.setenv("ASYNCEVENTS_EVENTBRIDGE_REGION", "ap-south-1")
    sink = EventBridgeSink(settings)
    assert (sink.options.source, sink.options.max_entry_bytes) == ("shop.events", 262144)
    assert sink.client().meta.region_name == "ap-south-1"
    sink.close()
    monkeypatch.setenv("ASYNCEVENTS_EVENTBRIDGE_MAX_ENTRY_BYTES", "lots")
    with pytest.raises(ConfigError, match="ASYNCEVENTS_EVENTBRIDGE_MAX_ENTRY_BYTES"):
        EventBridgeSink(settings)


def test_is_registered_as_eventbridge() -> None:
    registered: dict[str, object] = {}
    register_sinks(registered.__setitem__)
    assert registered == {"eventbridge": EventBridgeSink}


# -- against moto -------------------------------------------------------------------------------

def test_sink_contract(bus: Bus, settings: Settings) -> None:
    port = closed_port()
    SinkContract(
        factory=lambda s: EventBridgeSink(s, options()),
        settings=settings,
        good_recipient=bus.arn,
        bad_recipients=["", "a bus", "arn:aws:events:eu-west-1:1:event-bus/x"],
        received=bus.check_received,
        failures=[
            FailureCase("the bus does not exist", retryable=False,
                        recipient=f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/missing"),
            FailureCase("the event is too large", retryable=False, recipient=bus.arn,
                        request={"payload": {"blob": "x" * 1_100_000}}),
            FailureCase("EventBridge cannot be reached", retryable=True, recipient=bus.arn,
                        sink=lambda: EventBridgeSink(settings, options(
                            endpoint_url=f"http://127.0.0.1:{port}"))),
        ],
    ).check_all()


def test_the_exact_envelope(bus: Bus, settings: Settings) -> None:
    sink = EventBridgeSink(settings, options(batch_window_ms=0))
    request = make_request(recipient="orders", event_name="sales.order.created")
    result = sink.deliver(request)
    assert result.success and result.status_code == 200
    event_id = json.loads(result.response)["EventId"]
    (envelope,) = bus.messages()
    assert envelope == {
        "version": "0",
        "id": event_id,
        "detail-type": "sales.order.created",
        "source": "asyncevents",
        "time": "2026-02-01T12:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": cloudevent(request),
    }
    assert envelope["detail"]["data"]["note"] == "größe ✓"
    sink.close()


def test_source_setting(bus: Bus, settings: Settings) -> None:
    sink = EventBridgeSink(settings, options(source="shop.events", batch_window_ms=0))
    assert sink.deliver(make_request(recipient=bus.arn)).success
    assert [e["source"] for e in bus.messages()] == ["shop.events"]
    sink.close()


def test_region_comes_from_the_arn(aws: None, settings: Settings) -> None:
    other = make_bus("faraway", region="ap-southeast-2")
    sink = EventBridgeSink(settings, options(batch_window_ms=0))  # region setting: eu-west-1
    assert sink.deliver(make_request(recipient=other.arn)).success
    sqs = boto3.client("sqs", region_name="ap-southeast-2")
    (message,) = sqs.receive_message(QueueUrl=other.queue_url)["Messages"]
    assert json.loads(message["Body"])["region"] == "ap-southeast-2"
    # A bare name goes to the region setting, where this bus does not exist.
    missing = sink.deliver(make_request(recipient="faraway"))
    assert not missing.success and not missing.retryable
    assert "ResourceNotFoundException" in (missing.error or "")
    sink.close()


def test_rule_arns_mean_the_rules_bus(aws: None, settings: Settings) -> None:
    orders = make_bus("orders")
    default = make_bus("default")
    sink = EventBridgeSink(settings, options(region="us-west-2", batch_window_ms=0))
    rule = f"arn:aws:events:{REGION}:{ACCOUNT}:rule"
    sink.validate_recipient(f"{rule}/orders/everything")
    assert sink.deliver(make_request(recipient=f"{rule}/orders/everything",
                                     event_name="on.custom")).success
    assert sink.deliver(make_request(recipient=f"{rule}/everything",
                                     event_name="on.default")).success
    assert [e["detail-type"] for e in orders.messages()] == ["on.custom"]
    assert [e["detail-type"] for e in default.messages()] == ["on.default"]
    sink.close()


def test_concurrent_deliveries_are_batched_per_bus(bus: Bus, settings: Settings) -> None:
    sink = EventBridgeSink(settings, options(batch_window_ms=100))
    calls: list[int] = []
    sink.client().meta.events.register(
        "provide-client-params.events.PutEvents",
        lambda params, **_: calls.append(len(params["Entries"])))
    requests = [make_request(recipient=bus.arn, event_name=f"e.{i}") for i in range(25)]
    with ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(sink.deliver, requests))
    assert all(r.success for r in results)
    assert len({json.loads(r.response)["EventId"] for r in results}) == 25
    assert sum(calls) == 25 and max(calls) <= 10 and len(calls) <= 5
    assert {e["detail"]["id"] for e in bus.messages()} == {r.event_id for r in requests}
    sink.close()


def test_oversize_entry_is_a_permanent_failure(settings: Settings) -> None:
    sink = EventBridgeSink(settings, options(max_entry_bytes=262_144))
    result = sink.deliver(make_request(recipient="orders", payload={"blob": "é" * 140_000}))
    assert not result.success and not result.retryable
    assert "over the limit of 262,144" in (result.error or "")
    assert "280," in (result.error or "")  # the size, as AWS counts it (UTF-8 bytes)
    sink.close()


def test_batches_stay_under_the_size_limit(bus: Bus, settings: Settings) -> None:
    sink = EventBridgeSink(settings, options(max_entry_bytes=262_144, batch_window_ms=100))
    sizes: list[int] = []
    sink.client().meta.events.register(
        "provide-client-params.events.PutEvents",
        lambda params, **_: sizes.append(sum(entry_size(e) for e in params["Entries"])))
    requests = [make_request(recipient=bus.arn, payload={"blob": "x" * 100_000})
                for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(r.success for r in pool.map(sink.deliver, requests))
    assert len(sizes) >= 2 and max(sizes) <= 262_144
    sink.close()


def test_end_to_end_through_the_worker(bus: Bus, make_settings: Callable[..., Settings],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCEVENTS_EVENTBRIDGE_REGION", REGION)
    app = App(make_settings(strict_events=False, polling_interval=0.05))
    good = app.subscribe("sales.order.*", bus.arn, sink="eventbridge", token="t")
    gone = app.subscribe("sales.order.*", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/gone",
                         sink="eventbridge", token="t")
    ids = [app.publish("sales.order.created", {"n": n}) for n in range(3)]
    report = app.run_worker(WorkerLimits(concurrency=4, max_idle_time=1, time_limit=30))
    envelopes = {e["detail"]["id"]: e for e in bus.messages()}
    assert set(envelopes) == set(ids)
    for event_id, envelope in envelopes.items():
        assert envelope["detail-type"] == "sales.order.created"
        assert envelope["detail"]["type"] == "sales.order.created"
        assert envelope["detail"]["id"] == event_id
    statuses: dict[str, list[str]] = {}
    for delivery in app.store.recent_deliveries(limit=20):
        if delivery.subscription_id in (good.id, gone.id):
            statuses.setdefault(delivery.subscription_id, []).append(delivery.status)
    assert statuses[good.id] == ["delivered"] * 3
    assert statuses[gone.id] == ["dead"] * 3  # the bus does not exist: no retry
    assert report.handled > 0
    app.close()
