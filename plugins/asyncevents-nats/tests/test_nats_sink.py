"""The NATS sink against the real NATS server, with asyncevents' sink contract kit."""

from __future__ import annotations

import json
import socket
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from asyncevents_nats import NatsSettings, NatsSink, Target, message_headers, parse_recipient
from asyncevents_nats.sink import classify

from asyncevents import App, ConfigError, DeliveryRequest, InvalidRecipient, Settings, cloudevent
from asyncevents.core.plugins import Plugins
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.testing import TEST_TOKEN, FailureCase, SinkContract, make_request
from conftest import AuthServer, Stream, create_stream, delete_stream, free_port

FAST = NatsSettings(timeout=1)


def check_arrived(stream: Stream, request: DeliveryRequest) -> None:
    """``request`` is in ``stream``, body and headers as the sink sends them."""
    found = {m.headers["Nats-Msg-Id"]: m for m in stream.messages()}
    message = found.get(request.delivery_id)
    if message is None:
        raise AssertionError(f"delivery {request.delivery_id} is not in {stream.name}")
    if json.loads(message.data) != cloudevent(request):
        raise AssertionError("the body is not the request's CloudEvent")
    if message.headers != message_headers(request):
        raise AssertionError(f"unexpected headers {message.headers}")


@pytest.mark.parametrize(("recipient", "expected"), [
    ("nats://127.0.0.1:4222/orders", Target("nats", "127.0.0.1", 4222, "orders")),
    ("nats://nats.example.com/sales.order.created",  # the default port
     Target("nats", "nats.example.com", 4222, "sales.order.created")),
    ("tls://svc@nats.example.com:4443/a.b", Target("tls", "nats.example.com", 4443, "a.b", "svc")),
    ("nats://[::1]:4222/x", Target("nats", "::1", 4222, "x")),
])
def test_recipients(recipient: str, expected: Target) -> None:
    assert parse_recipient(recipient) == expected


@pytest.mark.parametrize("recipient", [
    "", "orders", "http://127.0.0.1:4222/orders", "nats:///orders",
    "nats://127.0.0.1:4222/", "nats://127.0.0.1:4222/orders.*",  # wildcards cannot be published to
    "nats://127.0.0.1:4222/orders.>", "nats://127.0.0.1:4222/a..b", "nats://127.0.0.1:4222/a/b",
    "nats://u:pw@127.0.0.1:4222/orders",  # the password belongs in the token
    "nats://127.0.0.1:4222/orders?x=1", "nats://127.0.0.1:99999/orders",
])
def test_bad_recipients(recipient: str) -> None:
    with pytest.raises(InvalidRecipient):
        parse_recipient(recipient)


TARGET = Target("nats", "127.0.0.1", 4222, "orders")


@pytest.mark.parametrize(("exc", "retryable"), [
    (nats.errors.TimeoutError(), True),
    (TimeoutError(), True),
    (nats.errors.NoServersError(), True),
    (ConnectionRefusedError(111, "refused"), True),
    (nats.errors.UnexpectedEOF(), True),
    (nats.js.errors.ServiceUnavailableError(code=503), True),
    # a full stream with the "discard new" policy: space may come back
    (nats.js.errors.APIError(code=503, err_code=10077, description="maximum messages exceeded"),
     True),
    (nats.js.errors.APIError(code=400, err_code=10054, description="message size exceeds maximum"),
     False),
    (nats.js.errors.NoStreamResponseError(), False),
    (nats.errors.AuthorizationError(), False),
    (nats.errors.Error("nats: 'Authorization Violation'"), False),
    (nats.errors.Error("nats: permissions violation: 'Permissions Violation for Publish'"), False),
    (nats.errors.MaxPayloadError(), False),
])
def test_classification(exc: Exception, retryable: bool) -> None:
    message, got = classify(exc, TARGET, 1.0)
    assert got is retryable and message


def test_sink_contract(settings: Settings, stream: Stream, full_stream: Stream,
                       auth_server: AuthServer) -> None:
    port = free_port()
    filler = make_request(recipient=full_stream.recipient())
    sink = NatsSink(settings, FAST)
    assert sink.deliver(filler).success  # the one message the full stream holds
    sink.close()
    SinkContract(
        factory=lambda s: NatsSink(s, FAST),
        settings=settings,
        good_recipient=stream.recipient(),
        bad_recipients=["", "orders", "nats://127.0.0.1:4222/orders.*",
                        "nats://guest:secret@127.0.0.1:4222/orders"],
        received=lambda request: check_arrived(stream, request),
        failures=[
            FailureCase("no stream takes the subject", retryable=False,
                        recipient="nats://127.0.0.1:4222/asyncevents-test.nostream.x"),
            FailureCase("the server cannot be reached", retryable=True,
                        recipient=f"nats://127.0.0.1:{port}/orders"),
            FailureCase("the server refuses the token", retryable=False,
                        recipient=f"{auth_server.url}/orders"),
            FailureCase("the stream is full (discard new)", retryable=True,
                        recipient=full_stream.recipient()),
            FailureCase("the event is over the server's max_payload", retryable=False,
                        recipient=stream.recipient(),
                        request={"payload": {"blob": "x" * 1_100_000}}),
        ],
    ).check_all()


