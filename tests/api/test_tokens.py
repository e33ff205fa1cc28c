"""API tokens: stored hashed, shown once, revocable; and the ``asyncevents tokens`` command."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from asyncevents.api.services.tokens import (
    authenticate,
    check_scopes,
    create_token,
    hash_token,
    list_tokens,
    revoke_token,
)
from asyncevents.cli import main
from asyncevents.core.app import App
from asyncevents.core.store.schema import api_tokens
from asyncevents.errors import ConfigError, NotFound


@pytest.fixture
def app(make_settings: Callable[..., Any]) -> App:
    return App(make_settings())


def test_only_the_hash_is_stored(app: App) -> None:
    token, secret = create_token(app.store, "ci", ["deliveries:read", "admin"])
    assert secret.startswith("ae_") and len(secret) == 3 + 43
    assert token.scopes == ("deliveries:read", "admin")  # canonical order
    with app.store.begin() as conn:
        rows = [dict(r) for r in conn.execute(select(api_tokens)).mappings()]
    assert rows[0]["token_hash"] == hash_token(secret)
    assert secret not in json.dumps(rows, default=str)
    assert rows[0]["prefix"] == secret[:10]


def test_authenticate_and_revoke(app: App) -> None:
    token, secret = create_token(app.store, "ci", ["deliveries:read"])
    found = authenticate(app.store, secret)
    assert found is not None and found.id == token.id and found.allows("deliveries:read")
    assert not found.allows("deliveries:replay")
    assert authenticate(app.store, secret + "x") is None
    assert authenticate(app.store, "not-ours") is None
    revoke_token(app.store, token.id)
    assert authenticate(app.store, secret) is None
    with pytest.raises(NotFound):
        revoke_token(app.store, token.id)
    assert list_tokens(app.store) == []
    assert [t.id for t in list_tokens(app.store, revoked=True)] == [token.id]


def test_scopes_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown scope 'root'"):
        check_scopes(["root"])
    with pytest.raises(ConfigError, match="at least one"):
        check_scopes([])


def test_cli_create_list_revoke(make_settings: Callable[..., Any], tmp_path: Any,
                                monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ASYNCEVENTS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    assert main(["tokens", "create", "deploy", "--scope", "events:publish",
                 "--scope", "deliveries:read"]) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert secret.startswith("ae_") and "not shown again" in err
    assert main(["tokens", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in listed] == ["deploy"]
    assert listed[0]["scopes"] == ["events:publish", "deliveries:read"]
    assert secret not in json.dumps(listed)
    assert main(["tokens", "revoke", listed[0]["id"]]) == 0
    capsys.readouterr()
    assert main(["tokens", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["tokens", "create", "x", "--scope", "root"]) != 0
    assert main(["tokens", "revoke", "nope"]) == 1
    assert "no active API token" in capsys.readouterr().err


def _expire(app: App, token_id: str) -> None:
    """Move a token's expiry into the past, as time would."""
    from datetime import timedelta

    from sqlalchemy import update

    from asyncevents.core.clock import utcnow

    with app.store.begin() as conn:
        conn.execute(update(api_tokens).where(api_tokens.c.id == token_id)
                     .values(expires_at=utcnow() - timedelta(seconds=1)))


def test_an_expired_token_is_refused_like_a_revoked_one(app: App) -> None:
    from datetime import timedelta

    from asyncevents.core.clock import utcnow

    later = utcnow() + timedelta(days=90)
    token, secret = create_token(app.store, "ci", ["deliveries:read"], expires_at=later)
    assert token.expires_at == later and token.status == "active"
    found = authenticate(app.store, secret)
    assert found is not None and found.allows("deliveries:read")
    _expire(app, token.id)
    assert authenticate(app.store, secret) is None
    (listed,) = list_tokens(app.store)  # still listed, as expired
    assert listed.status == "expired" and not listed.allows("deliveries:read")
    assert listed.public()["status"] == "expired"
    revoke_token(app.store, token.id)  # an expired token can still be revoked
    assert list_tokens(app.store, revoked=True)[0].status == "revoked"


@pytest.mark.parametrize(("value", "days"), [("90d", 90), ("12h", 0.5), ("2w", 14),
                                             ("30m", 30 / 1440)])
