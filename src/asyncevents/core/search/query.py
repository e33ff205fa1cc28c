"""Searching the store: pages with a keyset cursor, streaming, counting, filters."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import ColumnElement

from asyncevents.core.models import Delivery
from asyncevents.core.search.evaluate import predicate
from asyncevents.core.search.ir import Node
from asyncevents.core.search.parse import parse_query
from asyncevents.core.search.sql import compile_where
from asyncevents.core.store import Store
from asyncevents.errors import InvalidQuery

__all__ = [
    "MAX_LIMIT",
    "FilterPredicate",
    "SearchPage",
    "check_cursor",
    "check_query",
    "compile_filter",
    "count_deliveries",
    "iter_deliveries",
    "search_deliveries",
]

MAX_LIMIT = 10_000
_CURSOR_VERSION = 1


@dataclass(frozen=True)
class SearchPage:
    """One page of matching deliveries, newest first.

    ``next_cursor`` is ``None`` on the last page; otherwise pass it back as
    ``cursor`` for the next page. Cursors are positions (created time and
    uuid), so newer deliveries never shift the pages that follow.
    """

    items: list[Delivery]
    next_cursor: str | None


def check_query(q: str) -> None:
    """Raise :class:`InvalidQuery` (one line, with the position) if ``q`` is not a valid search."""
    parse_query(q, "search")


class FilterPredicate(Protocol):
    """A compiled subscription filter: does this event's payload match?"""

    def __call__(self, payload: dict[str, Any], event_name: str | None = None) -> bool:
        """Whether ``payload`` (of the event named ``event_name``) matches the filter."""


@lru_cache(maxsize=512)
def _filter_tree(q: str, event_names: bool) -> Node:
    return parse_query(q, "filter", event_names=event_names)


def compile_filter(q: str, *, event_names: bool = False) -> FilterPredicate:
    """A predicate over a payload for a subscription filter (a Lucene query).

    Fields are payload paths: ``data.customer.email:x`` and ``customer.email:x``
    mean the same. A bare term (``*.created``) tests the event's name, so it is
    accepted only with ``event_names=True``, and the predicate must then be
    called with the name: ``compile_filter(q, event_names=True)(payload, name)``.
    Without it a bare term is an :class:`InvalidQuery` that says what to write
    instead. Raises :class:`InvalidQuery` when ``q`` is not a valid filter.
    """
    test = predicate(_filter_tree(q, event_names))

    def matches(payload: dict[str, Any], event_name: str | None = None) -> bool:
        if event_names and event_name is None:
            raise ValueError("this filter was compiled with event_names=True: pass the name")
        return test({"data": payload, "event_name": event_name})

    return matches


def _encode_cursor(delivery: Delivery) -> str:
    created = delivery.created_at.astimezone(UTC).isoformat()
    raw = json.dumps([_CURSOR_VERSION, created, delivery.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, created, delivery_id = json.loads(raw)
        moment = datetime.fromisoformat(created)
        if version != _CURSOR_VERSION or not isinstance(delivery_id, str) or moment.tzinfo is None:
            raise ValueError(cursor)
        moment = moment.astimezone(UTC)  # 0001-01-01T00:00:00+14:00 is before the first year
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery(f"invalid cursor {cursor[:40]!r}: pass back a next_cursor") from None
    return moment, delivery_id


def check_cursor(cursor: str | None) -> None:
    """Raise :class:`InvalidQuery` (one line) if ``cursor`` is not a ``next_cursor`` we made."""
    if cursor:
        _decode_cursor(cursor)


def _where(store: Store, q: str) -> ColumnElement[bool]:
    return compile_where(parse_query(q, "search"), store.dialect)


def _check_size(name: str, value: int) -> None:
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidQuery(f"{name} must be between 1 and {MAX_LIMIT}, not {value}")


def search_deliveries(store: Store, q: str, *, limit: int = 50,
                      cursor: str | None = None) -> SearchPage:
    """The newest deliveries matching ``q`` (empty or ``*`` for all), one page at a time."""
    _check_size("limit", limit)
    position = _decode_cursor(cursor) if cursor else None
    rows = store.search_page(_where(store, q), limit=limit + 1, before=position)
    items = rows[:limit]
    next_cursor = _encode_cursor(items[-1]) if len(rows) > limit else None
    return SearchPage(items=items, next_cursor=next_cursor)


def iter_deliveries(store: Store, q: str, *, batch: int = 1000) -> Iterator[Delivery]:
    """Every delivery matching ``q``, newest first, fetched ``batch`` rows at a time.

    Memory stays bounded by one batch however many rows match; each batch is
    its own short transaction, under the store's search time limit. The query
    is checked before the first row.
    """
    _check_size("batch", batch)
    where = _where(store, q)

    def rows() -> Iterator[Delivery]:
        position: tuple[datetime, str] | None = None
        while True:
            page = store.search_page(where, limit=batch, before=position)
            yield from page
            if len(page) < batch:
                return
            position = (page[-1].created_at, page[-1].id)

    return rows()


def count_deliveries(store: Store, q: str) -> int:
    """How many deliveries match ``q``."""
    return store.count_matching(_where(store, q))
