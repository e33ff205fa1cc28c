"""Receiver protection end to end (issue 15): a worker (the aiohttp client) delivering from
SQLite and PostgreSQL stores to a real local receiver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from tests.helpers import Recorder, drain
from tests.test_receiver_protection_headers import WHSEC, _verify, proxy  # noqa: F401


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    httpd = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    httpd.start()
    yield httpd
    httpd.stop()


def _app(store: str, make_settings: Callable[..., Settings], request: pytest.FixtureRequest,
         **overrides: Any) -> App:
    if store == "postgresql":
        pg = request.getfixturevalue("pg_url")
        overrides.update(database_url=pg, transport_url=f"sqla+{pg}")
        from asyncevents.core.store import Store
        Store.open(pg, auto_migrate=True).close()
    return App(make_settings(**overrides))


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_worker_sends_the_subscriptions_headers_through_the_proxy(
        store: str, server: HTTPServer, make_settings: Callable[..., Settings],
        proxy: tuple[str, list[tuple[str, str, dict[str, str]]]],  # noqa: F811
        request: pytest.FixtureRequest) -> None:
    url, seen = proxy
    app = _app(store, make_settings, request, http_proxy=url)
    recorder = Recorder(server)
    try:
        hook = recorder.route("/hook")
        sub = app.subscribe("sales.order.created", hook, token=WHSEC,
                            headers={"X-Tenant": "acme", "X-Api-Key": "k3y"})
        app.publish("sales.order.created", {"id": 1})
        drain(app)
        (hit,) = recorder.on("/hook")
        assert hit.headers["x-tenant"] == "acme" and hit.headers["x-api-key"] == "k3y"
        _verify(hit.headers, hit.body)
        assert [t for _, t, _ in seen] == [hook]
        app.update_subscription(sub.id, headers={"X-Tenant": "other"})
        app.publish("sales.order.created", {"id": 2})
        drain(app)
        assert recorder.on("/hook")[1].headers["x-tenant"] == "other"
        assert "x-api-key" not in recorder.on("/hook")[1].headers
    finally:
        app.close()
