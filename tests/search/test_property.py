"""Property: the SQL evaluator and the Python evaluator agree, on every database.

Hypothesis generates payloads (nested objects, arrays, arrays of arrays,
objects with numeric keys, numbers, booleans, nulls, awkward strings) and
queries (terms, phrases, wildcards, ranges, open ranges, exists,
AND/OR/NOT/implicit AND, a few delivery columns, bare terms on the event name,
paths with array positions), stores the payloads as deliveries, and compares
what the database returns with what the Python evaluator says about each
stored row, and with what the same query says as a subscription filter.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncevents.core.search import compile_filter, iter_deliveries
from asyncevents.core.search.evaluate import delivery_record, predicate
from asyncevents.core.search.parse import parse_query
from asyncevents.core.store import Store

from .conftest import wipe
from .strategies import EXAMPLES, QUERIES, ROWS, store_rows


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS, queries=st.lists(QUERIES, min_size=1, max_size=6))
def test_sql_and_python_agree(scratch_db: Store, rows: list[Any], queries: list[str]) -> None:
    wipe(scratch_db)
    store_rows(scratch_db, rows)
    stored = list(iter_deliveries(scratch_db, "*"))
    assert len(stored) == len(rows)
    for query in queries:
        test = predicate(parse_query(query))
        expected = {d.id for d in stored if test(delivery_record(d))}
        found = {d.id for d in iter_deliveries(scratch_db, query)}
        assert found == expected, (query, [d.payload for d in stored])
        if not any(name in query for name in ("status", "success", "attempts", "event_name")):
            # A filter given the event's name: bare terms test it as search does.
            matches = compile_filter(query, event_names=True)
            assert {d.id for d in stored if matches(d.payload, d.event_name)} == expected
