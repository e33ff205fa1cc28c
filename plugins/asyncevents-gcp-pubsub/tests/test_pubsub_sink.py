"""The Pub/Sub sink against a local gRPC Publisher server, with asyncevents' sink contract kit."""

from __future__ import annotations

import json
import socket

import grpc
import pytest
from asyncevents_gcp_pubsub import (
    PubSubSettings,
    PubSubSink,
    attributes,
    classify,
    ordering_key,
    parse_recipient,
)
from asyncevents_gcp_pubsub.message import OrderingKeyError
from google.api_core import exceptions as api
from google.auth import exceptions as auth
from google.cloud.pubsub_v1.publisher import exceptions as publisher
from publisher_server import PublisherServer

from asyncevents import App, ConfigError, DeliveryRequest, InvalidRecipient, Settings, cloudevent
from asyncevents.core.plugins import Plugins
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.testing import FailureCase, SinkContract, make_request

TOPIC = "projects/test-project/topics/orders"


def options(server: PublisherServer | None = None, **values: object) -> PubSubSettings:
    values.setdefault("timeout", 2.0)
    return PubSubSettings(emulator_host=server.host if server else None, **values)  # type: ignore[arg-type]


def check_arrived(server: PublisherServer, request: DeliveryRequest) -> None:
    """``request`` reached the server: the CloudEvent as data, its attributes as attributes."""
    by_id = {m.attributes.get("delivery_id"): m for m in server.received(request.recipient)}
    message = by_id.get(request.delivery_id)
    if message is None:
        raise AssertionError(f"delivery {request.delivery_id} did not reach {request.recipient}")
    if json.loads(message.data) != cloudevent(request):
        raise AssertionError("the data is not the request's CloudEvent")
    if message.attributes != attributes(request):
        raise AssertionError(f"unexpected attributes {message.attributes}")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(("recipient", "expected"), [
    (TOPIC, ("test-project", "orders")),
    ("projects/my-project-123/topics/a.b_c-d~e+f%g", ("my-project-123", "a.b_c-d~e+f%g")),
    ("projects/example.com:my-project/topics/orders", ("example.com:my-project", "orders")),
])
def test_recipients(recipient: str, expected: tuple[str, str]) -> None:
    assert parse_recipient(recipient) == expected


@pytest.mark.parametrize("recipient", [
    "", "orders", "projects/test-project/topics/", "projects/test-project/subscriptions/orders",
    "projects/Test-Project/topics/orders",  # project ids are lower case
    "projects/short/topics/orders",  # project ids have at least 6 characters
    "projects/test-project/topics/1orders",  # topic ids start with a letter
    "projects/test-project/topics/ab", "projects/test-project/topics/googorders",  # reserved
    "https://pubsub.googleapis.com/v1/projects/test-project/topics/orders",
])
def test_bad_recipients(recipient: str) -> None:
    with pytest.raises(InvalidRecipient):
        parse_recipient(recipient)


@pytest.mark.parametrize(("metadata", "expected"), [
    ({}, ""),
    ({"ordering_key": "data.customer.email"}, "a@example.com"),
    ({"ordering_key": "data.id"}, "42"),  # not a string: compact JSON
    ({"ordering_key": "data.customer"}, '{"email":"a@example.com"}'),
    ({"ordering_key": "data.lines.1.sku"}, "B"),  # list indexes
    ({"ordering_key": "data.missing"}, ""),  # no value: no ordering key
])
def test_ordering_key_from_the_metadata(metadata: dict[str, str], expected: str) -> None:
    payload = {"id": 42, "customer": {"email": "a@example.com"},
               "lines": [{"sku": "A"}, {"sku": "B"}]}
    assert ordering_key(make_request(payload=payload, metadata=metadata)) == expected


@pytest.mark.parametrize("metadata", [
    {"ordering_key": "customer.id"}, {"ordering_key": 7}, {"ordering_key": "data."}])
def test_bad_ordering_key_metadata(metadata: dict[str, object]) -> None:
    with pytest.raises(OrderingKeyError):
        ordering_key(make_request(metadata=metadata))


@pytest.mark.parametrize(("exc", "retryable"), [
    (api.ResourceExhausted("quota"), True),  # throttling
    (api.ServiceUnavailable("unavailable"), True),
    (api.DeadlineExceeded("slow"), True),
    (api.InternalServerError("oops"), True),
    (api.RetryError("gave up", api.ServiceUnavailable("x")), True),
    (TimeoutError(), True),
    (auth.DefaultCredentialsError("none"), True),
    (api.NotFound("Resource not found (resource=orders)."), False),
    (api.PermissionDenied("denied"), False),
    (api.Unauthenticated("bad credentials"), False),
    (api.InvalidArgument("bad attribute"), False),
    (auth.RefreshError("revoked"), False),
    (publisher.MessageTooLargeError("too large"), False),
])
def test_classification(exc: Exception, retryable: bool) -> None:
    message, got = classify(exc, 1.0)
    assert got is retryable and message


