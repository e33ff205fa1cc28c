"""Values beyond what the columns hold, cursors beyond the calendar, searches that run too
long: each is a one-line ``InvalidQuery`` on every database, never a crash or a 503."""

from __future__ import annotations

import base64
import json
import time

import pytest
from sqlalchemy import insert, text

from asyncevents.core.search import (
    check_query,
    count_deliveries,
    search_deliveries,
)
from asyncevents.core.store import Store
from asyncevents.core.store import search as store_search
from asyncevents.core.store.schema import deliveries
from asyncevents.errors import InvalidQuery

from .seed import ROWS, Seeded, delivery_row

OUT_OF_RANGE = [
    ("created:9999", "date '9999' for created at position 8 is out of range: it must fit "
                     "between 0001-01-01 and 9999-12-31 (UTC)"),
    ("created:9999-12", "date '9999-12' for created at position 8 is out of range"),
    ("created:[0001 TO 9999]", "date '9999' for created at position 8 is out of range"),
    ("created:>9999-12-31", "date '9999-12-31' for created at position 8 is out of range"),
    ('created:"0001-01-01T00:00:00+14:00"', "date '0001-01-01T00:00:00+14:00' for created "
                                            "at position 8 is out of range"),
    ("attempts:2147483648", "attempts is between -2147483648 and 2147483647, not "
                            "'2147483648' at position 9"),
    ("attempts:[0 TO 9999999999]", "attempts is between -2147483648 and 2147483647, not "
                                   "'9999999999'"),
    ("attempts:>=99999999999999999999", "attempts needs an integer"),
]


@pytest.mark.parametrize(("query", "message"), OUT_OF_RANGE, ids=[q for q, _ in OUT_OF_RANGE])
def test_values_beyond_the_columns_are_one_line_errors(query: str, message: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        check_query(query)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("query", [q for q, _ in OUT_OF_RANGE])
def test_values_beyond_the_columns_never_reach_the_database(seeded: Seeded, query: str) -> None:
    with pytest.raises(InvalidQuery):
        search_deliveries(seeded.store, query)
    with pytest.raises(InvalidQuery):
        count_deliveries(seeded.store, query)


@pytest.mark.parametrize(("query", "count"), [
    ("created:[0001 TO 9998]", len(ROWS)), ("created:>=0001-01-01", len(ROWS)),
    ("created:9999-12-30", 0), ("created:<0001-01-02", 0),
    ("attempts:2147483647", 0), ("attempts:[0 TO 2147483647]", len(ROWS)),
])
def test_the_edges_of_the_ranges_search_on_every_database(seeded: Seeded, query: str,
                                                          count: int) -> None:
    assert count_deliveries(seeded.store, query) == count
    assert len(search_deliveries(seeded.store, query, limit=100).items) == count


def cursor(created: str, delivery_id: str = "x") -> str:
    raw = json.dumps([1, created, delivery_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_cursor_before_the_first_year_is_an_invalid_cursor(seeded: Seeded) -> None:
    with pytest.raises(InvalidQuery, match=r"^invalid cursor '.*': pass back a next_cursor$"):
        search_deliveries(seeded.store, "*", cursor=cursor("0001-01-01T00:00:00+14:00"))
    # The calendar's ends themselves are positions like any other.
    assert search_deliveries(seeded.store, "*", cursor=cursor("0001-01-01T00:00:00+00:00")
                             ).items == []
    page = search_deliveries(seeded.store, "*", limit=100,
                             cursor=cursor("9999-12-31T23:59:59.999999+00:00"))
    assert len(page.items) == len(ROWS)


# -- the time limit ---------------------------------------------------------------------

#: A condition that takes seconds per row, in each database's words.
SLOW = {
    "sqlite": "EXISTS (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
              "WHERE x < 1000000000) SELECT max(x) FROM c)",
    "postgresql": "pg_sleep(5) IS NULL",
    "mariadb": "SLEEP(5) = 0",
}


def test_a_search_that_runs_too_long_is_stopped(scratch: Store, backend: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with scratch.begin() as conn:
        conn.execute(insert(deliveries), [delivery_row(payload={"n": 1})])
    monkeypatch.setattr(store_search, "SEARCH_TIMEOUT", 0.3)
    for run in (lambda: scratch.count_matching(text(SLOW[backend])),
                lambda: scratch.search_page(text(SLOW[backend]), limit=10)):
        began = time.monotonic()
        with pytest.raises(InvalidQuery, match=r"^the search ran longer than 0\.3 s and was "
                                               r"stopped: narrow the query"):
            run()
        assert time.monotonic() - began < 3
    # The connection is fine afterwards, and carries no limit into other work.
    monkeypatch.setattr(store_search, "SEARCH_TIMEOUT", 10.0)
    assert count_deliveries(scratch, "data.n:1") == 1
    with scratch.begin() as conn:
        if backend == "postgresql":
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "0"
        elif backend == "mariadb":
            assert conn.exec_driver_sql("SELECT @@session.max_statement_time").scalar() == 0
