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
