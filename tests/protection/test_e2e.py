"""Receiver protection end to end (issue 15): a worker (the aiohttp client) delivering from
SQLite and PostgreSQL stores to a real local receiver."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pytest_httpserver import HTTPServer

from asyncevents.core.app import App
from tests.helpers import Recorder, drain
from tests.protection.helpers import WHSEC, verify


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_worker_sends_the_subscriptions_headers_through_the_proxy(
        store: str, server: HTTPServer, app_on: Callable[..., App],
        proxy: tuple[str, list[tuple[str, str, dict[str, str]]]]) -> None:
    url, seen = proxy
    app = app_on(store, http_proxy=url)
    recorder = Recorder(server)
    try:
        hook = recorder.route("/hook")
        sub = app.subscribe("sales.order.created", hook, token=WHSEC,
                            headers={"X-Tenant": "acme", "X-Api-Key": "k3y"})
        app.publish("sales.order.created", {"id": 1})
        drain(app)
        (hit,) = recorder.on("/hook")
        assert hit.headers["x-tenant"] == "acme" and hit.headers["x-api-key"] == "k3y"
        verify(hit.headers, hit.body)
        assert [t for _, t, _ in seen] == [hook]
        app.update_subscription(sub.id, headers={"X-Tenant": "other"})
        app.publish("sales.order.created", {"id": 2})
        drain(app)
        assert recorder.on("/hook")[1].headers["x-tenant"] == "other"
        assert "x-api-key" not in recorder.on("/hook")[1].headers
    finally:
        app.close()
