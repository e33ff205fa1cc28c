"""The secret key (issue 23, items 4-7): no secret in clear on a server database, reads that
never write, a wrong key refused at start, header values encrypted, private SQLite files.

Server-free: the "server database" here is a URL the code must refuse before it
connects, or a SQLite store given the cipher a server database gets. The same
refusals on a real PostgreSQL, through the CLI, are in ``tests/guards/test_secrets.py``.
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from asyncevents.cli import main
from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from asyncevents.core.store import KEY_FILE, MISSING_KEY, Store, store_cipher
from asyncevents.core.store.crypto import TokenCipher
from asyncevents.errors import ConfigError, RecipientWarning
from tests.api.conftest import _keep_logging_config  # noqa: F401 (main() reconfigures logging)

HEADERS = {"Authorization": "Bearer hdr-secret-value", "X-Tenant": "acme-tenant"}
HOOK = "http://127.0.0.1:9/hook"


def _raw(store: Store, column: str = "token") -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.text(
            f"SELECT {column} FROM asyncevents_subscription ORDER BY created_at")).scalars())


def _options_text(store: Store) -> str:
    return json.dumps([o if isinstance(o, dict) else json.loads(o or "null")
                       for o in _raw(store, "options")])


def _fingerprint(store: Store) -> str | None:
    with store.engine.connect() as conn:
        found = conn.execute(sa.text(
            "SELECT fingerprint FROM asyncevents_secret_key_check")).scalar()
    return None if found is None else str(found)


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text
    return text


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point the in-process CLI at this test's SQLite store (and a key, when given)."""
    monkeypatch.chdir(tmp_path)

    def use(key: str | None) -> None:
        monkeypatch.setenv("ASYNCEVENTS_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
        monkeypatch.setenv("ASYNCEVENTS_TRANSPORT_URL", f"sqla+sqlite:///{tmp_path / 'q.db'}")
        monkeypatch.setenv("ASYNCEVENTS_STRICT_EVENTS", "false")
        monkeypatch.setenv("ASYNCEVENTS_ALLOWED_NETWORKS", "127.0.0.0/8")
        if key is None:
            monkeypatch.delenv("ASYNCEVENTS_SECRET_KEY", raising=False)
        else:
            monkeypatch.setenv("ASYNCEVENTS_SECRET_KEY", key)

    return use


# Item 4: a server database never stores a secret in clear; an empty key is no key.

@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_secret_key_counts_as_unset(value: str, monkeypatch: pytest.MonkeyPatch,
                                             make_settings: Callable[..., Any]) -> None:
    monkeypatch.setenv("ASYNCEVENTS_SECRET_KEY", value)
    assert Settings().secret_key is None
    assert Settings(secret_key=value).secret_key is None
    # A server database: refused from the settings alone, before any connection.
    app = App(make_settings(database_url="postgresql://nobody@127.0.0.1:1/none",
                            secret_key=value))
    with pytest.raises(ConfigError) as refused:
        app.require_secret_key()
    assert _one_line(refused.value) == MISSING_KEY
    assert "store" not in app.__dict__


def test_a_server_database_store_refuses_a_secret_without_a_key(tmp_path: Path) -> None:
    # The cipher a PostgreSQL or MariaDB store gets without ASYNCEVENTS_SECRET_KEY,
    # on a SQLite file so the test needs no server.
    cipher = store_cipher(None, "postgresql://u@127.0.0.1/db")
    assert not cipher.enabled and cipher.refusal == MISSING_KEY
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}", cipher=cipher)
    with pytest.raises(ConfigError) as refused:
        store.create_subscription(event_name="a", sink="http", recipient=HOOK,
                                  token="supersecret")
    assert _one_line(refused.value) == MISSING_KEY
    with pytest.raises(ConfigError):
        store.create_subscription(event_name="a", sink="http", recipient=HOOK, token="",
                                  options={"headers": {"Authorization": "Bearer x"}})
    assert _raw(store) == []
    # A python handler's subscription holds no secret: it is stored.
    store.create_subscription(event_name="a", sink="python", recipient="m:f", token="")
    assert _raw(store) == [""]
    store.close()


# Item 5: reading never writes.

