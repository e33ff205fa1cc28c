"""Secrets encrypted at rest (Fernet): verification tokens, signing keys, header values.

The key is ``ASYNCEVENTS_SECRET_KEY`` when it is set (empty counts as unset).
Without it, a SQLite store keeps its own key in ``asyncevents.key`` beside
the database file, made on first use and readable by its owner only (0600):
copy it with the database. A missing key file is never replaced by a new
one while the database holds secrets encrypted with the old one. A server
database (PostgreSQL, MariaDB/MySQL) is shared by processes on several
hosts, which need the same key: there every command that writes a secret
refuses without ``ASYNCEVENTS_SECRET_KEY``, and so do ``serve`` and ``worker``.

The store keeps a fingerprint of the key (:attr:`TokenCipher.fingerprint`,
an HMAC of a fixed label: it tells keys apart and reveals nothing of them),
so a process with another key is refused at start, not at every message.
Secrets stored in clear by an older version are still read; reading never
rewrites them: ``asyncevents rotate-key`` encrypts them, as it re-encrypts
everything under a new key, in one transaction.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from asyncevents.core.store.engine import sqlite_path
from asyncevents.errors import ConfigError

__all__ = ["GENERATE_KEY", "KEY_FILE", "MISSING_KEY", "TokenCipher", "key_file_for",
           "load_or_create_key", "needs_secret_key", "replacing_key_file", "store_cipher"]

_PREFIX = "enc:v1:"
# Decrypted tokens kept in memory (one per subscription in use, as a rule).
_DECRYPTED_KEPT = 10_000
# What the fingerprint is an HMAC of: fixed, so one key always gives one fingerprint.
_CHECK_LABEL = b"asyncevents secret key check v1"
KEY_FILE = "asyncevents.key"
"""The key file's name, in the directory of the SQLite database."""
GENERATE_KEY = ('python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"')
"""A command that prints a fresh key, for the messages that ask for one."""
MISSING_KEY = ("ASYNCEVENTS_SECRET_KEY is not set: on a server database verification tokens "
               f"are encrypted with it; generate one with {GENERATE_KEY} and give it to "
               "every process of this installation")
"""The one line that refuses to write (or serve, or deliver) without a key on a server database."""


def _fernet_key(secret: str) -> bytes:
    # A ready Fernet key is used as is; any other secret is stretched into one,
    # so an operator can set a passphrase.
    try:
        Fernet(secret.encode())
    except ValueError:
        return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
    return secret.encode()


class TokenCipher:
    """Encrypts secrets on the way into the store, decrypts them on the way out.

    Without a key, secrets are stored as they are, unless ``refusal`` is
    given (a server database): then writing one raises ``ConfigError`` with
    that line. A stored secret that was encrypted needs the key to be read,
    or reading fails with a clear error. ``source`` says where the key came
    from, for those errors.
    """

    def __init__(self, secret: str | None, *, source: str = "ASYNCEVENTS_SECRET_KEY",
                 refusal: str | None = None) -> None:
        key = _fernet_key(secret) if secret else None
        self._fernet = Fernet(key) if key is not None else None
        self._fingerprint = (
            "v1:" + hmac.new(base64.urlsafe_b64decode(key), _CHECK_LABEL,
                             hashlib.sha256).hexdigest() if key is not None else None)
        self._decrypted: dict[str, str] = {}
        self.source = source
        self.refusal = refusal

    @property
    def enabled(self) -> bool:
        """True when a key is set."""
        return self._fernet is not None

    @property
    def fingerprint(self) -> str | None:
        """What the store keeps to recognise this key (``None`` without a key).

        An HMAC-SHA256 of a fixed label under the key: the same key always
        gives the same fingerprint, and nothing of the key can be learnt from it.
        """
        return self._fingerprint

    def wrong_key(self) -> ConfigError:
        """The error for a key that is not the one the stored secrets are encrypted with."""
        return ConfigError(
            f"{self.source} is not the key this installation's secrets are encrypted with "
            "(its fingerprint differs from the stored one): set ASYNCEVENTS_SECRET_KEY to "
            "that key; to change keys, run 'asyncevents rotate-key' with the current one")

    def encrypt(self, token: str) -> str:
        """The form to store; an empty value stays empty (it hides nothing)."""
        if not token:
            return token
        if self._fernet is None:
            if self.refusal is not None:
                raise ConfigError(self.refusal)
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
            raise self.wrong_key() from None
        if len(self._decrypted) >= _DECRYPTED_KEPT:
            self._decrypted.clear()
        self._decrypted[stored] = token
        return token

    @staticmethod
    def is_encrypted(stored: str) -> bool:
        """True for a token stored encrypted."""
        return stored.startswith(_PREFIX)


