"""Verification tokens encrypted at rest (Fernet), always.

The key is ``ASYNCEVENTS_SECRET_KEY`` when it is set. Without it, a SQLite
store keeps its own key in ``asyncevents.key`` beside the database file,
made on first use and readable by its owner only (0600): copy it with the
database. A server database (PostgreSQL, MariaDB/MySQL) is shared by
processes on several hosts, which need the same key: there ``serve`` and
``worker`` refuse to start without ``ASYNCEVENTS_SECRET_KEY``. Tokens stored
in clear by an older version are still read, and encrypted as soon as a key
is at hand (:meth:`~asyncevents.core.store.Store.encrypt_clear_tokens`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from asyncevents.errors import ConfigError

__all__ = ["GENERATE_KEY", "KEY_FILE", "TokenCipher", "key_file_for", "load_or_create_key",
           "needs_secret_key", "store_cipher"]

_PREFIX = "enc:v1:"
# Decrypted tokens kept in memory (one per subscription in use, as a rule).
_DECRYPTED_KEPT = 10_000
KEY_FILE = "asyncevents.key"
"""The key file's name, in the directory of the SQLite database."""
GENERATE_KEY = ('python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"')
"""A command that prints a fresh key, for the messages that ask for one."""


def _fernet(secret: str) -> Fernet:
    # A ready Fernet key is used as is; any other secret is stretched into one,
    # so an operator can set a passphrase.
    try:
        return Fernet(secret.encode())
    except ValueError:
        key = base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
        return Fernet(key)


class TokenCipher:
    """Encrypts tokens on the way into the store, decrypts them on the way out.

    Without a key, tokens are stored as they are; a stored token that was
    encrypted needs the key to be read, or reading fails with a clear error.
    ``source`` says where the key came from, for those errors.
    """

    def __init__(self, secret: str | None, *, source: str = "ASYNCEVENTS_SECRET_KEY") -> None:
        self._fernet = _fernet(secret) if secret else None
        self._decrypted: dict[str, str] = {}
        self.source = source

    @property
    def enabled(self) -> bool:
        """True when a key is set."""
        return self._fernet is not None

    def encrypt(self, token: str) -> str:
        """The form to store."""
        if self._fernet is None:
            return token
        return _PREFIX + self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """The token from its stored form."""
        if not stored.startswith(_PREFIX):
            return stored
        if self._fernet is None:
            raise ConfigError("verification tokens are encrypted; set ASYNCEVENTS_SECRET_KEY")
        # Every attempt reads its subscription's token: the few tokens of an
        # installation are decrypted once each, not once per delivery.
        known = self._decrypted.get(stored)
        if known is not None:
            return known
        try:
            token = self._fernet.decrypt(stored[len(_PREFIX):].encode()).decode()
        except InvalidToken:
            raise ConfigError(
                f"cannot decrypt a verification token: {self.source} is not the key it was "
                "encrypted with (set ASYNCEVENTS_SECRET_KEY to that key, or re-encrypt with "
                "'asyncevents rotate-key --old-key ...')"
            ) from None
        if len(self._decrypted) >= _DECRYPTED_KEPT:
            self._decrypted.clear()
        self._decrypted[stored] = token
        return token

    @staticmethod
    def is_encrypted(stored: str) -> bool:
        """True for a token stored encrypted."""
        return stored.startswith(_PREFIX)


def _sqlite_file(database_url: str) -> Path | None:
    """The database file of a SQLite URL; ``None`` for another database or one in memory."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        return None
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database.startswith("file:"):  # a URI filename (?uri=true)
        if "mode=memory" in database or "mode=memory" in str(url.query):
            return None
        database = database[len("file:"):].split("?", 1)[0]
    if database in ("", ":memory:"):
        return None
    return Path(database)


def needs_secret_key(database_url: str) -> bool:
    """True for a server database: its processes need ``ASYNCEVENTS_SECRET_KEY``."""
    try:
        return make_url(database_url).get_backend_name() != "sqlite"
    except ArgumentError:
        return False


def key_file_for(database_url: str) -> Path | None:
    """Where a SQLite store's own key is kept; ``None`` when it keeps none."""
    database = _sqlite_file(database_url)
    return None if database is None else database.resolve().parent / KEY_FILE


def load_or_create_key(path: Path) -> str:
    """The key in ``path``, made there first (mode 0600) when the file does not exist.

    Made in a private file and linked into place, so a process starting at
    the same moment reads either no file or the whole key, never half of it.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    key = Fernet.generate_key()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask
            handle.write(key + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process was first: theirs
            os.link(temporary, path)
    except OSError as exc:
        raise ConfigError(f"cannot create the token key file {path}: {exc.strerror}; set "
                          f"ASYNCEVENTS_SECRET_KEY instead (generate one: {GENERATE_KEY})"
                          ) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
    return _read_key(path)


def _read_key(path: Path) -> str:
    try:
        key = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a key"
        raise ConfigError(f"cannot read the token key file {path}: {reason}") from None
    if not key:
        raise ConfigError(f"the token key file {path} is empty; restore it from a backup "
                          "(tokens encrypted with it cannot be read without it)")
    return key


def store_cipher(secret: str | None, database_url: str) -> TokenCipher:
    """The cipher of the store at ``database_url``.

    ``secret`` (``ASYNCEVENTS_SECRET_KEY``) when set; else, for a SQLite
    file, the key in ``asyncevents.key`` beside it (made on first use); else
    none: a SQLite database in memory keeps nothing at rest, and a server
    database's ``serve`` and ``worker`` refuse to start without a key.
    """
    if secret:
        return TokenCipher(secret)
    path = key_file_for(database_url)
    if path is None:
        return TokenCipher(None)
    return TokenCipher(load_or_create_key(path), source=f"the key in {path}")
