"""Cursor pagination, streaming and counting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert

from asyncevents.core.clock import utcnow
from asyncevents.core.models import Delivery
from asyncevents.core.search import (
    count_deliveries,
    iter_deliveries,
    search_deliveries,
)
from asyncevents.core.store import Store
from asyncevents.core.store.schema import deliveries
from asyncevents.errors import InvalidQuery

from .seed import delivery_row


def insert_rows(store: Store, rows: list[dict[str, Any]]) -> None:
    with store.begin() as conn:
        conn.execute(insert(deliveries), rows)


def make_rows(count: int, *, start: int = 0, same_time_every: int = 3) -> list[dict[str, Any]]:
    """``count`` deliveries; groups of ``same_time_every`` share a created time."""
    base = utcnow() - timedelta(days=1)
    return [
        delivery_row(created=base + timedelta(seconds=(start + n) // same_time_every),
                     status="dead" if n % 4 == 0 else "delivered", payload={"n": start + n})
        for n in range(count)
    ]


def newest_first(items: list[Delivery]) -> bool:
    keys = [(d.created_at, d.id) for d in items]
    return keys == sorted(keys, reverse=True)


def walk(store: Store, query: str, limit: int) -> list[list[Delivery]]:
    pages, cursor = [], None
    while True:
        page = search_deliveries(store, query, limit=limit, cursor=cursor)
        pages.append(page.items)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_pages_are_disjoint_complete_and_newest_first(scratch: Store) -> None:
    insert_rows(scratch, make_rows(25))
    pages = walk(scratch, "*", 7)
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    ids = [d.id for page in pages for d in page]
    assert len(ids) == len(set(ids)) == 25
    assert newest_first([d for page in pages for d in page])


def test_pages_with_a_query(scratch: Store) -> None:
    insert_rows(scratch, make_rows(30))
    pages = walk(scratch, "status:dead", 3)
    found = [d for page in pages for d in page]
    assert {d.payload["n"] for d in found} == {n for n in range(30) if n % 4 == 0}
    assert all(d.status == "dead" for d in found)
    assert newest_first(found)


def test_exact_multiple_of_the_limit(scratch: Store) -> None:
    insert_rows(scratch, make_rows(10))
    pages = walk(scratch, "", 5)
    assert [len(p) for p in pages] == [5, 5]


def test_cursor_stable_under_newer_inserts(scratch: Store) -> None:
    insert_rows(scratch, make_rows(20))
    before = [d.id for d in iter_deliveries(scratch, "*")]
    first = search_deliveries(scratch, "*", limit=6)
    # New deliveries arrive (newer than everything) between two page requests.
    insert_rows(scratch, [delivery_row(created=utcnow() + timedelta(seconds=n))
                          for n in range(5)])
    seen = [d.id for d in first.items]
    cursor = first.next_cursor
    while cursor:
        page = search_deliveries(scratch, "*", limit=6, cursor=cursor)
        seen += [d.id for d in page.items]
        cursor = page.next_cursor
    assert seen == before
    assert count_deliveries(scratch, "*") == 25


def test_empty_result(scratch: Store) -> None:
    page = search_deliveries(scratch, "status:dead")
    assert page.items == [] and page.next_cursor is None
    assert list(iter_deliveries(scratch, "status:dead")) == []
    assert count_deliveries(scratch, "status:dead") == 0


@pytest.mark.parametrize("cursor", ["garbage", "", "eyJ4IjoxfQ", "W10", "WzEsImJhZCIsImlkIl0"])
def test_bad_cursor(scratch: Store, cursor: str) -> None:
    if cursor == "":
        assert search_deliveries(scratch, "*", cursor=cursor).items == []
        return
    with pytest.raises(InvalidQuery, match="invalid cursor"):
        search_deliveries(scratch, "*", cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1, 10_001])
def test_bad_limit(scratch: Store, limit: int) -> None:
    with pytest.raises(InvalidQuery, match="limit must be between 1 and 10000"):
        search_deliveries(scratch, "*", limit=limit)


def test_iterator_streams_in_batches(scratch: Store) -> None:
    insert_rows(scratch, make_rows(250))
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(scratch.engine, "before_cursor_execute", count)
    try:
        rows = iter_deliveries(scratch, "*", batch=100)
        assert statements == []  # nothing runs before the first row is asked for
        first = next(rows)
        assert len(statements) == 1
        rest = list(rows)
    finally:
        event.remove(scratch.engine, "before_cursor_execute", count)
    everything = [first, *rest]
    assert len(everything) == 250 and len({d.id for d in everything}) == 250
    assert newest_first(everything)
    assert len(statements) == 3  # 100 + 100 + 50


def test_iterator_with_query_and_count(scratch: Store) -> None:
    insert_rows(scratch, make_rows(120))
    dead = list(iter_deliveries(scratch, "status:dead AND data.n:>=40", batch=7))
    assert {d.payload["n"] for d in dead} == {n for n in range(40, 120) if n % 4 == 0}
    assert count_deliveries(scratch, "status:dead AND data.n:>=40") == len(dead)


def test_iterator_checks_query_eagerly(scratch: Store) -> None:
    with pytest.raises(InvalidQuery):
        iter_deliveries(scratch, "nope:1")
    with pytest.raises(InvalidQuery):
        iter_deliveries(scratch, "*", batch=0)