def test_lifetimes(value: str, days: float) -> None:
    from asyncevents.api.services.tokens import parse_lifetime

    assert parse_lifetime(value).total_seconds() == days * 86400


@pytest.mark.parametrize("value", ["0d", "soon", "-1d", "99999d", "1.5d", "", "90 days"])
def test_bad_lifetimes_name_the_option(value: str) -> None:
    from asyncevents.api.services.tokens import parse_expires

    with pytest.raises(ConfigError, match="--expires") as caught:
        parse_expires(value, "--expires")
    assert caught.value.field == "--expires"


def test_expiry_dates() -> None:
    from datetime import UTC, datetime, timedelta

    from asyncevents.api.services.tokens import parse_expires
    from asyncevents.core.clock import utcnow

    assert parse_expires("2030-01-01") == datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_expires("2030-01-01T12:00+02:00") == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert abs(parse_expires("90d") - (utcnow() + timedelta(days=90))) < timedelta(seconds=5)
    with pytest.raises(ConfigError, match="not in the future"):
        parse_expires("2020-01-01")
    with pytest.raises(ConfigError, match="3660 days"):
        parse_expires("2999-01-01")


def test_cli_expires(make_settings: Callable[..., Any], tmp_path: Any,
                     monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import datetime, timedelta

    from asyncevents.core.clock import utcnow

    monkeypatch.setenv("ASYNCEVENTS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    assert main(["tokens", "create", "ci", "--scope", "admin", "--expires", "90d",
                 "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    expires = datetime.fromisoformat(created["expires_at"])
    assert abs(expires - (utcnow() + timedelta(days=90))) < timedelta(minutes=1)
    assert created["status"] == "active"
    assert main(["tokens", "create", "forever", "--scope", "admin"]) == 0
    capsys.readouterr()
    app = App()
    _expire(app, created["id"])
    app.close()
    assert main(["tokens", "list"]) == 0
    table = capsys.readouterr().out
    assert "expires_at" in table and "expired" in table and "active" in table
    assert main(["tokens", "list", "--json"]) == 0
    listed = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert listed["ci"]["status"] == "expired" and listed["forever"]["expires_at"] is None
    for bad in ("soon", "0d", "2020-01-01"):
        assert main(["tokens", "create", "x", "--scope", "admin", "--expires", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--expires" in err, err
    assert main(["tokens", "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2  # nothing stored by the refusals


def test_rest_expiry(make_settings: Callable[..., Any]) -> None:
    import warnings
    from datetime import datetime, timedelta

    from asyncevents.api.app import create_app
    from asyncevents.core.clock import utcnow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    app = App(make_settings())
    _, admin = create_token(app.store, "admin", ["admin"])
    client = TestClient(create_app(app))
    auth = {"Authorization": f"Bearer {admin}"}
    try:
        made = client.post("/v1/tokens", headers=auth, json={
            "name": "ci", "scopes": ["deliveries:read"], "expires_in": "90d"})
        assert made.status_code == 201, made.text
        expires = datetime.fromisoformat(made.json()["expires_at"])
        assert abs(expires - (utcnow() + timedelta(days=90))) < timedelta(minutes=1)
        at = (utcnow() + timedelta(days=1)).replace(microsecond=0)
        made = client.post("/v1/tokens", headers=auth, json={
            "name": "ci", "scopes": ["deliveries:read"], "expires_at": at.isoformat()})
        assert made.status_code == 201 and made.json()["expires_at"] == at.isoformat()
        assert client.post("/v1/tokens", headers=auth, json={
            "name": "ci", "scopes": ["admin"], "expires_in": 3600}).status_code == 201
        before = len(list_tokens(app.store))
        for body, field in [
            ({"expires_in": "soon"}, "expires_in"),
            ({"expires_in": 0}, "expires_in"),
            ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
            ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),  # no zone
            ({"expires_in": "1d", "expires_at": at.isoformat()}, "expires_at"),
        ]:
            refused = client.post("/v1/tokens", headers=auth,
                                  json={"name": "x", "scopes": ["admin"], **body})
            assert refused.status_code == 422, (body, refused.text)
            assert refused.json()["field"] == field, refused.json()
        assert len(list_tokens(app.store)) == before
        listed = client.get("/v1/tokens", headers=auth).json()
        assert {t["status"] for t in listed} == {"active"} and "expires_at" in listed[0]
    finally:
        client.close()
        app.close()
