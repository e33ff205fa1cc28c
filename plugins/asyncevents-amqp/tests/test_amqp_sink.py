"""The AMQP sink against the real RabbitMQ, with asyncevents' sink contract kit."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import amqp.exceptions
import pytest
from asyncevents_amqp import AmqpSettings, AmqpSink, Target, Unroutable, parse_recipient
from asyncevents_amqp.pool import tls_options
from asyncevents_amqp.sink import CONTENT_TYPE, classify, message_headers

from asyncevents import App, ConfigError, DeliveryRequest, InvalidRecipient, Settings, cloudevent
from asyncevents.core.plugins import Plugins
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.testing import TEST_TOKEN, FailureCase, SinkContract, make_request
from conftest import HOST, Route, body_of, declare, free_port

FAST = AmqpSettings(timeout=2)


class Inbox:
    """Reads a route's queue, keeping every message by its delivery id (message_id)."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.seen: dict[str, object] = {}

    def check(self, request: DeliveryRequest) -> None:
        for message in self.route.drain():
            self.seen[message.properties["message_id"]] = message
        message = self.seen.get(request.delivery_id)
        if message is None:
            raise AssertionError(f"delivery {request.delivery_id} is not in {self.route.queue}")
        props = message.properties  # type: ignore[attr-defined]
        if body_of(message) != cloudevent(request):
            raise AssertionError("the body is not the request's CloudEvent")
        if (props["content_type"], props["delivery_mode"], props["type"]) != (
                CONTENT_TYPE, 2, request.event_name):
            raise AssertionError(f"unexpected properties {props}")
        if props["application_headers"] != message_headers(request):
            raise AssertionError(f"unexpected headers {props['application_headers']}")


@pytest.mark.parametrize(("recipient", "expected"), [
    ("amqp://app@127.0.0.1:5672/shop/orders/order.created",
     Target("amqp", "127.0.0.1", 5672, "app", "shop", "orders", "order.created")),
    ("amqp://app@rabbit/%2F/orders/a.b",  # the vhost "/", percent-encoded...
     Target("amqp", "rabbit", 5672, "app", "/", "orders", "a.b")),
    ("amqp://app@rabbit//orders/a.b",  # ...or left empty, as kombu's amqp://…// does
     Target("amqp", "rabbit", 5672, "app", "/", "orders", "a.b")),
    ("amqps://app@rabbit/shop//billing",  # the default exchange: the key is a queue name
     Target("amqps", "rabbit", 5671, "app", "shop", "", "billing")),
    ("amqp://app@rabbit/shop/fanout-ex",  # no routing key: for fanout and headers exchanges
     Target("amqp", "rabbit", 5672, "app", "shop", "fanout-ex", "")),
    ("amqp://my%40app@rabbit/shop/ex/key/with/slashes",
     Target("amqp", "rabbit", 5672, "my@app", "shop", "ex", "key/with/slashes")),
])
def test_recipients(recipient: str, expected: Target) -> None:
    assert parse_recipient(recipient) == expected


@pytest.mark.parametrize("recipient", [
    "", "orders", "http://app@rabbit/shop/ex/key", "amqp://rabbit/shop/ex/key",  # no user
    "amqp://app:secret@rabbit/shop/ex/key",  # the password is the token
    "amqp://app@rabbit/shop", "amqp://app@rabbit/shop//",  # default exchange without a queue
    "amqp://app@rabbit/shop/ex/key?x=1", "amqp://app@rabbit:99999/shop/ex/key",
    "amqp://app@rabbit/shop/ex/" + "k" * 256,
])
def test_bad_recipients(recipient: str) -> None:
    with pytest.raises(InvalidRecipient):
        parse_recipient(recipient)


TARGET = Target("amqp", "127.0.0.1", 5672, "app", "shop", "orders", "x")


