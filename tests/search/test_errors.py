"""Query errors: one line, saying what is wrong and where."""

from __future__ import annotations

import re

import pytest

from asyncevents.core.search import check_query, compile_filter
from asyncevents.errors import InvalidQuery

ERRORS: list[tuple[str, str]] = [
    ("foo:bar", "unknown field 'foo' at position 0; fields: uuid, event_name, subscription_id, "
                "status, success, created, sink, recipient, attempts, data.<path>"),
    ("status:delivered AND foo:1", "unknown field 'foo' at position 21"),
    ("Status:dead", "unknown field 'Status' at position 0"),
    ("status:(delivered", "syntax error at the end"),
    ("status:delivered)", "syntax error at position 16: unexpected ')'"),
    ("status:dead AND", "syntax error at the end"),
    ("status:dead AND OR sink:http", "syntax error at position 16: unexpected 'OR'"),
    ('data.x:"abc', "syntax error at position 7: unclosed quote"),
    ("data.x:[1 TO", "syntax error at the end"),
    ("attempts:abc", "attempts needs an integer, not 'abc' at position 9"),
    ("attempts:1.5", "attempts needs an integer, not '1.5' at position 9"),
    ("attempts:[1 TO x]", "attempts needs an integer, not 'x' at position 9"),
    ("attempts:x*", "wildcards only work on text fields, not attempts at position 9"),
    ("created:yesterday", "invalid date 'yesterday' for created at position 8"),
    ("created:[2026-13-01 TO now]", "invalid date '2026-13-01' for created at position 8"),
    ("created:now-1y", "invalid date 'now-1y' for created at position 8"),
    ("created:2026-01-*", "wildcards only work on text fields, not created"),
    # operators are capitals: a bare "and" would quietly search for an event named "and"
    ("order.* and status:dead", "'and' at position 8 is not an operator: write AND, OR, NOT "
                                "in capitals (quote the word to search event names for it)"),
    ("customer.* && success:false", "'&&' at position 11 is not an operator"),
    ("a.* || b.*", "'||' at position 4 is not an operator"),
    ("NOT a.* or b.*", "'or' at position 8 is not an operator"),
    # a bare term searches event_name, a text field: the same checks as event_name:...
    ("[1 TO x", "syntax error at the end"),
    ("order.* AND attempts:x", "attempts needs an integer, not 'x' at position 21"),
    ("status:bogus", "unknown status 'bogus' at position 7; statuses: pending, retrying, "
                     "delivered, dead"),
    ("success:maybe", "success is true or false, not 'maybe' at position 8"),
    ("success:[true TO false]", "success takes true or false, not a range at position 8"),
    ("data.a$b:1", "invalid field 'data.a$b' at position 0: path segments are"),
    ("data.a..b:1", "invalid field 'data.a..b'"),
    ("data.a.*.b:1", "invalid field 'data.a.*.b'"),
    ("data.:1", "field 'data.' at position 0 needs a path"),
    ("data:1", "field 'data' at position 0 needs a path"),
    ("data.a.b.c.d.e.f.g.h.i:1", "too deep: at most 8 path segments"),
    # positions are written with dots, counted from 0
    ("data.items.-1.sku:x", "invalid field 'data.items.-1.sku' at position 0: positions count "
                            "from 0 at the start (data.items.0); negative positions are not "
                            "supported"),
    ("data.items[0].sku:ABC", "syntax error at position 12: unexpected ']'; array positions "
                              "are written with dots: data.items.0.sku, not data.items[0].sku"),
    ("data.items[*].sku:ABC", "array positions are written with dots"),
    ("status:/dea.*/", "regular expressions are not supported (at position 7)"),
    ("status:dead~", "fuzzy search ('~') is not supported"),
    ('data.x:"a b"~2', "proximity search ('~') is not supported"),
    ("status:dead^2", "boosting ('^') is not supported"),
    ("status:event_name:x", "field 'event_name' at position 7 is inside field 'status'"),
    ("(" * 40 + "status:dead" + ")" * 40, "nested too deeply"),
    (" OR ".join(["status:dead"] * 70), "too many terms"),
    ("status:" + "x" * 5000, "query too long: 5007 characters, at most 4096"),
]


