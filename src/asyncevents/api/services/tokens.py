"""API bearer tokens: created once, stored as a SHA-256 hash, revoked for good.

A token is ``ae_`` followed by 43 URL-safe characters (32 random bytes). Only
its hash and a short prefix (to tell tokens apart in a list) are stored, so
a stolen database holds no usable token. Looking a token up by its hash
compares no secret byte by byte, so response times say nothing about it.
A token may carry an expiry (``tokens create NAME --expires 90d``): from
then on it is refused like a revoked one, and so are the console sessions
opened with it.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncevents.core.clock import utcnow
from asyncevents.core.store import ApiTokenRow, Store
from asyncevents.errors import ConfigError

__all__ = [
    "MAX_LIFETIME",
    "SCOPES",
    "TOKEN_PREFIX",
    "ApiToken",
    "authenticate",
    "check_expiry",
    "check_scopes",
    "create_token",
    "from_row",
    "hash_token",
    "list_tokens",
    "parse_expires",
    "parse_lifetime",
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

MAX_LIFETIME = timedelta(days=3660)
"""The longest expiry a token may be given (about ten years); without one it never expires."""
_LIFETIME = re.compile(r"^\s*(\d{1,9})\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LIFETIME_HELP = "a duration such as 90d, 12h, 30m or 2w"


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
    expires_at: datetime | None = None

    @property
    def status(self) -> str:
        """``active``, ``expired`` or ``revoked``, as of now."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= utcnow():
            return "expired"
        return "active"

    def allows(self, scope: str) -> bool:
        """Whether this token may act with ``scope`` (``admin`` may do everything)."""
        return self.status == "active" and (scope in self.scopes or "admin" in self.scopes)

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
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "status": self.status,
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


def from_row(row: ApiTokenRow) -> ApiToken:
    """The token of a stored row."""
    return ApiToken(
        id=row["id"], name=row["name"], prefix=row["prefix"], scopes=tuple(row["scopes"]),
        created_at=row["created_at"], last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"], expires_at=row["expires_at"],
    )


def parse_lifetime(value: str | float, field: str = "expires") -> timedelta:
    """A token's lifetime from ``90d``, ``12h``, ``30m``, ``2w`` (or a number of seconds).

    ``ConfigError`` naming ``field`` unless it is more than nothing and at most
    :data:`MAX_LIFETIME`.
    """
    seconds = -1.0
    if isinstance(value, str):
        found = _LIFETIME.match(value)
        if found:
            seconds = float(int(found.group(1)) * _UNITS[found.group(2)])
    elif not isinstance(value, bool):
        seconds = float(value)
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_LIFETIME.total_seconds():
        raise ConfigError(f"invalid {field} {value!r}: give {_LIFETIME_HELP} (at most "
                          f"{MAX_LIFETIME.days} days)", field=field)
    return timedelta(seconds=seconds)


def check_expiry(moment: datetime, field: str = "expires_at") -> datetime:
    """``moment`` in UTC if it is in the future and within :data:`MAX_LIFETIME`; a naive
    one is read as UTC. ``ConfigError`` naming ``field`` otherwise."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    now = utcnow()
    if moment <= now:
        raise ConfigError(f"{field} {moment.isoformat()} is not in the future", field=field)
    if moment - now > MAX_LIFETIME:
        raise ConfigError(f"{field} is more than {MAX_LIFETIME.days} days away", field=field)
    return moment


def parse_expires(value: str, field: str = "expires") -> datetime:
    """When a token given ``--expires VALUE`` expires: VALUE is a duration from now
    (``90d``, ``12h``...) or an ISO 8601 date or time (``2027-03-01``, UTC unless it
    says otherwise). ``ConfigError`` naming ``field`` otherwise."""
    if _LIFETIME.match(value):
        return utcnow() + parse_lifetime(value, field)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"invalid {field} {value!r}: give {_LIFETIME_HELP}, or a date "
                          "such as 2027-03-01", field=field) from None
    return check_expiry(moment, field)


def create_token(store: Store, name: str, scopes: Iterable[str], *,
                 expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Store a new token; return it and its secret, which is never available again.

    With ``expires_at`` (see :func:`parse_expires`, :func:`check_expiry`) the
    token is refused from that moment on.
    """
    name = name.strip()
    if not name or len(name) > 200:
        raise ConfigError("a token name is 1 to 200 characters")
    granted = check_scopes(scopes)
    if expires_at is not None:
        expires_at = check_expiry(expires_at)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = store.create_api_token(name=name, token_hash=hash_token(secret),
                                 prefix=secret[:_SHOWN_PREFIX], scopes=granted,
                                 expires_at=expires_at)
    return from_row(row), secret


def list_tokens(store: Store, *, revoked: bool = False) -> list[ApiToken]:
    """Tokens, oldest first, expired ones included; revoked ones too when ``revoked``."""
    return [from_row(row) for row in store.list_api_tokens(revoked=revoked)]


def revoke_token(store: Store, token_id: str) -> ApiToken:
    """Revoke a token at once, ending its console sessions; ``NotFound`` when no
    unrevoked token has this id."""
    return from_row(store.revoke_api_token(token_id))


def authenticate(store: Store, secret: str) -> ApiToken | None:
    """The live (unrevoked, unexpired) token whose secret this is, or ``None``; records
    when it was last used."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    row = store.use_api_token(hash_token(secret), touch_every=_TOUCH_EVERY)
    return None if row is None else from_row(row)
