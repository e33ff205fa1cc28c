"""Subscriptions as the API and the console change them: every check, each naming its field.

Creation goes through ``App.subscribe`` (catalog, sink, recipient guard,
token, retry policy); updates run the same checks on what they change, so a
recipient can never be moved to an address that creation would refuse.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asyncevents.api.problems import Problem, field_errors
from asyncevents.core.app import App
from asyncevents.core.models import Subscription
from asyncevents.core.retry import RetryPolicy
from asyncevents.core.search import compile_filter
from asyncevents.core.signing import signing_key
from asyncevents.errors import (
    AsyncEventsError,
    ConfigError,
    InvalidQuery,
    InvalidRecipient,
    UnknownEvent,
    UnknownSink,
)

__all__ = [
    "SubscriptionFilter",
    "check_recipient",
    "create",
    "list_page",
    "update",
]

_CREATE_FIELDS: dict[type[AsyncEventsError], str] = {
    InvalidRecipient: "recipient", UnknownEvent: "event_name", UnknownSink: "sink",
}


def _check_token(token: str, field: str) -> None:
    try:
        signing_key(token)
    except ValueError as exc:
        raise Problem(422, f"invalid verification token: {exc}", kind="invalid-request",
                      field=field) from None


def _check_filter(query: str | None, field: str = "filter") -> None:
    if query:
        with field_errors({InvalidQuery: field}):
            compile_filter(query)


def _check_policy(policy: dict[str, Any] | None, field: str = "retry_policy") -> None:
    if policy is not None:
        with field_errors({ConfigError: field}):
            RetryPolicy.check_overrides(policy)


def check_recipient(app: App, sink: str, recipient: str, field: str = "recipient") -> None:
    """Ask the sink whether it may deliver to ``recipient`` (the SSRF guard for http)."""
    with field_errors({InvalidRecipient: field, UnknownSink: "sink"}):
        instance = app.plugins.sink_info(sink).factory(app.settings)
        try:
            instance.validate_recipient(recipient)
        finally:
            instance.close()


def create(app: App, *, event_name: str, recipient: str, token: str, sink: str = "http",
           filter: str | None = None, retry_policy: dict[str, Any] | None = None,
           metadata: dict[str, Any] | None = None,
           fields: dict[str, str] | None = None) -> Subscription:
    """Check and store a subscription; a 422 problem names the field at fault.

    ``fields`` renames fields in problems (the Magento route calls the
    recipient ``recipient_url``).
    """
    names = {"recipient": "recipient", "event_name": "event_name", "sink": "sink",
             "verification_token": "verification_token", **(fields or {})}
    _check_token(token, names["verification_token"])
    _check_filter(filter)
    _check_policy(retry_policy)
    mapping = {error: names[field] for error, field in _CREATE_FIELDS.items()}
    with field_errors(mapping):
        return app.subscribe(event_name, recipient, sink=sink, token=token, filter=filter,
                             retry_policy=retry_policy, metadata=metadata)


def update(app: App, subscription_id: str, changes: dict[str, Any],
           fields: dict[str, str] | None = None) -> Subscription:
    """Apply ``changes`` (API field names) after the checks creation would make."""
    names = {"recipient": "recipient", "verification_token": "verification_token",
             **(fields or {})}
    current = app.store.get_subscription(subscription_id)
    values: dict[str, Any] = {}
    if "active" in changes:
        if changes["active"] is None:
            raise Problem(422, "active must be true or false", field="active")
        values["active"] = bool(changes["active"])
    if "recipient" in changes:
        if not changes["recipient"]:
            raise Problem(422, "recipient must not be empty", field=names["recipient"])
        check_recipient(app, current.sink, changes["recipient"], names["recipient"])
        values["recipient"] = changes["recipient"]
    if "verification_token" in changes:
        token = changes["verification_token"]
        if not token:
            raise Problem(422, "verification_token must not be empty",
                          field=names["verification_token"])
        _check_token(token, names["verification_token"])
        values["token"] = token
    if "filter" in changes:
        _check_filter(changes["filter"])
        values["filter"] = changes["filter"] or None
    if "retry_policy" in changes:
        _check_policy(changes["retry_policy"])
        values["retry_policy"] = changes["retry_policy"]
    if "metadata" in changes:
        values["metadata"] = changes["metadata"] or {}
    if not values:
        return current
    return app.store.update_subscription(subscription_id, **values)


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
