"""The MQTT sink against real Mosquitto brokers, with asyncevents' sink contract kit."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from asyncevents_mqtt import BrokerRefused, MqttSettings, MqttSink, Target, parse_recipient
from asyncevents_mqtt.sink import CONTENT_TYPE, classify

from asyncevents import App, ConfigError, DeliveryRequest, InvalidRecipient, Settings, cloudevent
from asyncevents.core.plugins import Plugins
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.testing import TEST_TOKEN, FailureCase, SinkContract, make_request
from conftest import HOST, Listener, SecuredBroker, free_port, listen

FAST = MqttSettings(timeout=2)


def check_arrived(listener: Listener, request: DeliveryRequest) -> None:
    """``request`` reached the subscriber: the CloudEvent as body, MQTT 5 properties set."""
    message = listener.wait_for(request.event_id)
    if json.loads(message.payload) != cloudevent(request):
        raise AssertionError("the body is not the request's CloudEvent")
    properties = message.properties
    if getattr(properties, "ContentType", None) != CONTENT_TYPE:
        raise AssertionError(f"unexpected properties {properties}")
    if ("delivery_id", request.delivery_id) not in getattr(properties, "UserProperty", []):
        raise AssertionError("the delivery id is not among the user properties")


@pytest.mark.parametrize(("recipient", "expected"), [
    ("mqtt://127.0.0.1:1883/shop/orders", Target("mqtt", "127.0.0.1", 1883, "shop/orders")),
    ("mqtt://broker.example.com/a", Target("mqtt", "broker.example.com", 1883, "a")),
    ("mqtts://svc@broker.example.com/a/b?qos=2",  # TLS: port 8883 by default
     Target("mqtts", "broker.example.com", 8883, "a/b", 2, "svc")),
    ("mqtt://h/with%20space/x?qos=1", Target("mqtt", "h", 1883, "with space/x", 1)),
])
def test_recipients(recipient: str, expected: Target) -> None:
    assert parse_recipient(recipient) == expected


@pytest.mark.parametrize("recipient", [
    "", "shop/orders", "http://127.0.0.1/orders", "mqtt:///orders", "mqtt://127.0.0.1/",
    "mqtt://127.0.0.1/shop/+/orders", "mqtt://127.0.0.1/shop/#",  # no wildcards in a publish
    "mqtt://127.0.0.1/$SYS/x",  # the broker's own topics
    "mqtt://127.0.0.1/a?qos=0",  # at most once does not fit reliable delivery
    "mqtt://127.0.0.1/a?retain=1", "mqtt://u:pw@127.0.0.1/a",  # the password is the token
    "mqtt://127.0.0.1:99999/a",
])
def test_bad_recipients(recipient: str) -> None:
    with pytest.raises(InvalidRecipient):
        parse_recipient(recipient)


TARGET = Target("mqtt", "127.0.0.1", 1883, "a")


@pytest.mark.parametrize(("exc", "retryable"), [
    (ConnectionRefusedError(111, "refused"), True),
    (TimeoutError("no ack"), True),
    (ConnectionError("down"), True),
    (BrokerRefused("connection", 0x86), False),  # bad user name or password
    (BrokerRefused("connection", 0x87), False),  # not authorized
    (BrokerRefused("connection", 0x88), True),  # server unavailable
    (BrokerRefused("connection", 0x89), True),  # server busy
    (BrokerRefused("message", 0x97), True),  # quota exceeded: throttling
    (BrokerRefused("message", 0x87), False),
    (BrokerRefused("message", 0x90), False),  # topic name invalid
    (BrokerRefused("message", 0x99), False),  # payload format invalid
])
def test_classification(exc: Exception, retryable: bool) -> None:
    message, got = classify(exc, TARGET)
    assert got is retryable and message


@pytest.fixture
def secured_reader(secured_broker: SecuredBroker) -> Iterator[Listener]:
    """A subscriber on the secured broker (user ``reader`` reads everything)."""
    yield from listen(secured_broker.port, "allowed", username="reader", password="reader-pw")


def test_sink_contract(settings: Settings, listener: Listener,
                       secured_broker: SecuredBroker) -> None:
    port = free_port()
    secured = f"mqtt://publisher@{HOST}:{secured_broker.port}"
    SinkContract(
        factory=lambda s: MqttSink(s, FAST),
        settings=settings,
        good_recipient=listener.recipient(),
        bad_recipients=["", "orders", "mqtt://127.0.0.1/a/#", "mqtt://u:p@127.0.0.1/a"],
        received=lambda request: check_arrived(listener, request),
        failures=[
            FailureCase("the broker cannot be reached", retryable=True,
                        recipient=f"mqtt://{HOST}:{port}/orders"),
            FailureCase("the broker refuses the password", retryable=False,
                        recipient=f"{secured}/allowed/orders"),
            FailureCase("the ACL refuses the topic", retryable=False,
                        recipient=f"{secured}/forbidden/orders",
                        request={"token": secured_broker.password}),
            FailureCase("the ACL refuses the topic, QoS 2", retryable=False,
                        recipient=f"{secured}/forbidden/orders?qos=2",
                        request={"token": secured_broker.password}),
        ],
    ).check_all()


def test_private_brokers_are_refused_unless_allowed(settings: Settings,
                                                   listener: Listener) -> None:
    closed = settings.model_copy(update={"allowed_networks": []})
    sink = MqttSink(closed, FAST)
    for host in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "localhost"):
        with pytest.raises(InvalidRecipient, match="ASYNCEVENTS_ALLOWED_NETWORKS"):
            sink.validate_recipient(f"mqtt://{host}:1883/orders")
    request = make_request(recipient=listener.recipient())
    refused = sink.deliver(request)
    sink.close()
    assert not refused.success and not refused.retryable
    assert "recipient address refused" in (refused.error or "")
    with pytest.raises(AssertionError):
        listener.wait_for(request.event_id, seconds=0.5)  # nothing reached the broker


def test_connects_to_the_checked_address_not_a_second_lookup(
        settings: Settings, listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    # The name answers loopback (allowed) to the guard's lookup, then a private
    # address: a client resolving the name again would go there (DNS rebinding).
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "mqtt.rebind.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "10.255.255.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    sink = MqttSink(settings, FAST)
    request = make_request(recipient=listener.recipient().replace(HOST, "mqtt.rebind.test"))
    result = sink.deliver(request)
    sink.close()
    assert result.success, result.error
    assert lookups == ["mqtt.rebind.test"]
    check_arrived(listener, request)


@pytest.mark.parametrize("qos", [1, 2])
def test_the_token_is_the_password(settings: Settings, secured_broker: SecuredBroker,
                                   secured_reader: Listener, qos: int) -> None:
    sink = MqttSink(settings, FAST)
    topic = f"{secured_reader.prefix}/x"
    recipient = f"mqtt://publisher@{HOST}:{secured_broker.port}/{topic}?qos={qos}"
    request = make_request(recipient=recipient, token=secured_broker.password)
    result = sink.deliver(request)
    sink.close()
    assert result.success, result.error
    assert json.loads(result.response) == {"topic": topic, "qos": qos}
    assert json.loads(secured_reader.wait_for(request.event_id).payload)["id"] == request.event_id


def test_the_user_from_the_settings(settings: Settings, secured_broker: SecuredBroker) -> None:
    sink = MqttSink(settings, MqttSettings(timeout=2, username="publisher"))
    recipient = f"mqtt://{HOST}:{secured_broker.port}/allowed/x"
    assert sink.deliver(make_request(recipient=recipient, token=secured_broker.password)).success
    anonymous = MqttSink(settings, FAST).deliver(make_request(recipient=recipient))
    assert not anonymous.success and not anonymous.retryable  # no user: anonymous, refused
    sink.close()


def test_mqtt_3_1_1(settings: Settings, listener: Listener) -> None:
    sink = MqttSink(settings, MqttSettings(timeout=2, protocol="3.1.1"))
    request = make_request(recipient=listener.recipient("v3", "?qos=2"))
    assert sink.deliver(request).success
    sink.close()
    message = listener.wait_for(request.event_id)
    assert json.loads(message.payload) == cloudevent(request)
    assert message.qos == 2


def test_the_token_never_shows(settings: Settings, secured_broker: SecuredBroker) -> None:
    sink = MqttSink(settings, FAST)
    result = sink.deliver(make_request(
        recipient=f"mqtt://publisher@{HOST}:{secured_broker.port}/forbidden/x"))
    sink.close()
    assert not result.success
    assert TEST_TOKEN not in f"{result.error} {result.response}"


def test_reconnects_after_losing_the_connection(settings: Settings, listener: Listener) -> None:
    sink = MqttSink(settings, FAST)
    assert sink.deliver(make_request(recipient=listener.recipient())).success
    for connection in list(sink._connections.values()):
        connection.client.disconnect()  # as if the broker had gone away
    request = make_request(recipient=listener.recipient())
    assert sink.deliver(request).success
    sink.close()
    listener.wait_for(request.event_id)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                       settings: Settings) -> None:
    monkeypatch.setenv("ASYNCEVENTS_MQTT_PROTOCOL", "3.1.1")
    monkeypatch.setenv("ASYNCEVENTS_MQTT_USERNAME", "svc")
    options = MqttSink(settings).options
    assert (options.protocol, options.username) == ("3.1.1", "svc")
    monkeypatch.setenv("ASYNCEVENTS_MQTT_PROTOCOL", "4")
    with pytest.raises(ConfigError, match="ASYNCEVENTS_MQTT_PROTOCOL"):
        MqttSink(settings)


def test_installed_through_the_entry_point() -> None:
    info = Plugins.load().sinks()["mqtt"]
    assert info.distribution == "asyncevents-mqtt" and info.factory is MqttSink


def test_end_to_end_through_the_worker(settings: Settings, listener: Listener) -> None:
    app = App(settings)
    app.subscribe("sales.*", listener.recipient("sales"), sink="mqtt", token="t")
    ids = {app.publish("sales.order.created", {"n": n}) for n in range(3)}
    app.run_worker(WorkerLimits(concurrency=2, max_idle_time=1, time_limit=30))
    messages = listener.wait_count(3)
    bodies = [json.loads(m.payload) for m in messages]
    assert {b["id"] for b in bodies} == ids
    assert {b["data"]["n"] for b in bodies} == {0, 1, 2}
    assert {m.topic for m in messages} == {f"{listener.prefix}/sales"}
    assert all(getattr(m.properties, "ContentType", None) == CONTENT_TYPE for m in messages)
    app.close()
