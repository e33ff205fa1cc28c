"""The SQS sink against moto, with asyncevents' sink contract kit."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import boto3
import pytest
from asyncevents_sqs import Queue, SqsSettings, SqsSink, message_size, parse_recipient
from botocore.stub import Stubber

from asyncevents import App, DeliveryRequest, InvalidRecipient, Settings, cloudevent
from asyncevents.core.plugins import Plugins
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.testing import FailureCase, SinkContract, make_request

REGION = "eu-west-1"
ACCOUNT = "123456789012"


def options(**values: Any) -> SqsSettings:
    values.setdefault("region", REGION)
    return SqsSettings(**values)


class Inbox:
    """Reads a moto queue, keeping every message by its CloudEvent id."""

    def __init__(self, name: str, **attributes: str) -> None:
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self.arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
        self.seen: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def drain(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, AttributeNames=["All"],
                MessageAttributeNames=["All"])
            if not batch.get("Messages"):
                return found
            for message in batch["Messages"]:
                found.append(message)
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])

    def check_received(self, request: DeliveryRequest) -> None:
        with self.lock:
            for message in self.drain():
                self.seen[json.loads(message["Body"])["id"]] = message
            seen = self.seen.get(request.event_id)
        if seen is None:
            raise AssertionError(f"event {request.event_id} is not in the queue")
        if json.loads(seen["Body"]) != cloudevent(request):
            raise AssertionError("the body is not the request's CloudEvent")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(("recipient", "expected"), [
    ("orders", Queue("orders")),
    ("orders.fifo", Queue("orders.fifo")),
    (f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/orders",
     Queue("orders", f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/orders", ACCOUNT, REGION)),
    (f"https://{REGION}.queue.amazonaws.com/{ACCOUNT}/o",
     Queue("o", f"https://{REGION}.queue.amazonaws.com/{ACCOUNT}/o", ACCOUNT, REGION)),
    (f"http://127.0.0.1:5000/{ACCOUNT}/local",
     Queue("local", f"http://127.0.0.1:5000/{ACCOUNT}/local", ACCOUNT, None)),
    (f"arn:aws:sqs:us-east-2:{ACCOUNT}:jobs.fifo", Queue("jobs.fifo", None, ACCOUNT, "us-east-2")),
])
def test_recipients(recipient: str, expected: Queue) -> None:
    assert parse_recipient(recipient) == expected
    assert expected.fifo is recipient.endswith(".fifo")


@pytest.mark.parametrize("recipient", [
    "", "two words", "x" * 81, "arn:aws:sns:eu-west-1:123456789012:topic",
    "https://sqs.eu-west-1.amazonaws.com/orders", f"arn:aws:sqs:eu-west-1:{ACCOUNT}:bad$name",
])
def test_bad_recipients(recipient: str) -> None:
    with pytest.raises(InvalidRecipient):
        parse_recipient(recipient)


def test_message_size_counts_body_and_attributes() -> None:
    attributes = {"k": {"DataType": "String", "StringValue": "vé"}}
    assert message_size("ab✓", attributes) == 5 + 1 + 6 + 3


def test_sink_contract(aws: None, settings: Settings) -> None:
    inbox = Inbox("contract")
    port = closed_port()
    SinkContract(
        factory=lambda s: SqsSink(s, options()),
        settings=settings,
        good_recipient=inbox.url,
        # A queue URL names a host the sink never connects to: boto3 sends every request
        # to the client's endpoint (AWS's for the region, or ASYNCEVENTS_SQS_ENDPOINT_URL,
        # the operator's), with the URL as a parameter. Nothing for the address guard.
        dials_recipient_host=False,
        bad_recipients=["", "no spaces", "arn:aws:sns:eu-west-1:123456789012:t"],
        received=inbox.check_received,
        failures=[
            FailureCase("the queue does not exist", retryable=False, recipient="missing"),
            FailureCase("the message is too large", retryable=False, recipient=inbox.url,
                        request={"payload": {"blob": "x" * 1_100_000}}),
            FailureCase("SQS cannot be reached", retryable=True, recipient="contract",
                        sink=lambda: SqsSink(settings, options(
                            endpoint_url=f"http://127.0.0.1:{port}"))),
            FailureCase("a FIFO group id SQS would refuse", retryable=False,
                        recipient="anything.fifo",
                        request={"metadata": {"message_group_id": "has space"}}),
        ],
    ).check_all()


def test_the_queue_urls_host_is_never_connected_to(settings: Settings) -> None:
    # Why the contract's address guard check does not apply: the request goes to the
    # endpoint (here a closed port), never to the host the queue URL names.
    with socket.create_server(("127.0.0.1", 0)) as named:
        named.settimeout(0.5)
        port = named.getsockname()[1]
        sink = SqsSink(settings, options(endpoint_url=f"http://127.0.0.1:{closed_port()}"))
        result = sink.deliver(make_request(recipient=f"http://127.0.0.1:{port}/{ACCOUNT}/q"))
        sink.close()
        with pytest.raises(TimeoutError):
            named.accept()
    assert not result.success and result.retryable


def test_name_and_arn_recipients(aws: None, settings: Settings) -> None:
    inbox = Inbox("by-name")
    sink = SqsSink(settings, options())
    for recipient in ("by-name", inbox.arn, inbox.url):
        request = make_request(recipient=recipient)
        result = sink.deliver(request)
        assert result.success, result.error
        inbox.check_received(request)
    sink.close()


def test_message_attributes(aws: None, settings: Settings) -> None:
    inbox = Inbox("attrs")
    sink = SqsSink(settings, options())
    request = make_request(recipient="attrs", event_name="sales.order.paid")
    assert sink.deliver(request).success
    (message,) = inbox.drain()
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes == {"event_name": "sales.order.paid", "delivery_id": request.delivery_id}
    sink.close()


def test_fifo_group_and_deduplication_ids(aws: None, settings: Settings) -> None:
    inbox = Inbox("orders.fifo", FifoQueue="true")
    sink = SqsSink(settings, options())
    by_name = make_request(recipient="orders.fifo", event_name="sales.order.created")
    by_meta = make_request(recipient=inbox.url, metadata={"message_group_id": "customer-7"})
    for request in (by_name, by_meta):
        assert sink.deliver(request).success
    assert sink.deliver(by_name).success  # a retry of the same delivery...
    messages = inbox.drain()  # ...is dropped by SQS: same deduplication id
    got = {m["Attributes"]["MessageDeduplicationId"]: m["Attributes"]["MessageGroupId"]
           for m in messages}
    assert len(messages) == 2
    assert got == {by_name.delivery_id: "sales.order.created", by_meta.delivery_id: "customer-7"}
    sink.close()


@pytest.mark.parametrize(("code", "status", "retryable"), [
    ("RequestThrottled", 403, True),
    ("KmsThrottled", 400, True),
    ("InternalError", 500, True),
    ("AccessDenied", 403, False),
    ("QueueDoesNotExist", 400, False),
    ("KmsDisabled", 400, False),
])
def test_errors(settings: Settings, code: str, status: int, retryable: bool) -> None:
    url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/q"
    sink = SqsSink(settings, options())
    with Stubber(sink.client(REGION)) as stub:
        stub.add_client_error("send_message", service_error_code=code, http_status_code=status,
                              service_message="denied for testing-secret")
        result = sink.deliver(make_request(recipient=url))
    assert not result.success and result.retryable is retryable
    assert code in (result.error or "") and "testing-secret" not in (result.error or "")


def test_installed_through_the_entry_point() -> None:
    info = Plugins.load().sinks()["sqs"]
    assert info.distribution == "asyncevents-sqs" and info.factory is SqsSink


def test_end_to_end_through_the_worker(aws: None, settings: Settings,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCEVENTS_SQS_REGION", REGION)
    inbox = Inbox("worker")
    app = App(settings)
    app.subscribe("sales.*", "worker", sink="sqs", token="t")
    ids = {app.publish("sales.order.created", {"n": n}) for n in range(3)}
    app.run_worker(WorkerLimits(concurrency=2, max_idle_time=1, time_limit=30))
    bodies = [json.loads(m["Body"]) for m in inbox.drain()]
    assert {b["id"] for b in bodies} == ids
    assert all(b["type"] == "sales.order.created" for b in bodies)
    app.close()