@pytest.mark.parametrize(("exc", "retryable"), [
    (ConnectionRefusedError(111, "refused"), True),
    (TimeoutError(), True),
    (amqp.exceptions.MessageNacked(), True),  # a full queue with overflow reject-publish
    (amqp.exceptions.ConnectionForced("shutdown"), True),  # 320: the broker is restarting
    (amqp.exceptions.ResourceLocked("locked"), True),
    (amqp.exceptions.InternalError("oops"), True),
    (amqp.exceptions.AccessRefused("ACCESS_REFUSED - Login was refused"), False),
    (amqp.exceptions.AccessRefused("no write access to exchange"), False),
    (amqp.exceptions.NotFound("NOT_FOUND - no exchange"), False),
    (amqp.exceptions.NotAllowed("vhost not found"), False),
    (amqp.exceptions.PreconditionFailed("message size larger than max"), False),
    (Unroutable(312, "NO_ROUTE", "orders", "x"), False),
])
def test_classification(exc: Exception, retryable: bool) -> None:
    message, got = classify(exc, TARGET, 1.0)
    assert got is retryable and message


def test_sink_contract(settings: Settings, route: Route, vhost: str) -> None:
    inbox = Inbox(route)
    full = declare(vhost, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    assert AmqpSink(settings, FAST).deliver(make_request(recipient=full.recipient())).success
    port = free_port()
    SinkContract(
        factory=lambda s: AmqpSink(s, FAST),
        settings=settings,
        good_recipient=route.recipient(),
        bad_recipients=["", "orders", "amqp://rabbit/v/ex/key", "amqp://u:p@rabbit/v/ex/key"],
        received=inbox.check,
        failures=[
            FailureCase("the broker refuses the password", retryable=False,
                        recipient=route.recipient(), request={"token": "not-the-password"}),
            FailureCase("the exchange does not exist", retryable=False,
                        recipient=route.recipient(exchange="no-such-exchange")),
            FailureCase("no queue is bound for the routing key", retryable=False,
                        recipient=route.recipient("invoices.paid")),
            FailureCase("the virtual host does not exist", retryable=False,
                        recipient=f"amqp://{vhost}@{HOST}:5672/no-such-vhost/ex/key"),
            FailureCase("the queue is full and rejects publishes", retryable=True,
                        recipient=full.recipient()),
            FailureCase("the broker cannot be reached", retryable=True,
                        recipient=f"amqp://{vhost}@{HOST}:{port}/v/ex/key"),
        ],
    ).check_all()


def test_private_brokers_are_refused_unless_allowed(settings: Settings, route: Route) -> None:
    closed = settings.model_copy(update={"allowed_networks": []})
    sink = AmqpSink(closed, FAST)
    for host in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "localhost"):
        with pytest.raises(InvalidRecipient, match="ASYNCEVENTS_ALLOWED_NETWORKS"):
            sink.validate_recipient(f"amqp://app@{host}:5672/shop/orders/created")
    refused = sink.deliver(make_request(recipient=route.recipient()))
    sink.close()
    assert not refused.success and not refused.retryable
    assert "recipient address refused" in (refused.error or "")
    assert route.drain() == []  # nothing reached the broker


def test_connects_to_the_checked_address_not_a_second_lookup(
        settings: Settings, route: Route, monkeypatch: pytest.MonkeyPatch) -> None:
    # The name answers loopback (allowed) to the guard's lookup, then a private
    # address: a client resolving the name again would go there (DNS rebinding).
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "amqp.rebind.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "10.255.255.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    sink = AmqpSink(settings, FAST)
    request = make_request(recipient=route.recipient().replace(HOST, "amqp.rebind.test"))
    result = sink.deliver(request)
    sink.close()
    assert result.success, result.error
    assert lookups == ["amqp.rebind.test"]
    (message,) = route.drain()
    assert body_of(message)["id"] == request.event_id


