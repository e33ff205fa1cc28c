"""Every route, with no token, a wrong, revoked, expired or under-scoped token, and the right one.

A refused request must change nothing: the state (subscriptions, deliveries,
tokens, queued messages) is compared before and after.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from asyncevents.api.services.tokens import SCOPES, create_token, list_tokens, revoke_token
from asyncevents.core.clock import utcnow
from asyncevents.core.store.schema import api_tokens
from tests.api.conftest import TOKEN, Api
from tests.api.helpers import queued


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str
    ok: int
    body: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


SUB = {"event_name": "shop.order.created", "recipient": "http://127.0.0.1:9/new",
       "verification_token": TOKEN}
ROUTES = [
    Route("POST", "/v1/subscriptions", "subscriptions:write", 201, SUB),
    Route("GET", "/v1/subscriptions", "subscriptions:read", 200),
    Route("GET", "/v1/subscriptions/{sub}", "subscriptions:read", 200),
    Route("PATCH", "/v1/subscriptions/{sub}", "subscriptions:write", 200, {"active": False}),
    Route("GET", "/v1/subscriptions/{sub}/circuit", "subscriptions:read", 200),
    Route("POST", "/v1/subscriptions/{sub}/rotate-token", "subscriptions:write", 200,
          {"verification_token": "a new token for the matrix", "grace": "1h"}),
    Route("DELETE", "/v1/subscriptions/{sub}", "subscriptions:write", 204),
    Route("GET", "/v1/events", "subscriptions:read", 200),
    Route("POST", "/v1/events", "events:publish", 202,
          {"name": "shop.order.created", "data": {"id": 7}}),
    Route("GET", "/v1/deliveries", "deliveries:read", 200),
    Route("GET", "/v1/deliveries/export", "deliveries:read", 200),
    Route("POST", "/v1/deliveries/replay", "deliveries:replay", 202, {"q": "status:dead"}),
    Route("GET", "/v1/deliveries/{delivery}", "deliveries:read", 200),
    Route("POST", "/v1/deliveries/{delivery}/replay", "deliveries:replay", 202),
    Route("GET", "/v1/sinks", "subscriptions:read", 200),
    Route("GET", "/metrics", "deliveries:read", 200),
    Route("POST", "/v1/tokens", "admin", 201, {"name": "ci", "scopes": ["deliveries:read"]}),
    Route("GET", "/v1/tokens", "admin", 200),
    Route("DELETE", "/v1/tokens/{token}", "admin", 204),
    Route("POST", "/V1/async_event", "subscriptions:write", 200,
          {"asyncEvent": {"event_name": "shop.order.created",
                          "recipient_url": "http://127.0.0.1:9/magento",
                          "verification_token": "secret", "metadata": "http"}}),
    Route("PUT", "/V1/async_event/{sub}", "subscriptions:write", 200,
          {"asyncEvent": {"status": False}}),
    Route("GET", "/V1/async_event/{sub}", "subscriptions:read", 200),
    Route("GET", "/V1/async_events", "subscriptions:read", 200),
    # Magento's REST base paths: the same routes, the same scopes.
    Route("POST", "/rest/V1/async_event", "subscriptions:write", 200,
          {"asyncEvent": {"event_name": "shop.order.created",
                          "recipient_url": "http://127.0.0.1:9/magento",
                          "verification_token": "secret"}}),
    Route("PUT", "/rest/default/V1/async_event/{sub}", "subscriptions:write", 200,
          {"asyncEvent": {"status": False}}),
    Route("GET", "/rest/all/V1/async_event/{sub}", "subscriptions:read", 200),
    Route("GET", "/rest/default/V1/async_events", "subscriptions:read", 200),
]
PUBLIC = ["/healthz", "/openapi.json", "/docs"]


def state(api: Api) -> Any:
    store = api.app.store
    return (
        [s.public() for s in store.list_subscriptions()],
        [(d.id, d.status) for d in store.recent_deliveries(100)],
        sorted((t.id, t.revoked_at is None) for t in list_tokens(store)),
        queued(api),
    )


def call(api: Api, route: Route, headers: dict[str, str]) -> Any:
    sub = api.subscription()
    delivery = api.delivery(sub)
    api.app.store.set_delivery_status(delivery.id, "dead")
    victim, _ = create_token(api.app.store, "victim", ["deliveries:read"])
    path = route.path.format(sub=sub.id, delivery=delivery.id, token=victim.id)
    before = state(api)
    response = api.client.request(route.method, path, json=route.body, headers=headers)
    return response, before, state(api)


@pytest.mark.parametrize("route", ROUTES, ids=[r.id for r in ROUTES])
@pytest.mark.parametrize("who", ["none", "malformed", "wrong", "revoked", "expired",
                                 "other-scopes"])
def test_refused_without_the_right_token(api: Api, route: Route, who: str) -> None:
    if who == "none":
        headers = {}
    elif who == "malformed":
        headers = {"Authorization": "Basic dXNlcjpwYXNz"}  # not a bearer token at all
    elif who == "wrong":
        headers = {"Authorization": "Bearer ae_" + "x" * 43}
    elif who == "revoked":
        token, secret = create_token(api.app.store, "revoked", SCOPES)
        revoke_token(api.app.store, token.id)
        headers = {"Authorization": f"Bearer {secret}"}
    elif who == "expired":
        token, secret = create_token(api.app.store, "expired", SCOPES,
                                     expires_at=utcnow() + timedelta(days=1))
        with api.app.store.begin() as conn:  # a day later
            conn.execute(update(api_tokens).where(api_tokens.c.id == token.id)
                         .values(expires_at=utcnow() - timedelta(seconds=1)))
        headers = {"Authorization": f"Bearer {secret}"}
    else:
        # Every scope but the one the route needs (and never admin).
        others = [s for s in SCOPES if s not in (route.scope, "admin")]
        headers = {"Authorization": f"Bearer {api.token(*others)}"}
    response, before, after = call(api, route, headers)
    expected = 403 if who == "other-scopes" else 401
    assert response.status_code == expected, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == expected
    assert response.headers["www-authenticate"].startswith("Bearer")
    if expected == 403:
        assert route.scope in response.json()["detail"]
    assert after == before  # nothing done


@pytest.mark.parametrize("route", ROUTES, ids=[r.id for r in ROUTES])
@pytest.mark.parametrize("who", ["scope", "admin"])
def test_allowed_with_the_scope_or_admin(api: Api, route: Route, who: str) -> None:
    response, _, _ = call(api, route, api.auth(route.scope if who == "scope" else "admin"))
    assert response.status_code == route.ok, response.text


def test_validation_errors_are_not_shown_to_anonymous_callers(api: Api) -> None:
    response = api.client.post("/v1/subscriptions", content=b"{not json",
                               headers={"content-type": "application/json"})
    assert response.status_code == 401
    response = api.client.post("/v1/subscriptions", json={"event_name": 3},
                               headers=api.auth("subscriptions:read"))
    assert response.status_code == 403


@pytest.mark.parametrize("path", PUBLIC)
def test_public_routes_need_no_token(api: Api, path: str) -> None:
    assert api.client.get(path).status_code == 200


def test_the_matrix_covers_every_route(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    documented = {f"{method.upper()} {path}" for path, item in schema["paths"].items()
                  for method in item}
    # Magento's /rest/... aliases are served but listed once, under /V1.
    covered = {r.id.replace("{sub}", "{subscription_id}").replace("{delivery}", "{delivery_id}")
               .replace("{token}", "{token_id}") for r in ROUTES if "/rest/" not in r.path}
    assert documented - covered == {"GET /healthz"}
    assert covered <= documented
    assert set(schema["components"]["securitySchemes"]) == {"bearer"}


def test_last_used_at_is_recorded(api: Api) -> None:
    assert all(t.last_used_at is None for t in list_tokens(api.app.store))
    api.client.get("/v1/subscriptions", headers=api.auth("subscriptions:read"))
    used = {t.name: t.last_used_at for t in list_tokens(api.app.store)}
    assert used["subscriptions:read"] is not None
    assert used["admin"] is None
