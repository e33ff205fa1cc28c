"""Verification tokens encrypted at rest with ``ASYNCEVENTS_SECRET_KEY`` (Fernet)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from asyncevents.errors import ConfigError

__all__ = ["TokenCipher"]

_PREFIX = "enc:v1:"


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
    """

    def __init__(self, secret: str | None) -> None:
        self._fernet = _fernet(secret) if secret else None

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
        try:
            return self._fernet.decrypt(stored[len(_PREFIX):].encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "cannot decrypt a verification token: ASYNCEVENTS_SECRET_KEY is not the key "
                "it was encrypted with (rotate with 'asyncevents rotate-key')"
            ) from None

    @staticmethod
    def is_encrypted(stored: str) -> bool:
        """True for a token stored encrypted."""
        return stored.startswith(_PREFIX)
