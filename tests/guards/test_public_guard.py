"""The address guard and pinning as public sink API (issue 23, item 10).

``asyncevents.check_address`` (for ``validate_recipient``) and
``asyncevents.guarded_addresses`` (at connect time: the addresses to connect
to, resolved once and checked) are what every sink taking a host or a URL
uses; the package exports them by name.
"""

from __future__ import annotations

import socket

import pytest

import asyncevents
from asyncevents import (
    Address,
    InvalidRecipient,
    Settings,
    UnverifiedRecipient,
    check_address,
    guarded_addresses,
)
from tests.guards.conftest import FakeDNS

EXPORTED = [
    "Address", "App", "AsyncEventsError", "AsyncEventsWarning", "ConfigError", "ConfigWarning",
    "DeliveryRequest", "DeliveryResult", "Event", "EventDefinition", "InvalidPayload",
    "InvalidQuery", "InvalidRecipient", "NotFound", "PermanentSinkError", "RecipientWarning",
    "RetryableSinkError", "Settings", "Sink", "SinkError", "StoreError", "TransportError",
    "UnknownEvent", "UnknownSink", "UnverifiedRecipient", "check_address", "cloudevent",
    "guarded_addresses", "handler", "hookimpl", "load_settings", "publish",
]


def test_the_package_exports_exactly_its_public_names() -> None:
    assert asyncevents.__all__ == EXPORTED
    assert asyncevents.__all__ == sorted(asyncevents.__all__, key=lambda n: (n[0].islower(), n))
    for name in EXPORTED:
        assert getattr(asyncevents, name).__doc__, f"{name} has no docstring"


CLOSED = Settings(allowed_networks=[])


@pytest.mark.parametrize("recipient", [
    "127.0.0.1", "10.0.0.1", "169.254.169.254", "localhost", "[::1]", "::1",
    "amqp://app@127.0.0.1:5672/shop/orders/created", "mqtt://10.0.0.1/topic",
    "nats://169.254.169.254:4222/orders", "tls://localhost/orders", "https://[fd00::1]/api",
    "192.168.1.10:6379", "0.0.0.0", "224.0.0.1",
])
def test_private_addresses_are_refused(recipient: str) -> None:
    with pytest.raises(InvalidRecipient, match="ASYNCEVENTS_ALLOWED_NETWORKS") as refused:
        check_address(recipient, CLOSED)
    assert not isinstance(refused.value, UnverifiedRecipient)


def test_a_password_in_the_url_never_shows(fake_dns: FakeDNS) -> None:
    with pytest.raises(InvalidRecipient) as refused:
        check_address("amqp://user:hunter2@/vhost", CLOSED)
    assert "hunter2" not in str(refused.value)


def test_names_resolving_inside_are_refused_and_public_ones_pass(fake_dns: FakeDNS) -> None:
    fake_dns.set("broker.example", ["203.0.113.9"])  # TEST-NET: not global, refused
    fake_dns.set("rebind.example", ["8.8.8.8", "10.1.2.3"])
    fake_dns.set("public.example", ["8.8.8.8", "2001:4860:4860::8888"])
    for refused in ("broker.example", "amqp://u@rebind.example/v/e/k"):
        with pytest.raises(InvalidRecipient):
            check_address(refused, CLOSED)
    assert [str(a) for a in check_address("nats://public.example:4222/s", CLOSED)] == [
        "8.8.8.8", "2001:4860:4860::8888"]
    found = guarded_addresses("public.example", 4222, CLOSED)
    assert found == [Address("8.8.8.8", 4222), Address("2001:4860:4860::8888", 4222)]
    assert [a.netloc for a in found] == ["8.8.8.8:4222", "[2001:4860:4860::8888]:4222"]


def test_allowed_networks_open_addresses_by_network_or_by_name(fake_dns: FakeDNS) -> None:
    fake_dns.set("broker.internal", ["10.9.8.7"])
    by_network = Settings(allowed_networks=["10.0.0.0/8"])
    by_name = Settings(allowed_networks=["broker.internal"])
    assert guarded_addresses("broker.internal", 5672, by_network) == [Address("10.9.8.7", 5672)]
    assert guarded_addresses("broker.internal", 5672, by_name) == [Address("10.9.8.7", 5672)]
    with pytest.raises(InvalidRecipient):
        check_address("169.254.169.254", by_network)  # only what is opened
    loopback = Settings(allowed_networks=["127.0.0.0/8"])
    assert check_address("localhost", loopback)


def test_each_connect_resolves_anew_and_checks_again(fake_dns: FakeDNS) -> None:
    # What pins: the addresses a sink connects to are those of this lookup, checked;
    # a name that turns internal between two connections is refused at the second.
    fake_dns.set("flip.example", ["8.8.8.8"], ["127.0.0.1"])
    assert guarded_addresses("flip.example", 80, CLOSED) == [Address("8.8.8.8", 80)]
    with pytest.raises(InvalidRecipient, match=r"127\.0\.0\.1"):
        guarded_addresses("flip.example", 80, CLOSED)
    assert fake_dns.lookups("flip.example") == 2


def test_unresolvable_names_are_unverified_not_refused(fake_dns: FakeDNS,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(UnverifiedRecipient, match="does not resolve"):
        check_address("mqtt://nowhere.example/t", CLOSED)


@pytest.mark.parametrize("value", ["", "amqp:///vhost", "mqtt://:1883/t"])
def test_no_host_is_refused(value: str) -> None:
    with pytest.raises(InvalidRecipient, match="no host"):
        check_address(value, CLOSED)
