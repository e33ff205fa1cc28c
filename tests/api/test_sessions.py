"""Console sessions kept on the server (issue 23, item 8): the cookie carries a random session
id, never the API token; logout deletes the session, so a copied cookie opens nothing after
it; a session ends when idle too long, at its absolute lifetime, and when its token is
revoked or expires."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from asyncevents.api.services.tokens import create_token, revoke_token
from asyncevents.core.clock import utcnow
from asyncevents.core.settings import Settings
from asyncevents.core.store import Store
from asyncevents.core.store.schema import api_tokens, console_sessions
from tests.api.conftest import Api
from tests.api.helpers import csrf, login

PAGE = "/console/deliveries"


def session_cookie(api: Api) -> str:
    value = api.client.cookies.get("asyncevents_session")
    assert value
    return value


def rows(api: Api) -> list[dict[str, Any]]:
    with api.app.store.begin() as conn:
        return [dict(r) for r in conn.execute(select(console_sessions)).mappings()]


def logged_in(api: Api, cookie: str | None = None) -> bool:
    """Whether a console page opens (with ``cookie`` as the session cookie, when given)."""
    if cookie is not None:
        api.client.cookies.clear()
        api.client.cookies.set("asyncevents_session", cookie, path="/console")
    response = api.client.get(PAGE, follow_redirects=False)
    assert response.status_code in (200, 303), response.text
    return response.status_code == 200


def age(api: Api, **columns: Any) -> None:
    """Set columns of every stored session (to move it back in time)."""
    with api.app.store.begin() as conn:
        conn.execute(update(console_sessions).values(**columns))


def test_the_cookie_holds_a_random_session_id_not_the_token(api: Api) -> None:
    login(api)
    cookie = session_cookie(api)
    token = api.tokens["admin"]
    assert cookie != token and not cookie.startswith("ae_") and len(cookie) >= 43
    (row,) = rows(api)
    assert row["id"] == hashlib.sha256(cookie.encode()).hexdigest()  # stored hashed
    assert cookie not in json.dumps(row, default=str) and token not in json.dumps(
        row, default=str)
    admin = next(t for t in api.app.store.list_api_tokens() if t["name"] == "admin")
    assert row["token_id"] == admin["id"]
    assert row["expires_at"] - row["created_at"] == timedelta(hours=12)
    assert logged_in(api)


def test_logout_ends_the_session_on_the_server(api: Api) -> None:
    login(api)
    copied = session_cookie(api)
    out = api.client.post("/console/logout", data={"csrf": csrf(api)}, follow_redirects=False)
    assert out.status_code == 303
    assert rows(api) == []
    assert not logged_in(api, copied)  # a cookie kept from before the logout opens nothing


def test_a_login_gets_a_fresh_session_and_ends_the_old_one(api: Api) -> None:
    login(api)
    first = session_cookie(api)
    login(api)
    second = session_cookie(api)
    assert first != second
    assert not logged_in(api, first)
    assert logged_in(api, second)
    assert len(rows(api)) == 1


def test_the_idle_lifetime(make_api: Callable[..., Api]) -> None:
    api = make_api(console_idle_minutes=30)
    login(api)
    age(api, last_seen=utcnow() - timedelta(minutes=20))
    assert logged_in(api)  # within the idle lifetime: the visit counts
    assert utcnow() - rows(api)[0]["last_seen"] < timedelta(minutes=1)
    age(api, last_seen=utcnow() - timedelta(minutes=31))
    assert not logged_in(api)
    assert rows(api) == []  # an ended session is deleted when it is next looked up


def test_the_absolute_lifetime(make_api: Callable[..., Api]) -> None:
    api = make_api(console_session_hours=2)
    login(api)
    (row,) = rows(api)
    assert row["expires_at"] - row["created_at"] == timedelta(hours=2)
    age(api, expires_at=utcnow() - timedelta(seconds=1))  # however recently it was used
    assert not logged_in(api)


def test_the_cookie_lives_as_long_as_the_session(api: Api) -> None:
    import re

    form = api.client.get("/console/login")
    value = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    response = api.client.post("/console/login", data={"token": api.tokens["admin"],
                                                       "login_csrf": value},
                               follow_redirects=False)
    cookie = next(c for c in response.headers.get_list("set-cookie")
                  if c.startswith("asyncevents_session=")).lower()
    max_age = int(re.search(r"max-age=(\d+)", cookie).group(1))  # type: ignore[union-attr]
    assert 12 * 3600 - 60 <= max_age <= 12 * 3600


def test_revoking_the_token_ends_its_sessions(api: Api) -> None:
    token, secret = create_token(api.app.store, "operator", ["admin"])
    api.tokens["operator"] = secret
    login(api, "operator")
    assert logged_in(api)
    revoke_token(api.app.store, token.id)
    assert rows(api) == []
    assert not logged_in(api)


def test_an_expiring_token_caps_and_ends_its_sessions(api: Api) -> None:
    soon = utcnow() + timedelta(hours=1)
    token, secret = create_token(api.app.store, "short", ["admin"], expires_at=soon)
    api.tokens["short"] = secret
    login(api, "short")
    (row,) = rows(api)
    assert row["expires_at"] == soon  # not the 12 hours: the token ends first
    assert logged_in(api)
    with api.app.store.begin() as conn:
        conn.execute(update(api_tokens).where(api_tokens.c.id == token.id)
                     .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert not logged_in(api)


def test_forms_need_the_csrf_of_the_session(api: Api) -> None:
    login(api)
    old = csrf(api)
    login(api)  # a new session: the old session's form token is no good
    response = api.client.post("/console/logout", data={"csrf": old})
    assert response.status_code == 403
    assert logged_in(api)


def test_the_lifetimes_are_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASYNCEVENTS_CONSOLE_IDLE_MINUTES", "5")
    monkeypatch.setenv("ASYNCEVENTS_CONSOLE_SESSION_HOURS", "1.5")
    settings = Settings()
    assert (settings.console_idle_minutes, settings.console_session_hours) == (5, 1.5)
    monkeypatch.delenv("ASYNCEVENTS_CONSOLE_IDLE_MINUTES")
    monkeypatch.delenv("ASYNCEVENTS_CONSOLE_SESSION_HOURS")
    assert (Settings().console_idle_minutes, Settings().console_session_hours) == (30, 12)
    monkeypatch.setenv("ASYNCEVENTS_CONSOLE_IDLE_MINUTES", "0")
    with pytest.raises(Exception, match="console_idle_minutes"):
        Settings()


def test_session_queries_on_every_database(database_url: str) -> None:
    store = Store.open(database_url, auto_migrate=True)
    try:
        token, _ = create_token(store, "db", ["admin"])
        idle, touch = timedelta(minutes=30), timedelta(seconds=15)
        store.open_console_session(session_hash="a" * 64, token_id=token.id,
                                   lifetime=timedelta(hours=1), idle=idle)
        found = store.use_console_session("a" * 64, idle=idle, touch_every=touch)
        assert found is not None and found["id"] == token.id
        assert store.use_console_session("b" * 64, idle=idle, touch_every=touch) is None
        # An ended session is deleted by the next login, whoever it belongs to.
        with store.begin() as conn:
            conn.execute(update(console_sessions).values(
                last_seen=utcnow() - timedelta(hours=1)))
        until = utcnow() + timedelta(minutes=5)
        assert store.open_console_session(session_hash="c" * 64, token_id=token.id,
                                          lifetime=timedelta(hours=1), idle=idle,
                                          not_after=until) == until
        assert store.count_console_sessions(token.id) == 1
        assert store.end_console_session("c" * 64) is True
        assert store.end_console_session("c" * 64) is False
        assert store.count_console_sessions() == 0
    finally:
        store.close()
