"""What search and trace show of a delivery: the same fields in the CLI, API and console."""

from __future__ import annotations

import json
from typing import Any

from asyncevents.core.models import Delivery, shown_recipient
from asyncevents.core.store import Store

__all__ = ["SEARCH_FIELDS", "cell", "csv_cell", "search_row", "trace_document"]

#: What a spreadsheet reads as the start of a formula (CSV injection): ``=``, ``+``, ``-``,
#: ``@``, tab and carriage return.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

SEARCH_FIELDS = ("uuid", "event_name", "subscription_id", "status", "success", "attempts",
                 "created", "data")


def search_row(delivery: Delivery) -> dict[str, Any]:
    """One search result: the ``SEARCH_FIELDS`` of a delivery, JSON-ready."""
    row = delivery.public()
    return {key: row[key] for key in SEARCH_FIELDS}


def trace_document(store: Store, delivery_id: str) -> dict[str, Any]:
    """The delivery, its subscription and every attempt, as ``trace --json`` prints them.

    Raises ``NotFound`` when no delivery has this uuid.
    """
    delivery = store.get_delivery(delivery_id)
    attempts = [a.public() for a in store.list_attempts(delivery_id)]
    public = delivery.public()
    doc = {k: v for k, v in public.items() if k in SEARCH_FIELDS}
    doc.update(
        event_id=delivery.event_id, sink=delivery.sink,
        recipient=shown_recipient(delivery.recipient),
        next_attempt_at=public["next_attempt_at"],
        first_attempt_at=attempts[0]["started_at"] if attempts else None,
        last_attempt_at=attempts[-1]["started_at"] if attempts else None,
        attempts=attempts,
    )
    return doc


def cell(value: Any) -> str:
    """A value in a table or CSV cell as a user would type it back (CLI and API export).

    Nothing for null, ``true``/``false``, compact JSON for objects and lists.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def csv_cell(value: Any) -> str:
    """A value in a CSV cell (CLI ``search --csv``, API and console export): :func:`cell`,
    with a text that a spreadsheet would run as a formula escaped by a leading ``'``.

    Text starting with one of :data:`FORMULA_STARTS` (an event name ``=HYPERLINK(...)``,
    a recipient ``@SUM(...)``) gets the quote; numbers (``-3``) and JSON objects do not.
    """
    text = cell(value)
    if isinstance(value, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text