def needs_secret_key(database_url: str) -> bool:
    """True for a server database: its processes need ``ASYNCEVENTS_SECRET_KEY``."""
    try:
        return make_url(database_url).get_backend_name() != "sqlite"
    except ArgumentError:
        return False


def key_file_for(database_url: str) -> Path | None:
    """Where a SQLite store's own key is kept; ``None`` when it keeps none."""
    database = sqlite_path(database_url)
    return None if database is None else database.resolve().parent / KEY_FILE


def _private_file(path: Path, key: bytes) -> Path:
    """``key`` in a new file beside ``path``, mode 0600 whatever the umask, on disk."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(key + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return temporary


def load_or_create_key(path: Path) -> str:
    """The key in ``path``, made there first (mode 0600) when the file does not exist.

    Made in a private file and linked into place, so a process starting at
    the same moment reads either no file or the whole key, never half of it.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    temporary: Path | None = None
    try:
        temporary = _private_file(path, Fernet.generate_key())
        with contextlib.suppress(FileExistsError):  # another process was first: theirs
            os.link(temporary, path)
    except OSError as exc:
        raise ConfigError(f"cannot create the token key file {path}: {exc.strerror}; set "
                          f"ASYNCEVENTS_SECRET_KEY instead (generate one: {GENERATE_KEY})"
                          ) from None
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                temporary.unlink()
    return _read_key(path)


@contextlib.contextmanager
def replacing_key_file(path: Path, key: str) -> Iterator[None]:
    """Put ``key`` in ``path`` (mode 0600) when the block succeeds; leave it as it was if not.

    ``rotate-key``'s key file: the new file is written beside ``path`` first,
    so a directory that cannot take it fails before anything is re-encrypted.
    """
    try:
        temporary = _private_file(path, key.encode())
    except OSError as exc:
        raise ConfigError(f"cannot write the key file {path}: {exc.strerror}") from None
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    try:
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise ConfigError(f"the secrets are under the new key, but the key file {path} could "
                          f"not be replaced ({exc.strerror}): write the new key into it") from None


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


def store_cipher(secret: str | None, database_url: str, *,
                 holds_secrets: Callable[[], bool] | None = None) -> TokenCipher:
    """The cipher of the store at ``database_url``.

    ``secret`` (``ASYNCEVENTS_SECRET_KEY``) when set; else, for a SQLite
    file, the key in ``asyncevents.key`` beside it, made on first use, but
    never while ``holds_secrets()`` says the database already holds secrets
    encrypted (with the lost file's key): that is a ``ConfigError``. Else
    none: a SQLite database in memory keeps nothing at rest, and on a server
    database every write of a secret is refused (:data:`MISSING_KEY`).
    """
    if secret:
        return TokenCipher(secret)
    path = key_file_for(database_url)
    if path is None:
        return TokenCipher(None, refusal=MISSING_KEY if needs_secret_key(database_url) else None)
    if not path.exists() and holds_secrets is not None and holds_secrets():
        raise ConfigError(
            f"the key file {path} is missing, and this database holds secrets encrypted with "
            "it: restore the file from a backup, or set ASYNCEVENTS_SECRET_KEY to its key "
            "(a new key would not read them)")
    return TokenCipher(load_or_create_key(path), source=f"the key in {path}")
