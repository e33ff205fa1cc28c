"""The key check: the fingerprint of the key the stored secrets are encrypted with.

One row of ``asyncevents_secret_key_check``. The first process that writes a
secret, or starts ``serve`` or ``worker``, with a key records the key's
fingerprint, after decrypting a secret already stored (if any) with it, so
an installation upgraded from a version without the check does not adopt a
wrong key. From then on a process whose key has another fingerprint is
refused before it writes anything or takes a message; ``rotate-key``
replaces the fingerprint in the transaction that re-encrypts the secrets.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from asyncevents.core.clock import utcnow
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.crypto import TokenCipher
from asyncevents.core.store.schema import secret_key_check, subscriptions
from asyncevents.errors import ConfigError

__all__ = ["SECRET_COLUMNS", "KeyCheckQueries", "claim_key", "encrypted_sample",
           "set_fingerprint", "stored_fingerprint"]

_NAME = "secret_key"
_CHECK = secret_key_check.c

SECRET_COLUMNS = (subscriptions.c.token, subscriptions.c.signing_key,
                  subscriptions.c.previous_token)
"""The columns holding a whole secret each (header values are inside ``options``)."""


def stored_fingerprint(conn: Connection) -> str | None:
    """The fingerprint of the installation's key; ``None`` before one was recorded."""
    found = conn.execute(select(_CHECK.fingerprint).where(_CHECK.name == _NAME)).scalar()
    return None if found is None else str(found)


def encrypted_sample(conn: Connection) -> str | None:
    """One secret stored encrypted, to try a key on; ``None`` when none is."""
    for column in SECRET_COLUMNS:
        found = conn.execute(select(column).where(column.like("enc:%")).limit(1)).scalar()
        if found:
            return str(found)
    return None


def claim_key(conn: Connection, cipher: TokenCipher) -> None:
    """Refuse ``cipher`` unless its key is the installation's; record it when none is yet.

    Without a recorded fingerprint, the key must decrypt a secret already
    stored encrypted (there may be none). ``ConfigError`` (one line) when
    the key is another one; nothing happens without a key.
    """
    fingerprint = cipher.fingerprint
    if fingerprint is None:
        return
    stored = stored_fingerprint(conn)
    if stored == fingerprint:
        return
    if stored is not None:
        raise cipher.wrong_key()
    sample = encrypted_sample(conn)
    if sample is not None:
        cipher.decrypt(sample)  # the wrong key's ConfigError
    try:
        with conn.begin_nested():
            conn.execute(insert(secret_key_check).values(name=_NAME, fingerprint=fingerprint,
                                                         updated_at=utcnow()))
    except IntegrityError:  # another process recorded one first: it must be the same
        if stored_fingerprint(conn) != fingerprint:
            raise cipher.wrong_key() from None


def set_fingerprint(conn: Connection, fingerprint: str) -> None:
    """Record ``fingerprint`` as the installation's, replacing any other (``rotate-key``)."""
    now = utcnow()
    changed = conn.execute(update(secret_key_check).where(_CHECK.name == _NAME)
                           .values(fingerprint=fingerprint, updated_at=now)).rowcount
    if not changed:
        conn.execute(insert(secret_key_check).values(name=_NAME, fingerprint=fingerprint,
                                                     updated_at=now))


class KeyCheckQueries(StoreBase):
    """The store's key check."""

    def check_secret_key(self) -> None:
        """Refuse a key that is not the installation's (``serve`` and ``worker``, at start).

        ``ConfigError`` with one line: no key on a server database, or a key
        whose fingerprint is not the stored one (or that cannot decrypt a
        stored secret, before any fingerprint was recorded). A right key is
        recorded when none was.
        """
        if not self.cipher.enabled:
            if self.cipher.refusal is not None:
                raise ConfigError(self.cipher.refusal)
            return
        with self.begin() as conn:
            claim_key(conn, self.cipher)

    def holds_encrypted_secrets(self) -> bool:
        """True when secrets were stored encrypted (or a key's fingerprint recorded)."""
        with self.begin() as conn:
            return stored_fingerprint(conn) is not None or encrypted_sample(conn) is not None
