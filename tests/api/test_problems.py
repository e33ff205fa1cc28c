"""Every error is an RFC 9457 problem document with a clear message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from asyncevents.api.app import create_app
from asyncevents.core.app import App
from tests.api.conftest import Api

KEYS = {"type", "title", "status", "detail", "instance"}


def check(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) >= KEYS and body["status"] == status
    assert body["detail"] and "Traceback" not in body["detail"]
    return body


def test_not_found(api: Api) -> None:
    body = check(api.client.get("/v1/subscriptions/abc", headers=api.auth()), 404)
    assert body["type"] == "urn:asyncevents:problem:not-found"
    assert body["instance"] == "/v1/subscriptions/abc"
    assert "abc" in body["detail"]
    assert check(api.client.get("/v2/anything"), 404)["type"] == "about:blank"


def test_method_not_allowed(api: Api) -> None:
    check(api.client.delete("/v1/events", headers=api.auth()), 405)


def test_validation_lists_every_field(api: Api) -> None:
    body = check(api.client.post("/v1/subscriptions", json={"recipient": 5},
                                 headers=api.auth()), 422)
    fields = {e["field"] for e in body["errors"]}
    # The token is optional to the schema: the sink decides (http needs one, the rules say so).
    assert fields == {"event_name", "recipient"}
    assert body["field"] in fields and body["detail"].startswith(body["field"])
    body = check(api.client.post("/v1/subscriptions", content=b"{",
                                 headers={**api.auth(), "content-type": "application/json"}),
                 422)
    assert body["field"] == "body" and "JSON" in body["detail"]
    body = check(api.client.post("/V1/async_event", json={"asyncEvent": {
        "event_name": "a", "recipient_url": "http://127.0.0.1/", "verification_token": ""}},
        headers=api.auth()), 422)
    assert body["field"] == "asyncEvent.verification_token"


def test_unexpected_errors_are_500_problems_without_details(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("asyncevents.api.services.subscriptions.list_page", boom)
    body = check(api.client.get("/v1/subscriptions", headers=api.auth()), 500)
    assert "secret internals" not in body["detail"]


def test_database_down_is_503(make_settings: Callable[..., Any]) -> None:
    app = App(make_settings(database_url="postgresql://postgres@127.0.0.1:1/nothing"))
    client = TestClient(create_app(app), raise_server_exceptions=False)
    body = check(client.get("/v1/subscriptions", headers={"Authorization": "Bearer ae_x"}), 503)
    assert body["type"] == "urn:asyncevents:problem:store-unavailable"
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["checks"]["database"] == "unavailable"


def test_broker_down_is_503(api: Api, make_settings: Callable[..., Any]) -> None:
    settings = api.app.settings.model_copy(
        update={"transport_url": "amqp://guest:guest@127.0.0.1:1//"})
    app = App(settings)
    client = TestClient(create_app(app), raise_server_exceptions=False)
    body = check(client.post("/v1/events", json={"name": "a.b"}, headers=api.auth()), 503)
    assert body["type"] == "urn:asyncevents:problem:transport-unavailable"
    assert "guest:guest" not in body["detail"]  # no password in messages
    health = client.get("/healthz").json()
    assert health == {"status": "unavailable",
                      "checks": {"database": "ok", "transport": "unavailable"}}
    app.close()