def test_tls_checks_the_certificate_against_the_name() -> None:
    plain = Target("amqp", "rabbit.example", 5672, "app", "shop", "ex", "k")
    tls = Target("amqps", "rabbit.example", 5671, "app", "shop", "ex", "k")
    assert tls_options(plain, FAST) is False
    assert tls_options(tls, AmqpSettings(ca_file=Path("/etc/ca.pem"))) == {
        "context": {"cafile": "/etc/ca.pem", "check_hostname": True},
        "server_hostname": "rabbit.example"}


def test_the_token_is_the_password(settings: Settings, route: Route) -> None:
    sink = AmqpSink(settings, FAST)
    ok = sink.deliver(make_request(recipient=route.recipient()))  # TEST_TOKEN, the password
    refused = sink.deliver(make_request(recipient=route.recipient(), token="not-the-password"))
    sink.close()
    assert ok.success, ok.error
    assert not refused.success and not refused.retryable
    assert f"refused the login of user {route.vhost!r}" in (refused.error or "")
    assert "not-the-password" not in (refused.error or "")
    assert len(route.drain()) == 1


def test_default_exchange_to_a_queue(settings: Settings, route: Route) -> None:
    sink = AmqpSink(settings, FAST)
    recipient = f"amqp://{route.vhost}@{HOST}:5672/{route.vhost}//{route.queue}"
    request = make_request(recipient=recipient)
    assert sink.deliver(request).success
    sink.close()
    (message,) = route.drain()
    assert body_of(message)["id"] == request.event_id


def test_unroutable_accepted_when_not_mandatory(settings: Settings, route: Route) -> None:
    sink = AmqpSink(settings, AmqpSettings(timeout=2, mandatory=False))
    assert sink.deliver(make_request(recipient=route.recipient("invoices.paid"))).success
    sink.close()


def test_reuses_connections_and_survives_a_dropped_one(settings: Settings, route: Route) -> None:
    sink = AmqpSink(settings, FAST)
    for _ in range(3):
        assert sink.deliver(make_request(recipient=route.recipient())).success
    (idle,) = [p for publishers in sink._pool._idle.values() for p in publishers]
    assert idle.uses == 3  # one connection served all three
    idle.connection.connection.sock.close()  # as if a firewall had cut it while idle
    assert sink.deliver(make_request(recipient=route.recipient())).success
    sink.close()
    assert len(route.drain()) == 4


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                       settings: Settings) -> None:
    monkeypatch.setenv("ASYNCEVENTS_AMQP_SINK_MANDATORY", "false")
    monkeypatch.setenv("ASYNCEVENTS_AMQP_QUEUE_TYPE", "quorum")  # the core's, not ours
    assert AmqpSink(settings).options.mandatory is False
    monkeypatch.setenv("ASYNCEVENTS_AMQP_SINK_TIMEOUT", "-1")
    with pytest.raises(ConfigError, match="ASYNCEVENTS_AMQP_SINK_TIMEOUT"):
        AmqpSink(settings)


def test_installed_through_the_entry_point() -> None:
    plugins = Plugins.load()
    info = plugins.sinks()["amqp"]
    assert info.distribution == "asyncevents-amqp" and info.factory is AmqpSink
    assert not plugins.failures


def test_end_to_end_through_the_worker(settings: Settings, route: Route) -> None:
    app = App(settings)
    app.subscribe("sales.*", route.recipient("orders.sales"), sink="amqp", token=TEST_TOKEN)
    ids = {app.publish("sales.order.created", {"n": n}) for n in range(3)}
    app.run_worker(WorkerLimits(concurrency=2, max_idle_time=1, time_limit=30))
    messages = route.drain()
    bodies = [body_of(m) for m in messages]
    assert {b["id"] for b in bodies} == ids
    assert {b["data"]["n"] for b in bodies} == {0, 1, 2}
    assert all(m.properties["application_headers"]["cloudEvents_type"] == "sales.order.created"
               for m in messages)
    assert len({m.properties["message_id"] for m in messages}) == 3
    assert json.loads(json.dumps(bodies))  # plain JSON all the way
    app.close()
