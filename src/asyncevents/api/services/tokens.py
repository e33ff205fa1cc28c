"""API bearer tokens: created once, stored as a SHA-256 hash, revoked for good.

A token is ``ae_`` followed by 43 URL-safe characters (32 random bytes). Only
its hash and a short prefix (to tell tokens apart in a list) are stored, so
a stolen database holds no usable token. Looking a token up by its hash
compares no secret byte by byte, so response times say nothing about it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asyncevents.core.store import ApiTokenRow, Store
from asyncevents.errors import ConfigError

__all__ = [
    "SCOPES",
    "TOKEN_PREFIX",
    "ApiToken",
    "authenticate",
    "check_scopes",
    "create_token",
    "hash_token",
    "list_tokens",
    "revoke_token",
]

SCOPES = (
    "subscriptions:read",
    "subscriptions:write",
    "events:publish",
    "deliveries:read",
    "deliveries:replay",
    "admin",
)
TOKEN_PREFIX = "ae_"
_SHOWN_PREFIX = 10  # "ae_" and 7 characters: enough to tell tokens apart, useless to guess
# last_used_at is written at most this often per token, not on every request.
_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class ApiToken:
    """A stored API token, without its secret."""

    id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def allows(self, scope: str) -> bool:
        """Whether this token may act with ``scope`` (``admin`` may do everything)."""
        return self.revoked_at is None and (scope in self.scopes or "admin" in self.scopes)

    def public(self) -> dict[str, Any]:
        """JSON-ready, without any secret."""
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def hash_token(secret: str) -> str:
    """The hex SHA-256 of a token, as stored."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes, deduplicated in canonical order; ``ConfigError`` names an unknown one."""
    wanted = set(scopes)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise ConfigError(f"unknown scope {unknown[0]!r}; scopes are: {', '.join(SCOPES)}")
    if not wanted:
        raise ConfigError(f"give at least one scope: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in wanted)


def _token(row: ApiTokenRow) -> ApiToken:
    return ApiToken(
        id=row["id"], name=row["name"], prefix=row["prefix"], scopes=tuple(row["scopes"]),
        created_at=row["created_at"], last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


def create_token(store: Store, name: str, scopes: Iterable[str]) -> tuple[ApiToken, str]:
    """Store a new token; return it and its secret, which is never available again."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ConfigError("a token name is 1 to 200 characters")
    granted = check_scopes(scopes)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = store.create_api_token(name=name, token_hash=hash_token(secret),
                                 prefix=secret[:_SHOWN_PREFIX], scopes=granted)
    return _token(row), secret


def list_tokens(store: Store, *, revoked: bool = False) -> list[ApiToken]:
    """Tokens, oldest first; revoked ones too when ``revoked``."""
    return [_token(row) for row in store.list_api_tokens(revoked=revoked)]


def revoke_token(store: Store, token_id: str) -> ApiToken:
    """Revoke a token at once; ``NotFound`` when no live token has this id."""
    return _token(store.revoke_api_token(token_id))


def authenticate(store: Store, secret: str) -> ApiToken | None:
    """The live token whose secret this is, or ``None``; records when it was last used."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    row = store.use_api_token(hash_token(secret), touch_every=_TOUCH_EVERY)
    return None if row is None else _token(row)
