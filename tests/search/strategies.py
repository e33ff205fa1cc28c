"""Hypothesis strategies for search: payloads, rows and queries (shared by the property tests
of ``test_property.py`` and ``test_payload_index.py``), and how to store the rows."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import insert

from asyncevents.core.clock import utcnow
from asyncevents.core.store import Store
from asyncevents.core.store.schema import deliveries

from .seed import delivery_row

# "0" and "1" are keys of objects and positions in arrays; "01" is only ever a key.
KEYS = ["a", "b", "c", "0", "1", "01"]
STRINGS = ["", "x", "X", "xy", "x y", "a b", "é", "50%", "a_b", "x*", "2", "-1", "true", " x",
           "x ", "ß", "Z", "\U0001f600", 'q"uote', "back\\slash", "it's"]
COMMON = ["x", "xy", "X", "2", "a b", "é", ""]
NUMBERS = st.integers(-3, 3) | st.sampled_from([0.5, -1.5, 2.0, 1000.0, 1e-7, 2.5, 2**53])
SCALARS = st.one_of(st.sampled_from(COMMON), NUMBERS, st.sampled_from(STRINGS), st.booleans(),
                    st.none())
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner,
                                                                 max_size=3),
    max_leaves=5,
)
# Mostly present keys, so that queries often match some rows but not all.
PAYLOADS = st.fixed_dictionaries({"a": JSON}, optional={"b": JSON, "c": JSON})
ROWS = st.lists(
    st.tuples(PAYLOADS, st.sampled_from(["pending", "retrying", "delivered", "dead"]),
              st.integers(0, 4), st.sampled_from(["ev.a", "ev.b", "other"])),
    min_size=3, max_size=10,
)


def phrase(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


PATHS = st.sampled_from(["data.a", "data.a", "data.b", "data.a.a", "data.a.b", "data.b.c",
                         "data.a.0", "data.a.1", "data.a.0.a", "data.a.0.0", "data.a.1.0.b",
                         "data.b.01", "data.a.0.1.0"]) | \
    st.lists(st.sampled_from(KEYS), min_size=1, max_size=4).map(lambda k: "data." + ".".join(k))
WORDS = ["x", "X", "xy", "2", "\\-1", "0.5", "1000", "1e3", "true", "false", "é", "a_b", "50%",
         "ß", "1e-7", "2.50", "9007199254740992", "\\-", "\\*"]
WILDCARDS = ["*", "x*", "*y", "x?", "?", "*b*", "a?b", "50%*", "\\**", "*\\ *", "?*",
             "\U0001f600*", "_*", "%"]
NUMBER_BOUNDS = ["-1", "0", "0.5", "2", "1000", "*"]
STRING_BOUNDS = ['"a"', '"x"', '"xy"', '""', '"é"', '"Z"', "x", "*"]
OPEN_BOUNDS = ["2", "0.5", "\\-1", "x", '"xy"', "1000", '"2"']


def _range(path: str, low: str, high: str, include_low: bool, include_high: bool) -> str:
    return f"{path}:{'[' if include_low else '{'}{low} TO {high}{']' if include_high else '}'}"


LEAVES = st.one_of(
    st.builds(lambda p, w: f"{p}:{w}", PATHS, st.sampled_from(WORDS)),
    st.builds(lambda p, s: f"{p}:{phrase(s)}", PATHS, st.sampled_from(STRINGS)),
    st.builds(lambda p, w: f"{p}:{w}", PATHS, st.sampled_from(WILDCARDS)),
    st.builds(_range, PATHS, st.sampled_from(NUMBER_BOUNDS), st.sampled_from(NUMBER_BOUNDS),
              st.booleans(), st.booleans()),
    st.builds(_range, PATHS, st.sampled_from(STRING_BOUNDS), st.sampled_from(STRING_BOUNDS),
              st.booleans(), st.booleans()),
    st.builds(lambda p, op, b: f"{p}:{op}{b}", PATHS, st.sampled_from([">", ">=", "<", "<="]),
              st.sampled_from(OPEN_BOUNDS)),
    st.sampled_from(["status:dead", "success:true", "attempts:[1 TO 3]", "attempts:>2",
                     "event_name:ev.*", "event_name:ev.a", "event_name:EV.*",
                     "status:(pending OR retrying)"]),
    # bare terms and ranges: the event name
    st.sampled_from(["ev.a", "ev.*", "*.a", "EV.*", '"ev.a"', "other", "ev.?", "*",
                     "[ev.a TO ev.b]", "{ev.a TO *]", ">ev", "<=ev.a", "\\*.a"]),
)
QUERIES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a} AND {b})", inner, inner),
        st.builds(lambda a, b: f"({a} OR {b})", inner, inner),
        st.builds(lambda a, b: f"({a} {b})", inner, inner),
        st.builds(lambda a: f"NOT {a}", inner),
        st.builds(lambda a: f"-({a})", inner),
    ),
    max_leaves=4,
)


def store_rows(store: Store, rows: list[tuple[dict[str, Any], str, int, str]]) -> None:
    base = utcnow()
    values = [
        delivery_row(payload=payload, status=status, attempts=attempts, event_name=name,
                     created=base - timedelta(seconds=n))
        for n, (payload, status, attempts, name) in enumerate(rows)
    ]
    with store.begin() as conn:
        conn.execute(insert(deliveries), values)


#: More examples for a deeper run: ASYNCEVENTS_TEST_SEARCH_EXAMPLES=2000 pytest tests/search
EXAMPLES = int(os.environ.get("ASYNCEVENTS_TEST_SEARCH_EXAMPLES", "60"))
