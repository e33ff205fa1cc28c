"""Per-subscription headers and the egress proxy (issue 15, item 2), with both HTTP clients
(``deliver``: httpx; ``deliver_async``: aiohttp, the worker's), a real local receiver, a
real local forwarding proxy, and a worker delivering from SQLite and PostgreSQL stores."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest
from asyncevents.errors import ConfigError
from asyncevents.sinks.http import HttpSink
from tests.helpers import AsyncClientOnly, both_http_clients  # noqa: F401
from tests.protection.helpers import WHSEC, verify


def request_for(url: str, **changes: Any) -> DeliveryRequest:
    request = DeliveryRequest(
        delivery_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()),
        event_name="sales.order.created", subscription_id="sub-1", recipient=url,
        token=WHSEC, payload={"id": 42}, published_at=datetime(2024, 5, 1, tzinfo=UTC))
    return replace(request, **changes)


def test_extra_headers_are_sent_and_never_replace_ours(
        server: HTTPServer, make_settings: Callable[..., Settings]) -> None:
    server.expect_request("/hook", method="POST").respond_with_data("ok")
    sink = HttpSink(make_settings())
    # Reserved names cannot be stored through the rules; a row written by other
    # means must still not override what the sink sets.
    request = request_for(server.url_for("/hook"), headers={
        "X-Tenant": "acme", "Authorization": "Bearer abc", "Content-Type": "text/plain",
        "webhook-signature": "v1,forged", "Webhook-Id": "other", "Host": "evil.example"})
    try:
        result = sink.deliver(request)
    finally:
        sink.close()
    assert result.success, result.error
    got = server.log[0][0]
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["x-tenant"] == "acme" and headers["authorization"] == "Bearer abc"
    assert headers["content-type"] == "application/cloudevents+json"
    assert headers["webhook-id"] == request.delivery_id
    assert headers["host"].startswith("127.0.0.1")
    assert "forged" not in got.headers.get("webhook-signature", "")
    verify(headers, got.get_data())


def test_through_the_proxy(server: HTTPServer, make_settings: Callable[..., Settings],
                           proxy: tuple[str, list[tuple[str, str, dict[str, str]]]]) -> None:
    url, seen = proxy
    server.expect_request("/hook", method="POST").respond_with_data("ok")
    sink = HttpSink(make_settings(http_proxy=url))
    try:
        result = sink.deliver(request_for(server.url_for("/hook"), headers={"X-Tenant": "a"}))
        # The SSRF guard still applies to the recipient: refused before the proxy sees it.
        refused = sink.deliver(request_for("http://10.1.2.3/hook"))
    finally:
        sink.close()
    assert result.success, result.error
    assert [(m, t) for m, t, _ in seen] == [("POST", server.url_for("/hook"))]
    assert seen[0][2]["x-tenant"] == "a"
    got = server.log[0][0]
    verify({k.lower(): v for k, v in got.headers.items()}, got.get_data())
    assert not refused.success and not refused.retryable
    assert "internal address" in (refused.error or "")


def test_an_unreachable_proxy_is_a_retryable_failure(
        server: HTTPServer, make_settings: Callable[..., Settings]) -> None:
    server.expect_request("/hook", method="POST").respond_with_data("ok")
    sink = HttpSink(make_settings(http_proxy="http://127.0.0.1:9"))
    try:
        result = sink.deliver(request_for(server.url_for("/hook")))
    finally:
        sink.close()
    assert not result.success and result.retryable
    assert server.log == []  # nothing went around the proxy


def test_a_bad_proxy_setting_is_one_clear_line(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="ASYNCEVENTS_HTTP_PROXY must be an http"):
        HttpSink(make_settings(http_proxy="http://:3128"))
