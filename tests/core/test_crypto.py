"""Verification tokens at rest: always encrypted, with the operator's key or the store's own."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from asyncevents.core.app import App
from asyncevents.core.store import KEY_FILE, Store, key_file_for
from asyncevents.core.store.crypto import TokenCipher, load_or_create_key
from asyncevents.errors import ConfigError
from tests.helpers import run_cli


def _raw_tokens(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT token FROM asyncevents_subscription")).scalars())


def test_tokens_are_encrypted_at_rest(database_url: str) -> None:
    store = Store.open(database_url, auto_migrate=True, cipher=TokenCipher("passphrase-1"))
    sub = store.create_subscription(event_name="a", sink="http", recipient="http://h",
                                    token="whsec_c2VjcmV0")
    (raw,) = _raw_tokens(store)
    assert "c2VjcmV0" not in raw and raw.startswith("enc:v1:")
    assert store.get_subscription(sub.id).token == "whsec_c2VjcmV0"
    store.update_subscription(sub.id, token="rotated-secret")
    assert "rotated" not in _raw_tokens(store)[0]
    assert store.get_subscription(sub.id).token == "rotated-secret"

    wrong = Store(store.engine, TokenCipher("another-key"))
    with pytest.raises(ConfigError, match="not the key"):
        wrong.get_subscription(sub.id)
    without = Store(store.engine, None)
    with pytest.raises(ConfigError, match="ASYNCEVENTS_SECRET_KEY"):
        without.get_subscription(sub.id)

    assert wrong.rotate_tokens(TokenCipher("passphrase-1")) == 1
    assert wrong.get_subscription(sub.id).token == "rotated-secret"
    store.close()


def test_rotation_encrypts_clear_tokens(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    clear = Store.open(url)
    clear.create_subscription(event_name="a", sink="http", recipient="http://h", token="plain")
    assert _raw_tokens(clear) == ["plain"]
    keyed = Store(clear.engine, TokenCipher("k"))
    assert keyed.rotate_tokens(TokenCipher(None)) == 1
    assert _raw_tokens(clear)[0].startswith("enc:v1:")
    assert keyed.list_subscriptions()[0].token == "plain"
    clear.close()


# Every token encrypted at rest: the key, where it lives, and who refuses without one.



def _subscribe(app: App, token: str = "tok-plain-text-marker") -> str:
    return app.subscribe("a.b", "http://127.0.0.1:9/x", token=token).id


def test_a_sqlite_store_makes_and_keeps_its_own_key(tmp_path: Path,
                                                    make_settings: Callable[..., Any]) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'data' / 'store.db'}")
    (tmp_path / "data").mkdir()
    key_file = tmp_path / "data" / KEY_FILE
    assert key_file_for(settings.database_url) == key_file
    app = App(settings)
    sub_id = _subscribe(app)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    (raw,) = _raw_tokens(app.store)
    assert raw.startswith("enc:v1:") and "marker" not in raw
    app.close()
    key = key_file.read_text()
    again = App(settings)  # the same key, read back
    assert again.store.get_subscription(sub_id).token == "tok-plain-text-marker"
    assert key_file.read_text() == key
    again.close()
    for path in (tmp_path / "data").glob("store.db*"):
        assert b"marker" not in path.read_bytes()


def test_the_secret_key_wins_and_memory_keeps_no_key(tmp_path: Path,
                                                     make_settings: Callable[..., Any]) -> None:
    app = App(make_settings(secret_key="an operator's key"))
    _subscribe(app)
    assert _raw_tokens(app.store)[0].startswith("enc:v1:")
    assert not (tmp_path / KEY_FILE).exists()
    app.close()
    assert key_file_for("sqlite://") is None and key_file_for("sqlite:///:memory:") is None
    assert key_file_for("postgresql://u@h/db") is None


def test_concurrent_first_uses_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    keys: list[str] = []
    barrier = threading.Barrier(8)

    def first_use() -> None:
        barrier.wait()
        keys.append(load_or_create_key(path))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and keys[0] == path.read_text().strip()
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left


def test_a_key_file_that_cannot_be_made_is_one_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root writes anywhere: a missing directory stands for an unwritable one.
        path = tmp_path / "missing" / KEY_FILE
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        path = locked / KEY_FILE
    with pytest.raises(ConfigError, match="ASYNCEVENTS_SECRET_KEY instead") as caught:
        load_or_create_key(path)
    assert "\n" not in str(caught.value)
    (tmp_path / "empty.key").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_or_create_key(tmp_path / "empty.key")


def test_tokens_stored_in_clear_keep_working_until_rotate_key_encrypts_them(
        tmp_path: Path, make_settings: Callable[..., Any]) -> None:
    settings = make_settings()
    clear = Store.open(settings.database_url)  # as an older version stored them
    old = clear.create_subscription(event_name="a.b", sink="http", recipient="http://h",
                                    token="old-clear-token")
    assert _raw_tokens(clear) == ["old-clear-token"]
    app = App(settings)
    assert app.store.get_subscription(old.id).token == "old-clear-token"
    assert _raw_tokens(clear) == ["old-clear-token"]  # reading writes nothing
    # rotate-key with the key the store has: what was in clear is encrypted.
    assert app.store.rotate_tokens(app.store.cipher) == 1
    (raw,) = _raw_tokens(clear)
    assert raw.startswith("enc:v1:")
    assert app.store.get_subscription(old.id).token == "old-clear-token"
    # A rotation from "no key" after that has nothing left to do, and fails on nothing.
    assert app.store.rotate_tokens(TokenCipher(None)) == 0
    app.close()
    clear.close()


def test_deleting_a_subscription_erases_its_token(database_url: str) -> None:
    store = Store.open(database_url, auto_migrate=True, cipher=TokenCipher("k"))
    sub = store.create_subscription(event_name="a", sink="http", recipient="http://h",
                                    token="to-be-erased")
    keep = store.create_subscription(event_name="a", sink="http", recipient="http://h",
                                     token="kept")
    store.delete_subscription(sub.id)
    with store.engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT id, token FROM asyncevents_subscription")).all())
    assert rows[sub.id] == "" and rows[keep.id].startswith("enc:v1:")
    gone = store.get_subscription(sub.id, deleted=True)
    assert (gone.token, gone.active) == ("", False)
    assert store.rotate_tokens(TokenCipher(None)) == 0  # erased tokens are not re-encrypted
    store.close()


def test_a_server_database_needs_the_secret_key_to_work(
        pg_url: str, make_settings: Callable[..., Any], tmp_path: Path) -> None:
    Store.open(pg_url, auto_migrate=True).close()
    app = App(make_settings(database_url=pg_url, secret_key=None))
    with pytest.raises(ConfigError, match="ASYNCEVENTS_SECRET_KEY is not set") as caught:
        app.worker()
    assert "Fernet.generate_key()" in str(caught.value) and "\n" not in str(caught.value)
    app.close()
    env = {"ASYNCEVENTS_DATABASE_URL": pg_url,
           "ASYNCEVENTS_TRANSPORT_URL": f"sqla+sqlite:///{tmp_path / 'q.db'}"}
    for command in (["worker", "--max-idle-time", "0"], ["serve", "--port", "1"]):
        refused = run_cli(*command, cwd=tmp_path, env=env)
        assert refused.returncode == 1, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            "error: ASYNCEVENTS_SECRET_KEY is not set"), lines
    keyed = run_cli("worker", "--max-idle-time", "0", "--json", cwd=tmp_path,
                    env={**env, "ASYNCEVENTS_SECRET_KEY": "k"})
    assert keyed.returncode == 0, keyed.stderr
    assert json.loads(keyed.stdout)["handled"] == 0
