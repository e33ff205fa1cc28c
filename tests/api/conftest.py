"""Fixtures for the API tests: an App on temporary SQLite files, a client, tokens per scope."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog

with warnings.catch_warnings():
    # starlette asks for httpx2 instead of httpx; the test client works with either.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from asyncevents.api.app import create_app
from asyncevents.api.services.tokens import SCOPES, create_token
from asyncevents.core.app import App
from asyncevents.core.clock import utcnow
from asyncevents.core.models import Delivery, Subscription
from asyncevents.core.store import Store

TOKEN = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


@dataclass
class Api:
    """An App, a client on it, and a token for each scope."""

    app: App
    client: TestClient
    tokens: dict[str, str]

    def auth(self, scope: str = "admin") -> dict[str, str]:
        """Headers authenticating with a token that has only ``scope``."""
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    def token(self, *scopes: str) -> str:
        """A new token with these scopes."""
        return create_token(self.app.store, "test", scopes)[1]

    def subscription(self, event: str = "shop.order.created",
                     recipient: str = "http://127.0.0.1:9/hook", **kw: Any) -> Subscription:
        """A subscription stored directly, without the API."""
        return self.app.subscribe(event, recipient, token=kw.pop("token", TOKEN), **kw)

    def delivery(self, sub: Subscription, data: dict[str, Any] | None = None,
                 event_id: str | None = None) -> Delivery:
        """A pending delivery for ``sub``, stored directly (no worker)."""
        import uuid

        (delivery,) = self.app.store.ensure_deliveries(
            event_id=event_id or str(uuid.uuid4()), event_name=sub.event_name,
            published_at=utcnow(), payload=data or {"id": 1}, targets=[sub])
        return delivery


@pytest.fixture(autouse=True)
def _keep_logging_config() -> Iterator[None]:
    """``main()`` points structlog at this test's captured stderr: put it back after."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def make_api(make_settings: Callable[..., Any]) -> Iterator[Callable[..., Api]]:
    """Build an ``Api`` from settings overrides; closed after the test."""
    built: list[Api] = []

    def build(**overrides: Any) -> Api:
        settings = make_settings(**overrides)
        if not settings.database_url.startswith("sqlite"):
            Store.open(settings.database_url, auto_migrate=True).close()  # as `migrate` does
        app = App(settings)
        tokens = {scope: create_token(app.store, scope, [scope])[1] for scope in SCOPES}
        client = TestClient(create_app(app), raise_server_exceptions=False)
        api = Api(app, client, tokens)
        built.append(api)
        return api

    yield build
    for api in built:
        api.client.close()
        api.app.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """An Api whose recipients may be on 127.0.0.0/8 (the test receivers)."""
    return make_api()
