"""Subscriptions made through the API never point deliveries at internal addresses.

The recipient is checked when the subscription is created or changed (a 422
naming the field) and again before every delivery, so a name that resolved
to a public address at subscribe time and to loopback later (DNS rebinding)
is still refused.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from asyncevents.core.app import App
from tests.api.conftest import TOKEN, Api
from tests.helpers import Recorder, drain

INTERNAL = [
    "http://127.0.0.1/",
    "http://[::1]/",
    "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
    "http://10.0.0.1/",
    "http://localhost/",  # a name that resolves to loopback
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
    "http://[::ffff:169.254.169.254]/",
    "http://[fe80::1]/",  # IPv6 link-local
    "http://192.168.1.10:8080/admin",
    "http://0.0.0.0/",
    "http://[fd00::1]/",  # IPv6 unique local
]


@pytest.fixture
def strict_api(make_api: Callable[..., Api]) -> Api:
    """No network is allowed beyond the public internet."""
    return make_api(allowed_networks=[])


@pytest.mark.parametrize("recipient", INTERNAL)
def test_create_refuses_internal_recipients(strict_api: Api, recipient: str) -> None:
    response = strict_api.client.post("/v1/subscriptions", json={
        "event_name": "a.b", "recipient": recipient, "verification_token": TOKEN},
        headers=strict_api.auth("subscriptions:write"))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == "recipient"
    assert problem["type"].endswith("invalid-recipient")
    assert "ASYNCEVENTS_ALLOWED_NETWORKS" in problem["detail"]
    assert strict_api.app.store.list_subscriptions() == []


@pytest.mark.parametrize("recipient", INTERNAL)
def test_update_and_magento_refuse_internal_recipients(strict_api: Api, recipient: str) -> None:
    h = strict_api.auth("subscriptions:write")
    sub = strict_api.app.store.create_subscription(
        event_name="a.b", sink="http", recipient="https://hooks.example.com/x", token=TOKEN)
    patched = strict_api.client.patch(f"/v1/subscriptions/{sub.id}",
                                      json={"recipient": recipient}, headers=h)
    assert patched.status_code == 422 and patched.json()["field"] == "recipient"
    assert strict_api.app.store.get_subscription(sub.id).recipient == sub.recipient
    magento = strict_api.client.post("/V1/async_event", json={"asyncEvent": {
        "event_name": "a.b", "recipient_url": recipient, "verification_token": "t"}}, headers=h)
    assert magento.status_code == 422
    assert magento.json()["field"] == "asyncEvent.recipient_url"


def test_allowed_networks_open_an_address(make_api: Callable[..., Api]) -> None:
    api = make_api(allowed_networks=["10.0.0.0/8"])
    h = api.auth("subscriptions:write")
    ok = api.client.post("/v1/subscriptions", json={
        "event_name": "a.b", "recipient": "http://10.0.0.1/", "verification_token": TOKEN},
        headers=h)
    assert ok.status_code == 201
    still = api.client.post("/v1/subscriptions", json={
        "event_name": "a.b", "recipient": "http://127.0.0.1/", "verification_token": TOKEN},
        headers=h)
    assert still.status_code == 422


def test_checked_again_at_delivery_time(make_settings: Callable[..., Any],
                                        httpserver: HTTPServer) -> None:
    """Subscribed while loopback was allowed; a worker without the allowance refuses."""
    settings = make_settings()
    recorder = Recorder(httpserver)
    App(settings).subscribe("a.b", recorder.route("/hook"), token=TOKEN)
    strict = App(settings, allowed_networks=[])
    strict.publish("a.b", {"n": 1})
    drain(strict, idle=1.0)
    assert recorder.hits == []
    (delivery,) = strict.store.recent_deliveries()
    assert delivery.status == "dead"
    (attempt,) = strict.store.list_attempts(delivery.id)
    assert "recipient address refused" in (attempt.error or "")
    strict.close()


def test_dns_rebinding_is_caught_at_delivery(make_settings: Callable[..., Any],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1", "127.0.0.1"])
    real = socket.getaddrinfo

    def fake(host: str, *args: Any, **kw: Any) -> Any:
        if host == "rebind.test":
            address = next(answers)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    app = App(make_settings(allowed_networks=[]))
    sub = app.subscribe("a.b", "http://rebind.test/hook", token=TOKEN)  # public: accepted
    app.publish("a.b", {"n": 1})
    drain(app, idle=1.0)
    (delivery,) = app.store.recent_deliveries()
    assert delivery.subscription_id == sub.id and delivery.status == "dead"
    (attempt,) = app.store.list_attempts(delivery.id)
    assert "127.0.0.1" in (attempt.error or "") and "refused" in (attempt.error or "")
    app.close()


NOWHERE = "https://hooks.asyncevents.invalid/hook"  # reserved: never resolves


def test_an_unresolvable_name_is_accepted_with_a_warning(strict_api: Api) -> None:
    h = strict_api.auth("subscriptions:write")
    made = strict_api.client.post("/v1/subscriptions", json={
        "event_name": "a.b", "recipient": NOWHERE, "verification_token": TOKEN}, headers=h)
    assert made.status_code == 201, made.text
    (warning,) = made.json()["warnings"]
    assert "hooks.asyncevents.invalid" in warning and "does not resolve" in warning
    sub_id = made.json()["id"]
    assert strict_api.app.store.get_subscription(sub_id).recipient == NOWHERE
    patched = strict_api.client.patch(f"/v1/subscriptions/{sub_id}",
                                      json={"active": False}, headers=h)
    assert patched.status_code == 200 and patched.json()["warnings"] == []
    moved = strict_api.client.patch(f"/v1/subscriptions/{sub_id}",
                                    json={"recipient": NOWHERE + "/2"}, headers=h)
    assert moved.status_code == 200 and len(moved.json()["warnings"]) == 1


@pytest.mark.parametrize("prefix", ["", "/rest/default"])
def test_magento_accepts_an_unresolvable_name_with_a_warning(strict_api: Api,
                                                             prefix: str) -> None:
    h = strict_api.auth("subscriptions:write")
    saved = strict_api.client.post(f"{prefix}/V1/async_event", json={"asyncEvent": {
        "event_name": "a.b", "recipient_url": NOWHERE, "verification_token": TOKEN}}, headers=h)
    assert saved.status_code == 200, saved.text
    assert "does not resolve" in saved.json()["warnings"][0]
    # Nothing to say (a strong token, a public address), Magento's shape exactly.
    quiet = strict_api.client.post(f"{prefix}/V1/async_event", json={"asyncEvent": {
        "event_name": "a.b", "recipient_url": "https://93.184.216.34/",
        "verification_token": TOKEN}}, headers=h)
    assert quiet.status_code == 200 and "warnings" not in quiet.json()