@pytest.mark.parametrize(("query", "message"), ERRORS, ids=[e[0][:40] for e in ERRORS])
def test_error_message(query: str, message: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        check_query(query)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize("query", [
    "", "*", "status:dead", "data.customer.email:*@example.com", "created:[2026-01-01 TO now]",
    "created:>now-1d/d", "attempts:{1 TO 3}", "event_name:order.* AND NOT success:true",
    "data.items.sku:(ABC OR XYZ)", 'data.x:"a \\"b\\""', "data.total:>=\\-3",
    # bare terms and ranges search event_name (the Magento module's examples)
    "*.created", "customer.* AND success: false", '"order.created"', "foo", "status:dead foo",
    "[a TO b]", ">order", "(order.* OR invoice.*) -*.failed", '"and"', "event_name:and",
    # positions in payload paths
    "data.items.0.sku:ABC", "data.matrix.0.1:*", "data.items.01:x",
])
def test_valid_queries(query: str) -> None:
    check_query(query)


def test_error_echoes_odd_input_on_one_line() -> None:
    with pytest.raises(InvalidQuery) as info:
        check_query('status:"dead\nline"')
    assert "\n" not in str(info.value)
    assert "\\n" in str(info.value)


# -- subscription filters (pure Python) ----------------------------------------------

PAYLOAD = {
    "customer": {"email": "alice@example.com", "vip": True, "age": 41},
    "items": [{"sku": "ABC", "price": 9.5}, {"sku": "XYZ", "price": 20}],
    "tags": ["a", "b"],
    "status": "open",
}


@pytest.mark.parametrize(("query", "expected"), [
    ("data.customer.email:alice@example.com", True),
    ("customer.email:alice@example.com", True),
    ("customer.email:*@example.com", True),
    ("customer.email:*@EXAMPLE.com", False),
    ("customer.vip:true", True),
    ("customer.age:[40 TO 50]", True),
    ("customer.age:>41", False),
    ("items.sku:XYZ", True),
    ("items.price:>=20", True),
    ("items.price:>20", False),
    ("data.items.sku:ABC AND NOT tags:c", True),
    ("tags:(c OR d)", False),
    ("status:open", True),  # in filters every field is a payload path
    ("missing:*", False),
    ("NOT missing:*", True),
    ("*", True),
    ("", True),
    # positions: one element of an array, in filters as in search
    ("items.0.sku:ABC", True),
    ("items.1.sku:ABC", False),
    ("data.items.1.price:20", True),
    ("tags.1:b", True),
    ("items.2:*", False),
])
def test_compile_filter(query: str, expected: bool) -> None:
    assert compile_filter(query)(PAYLOAD) is expected


@pytest.mark.parametrize(("query", "message"), [
    ("created:[now-1d TO now]", ""),  # a payload key named "created": allowed, no match
    # a filter sees the payload: a bare term (an event name test) is refused, saying why
    ("*.created", "term '*.created' at position 0 has no field: a subscription filter tests "
                  "the payload, so write a payload field (e.g. customer.email:...); choose "
                  "events with the subscription's event pattern (e.g. '*.created')"),
    ("items.sku:ABC foo", "term 'foo' at position 14 has no field: a subscription filter"),
    ("[a TO b]", "range at position 0 has no field: a subscription filter"),
    ("a$:1", "invalid field 'a$'"),
    ("items.sku:(", "syntax error"),
])
def test_filter_errors(query: str, message: str) -> None:
    if not message:
        assert compile_filter(query)(PAYLOAD) is False
        return
    with pytest.raises(InvalidQuery, match=re.escape(message)):
        compile_filter(query)


@pytest.mark.parametrize(("query", "name", "expected"), [
    ("*.created", "customer.created", True),
    ("*.created", "customer.updated", False),
    ("customer.* AND status:open", "customer.updated", True),  # status: the payload's
    ("customer.* AND NOT items.0.sku:ABC", "customer.updated", False),
    ('"customer.created" OR customer.age:>40', "sales.order.created", True),
])
def test_a_filter_given_the_event_name_reads_bare_terms(query: str, name: str,
                                                        expected: bool) -> None:
    assert compile_filter(query, event_names=True)(PAYLOAD, name) is expected


def test_a_filter_compiled_for_event_names_needs_the_name() -> None:
    with pytest.raises(ValueError, match="pass the name"):
        compile_filter("*.created", event_names=True)(PAYLOAD)


def test_filter_is_thread_safe() -> None:
    from concurrent.futures import ThreadPoolExecutor

    queries = [f"customer.age:[{n} TO {n + 10}] AND items.sku:A*" for n in range(200)]

    def run(query: str) -> bool:
        return compile_filter(query)(PAYLOAD)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, queries))
    assert results == [n <= 41 <= n + 10 for n in range(200)]
