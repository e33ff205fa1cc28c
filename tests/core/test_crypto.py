from __future__ import annotations

import pytest
import sqlalchemy as sa

from asyncevents.core.store import Store
from asyncevents.core.store.crypto import TokenCipher
from asyncevents.errors import ConfigError


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
