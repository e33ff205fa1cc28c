"""Failed authentications throttled per client address (issue 23, item 8): past 10 wrong,
expired or revoked bearer tokens or failed console logins in a minute, an address gets a 429
with Retry-After, whatever token it sends next; other addresses are not affected; memory is
bounded."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from asyncevents.api.app import create_app
from asyncevents.api.throttle import FailureThrottle, client_address
from tests.api.conftest import Api

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

WRONG = {"Authorization": "Bearer ae_" + "x" * 43}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(api: Api) -> Clock:
    """The app's throttle, on a clock of the test's."""
    fake = Clock()
    api.client.app.state.auth_throttle = FailureThrottle(clock=fake)  # type: ignore[attr-defined]
    return fake


def test_the_sliding_window() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=3, window=60, clock=clock)
    for _ in range(2):
        throttle.failed("10.0.0.1")
        clock.now += 10
    assert throttle.retry_after("10.0.0.1") is None
    throttle.failed("10.0.0.1")  # failures at 1000, 1010, 1020
    assert throttle.retry_after("10.0.0.1") == 40  # until the first leaves the window
    assert throttle.retry_after("10.0.0.2") is None
    clock.now = 1060.5
    assert throttle.retry_after("10.0.0.1") is None  # 1010 and 1020 are left: 2 < 3
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 10


def test_memory_is_bounded() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=5, window=60, max_addresses=100, clock=clock)
    for n in range(5000):
        throttle.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
        clock.now += 0.001
    assert throttle.tracked() == 100
    clock.now += 61
    throttle.failed("192.0.2.1")
    assert throttle.tracked() == 1  # every address whose failures left the window is gone


def test_ipv6_counts_by_its_64() -> None:
    def address(host: str) -> str:
        connection = SimpleNamespace(client=SimpleNamespace(host=host))
        return client_address(connection)  # type: ignore[arg-type]

    assert address("2001:db8:1:2::1") == address("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address("2001:db8:1:3::1") != address("2001:db8:1:2::1")
    assert address("::ffff:192.0.2.7") == "192.0.2.7"
    assert address("192.0.2.7") == "192.0.2.7"


def test_bad_bearer_tokens_are_throttled(api: Api, clock: Clock) -> None:
    for _ in range(10):
        assert api.client.get("/v1/subscriptions", headers=WRONG).status_code == 401
    # The right token now gets the same 429: the answer says nothing about the token.
    refused = api.client.get("/v1/subscriptions", headers=api.auth("admin"))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "60"
    assert "too many failed authentications" in refused.json()["detail"]
    assert api.tokens["admin"] not in refused.text
    # Another address is not affected.
    other = TestClient(create_app(api.app), client=("192.0.2.9", 4000))
    other.app.state.auth_throttle = api.client.app.state.auth_throttle  # type: ignore[attr-defined]
    assert other.get("/v1/subscriptions", headers=api.auth("admin")).status_code == 200
    other.close()
    clock.now += 60
    assert api.client.get("/v1/subscriptions", headers=api.auth("admin")).status_code == 200


@pytest.mark.parametrize("kind", ["missing", "other-scope"])
def test_what_is_not_a_bad_token_counts_for_nothing(api: Api, clock: Clock, kind: str) -> None:
    headers = {} if kind == "missing" else api.auth("deliveries:read")
    for _ in range(30):
        expected = 401 if kind == "missing" else 403
        assert api.client.get("/v1/subscriptions", headers=headers).status_code == expected
    assert api.client.get("/v1/subscriptions", headers=api.auth("admin")).status_code == 200


def test_expired_and_revoked_tokens_count(api: Api, clock: Clock) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from asyncevents.api.services.tokens import create_token, revoke_token
    from asyncevents.core.clock import utcnow
    from asyncevents.core.store.schema import api_tokens

    revoked, revoked_secret = create_token(api.app.store, "r", ["admin"])
    revoke_token(api.app.store, revoked.id)
    expired, expired_secret = create_token(api.app.store, "e", ["admin"],
                                           expires_at=utcnow() + timedelta(days=1))
    with api.app.store.begin() as conn:
        conn.execute(update(api_tokens).where(api_tokens.c.id == expired.id)
                     .values(expires_at=utcnow() - timedelta(seconds=1)))
    for n in range(10):
        secret = revoked_secret if n % 2 else expired_secret
        response = api.client.get("/v1/subscriptions",
                                  headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 401
    assert api.client.get("/v1/subscriptions", headers=api.auth()).status_code == 429


def _login_form(api: Api) -> str:
    form = api.client.get("/console/login")
    value = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert value is not None
    return value.group(1)


def test_failed_console_logins_are_throttled(api: Api, clock: Clock) -> None:
    for _ in range(10):
        bad = api.client.post("/console/login", data={"token": "ae_wrong",
                                                      "login_csrf": _login_form(api)})
        assert bad.status_code == 401
    refused = api.client.post("/console/login", data={"token": api.tokens["admin"],
                                                      "login_csrf": _login_form(api)},
                              follow_redirects=False)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
    assert "too many failed logins" in refused.text
    assert "asyncevents_session" not in api.client.cookies
    # The console and the API count together: the same address is refused there too.
    assert api.client.get("/v1/subscriptions", headers=api.auth()).status_code == 429
    clock.now += 61
    done = api.client.post("/console/login", data={"token": api.tokens["admin"],
                                                   "login_csrf": _login_form(api)},
                           follow_redirects=False)
    assert done.status_code == 303


def test_the_limit_holds_on_a_real_app(make_api: Callable[..., Any]) -> None:
    """Without a test clock: the app makes its own throttle on first use."""
    api = make_api()
    for _ in range(10):
        api.client.get("/metrics", headers=WRONG)
    response = api.client.get("/metrics", headers=api.auth("deliveries:read"))
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 60
