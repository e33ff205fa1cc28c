"""docs/query-language.md tells the truth: its examples run and its worked table holds.

The worked examples' deliveries are read from the page's JSON block, stored on
SQLite, PostgreSQL and MariaDB, and every row of the table below them is
searched there and evaluated in Python. Every query in the page's shell
examples is valid (filters as filters), and the errors it shows are the ones
given.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from asyncevents.core.search import check_query, compile_filter, search_deliveries
from asyncevents.core.search.evaluate import delivery_record, predicate
from asyncevents.core.search.parse import parse_query
from asyncevents.core.store import Store
from asyncevents.core.store.schema import deliveries
from asyncevents.errors import InvalidQuery

from .seed import delivery_row

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "query-language.md").read_text("utf-8")


def _section(heading: str) -> str:
    start = PAGE.index(f"\n## {heading}\n")
    end = PAGE.find("\n## ", start + 1)
    return PAGE[start:] if end < 0 else PAGE[start:end]


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", PAGE, re.DOTALL)


def _table(text: str) -> list[tuple[str, str]]:
    """The first two cells of each table row whose first cell is code (without backticks)."""
    rows = re.findall(r"^\| `(.+?)` \| (.+?) \|", text, re.MULTILINE)
    return [(first, second.strip("`")) for first, second in rows]


WORKED = _section("Worked examples")
SAMPLES: list[dict[str, Any]] = json.loads(re.findall(r"```json\n(.*?)```", WORKED,
                                                      re.DOTALL)[0])
EXPECTED = [(query, set() if matches == "none" else set(matches.split(", ")))
            for query, matches in _table(WORKED)]


def test_the_page_has_its_examples() -> None:
    assert [s["label"] for s in SAMPLES] == ["A", "B", "C", "D"]
    assert len(EXPECTED) >= 40
    assert ("*.created", {"A", "C"}) in EXPECTED
    assert ("data.items.0.sku:XYZ", {"B"}) in EXPECTED


def _store_samples(store: Store) -> dict[str, str]:
    rows = [delivery_row(event_name=s["event_name"], status=s["status"],
                         attempts=s["attempts"], created=datetime.fromisoformat(s["created"]),
                         payload=s["data"]) for s in SAMPLES]
    with store.begin() as conn:
        conn.execute(insert(deliveries), rows)
    return {row["id"]: s["label"] for row, s in zip(rows, SAMPLES, strict=True)}


def test_the_worked_table_holds(scratch: Store) -> None:
    labels = _store_samples(scratch)
    stored = search_deliveries(scratch, "*", limit=10).items
    wrong = []
    for query, expected in EXPECTED:
        found = {labels[d.id] for d in search_deliveries(scratch, query, limit=10).items}
        test = predicate(parse_query(query))
        evaluated = {labels[d.id] for d in stored if test(delivery_record(d))}
        if found != expected or evaluated != expected:
            wrong.append((query, sorted(expected), sorted(found), sorted(evaluated)))
    assert wrong == []


def test_bare_terms_mean_what_the_page_says() -> None:
    pairs = _table(_section("Bare terms search the event name"))
    assert len(pairs) == 5
    for bare, fielded in pairs:
        assert parse_query(bare) == parse_query(fielded), bare


def _shell_queries(option: str) -> list[str]:
    found = []
    for block in _blocks("sh"):
        found += re.findall(rf"{option} '((?:[^'\\]|\\.)*)'", block)
    return found


def test_every_shell_example_is_a_valid_query() -> None:
    searches = _shell_queries("asyncevents search")
    assert len(searches) >= 8
    for query in searches + _shell_queries("--query"):
        check_query(query)
    filters = _shell_queries("--filter")
    assert filters
    for query in filters:
        compile_filter(query)


def test_the_errors_shown_are_the_errors_given() -> None:
    (block,) = _blocks("text")
    shown = re.findall(r"^\$ asyncevents search '(.*)'\nerror: (.*)$", block, re.MULTILINE)
    assert len(shown) == 2
    for query, message in shown:
        with pytest.raises(InvalidQuery) as info:
            check_query(query)
        assert str(info.value) == message


def test_a_filter_refuses_a_bare_term_as_the_page_says() -> None:
    with pytest.raises(InvalidQuery, match="subscription filter tests the payload"):
        compile_filter("*.created")
    matches = compile_filter("*.created AND total:>=100", event_names=True)
    assert matches({"total": 120}, "sales.order.created") is True
    assert matches({"total": 120}, "sales.order.failed") is False
