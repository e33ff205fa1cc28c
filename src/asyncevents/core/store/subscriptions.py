"""Subscriptions: created, read, paged, changed, soft-deleted; tokens encrypted at rest
and erased on delete."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update

from asyncevents.core.clock import utcnow
from asyncevents.core.models import Subscription
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.crypto import TokenCipher
from asyncevents.core.store.schema import subscriptions
from asyncevents.errors import ConfigError, NotFound

__all__ = ["SubscriptionQueries", "subscription_from_row"]

# Every column holding a secret, encrypted with the store's key.
_SECRET_COLUMNS = (subscriptions.c.token, subscriptions.c.signing_key,
                   subscriptions.c.previous_token)
_SUBSCRIPTIONS_VERSION = select(func.count(), func.max(subscriptions.c.updated_at))


def subscription_from_row(row: Any, token: str,
                          cipher: TokenCipher | None = None) -> Subscription:
    """A ``Subscription`` from a row of the subscriptions table, with its plain ``token``.

    With ``cipher``, the other secrets (the Ed25519 private key, a rotated
    token in its grace) are decrypted too; without it they are left empty.
    """
    options = row.get("options") or {}
    secret = cipher.decrypt if cipher is not None else (lambda stored: "")
    return Subscription(
        id=row["id"], event_name=row["event_name"], sink=row["sink"],
        recipient=row["recipient"], token=token, active=bool(row["active"]),
        filter=row["filter"], retry_policy=row["retry_policy"],
        metadata=row["metadata"] or {}, created_at=row["created_at"],
        updated_at=row["updated_at"],
        rate=options.get("rate"), max_in_flight=options.get("max_in_flight"),
        ordering_key=options.get("ordering_key"),
        signature=options.get("signature") or "hmac",
        headers=dict(options.get("headers") or {}),
        disable_after=options.get("disable_after"), public_key=options.get("public_key"),
        signing_key=secret(row.get("signing_key") or ""),
        previous_token=secret(row.get("previous_token") or ""),
        previous_token_until=row.get("previous_token_until"),
        deleted=row.get("deleted_at") is not None,
    )


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
            "options": options or None,
            "signing_key": self.cipher.encrypt(signing_key) if signing_key else None,
            "previous_token": None, "previous_token_until": None,
        }
        with self.begin() as conn:
            conn.execute(insert(subscriptions).values(**values))
        return self._subscription(values)

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
            # Never shown, so not even decrypted.
            return [subscription_from_row(row, "") for row in conn.execute(query).mappings()]

    def subscriptions_version(self) -> tuple[int, str]:
        """Changes whenever a subscription is created, changed or deleted (one cheap query).

        Every write of a subscription sets ``updated_at``; deletes are soft.
        """
        with self.begin() as conn:
            count, latest = conn.execute(_SUBSCRIPTIONS_VERSION).one()
        return int(count), str(latest)

    def update_subscription(self, subscription_id: str, **values: Any) -> Subscription:
        """Change fields of a subscription (``active``, ``recipient``, ``token``...).

        The secrets (``token``, ``signing_key``, ``previous_token``) are encrypted here.
        """
        values["updated_at"] = utcnow()
        for name in ("token", "signing_key", "previous_token"):
            if values.get(name):
                values[name] = self.cipher.encrypt(values[name])
        with self.begin() as conn:
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

        Its verification token is erased: nothing may be signed with it any more.
        """
        now = utcnow()
        with self.begin() as conn:
            result = conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id == subscription_id, subscriptions.c.deleted_at.is_(None))
                .values(active=False, deleted_at=now, updated_at=now, token="",
                        signing_key=None, previous_token=None, previous_token_until=None)
            )
        if result.rowcount == 0:
            raise NotFound(f"no subscription with id {subscription_id!r}")

    def encrypt_clear_tokens(self) -> int:
        """Encrypt the secrets stored in clear (by an older version, or before a key was set).

        The tokens, Ed25519 private keys and rotated tokens. Nothing happens
        without a key. Each value is written only if it still is what was
        read, so a concurrent change always wins.
        """
        if not self.cipher.enabled:
            return 0
        changed = 0
        with self.begin() as conn:
            for column in _SECRET_COLUMNS:
                rows = conn.execute(select(subscriptions.c.id, column).where(
                    column != "", column.not_like("enc:%"))).all()
                for row_id, stored in rows:
                    if TokenCipher.is_encrypted(stored):
                        continue
                    result = conn.execute(
                        update(subscriptions)
                        .where(subscriptions.c.id == row_id, column == stored)
                        .values({column.name: self.cipher.encrypt(stored)}))
                    changed += result.rowcount
        return changed

    def rotate_tokens(self, old: TokenCipher) -> int:
        """Re-encrypt every stored secret from ``old`` to this store's cipher.

        Tokens, Ed25519 private keys and rotated tokens. Those in clear are
        encrypted; one already under this store's key (a rotation run twice,
        or encrypted since) is left as it is.
        """
        changed = 0
        with self.begin() as conn:
            for column in _SECRET_COLUMNS:
                rows = conn.execute(select(subscriptions.c.id, column)
                                    .where(column != "")).all()
                for row_id, stored in rows:
                    if TokenCipher.is_encrypted(stored):
                        try:
                            token = old.decrypt(stored)
                        except ConfigError:
                            self.cipher.decrypt(stored)  # under the new key already, or the error
                            continue
                    else:
                        token = stored
                    fresh = self.cipher.encrypt(token)
                    if fresh != stored:
                        conn.execute(update(subscriptions).where(subscriptions.c.id == row_id)
                                     .values({column.name: fresh}))
                        changed += 1
        return changed