def test_private_servers_are_refused_unless_allowed(settings: Settings, stream: Stream) -> None:
    closed = settings.model_copy(update={"allowed_networks": []})
    sink = NatsSink(closed, FAST)
    for host in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "localhost"):
        with pytest.raises(InvalidRecipient, match="ASYNCEVENTS_ALLOWED_NETWORKS"):
            sink.validate_recipient(f"nats://{host}:4222/orders")
    refused = sink.deliver(make_request(recipient=stream.recipient()))
    sink.close()
    assert not refused.success and not refused.retryable
    assert "recipient address refused" in (refused.error or "")
    assert stream.messages() == []  # nothing reached the server


def test_connects_to_the_checked_address_not_a_second_lookup(
        settings: Settings, stream: Stream, monkeypatch: pytest.MonkeyPatch) -> None:
    # The name answers loopback (allowed) to the guard's lookup, then a private
    # address: a client resolving the name again would go there (DNS rebinding).
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "nats.rebind.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "10.255.255.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    sink = NatsSink(settings, FAST)
    request = make_request(recipient=stream.recipient().replace("127.0.0.1", "nats.rebind.test"))
    result = sink.deliver(request)
    sink.close()
    assert result.success, result.error
    assert lookups == ["nats.rebind.test"]
    check_arrived(stream, request)


def test_a_redelivery_is_dropped_by_the_stream(settings: Settings, stream: Stream) -> None:
    sink = NatsSink(settings, FAST)
    request = make_request(recipient=stream.recipient())
    first, again = sink.deliver(request), sink.deliver(request)
    sink.close()
    assert first.success and again.success
    assert json.loads(first.response)["duplicate"] is False
    assert json.loads(again.response) == {**json.loads(first.response), "duplicate": True}
    (message,) = stream.messages()
    assert message.headers["Nats-Msg-Id"] == request.delivery_id


def test_the_token_authenticates(settings: Settings, auth_server: AuthServer) -> None:
    auth = {"token": auth_server.token}
    stream = create_stream(auth_server.url, auth)
    sink = NatsSink(settings, FAST)
    try:
        request = make_request(recipient=stream.recipient(), token=auth_server.token)
        assert sink.deliver(request).success
        check_arrived(stream, request)
        refused = sink.deliver(make_request(recipient=stream.recipient(), token="wrong"))
        assert not refused.success and not refused.retryable
        assert "authorization" in (refused.error or "")
    finally:
        sink.close()
        delete_stream(stream)


def test_the_token_never_shows(settings: Settings, auth_server: AuthServer) -> None:
    sink = NatsSink(settings, FAST)
    result = sink.deliver(make_request(recipient=f"{auth_server.url}/orders"))
    sink.close()
    assert not result.success
    assert TEST_TOKEN not in f"{result.error} {result.response}"


def test_reconnects_after_the_server_dropped_it(settings: Settings,
                                                 auth_server: AuthServer) -> None:
    stream = create_stream(auth_server.url, {"token": auth_server.token})
    sink = NatsSink(settings, FAST)
    try:
        assert sink.deliver(make_request(recipient=stream.recipient(),
                                         token=auth_server.token)).success
        # The cached connection goes away; the next delivery connects again by itself.
        for client in list(sink._clients.values()):
            sink._loop.run(client.close(), 5)
        assert sink.deliver(make_request(recipient=stream.recipient(),
                                         token=auth_server.token)).success
        assert len(stream.messages()) == 2
    finally:
        sink.close()
        delete_stream(stream)


def test_close_stops_the_private_loop(settings: Settings, stream: Stream) -> None:
    sink = NatsSink(settings, FAST)
    assert not sink._loop.running  # nothing started for validate_recipient alone
    assert sink.deliver(make_request(recipient=stream.recipient())).success
    assert sink._loop.running
    sink.close()
    assert not sink._loop.running
    sink.close()


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                       settings: Settings) -> None:
    monkeypatch.setenv("ASYNCEVENTS_NATS_TIMEOUT", "2.5")
    assert NatsSink(settings).options.timeout == 2.5
    monkeypatch.setenv("ASYNCEVENTS_NATS_TIMEOUT", "0")
    with pytest.raises(ConfigError, match="ASYNCEVENTS_NATS_TIMEOUT"):
        NatsSink(settings)


def test_installed_through_the_entry_point() -> None:
    info = Plugins.load().sinks()["nats"]
    assert info.distribution == "asyncevents-nats" and info.factory is NatsSink


def test_end_to_end_through_the_worker(settings: Settings, stream: Stream) -> None:
    app = App(settings)
    app.subscribe("sales.*", stream.recipient("sales"), sink="nats", token="t")
    ids = {app.publish("sales.order.created", {"n": n}) for n in range(3)}
    app.run_worker(WorkerLimits(concurrency=2, max_idle_time=1, time_limit=30))
    messages = stream.messages()
    bodies = [json.loads(m.data) for m in messages]
    assert {b["id"] for b in bodies} == ids
    assert {b["data"]["n"] for b in bodies} == {0, 1, 2}
    assert all(m.headers["ce-type"] == "sales.order.created" for m in messages)
    assert len({m.headers["Nats-Msg-Id"] for m in messages}) == 3
    app.close()