def test_sink_contract(settings: Settings, server: PublisherServer) -> None:
    for name, code in (("missing", grpc.StatusCode.NOT_FOUND),
                       ("denied", grpc.StatusCode.PERMISSION_DENIED),
                       ("unauthenticated", grpc.StatusCode.UNAUTHENTICATED),
                       ("throttled", grpc.StatusCode.RESOURCE_EXHAUSTED)):
        server.fail[f"projects/test-project/topics/{name}"] = code
    port = closed_port()
    SinkContract(
        factory=lambda s: PubSubSink(s, options(server)),
        settings=settings,
        good_recipient=TOPIC,
        bad_recipients=["", "orders", "projects/test-project/subscriptions/orders"],
        received=lambda request: check_arrived(server, request),
        failures=[
            FailureCase("the topic does not exist", retryable=False,
                        recipient="projects/test-project/topics/missing"),
            FailureCase("permission denied", retryable=False,
                        recipient="projects/test-project/topics/denied"),
            FailureCase("the credentials are refused", retryable=False,
                        recipient="projects/test-project/topics/unauthenticated"),
            FailureCase("quota exceeded (throttled)", retryable=True,
                        recipient="projects/test-project/topics/throttled"),
            FailureCase("Pub/Sub cannot be reached", retryable=True, recipient=TOPIC,
                        sink=lambda: PubSubSink(settings, PubSubSettings(
                            emulator_host=f"127.0.0.1:{port}", timeout=1))),
            FailureCase("the message is over Pub/Sub's 10 MB", retryable=False, recipient=TOPIC,
                        request={"payload": {"blob": "x" * 10_500_000}}),
            FailureCase("the ordering key metadata is not a data. path", retryable=False,
                        recipient=TOPIC, request={"metadata": {"ordering_key": "id"}}),
        ],
    ).check_all()


def test_ordering_key_sent_and_resumed_after_a_failure(settings: Settings,
                                                        server: PublisherServer) -> None:
    sink = PubSubSink(settings, options(server))
    metadata = {"ordering_key": "data.customer.email"}
    first = make_request(recipient=TOPIC, metadata=metadata)
    assert sink.deliver(first).success
    server.fail[TOPIC] = grpc.StatusCode.RESOURCE_EXHAUSTED
    failed = sink.deliver(make_request(recipient=TOPIC, metadata=metadata))
    assert not failed.success and failed.retryable
    del server.fail[TOPIC]
    again = make_request(recipient=TOPIC, metadata=metadata)  # the key was resumed
    result = sink.deliver(again)
    sink.close()
    assert result.success, result.error
    assert [m.ordering_key for m in server.received()] == ["a@example.com"] * 2
    assert json.loads(result.response) == {"message_id": "2"}


def test_the_emulator_variable_is_honoured(settings: Settings, server: PublisherServer) -> None:
    sink = PubSubSink(settings)  # PUBSUB_EMULATOR_HOST, set by the fixture
    assert sink.options.emulator_host == server.host
    request = make_request(recipient=TOPIC)
    assert sink.deliver(request).success
    sink.close()
    check_arrived(server, request)
    # The emulator path sends no credentials; the routing header names the topic.
    (metadata,) = server.metadata
    assert "authorization" not in metadata
    assert metadata.get("x-goog-request-params") == f"topic={TOPIC}"


def test_without_credentials_the_failure_is_retryable(settings: Settings,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Google's chain, stopped at its first link: a key file that is not there.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
    sink = PubSubSink(settings, PubSubSettings(timeout=1))  # no emulator
    sink.validate_recipient(TOPIC)  # subscribing needs no credentials
    result = sink.deliver(make_request(recipient=TOPIC))
    sink.close()
    assert not result.success and result.retryable
    assert "credentials" in (result.error or "")


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                       settings: Settings) -> None:
    monkeypatch.setenv("ASYNCEVENTS_PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")
    monkeypatch.setenv("ASYNCEVENTS_PUBSUB_TIMEOUT", "3")
    sink = PubSubSink(settings)
    assert (sink.options.emulator_host, sink.options.timeout) == ("127.0.0.1:8085", 3.0)
    monkeypatch.setenv("ASYNCEVENTS_PUBSUB_TIMEOUT", "0")
    with pytest.raises(ConfigError, match="ASYNCEVENTS_PUBSUB_TIMEOUT"):
        PubSubSink(settings)


def test_installed_through_the_entry_point() -> None:
    info = Plugins.load().sinks()["pubsub"]
    assert info.distribution == "asyncevents-gcp-pubsub" and info.factory is PubSubSink


def test_end_to_end_through_the_worker(settings: Settings, server: PublisherServer) -> None:
    app = App(settings)
    app.subscribe("sales.*", TOPIC, sink="pubsub", token="unused",
                  metadata={"ordering_key": "data.customer"})
    ids = {app.publish("sales.order.created", {"n": n, "customer": "c-7"}) for n in range(3)}
    app.run_worker(WorkerLimits(concurrency=2, max_idle_time=1, time_limit=30))
    messages = server.received(TOPIC)
    assert {json.loads(m.data)["id"] for m in messages} == ids
    assert {json.loads(m.data)["data"]["n"] for m in messages} == {0, 1, 2}
    assert {m.attributes["ce-type"] for m in messages} == {"sales.order.created"}
    assert {m.attributes["ce-id"] for m in messages} == ids
    assert {m.ordering_key for m in messages} == {"c-7"}
    app.close()