def test_reading_with_a_wrong_key_never_rewrites_secrets(
        tmp_path: Path, cli_env: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    clear = Store.open(url)  # as an older version stored them: in clear
    sub = clear.create_subscription(event_name="a.b", sink="http", recipient=HOOK,
                                    token="old-clear-token",
                                    options={"headers": dict(HEADERS)})
    before = (_raw(clear), _raw(clear, "options"))
    cli_env("typo")
    for command in (["subscriptions", "list", "--json"], ["subscriptions", "show", sub.id],
                    ["stats", "--json"], ["search", "*", "--json"]):
        assert main(command) == 0, capsys.readouterr().err
    assert "hdr-secret-value" not in capsys.readouterr().out
    assert (_raw(clear), _raw(clear, "options")) == before
    assert _fingerprint(clear) is None
    # The right key reads them all, still in clear until rotate-key encrypts them.
    right = App(Settings(database_url=url, secret_key="right"))
    got = right.store.get_subscription(sub.id)
    assert (got.token, got.headers) == ("old-clear-token", HEADERS)
    assert _raw(clear) == ["old-clear-token"]
    right.close()
    clear.close()


# Item 6: a wrong key is found at start.

def test_a_wrong_key_is_refused_at_start_and_writes_nothing(
        make_settings: Callable[..., Any]) -> None:
    right = App(make_settings(secret_key="the right key"))
    sub = right.subscribe("a.b", HOOK, token="tok-1", headers=dict(HEADERS))
    fingerprint = _fingerprint(right.store)
    assert fingerprint is not None and "right" not in fingerprint
    right.require_secret_key()  # the right key starts
    raw = (_raw(right.store), _raw(right.store, "options"))

    wrong = App(make_settings(secret_key="a typo"))
    with pytest.raises(ConfigError) as refused:
        wrong.worker()
    assert "is not the key this installation's secrets are encrypted with" in _one_line(
        refused.value)
    for write in (lambda: wrong.subscribe("a.b", HOOK, token="tok-2"),
                  lambda: wrong.update_subscription(sub.id, token="tok-3"),
                  lambda: wrong.rotate_token(sub.id, "tok-4")):
        with pytest.raises(ConfigError, match="is not the key"):
            write()
    assert (_raw(right.store), _raw(right.store, "options")) == raw
    assert _fingerprint(right.store) == fingerprint
    wrong.close()
    right.close()


def test_without_a_stored_fingerprint_the_key_must_open_a_stored_secret(
        make_settings: Callable[..., Any]) -> None:
    # An installation upgraded from a version without the check: secrets, no fingerprint.
    right = App(make_settings(secret_key="the right key"))
    right.subscribe("a.b", HOOK, token="tok-1")
    with right.store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM asyncevents_secret_key_check"))
    wrong = App(make_settings(secret_key="a typo"))
    with pytest.raises(ConfigError, match="is not the key"):
        wrong.require_secret_key()
    assert _fingerprint(right.store) is None  # the wrong key was not adopted
    right.require_secret_key()
    assert _fingerprint(right.store) == right.store.cipher.fingerprint
    wrong.close()
    right.close()


def test_a_missing_key_file_is_not_replaced_while_secrets_exist(
        tmp_path: Path, make_settings: Callable[..., Any]) -> None:
    settings = make_settings()
    key_file = tmp_path / KEY_FILE
    app = App(settings)
    sub_id = app.subscribe("a.b", HOOK, token="tok-kept").id
    raw = _raw(app.store)
    app.close()
    key = key_file.read_text()
    key_file.unlink()
    again = App(settings)
    with pytest.raises(ConfigError) as refused:
        again.store  # noqa: B018
    assert f"the key file {key_file} is missing" in _one_line(refused.value)
    assert not key_file.exists()
    key_file.write_text(key)
    key_file.chmod(0o600)
    restored = App(settings)
    assert restored.store.get_subscription(sub_id).token == "tok-kept"
    assert _raw(restored.store) == raw
    restored.close()


# Item 6: rotate-key, the one command that changes stored secrets.

def _secrets_of_every_kind(app: App) -> list[str]:
    hmac = app.subscribe("a.b", HOOK, token="tok-hmac", headers=dict(HEADERS))
    app.rotate_token(hmac.id, "tok-rotated", grace="1h")  # previous_token in its grace
    ed = app.subscribe("a.b", HOOK, token="tok-ed", signature="ed25519")
    return [hmac.id, ed.id]


def test_rotate_key_reencrypts_every_secret_and_the_fingerprint(
        tmp_path: Path, make_settings: Callable[..., Any], cli_env: Callable[..., None],
        capsys: pytest.CaptureFixture[str]) -> None:
    old = App(make_settings(secret_key="old key"))
    ids = _secrets_of_every_kind(old)
    before = {i: old.store.get_subscription(i) for i in ids}
    raw = [_raw(old.store, c) for c in ("token", "previous_token", "signing_key", "options")]
    new_key_file = tmp_path / "new.key"
    new_key_file.write_text("new key\n")

    cli_env("old key")
    assert main(["rotate-key", "--new-key-file", str(new_key_file), "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    # tokens 3 (two subscriptions, and the rotated one), 1 signing key, 2 header values
    assert done == {"reencrypted": 6, "key_file": None}
    after = [_raw(old.store, c) for c in ("token", "previous_token", "signing_key", "options")]
    assert all(a != b for a, b in zip(raw, after, strict=True))
    assert "hdr-secret-value" not in _options_text(old.store)

    new = App(make_settings(secret_key="new key"))
    new.require_secret_key()
    for sub_id, was in before.items():
        now = new.store.get_subscription(sub_id)
        assert (now.token, now.previous_token, now.signing_key, now.headers) == (
            was.token, was.previous_token, was.signing_key, was.headers)
    stale = App(make_settings(secret_key="old key"))
    with pytest.raises(ConfigError, match="is not the key"):
        stale.require_secret_key()

    # Run twice, the rotation has nothing left to do; a current key that is not the
    # installation's changes nothing, in one line.
    rotated = [_raw(old.store, c) for c in ("token", "previous_token", "signing_key")]
    assert main(["rotate-key", "--new-key-file", str(new_key_file)]) == 0
    assert capsys.readouterr().out.startswith("0 secrets re-encrypted")
    cli_env("a typo")
    newer_key_file = tmp_path / "newer.key"
    newer_key_file.write_text("newer key")
    assert main(["rotate-key", "--new-key-file", str(newer_key_file)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not the key" in err[0], err
    assert [_raw(old.store, c) for c in ("token", "previous_token", "signing_key")] == rotated
    for app in (old, new, stale):
        app.close()


def test_rotate_key_is_all_or_nothing_and_reads_no_key_from_argv(
        tmp_path: Path, make_settings: Callable[..., Any], cli_env: Callable[..., None],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    app = App(make_settings(secret_key="old key"))
    app.subscribe("a.b", HOOK, token="tok-1")
    app.subscribe("a.b", HOOK, token="tok-2")
    # One secret under a key nobody has: the rotation must change nothing at all.
    stranger = TokenCipher("a third key").encrypt("tok-3")
    with app.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE asyncevents_subscription SET previous_token = :t"),
                     {"t": stranger})
    raw = [_raw(app.store, c) for c in ("token", "previous_token")]
    fingerprint = _fingerprint(app.store)
    cli_env("old key")
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("new key\n"))
    assert main(["rotate-key"]) == 1  # the new key from stdin
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert [_raw(app.store, c) for c in ("token", "previous_token")] == raw
    assert _fingerprint(app.store) == fingerprint
    # The key is never an argument.
    assert main(["rotate-key", "--new-key", "new key"]) == 2
    assert "--new-key" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["rotate-key"]) == 2
    assert "no key in standard input" in capsys.readouterr().err
    app.close()


def test_rotate_key_with_the_sqlite_key_file_encrypts_clear_secrets_and_replaces_it(
        tmp_path: Path, cli_env: Callable[..., None],
        capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    clear = Store.open(url)  # an older version's secrets, in clear
    clear.create_subscription(event_name="a.b", sink="http", recipient=HOOK,
                              token="old-clear-token", options={"headers": dict(HEADERS)})
    cli_env(None)
    key_file = tmp_path / KEY_FILE
    new_key_file = tmp_path / "new.key"
    new_key_file.write_text(TokenCipher.__name__ + " is not a key, a passphrase is fine\n")
    assert main(["rotate-key", "--new-key-file", str(new_key_file)]) == 0
    out = capsys.readouterr().out
    assert "3 secrets re-encrypted" in out and str(key_file) in out
    assert key_file.read_text().strip() == new_key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert _raw(clear)[0].startswith("enc:v1:")
    assert "hdr-secret-value" not in _options_text(clear)
    app = App(Settings(database_url=url))  # the key file's new key reads them
    (sub,) = app.store.list_subscriptions()
    assert (sub.token, sub.headers) == ("old-clear-token", HEADERS)
    app.require_secret_key()
    app.close()
    clear.close()


# Item 7: header values encrypted like tokens; secret headers stay with their host.

def test_header_values_are_encrypted_at_rest_and_erased_on_delete(
        make_settings: Callable[..., Any]) -> None:
    app = App(make_settings(secret_key="k"))
    sub = app.subscribe("a.b", HOOK, token="tok", headers=dict(HEADERS))
    stored = _options_text(app.store)
    assert "hdr-secret-value" not in stored and "acme-tenant" not in stored
    assert '"Authorization"' in stored  # the names are not secret
    assert app.store.get_subscription(sub.id).headers == HEADERS
    (page,) = app.store.subscriptions_page(limit=10)
    assert page.headers == HEADERS and page.token == ""
    assert page.public()["headers"] == {"Authorization": "***", "X-Tenant": "acme-tenant"}
    (delivery,) = app.store.ensure_deliveries(event_id="e1", event_name="a.b",
                                              published_at=sub.created_at, payload={},
                                              targets=[sub])
    _, joined = app.store.delivery_and_subscription(delivery.id)
    assert joined is not None and joined.headers == HEADERS  # what the sink sends
    changed = app.update_subscription(sub.id, rate="5/s")
    assert changed.headers == HEADERS and "hdr-secret-value" not in _options_text(app.store)
    app.store.delete_subscription(sub.id)
    assert "Authorization" not in _options_text(app.store)
    app.close()


@pytest.fixture
def keyed_app(make_settings: Callable[..., Any]) -> Iterator[App]:
    app = App(make_settings(secret_key="k"))
    yield app
    app.close()


@pytest.mark.parametrize(("recipient", "kept"), [
    ("http://127.0.0.1:9/other-path", True),  # the same host: the same receiver
    ("http://127.0.0.1:9/hook?x=1", True),
    ("http://127.0.0.2:9/hook", False),  # another host
    ("http://127.0.0.1:10/hook", False),  # another port
    ("https://127.0.0.1:9/hook", False),  # another scheme
    ("http://127.0.0.1:9\\@127.0.0.2:9/hook", False),  # read as another host by browsers
])
def test_moving_the_recipient_drops_secret_headers(keyed_app: App, recipient: str,
                                                   kept: bool) -> None:
    sub = keyed_app.subscribe("a.b", HOOK, token="tok", headers=dict(HEADERS))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            changed = keyed_app.update_subscription(sub.id, recipient=recipient)
        except Exception:  # the SSRF guard may refuse the odd URL: then nothing moved
            assert not kept
            return
    said = [str(w.message) for w in caught if issubclass(w.category, RecipientWarning)]
    if kept:
        assert changed.headers == HEADERS and not said
    else:
        assert changed.headers == {"X-Tenant": "acme-tenant"}
        assert keyed_app.store.get_subscription(sub.id).headers == {"X-Tenant": "acme-tenant"}
        assert any("Authorization dropped" in s for s in said), said


def test_secret_headers_given_again_follow_the_recipient(keyed_app: App) -> None:
    sub = keyed_app.subscribe("a.b", HOOK, token="tok", headers=dict(HEADERS))
    moved = keyed_app.update_subscription(
        sub.id, recipient="http://127.0.0.2:9/hook",
        headers={"Authorization": "Bearer for-the-new-host", "X-Tenant": "acme-tenant"})
    assert moved.headers["Authorization"] == "Bearer for-the-new-host"


# Item 7: SQLite files are private.

def test_sqlite_files_are_created_readable_by_their_owner_only(
        tmp_path: Path, make_settings: Callable[..., Any]) -> None:
    previous = os.umask(0o022)
    try:
        app = App(make_settings())
        app.subscribe("a.b", HOOK, token="tok")
        app.publish("a.b", {"n": 1})  # the SQL queue's file too (payloads)
        made = sorted(p for p in tmp_path.iterdir() if p.name.startswith(("store.db", "queue")))
        assert {p.name for p in made} >= {"store.db", "queue.db"}
        for path in [*made, tmp_path / KEY_FILE]:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        app.close()
        existing = tmp_path / "mine.db"
        existing.touch(mode=0o640)
        existing.chmod(0o640)
        Store.open(f"sqlite:///{existing}").close()
        assert stat.S_IMODE(existing.stat().st_mode) == 0o640  # an existing file is the user's
    finally:
        os.umask(previous)
