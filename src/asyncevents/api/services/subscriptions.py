"""Subscriptions as the API and the console change them: every refusal names its field.

The checks are the core's (:mod:`asyncevents.core.subscribing.rules`, run by
``App.subscribe`` and ``App.update_subscription``); this module speaks the
API's field names (``verification_token`` for the core's ``token``), renames
them for the Magento routes, hands back the warnings of what was accepted
(a recipient that could not be checked yet, a weak verification token), and
pages the list with a cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asyncevents.api.problems import Problem
from asyncevents.core.app import App
from asyncevents.core.models import Subscription
from asyncevents.core.subscribing.rules import collect_warnings
from asyncevents.core.subscribing.strength import weak_token_warning
from asyncevents.errors import AsyncEventsError

__all__ = [
    "Saved",
    "SubscriptionFilter",
    "create",
    "list_page",
    "rotate_token",
    "update",
]

# The core's field names that the API spells differently, and back.
_API_NAMES = {"token": "verification_token"}
_CORE_NAMES = {api: core for core, api in _API_NAMES.items()}


@contextmanager
def _named(fields: Mapping[str, str] | None) -> Iterator[None]:
    """Turn an error that names a field into a 422 problem naming it in the API's words."""
    try:
        yield
    except AsyncEventsError as exc:
        if exc.field is None:
            raise
        name = _API_NAMES.get(exc.field, exc.field)
        raise Problem.from_error(exc, (fields or {}).get(name, name)) from None


@dataclass(frozen=True)
class Saved:
    """A subscription as stored, and the warnings its checks gave (for the response)."""

    subscription: Subscription
    warnings: list[str]

    def public(self) -> dict[str, Any]:
        """The subscription's public fields and ``warnings``."""
        return {**self.subscription.public(), "warnings": self.warnings}


def create(app: App, *, event_name: str, recipient: str, token: str, sink: str = "http",
           filter: str | None = None, retry_policy: dict[str, Any] | None = None,
           metadata: dict[str, Any] | None = None,
           fields: Mapping[str, str] | None = None, **options: Any) -> Saved:
    """Check and store a subscription; a 422 problem names the field at fault.

    ``fields`` renames fields in problems (the Magento route calls the
    recipient ``recipient_url``); ``options`` are ``App.subscribe``'s.
    """
    with _named(fields), collect_warnings() as found:
        sub = app.subscribe(event_name, recipient, sink=sink, token=token, filter=filter,
                            retry_policy=retry_policy, metadata=metadata, **options)
    return Saved(sub, [*found, *_weak(token)])


def update(app: App, subscription_id: str, changes: Mapping[str, Any],
           fields: Mapping[str, str] | None = None) -> Saved:
    """Apply ``changes`` (API field names) after the checks creation would make."""
    core = {_CORE_NAMES.get(key, key): value for key, value in changes.items()}
    with _named(fields), collect_warnings() as found:
        sub = app.update_subscription(subscription_id, **core)
    return Saved(sub, [*found, *_weak(core.get("token"))])


def rotate_token(app: App, subscription_id: str, token: str, grace: str | float) -> Saved:
    """Rotate the verification token with a grace period; a 422 problem names the field."""
    with _named(None):
        sub = app.rotate_token(subscription_id, token, grace)
    return Saved(sub, _weak(token))


def _weak(token: Any) -> list[str]:
    """The warning about a weak verification token, if ``token`` is one."""
    warning = weak_token_warning(token) if isinstance(token, str) else None
    return [] if warning is None else [warning]


@dataclass(frozen=True)
class SubscriptionFilter:
    """What a subscription list is narrowed to."""

    active: bool | None = None
    event_name: str | None = None
    sink: str | None = None
    recipient: str | None = None


def _encode(sub: Subscription) -> str:
    raw = json.dumps([sub.created_at.isoformat(), sub.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, sub_id = json.loads(raw)
        moment = datetime.fromisoformat(created)
        if not isinstance(sub_id, str) or moment.tzinfo is None:
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Problem(422, "invalid cursor: pass back a next_cursor", field="cursor") from None
    return moment, sub_id


def list_page(app: App, where: SubscriptionFilter, *, limit: int,
              cursor: str | None = None) -> tuple[list[Subscription], str | None]:
    """One page of live subscriptions, oldest first, and the cursor of the next page."""
    rows = app.store.subscriptions_page(
        limit=limit + 1, after=_decode(cursor) if cursor else None, active=where.active,
        event_name=where.event_name, sink=where.sink, recipient_contains=where.recipient,
    )
    items = rows[:limit]
    return items, _encode(items[-1]) if len(rows) > limit else None
