"""API tokens as stored: a hash of the secret, a short prefix, scopes, expiry, revocation."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypedDict

from sqlalchemy import delete, insert, select, update

from asyncevents.core.clock import utcnow
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.schema import api_tokens, console_sessions
from asyncevents.errors import NotFound

__all__ = ["ApiTokenRow", "TokenQueries", "is_live", "token_row"]


class ApiTokenRow(TypedDict):
    """A stored API token, without its secret or the secret's hash."""

    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None


def token_row(row: Any) -> ApiTokenRow:
    """The public fields of a row of ``asyncevents_api_token``."""
    return ApiTokenRow(
        id=row["id"], name=row["name"], prefix=row["prefix"],
        scopes=[str(s) for s in row["scopes"] or ()], created_at=row["created_at"],
        last_used_at=row["last_used_at"], revoked_at=row["revoked_at"],
        expires_at=row["expires_at"],
    )


def is_live(row: ApiTokenRow | Any, now: datetime) -> bool:
    """Neither revoked nor expired at ``now``."""
    expires = row["expires_at"]
    return row["revoked_at"] is None and (expires is None or expires > now)


class TokenQueries(StoreBase):
    """The store's API tokens."""

    def create_api_token(self, *, name: str, token_hash: str, prefix: str,
                         scopes: Sequence[str],
                         expires_at: datetime | None = None) -> ApiTokenRow:
        """Store a new live token by the hash of its secret; refused from ``expires_at`` on."""
        values = {
            "id": str(uuid.uuid4()), "name": name, "token_hash": token_hash,
            "prefix": prefix, "scopes": list(scopes), "created_at": utcnow(),
            "last_used_at": None, "revoked_at": None, "expires_at": expires_at,
        }
        with self.begin() as conn:
            conn.execute(insert(api_tokens).values(**values))
        return token_row(values)

    def list_api_tokens(self, *, revoked: bool = False) -> list[ApiTokenRow]:
        """Tokens, oldest first, expired ones included; revoked ones too when ``revoked``."""
        query = select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.id)
        if not revoked:
            query = query.where(api_tokens.c.revoked_at.is_(None))
        with self.begin() as conn:
            return [token_row(row) for row in conn.execute(query).mappings()]

    def revoke_api_token(self, token_id: str) -> ApiTokenRow:
        """Revoke a token at once, ending its console sessions; ``NotFound`` when no
        unrevoked token has this id (an expired one may still be revoked)."""
        with self.begin() as conn:
            result = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            if result.rowcount == 0:
                raise NotFound(f"no active API token with id {token_id!r}")
            conn.execute(delete(console_sessions).where(console_sessions.c.token_id == token_id))
            row = conn.execute(
                select(api_tokens).where(api_tokens.c.id == token_id)).mappings().one()
        return token_row(row)

    def use_api_token(self, token_hash: str, *, touch_every: timedelta) -> ApiTokenRow | None:
        """The live (unrevoked, unexpired) token with this hash, or ``None``; records its use.

        ``last_used_at`` is written at most once per ``touch_every``, not on
        every request; the row returned holds the value from before this use.
        """
        with self.begin() as conn:
            row = conn.execute(
                select(api_tokens).where(api_tokens.c.token_hash == token_hash)
            ).mappings().first()
            now = utcnow()
            if row is None or not is_live(row, now):
                return None
            token = token_row(row)
            last = token["last_used_at"]
            if last is None or now - last >= touch_every:
                conn.execute(update(api_tokens).where(api_tokens.c.id == token["id"])
                             .values(last_used_at=now))
        return token
