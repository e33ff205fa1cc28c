"""Console sessions as stored: one row per login, found by the hash of its id.

The browser's cookie holds a random 256-bit session id; the row holds only
its SHA-256, so a copy of the database opens no session. A session ends at
logout (its row is deleted), when it has been idle too long, at its absolute
expiry, or when the API token it was opened with is revoked or expires.
Ended rows are deleted when they are next looked up and whenever a session
opens, so the table holds about as many rows as there are live sessions.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, insert, or_, select, update

from asyncevents.core.clock import utcnow
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.schema import api_tokens, console_sessions
from asyncevents.core.store.tokens import ApiTokenRow, is_live, token_row

__all__ = ["SessionQueries"]

_S = console_sessions.c


class SessionQueries(StoreBase):
    """The store's console sessions."""

    def open_console_session(self, *, session_hash: str, token_id: str, lifetime: timedelta,
                             idle: timedelta, not_after: datetime | None = None) -> datetime:
        """Store a session opened with token ``token_id`` now; delete the sessions that ended.

        It ends ``lifetime`` from now, or at ``not_after`` (its token's expiry)
        if that is sooner; that moment is returned. ``idle`` is the idle
        lifetime: sessions not seen for that long are among those deleted.
        """
        now = utcnow()
        expires_at = now + lifetime if not_after is None else min(now + lifetime, not_after)
        with self.begin() as conn:
            conn.execute(delete(console_sessions).where(
                or_(_S.expires_at <= now, _S.last_seen <= now - idle)))
            conn.execute(insert(console_sessions).values(
                id=session_hash, token_id=token_id, created_at=now, last_seen=now,
                expires_at=expires_at))
        return expires_at

    def use_console_session(self, session_hash: str, *, idle: timedelta,
                            touch_every: timedelta) -> ApiTokenRow | None:
        """The token of the live session with this hash, or ``None``; records the visit.

        A session is live until ``idle`` passes without a visit, until its
        ``expires_at``, and while its token is neither revoked nor expired; an
        ended one is deleted here. ``last_seen`` (and the token's
        ``last_used_at``) are written at most once per ``touch_every``.
        """
        now = utcnow()
        with self.begin() as conn:
            found = conn.execute(
                select(console_sessions).where(_S.id == session_hash)).mappings().first()
            if found is None:
                return None
            token = conn.execute(
                select(api_tokens).where(api_tokens.c.id == found["token_id"])
            ).mappings().first()
            if (token is None or not is_live(token, now) or found["expires_at"] <= now
                    or found["last_seen"] + idle <= now):
                conn.execute(delete(console_sessions).where(_S.id == session_hash))
                return None
            if now - found["last_seen"] >= touch_every:
                conn.execute(update(console_sessions).where(_S.id == session_hash)
                             .values(last_seen=now))
            last_used = token["last_used_at"]
            if last_used is None or now - last_used >= touch_every:
                conn.execute(update(api_tokens).where(api_tokens.c.id == token["id"])
                             .values(last_used_at=now))
            return token_row(token)

    def end_console_session(self, session_hash: str) -> bool:
        """Delete the session with this hash (logout); False when there was none."""
        with self.begin() as conn:
            result = conn.execute(delete(console_sessions).where(_S.id == session_hash))
        return bool(result.rowcount)

    def count_console_sessions(self, token_id: str | None = None) -> int:
        """Stored sessions (of ``token_id`` only, when given), ended ones not yet deleted too."""
        query = select(console_sessions.c.id)
        if token_id is not None:
            query = query.where(_S.token_id == token_id)
        with self.begin() as conn:
            return len(conn.execute(query).all())
