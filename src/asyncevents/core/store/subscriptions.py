"""Subscriptions: created, read, paged, changed, soft-deleted; secrets encrypted at rest
(tokens, signing keys, header values) and erased on delete.

Reading never writes: a secret found in clear (stored by an older version)
is read as it is, and only ``rotate_tokens`` (``asyncevents rotate-key``)
encrypts it. Every write of a secret checks the key against the stored
fingerprint first (:mod:`.keycheck`), in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from asyncevents.core.clock import utcnow
from asyncevents.core.models import Subscription
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.crypto import TokenCipher
from asyncevents.core.store.keycheck import (
    SECRET_COLUMNS,
    claim_key,
    set_fingerprint,
    stored_fingerprint,
)
from asyncevents.core.store.schema import subscriptions
from asyncevents.errors import ConfigError, NotFound

__all__ = ["SubscriptionQueries", "subscription_from_row"]

_SECRET_NAMES = tuple(column.name for column in SECRET_COLUMNS)
_SUBSCRIPTIONS_VERSION = select(func.count(), func.max(subscriptions.c.updated_at))


def subscription_from_row(row: Any, token: str, cipher: TokenCipher | None = None, *,
                          secrets: bool = True) -> Subscription:
    """A ``Subscription`` from a row of the subscriptions table, with its plain ``token``.

    With ``cipher``, header values are decrypted, and with ``secrets`` the
    other secrets too (the Ed25519 private key, a rotated token in its
    grace); without them those are left empty.
    """
    options = row.get("options") or {}
    secret = cipher.decrypt if cipher is not None and secrets else (lambda stored: "")
    reveal = cipher.decrypt if cipher is not None else (lambda stored: stored)
    return Subscription(
        id=row["id"], event_name=row["event_name"], sink=row["sink"],
        recipient=row["recipient"], token=token, active=bool(row["active"]),
        filter=row["filter"], retry_policy=row["retry_policy"],
        metadata=row["metadata"] or {}, created_at=row["created_at"],
        updated_at=row["updated_at"],
        rate=options.get("rate"), max_in_flight=options.get("max_in_flight"),
        ordering_key=options.get("ordering_key"),
        signature=options.get("signature") or "hmac",
        headers={name: reveal(value) for name, value in (options.get("headers") or {}).items()},
        disable_after=options.get("disable_after"), public_key=options.get("public_key"),
        signing_key=secret(row.get("signing_key") or ""),
        previous_token=secret(row.get("previous_token") or ""),
        previous_token_until=row.get("previous_token_until"),
        deleted=row.get("deleted_at") is not None,
    )


def _sealed(options: dict[str, Any] | None, cipher: TokenCipher) -> dict[str, Any] | None:
    """``options`` as stored: header values encrypted like tokens."""
    if not options or not options.get("headers"):
        return options
    return {**options, "headers": {name: cipher.encrypt(value)
                                   for name, value in options["headers"].items()}}


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class SubscriptionQueries(StoreBase):
    """The store's subscriptions."""

    def create_subscription(
        self, *, event_name: str, sink: str, recipient: str, token: str,
        filter: str | None = None, retry_policy: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None, active: bool = True,
        options: dict[str, Any] | None = None, signing_key: str = "",
    ) -> Subscription:
        """Insert a subscription and return it.

        ``options``: the receiver protection options (see ``Subscription``);
        ``signing_key``: the Ed25519 private key, stored encrypted.
        """
        now = utcnow()
        values = {
            "id": str(uuid.uuid4()), "event_name": event_name, "sink": sink,
            "recipient": recipient, "token": self.cipher.encrypt(token), "active": active,
            "filter": filter,
            "retry_policy": retry_policy, "metadata": metadata or {},
            "created_at": now, "updated_at": now, "deleted_at": None,
            "options": _sealed(options, self.cipher) or None,
            "signing_key": self.cipher.encrypt(signing_key) if signing_key else None,
            "previous_token": None, "previous_token_until": None,
        }
        with self.begin() as conn:
            self._claim_if_secret(conn, values)
            conn.execute(insert(subscriptions).values(**values))
        return self._subscription(values)

    def _claim_if_secret(self, conn: Connection, values: dict[str, Any]) -> None:
        """Check the key (``claim_key``) when ``values`` hold an encrypted secret."""
        headers = (values.get("options") or {}).get("headers") or {}
        if any(TokenCipher.is_encrypted(str(values.get(name) or "")) for name in _SECRET_NAMES
               ) or any(TokenCipher.is_encrypted(str(v)) for v in headers.values()):
            claim_key(conn, self.cipher)

    def _subscription(self, row: Any) -> Subscription:
        return subscription_from_row(row, self.cipher.decrypt(row["token"]), self.cipher)

    def get_subscription(self, subscription_id: str, *, deleted: bool = False) -> Subscription:
        """The subscription with this id, or ``NotFound``."""
        query = select(subscriptions).where(subscriptions.c.id == subscription_id)
        if not deleted:
            query = query.where(subscriptions.c.deleted_at.is_(None))
        with self.begin() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"no subscription with id {subscription_id!r}")
        return self._subscription(row)

    def list_subscriptions(self, *, active: bool | None = None) -> list[Subscription]:
        """Subscriptions that are not deleted, oldest first."""
        query = select(subscriptions).where(subscriptions.c.deleted_at.is_(None))
        if active is not None:
            query = query.where(subscriptions.c.active.is_(active))
        query = query.order_by(subscriptions.c.created_at, subscriptions.c.id)
        with self.begin() as conn:
            return [self._subscription(r) for r in conn.execute(query).mappings()]

    def subscriptions_page(
        self, *, limit: int, after: tuple[datetime, str] | None = None,
        active: bool | None = None, event_name: str | None = None, sink: str | None = None,
        recipient_contains: str | None = None,
    ) -> list[Subscription]:
        """Up to ``limit`` live subscriptions, oldest first, after ``(created_at, id)``.

        Narrowed to the given ``active``, ``event_name`` and ``sink``, and to
        recipients containing ``recipient_contains``. Tokens are left empty:
        the pages are for showing, and a token is never shown.
        """
        col = subscriptions.c
        query = select(subscriptions).where(col.deleted_at.is_(None))
        if active is not None:
            query = query.where(col.active.is_(active))
        if event_name:
            query = query.where(col.event_name == event_name)
        if sink:
            query = query.where(col.sink == sink)
        if recipient_contains:
            query = query.where(col.recipient.like(_like(recipient_contains), escape="\\"))
        if after is not None:
            created, sub_id = after
            query = query.where(or_(col.created_at > created,
                                    and_(col.created_at == created, col.id > sub_id)))
        query = query.order_by(col.created_at, col.id).limit(limit)
        with self.begin() as conn:
            # Secrets are never shown, so not even decrypted: only header values are.
            return [subscription_from_row(row, "", self.cipher, secrets=False)
                    for row in conn.execute(query).mappings()]

    def subscriptions_version(self) -> tuple[int, str]:
        """Changes whenever a subscription is created, changed or deleted (one cheap query).

        Every write of a subscription sets ``updated_at``; deletes are soft.
        """
        with self.begin() as conn:
            count, latest = conn.execute(_SUBSCRIPTIONS_VERSION).one()
        return int(count), str(latest)

    def update_subscription(self, subscription_id: str, **values: Any) -> Subscription:
        """Change fields of a subscription (``active``, ``recipient``, ``token``...).

        The secrets (``token``, ``signing_key``, ``previous_token``, the header
        values in ``options``) are encrypted here.
        """
        values["updated_at"] = utcnow()
        for name in _SECRET_NAMES:
            if values.get(name):
                values[name] = self.cipher.encrypt(values[name])
        if "options" in values:
            values["options"] = _sealed(values["options"], self.cipher)
        with self.begin() as conn:
            self._claim_if_secret(conn, values)
            result = conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id == subscription_id, subscriptions.c.deleted_at.is_(None))
                .values(**values)
            )
        if result.rowcount == 0:
            raise NotFound(f"no subscription with id {subscription_id!r}")
        return self.get_subscription(subscription_id, deleted=True)

    def delete_subscription(self, subscription_id: str) -> None:
        """Soft-delete: the subscription stops receiving; its deliveries stay searchable.

        Its secrets are erased (verification token, signing key, header
        values): nothing may be signed or sent with them any more.
        """
        now = utcnow()
        live = (subscriptions.c.id == subscription_id, subscriptions.c.deleted_at.is_(None))
        with self.begin() as conn:
            options = conn.execute(select(subscriptions.c.options).where(*live)).scalar()
            if isinstance(options, dict) and "headers" in options:
                options = {k: v for k, v in options.items() if k != "headers"} or None
            result = conn.execute(
                update(subscriptions).where(*live)
                .values(active=False, deleted_at=now, updated_at=now, token="",
                        signing_key=None, previous_token=None, previous_token_until=None,
                        options=options)
            )
        if result.rowcount == 0:
            raise NotFound(f"no subscription with id {subscription_id!r}")

    def rotate_tokens(self, old: TokenCipher) -> int:
        """Re-encrypt every stored secret from ``old`` to this store's cipher; return how many.

        Tokens, Ed25519 private keys, rotated tokens and header values, in one
        transaction with the new key's fingerprint: all or nothing. Those in
        clear are encrypted (``old`` may then be keyless); one already under
        the new key (a rotation run twice) is left as it is. ``ConfigError``
        when this store has no key, when the stored fingerprint is neither
        key's, or when a secret opens with neither key (then nothing changed).
        """
        new = self.cipher
        if new.fingerprint is None:
            raise ConfigError("rotate-key needs the new key")
        changed = 0
        with self.begin() as conn:
            recorded = stored_fingerprint(conn)
            if recorded is not None and recorded not in (old.fingerprint, new.fingerprint):
                raise old.wrong_key() if old.enabled else ConfigError(
                    "the stored secrets are encrypted: set ASYNCEVENTS_SECRET_KEY to their "
                    "key (the current one) to change keys")
            for column in SECRET_COLUMNS:
                rows = conn.execute(select(subscriptions.c.id, column)
                                    .where(column != "")).all()
                for row_id, stored_value in rows:
                    fresh = _reencrypted(stored_value, old, new)
                    if fresh != stored_value:
                        conn.execute(update(subscriptions).where(subscriptions.c.id == row_id)
                                     .values({column.name: fresh}))
                        changed += 1
            rows = conn.execute(select(subscriptions.c.id, subscriptions.c.options)
                                .where(subscriptions.c.options.is_not(None))).all()
            for row_id, options in rows:
                headers = (options or {}).get("headers") if isinstance(options, dict) else None
                if not headers:
                    continue
                fresh_headers = {name: _reencrypted(value, old, new)
                                 for name, value in headers.items()}
                if fresh_headers != headers:
                    conn.execute(update(subscriptions).where(subscriptions.c.id == row_id)
                                 .values(options={**options, "headers": fresh_headers}))
                    changed += sum(fresh_headers[n] != headers[n] for n in headers)
            set_fingerprint(conn, new.fingerprint)
        return changed


def _reencrypted(stored: str, old: TokenCipher, new: TokenCipher) -> str:
    """``stored`` under ``new``: decrypted with ``old`` (or in clear), or kept if under ``new``."""
    if not stored:
        return stored
    if not TokenCipher.is_encrypted(stored):
        return new.encrypt(stored)
    if old.fingerprint == new.fingerprint:  # the same key: only what was in clear changes
        new.decrypt(stored)
        return stored
    try:
        secret = old.decrypt(stored)
    except ConfigError as error:
        try:
            new.decrypt(stored)  # under the new key already (a rotation run twice)
        except ConfigError:
            raise error from None
        return stored
    return new.encrypt(secret)
