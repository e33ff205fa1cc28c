"""Every query form against known deliveries, on SQLite, PostgreSQL and MariaDB.

Each case also runs through the Python evaluator, which must give the same answer.
"""

from __future__ import annotations

import pytest

from asyncevents.core.search import count_deliveries, iter_deliveries, search_deliveries
from asyncevents.core.search.evaluate import delivery_record, predicate
from asyncevents.core.search.parse import parse_query

from .seed import Seeded

ALL = "abcdefg"

CASES: list[tuple[str, str]] = [
    # everything
    ("", ALL),
    ("*", ALL),
    ("  ", ALL),
    # keyword columns: exact and case-sensitive
    ("status:delivered", "aef"),
    ("status:(dead OR pending)", "bcg"),
    ("-status:delivered", "bcdg"),
    ("NOT status:delivered", "bcdg"),
    ("success:true", "aef"),
    ("success:false", "bcdg"),
    ("NOT success:true", "bcdg"),
    ("event_name:order.created", "abf"),
    ('event_name:"order.created"', "abf"),
    ("event_name:ORDER.CREATED", ""),
    ("event_name:order.*", "abfg"),
    ("event_name:*.created", "abcf"),
    ("event_name:order.create?", "abf"),
    ("event_name:ORDER.*", ""),
    ("subscription_id:sub-1", "ace"),
    ('subscription_id:""', "g"),
    ("sink:eventbridge", "c"),
    ('sink:"(dispatch)"', "g"),
    ('recipient:"https://a.example.com/hook"', "a"),
    ("recipient:https*", "abdef"),
    ("recipient:*example.org*", "b"),
    ("recipient:*", ALL),
    # boolean logic, grouping, implicit AND
    ("event_name:order.created AND status:dead", "b"),
    ("event_name:order.created status:dead", "b"),
    ("event_name:order.created OR event_name:invoice.paid", "abef"),
    ('(status:dead OR status:pending) AND NOT sink:"(dispatch)"', "bc"),
    ("+status:dead -sink:http", "g"),
    ("status:delivered AND (event_name:invoice.* OR attempts:1)", "aef"),
    # numbers on a column
    ("attempts:1", "afg"),
    ("attempts:[2 TO 4]", "de"),
    ("attempts:{2 TO 4]", "e"),
    ("attempts:>=4", "be"),
    ("attempts:<1", "c"),
    ("attempts:[* TO 1}", "c"),
    # dates: a date means its whole day, a second its second...
    ("created:[2026-01-01 TO 2026-01-31]", "abc"),
    ("created:{2026-01-01 TO 2026-01-31}", "b"),
    ("created:2026-02-01", "d"),
    ("created:2026-02", "de"),
    ("created:<2026-02", "abc"),
    ("created:<=2026-01-05", "ab"),
    ("created:>2026-01-05", "cdefg"),
    ("created:2026-02-10T08:30:00", "e"),
    ("created:2026-02-10T08:30", "e"),
    ('created:"2026-02-10T09:30:00+01:00"', "e"),
    ("created:2026-02-10T08:30:00.25", "e"),
    ("created:2026-02-10T08:30:00.3", ""),
    ("created:[now-1d TO now]", "f"),
    ("created:>now-7d", "fg"),
    ("created:[now-7d TO *]", "fg"),
    ("created:<now-2d", "abcdeg"),
    ("created:*", ALL),
    # payload paths
    ("data.customer.email:alice@example.com", "a"),
    ("data.customer.email:bob@example.com", ""),
    ("data.customer.email:*@example.com", "acde"),
    ("data.customer.email:*@EXAMPLE.com", "b"),
    ("data.customer.email:EVE*", "e"),
    ("data.customer.email:*", "abcdef"),
    ("data.customer:*", "abcdef"),
    ("data.customer.email:[a TO c]", "ab"),
    ("data.customer.email:{alice@example.com TO dave@example.com}", "bc"),
    ('data.customer.name:"Dave O\'Brien"', "d"),
    ("data.customer.name:Alice", ""),
    ('data.customer.name:"Alice Smith"', "a"),
    # arrays: any element, objects in arrays traversed, arrays in arrays are not
    ("data.items.sku:ABC", "a"),
    ("data.items.sku:abc", "b"),
    ("data.items.sku:CK*", "f"),
    ("data.items.sku:ck*", "f"),
    ("data.items.qty:2", "a"),
    ("data.items.qty:[1 TO 1]", "ab"),
    ("data.items:*", "abf"),
    ("NOT data.items:*", "cdeg"),
    ("data.nested.sku:ABC", ""),
    ("data.nested:*", "d"),
    ("data.tags:vip", "ab"),
    ("data.tags:(vip OR é)", "abe"),
    ('data.tags:"a b"', "e"),
    ("data.tags:é", "e"),
    ('data.tags:"ABC"', ""),
    ('data.tags:"ABC "', "e"),
    ("data.customer.email:eve@example.com", "e"),
    # numbers and booleans in the payload
    ("data.total:42", "ac"),
    ('data.total:"42"', "c"),
    ("data.total:[40 TO 100]", "af"),
    ("data.total:[-5 TO 0]", "d"),
    ("data.total:<10", "bd"),
    ("data.total:>=7.5", "abf"),
    ("data.total:7.5", "b"),
    ("data.total:\\-3", "d"),
    ("data.total:[* TO *]", "abcdf"),
    ('data.total:["0" TO "5"]', "c"),
    ("data.amount:1000", "e"),
    ("data.amount:1e3", "e"),
    ("data.paid:true", "a"),
    ("data.paid:false", "b"),
    ('data.paid:"true"', ""),
    ("data.paid:*", "ab"),
    # LIKE metacharacters are literals
    ("data.note:50%*", "c"),
    ("data.note:5_*", ""),
    ("data.note:*off_now", "c"),
    ("data.note:*off?now", "c"),
    ("data.note:\\*", ""),
    ('data.note:"It\'s \\"quoted\\""', "d"),
    # deep paths, a key named "data", missing keys
    ("data.x.y.z:deep", "g"),
    ("data.data.x:1", "g"),
    ("data.missing:*", ""),
    ("NOT data.missing:x", ALL),
    ("data.customer.email:alice@example.com OR data.customer.email:eve@example.com", "ae"),
    ("(data.items.sku:ABC OR data.items.sku:abc) AND status:delivered", "a"),
    ("data.items.sku:ABC AND NOT data.tags:new", ""),
    # bare terms and ranges search event_name, as in the Magento module's examples
    ("*.created", "abcf"),
    ("order.*", "abfg"),
    ("order.created", "abf"),
    ('"order.created"', "abf"),
    ("ORDER.*", ""),
    ("order.create?", "abf"),
    ("customer.* AND success:false", "cd"),
    ("customer.* AND success: false", "cd"),
    ("*.created -order.*", "c"),
    ("order.created status:dead", "b"),
    ("customer.created OR invoice.paid", "ce"),
    ("(order.* OR invoice.*) AND NOT status:dead", "aef"),
    ("NOT *.created", "deg"),
    ("[customer TO invoice]", "cd"),
    (">order", "abfg"),
    ("*.created AND data.customer.email:*@example.com", "ac"),
    # positions: a number after a key picks one element of an array...
    ("data.items.0.sku:ABC", "a"),
    ("data.items.1.sku:ABC", ""),
    ("data.items.1.sku:XYZ-1", "a"),
    ("data.items.0.sku:*", "abf"),
    ("data.items.0:*", "abf"),
    ("data.items.1:*", "af"),
    ("data.items.5:*", ""),
    ("data.items.0.qty:[2 TO 3]", "a"),
    ("NOT data.items.0.sku:ABC", "bcdefg"),
    ("data.items.0.sku:(ABC OR abc)", "ab"),
    ("data.tags.0:vip", "a"),
    ("data.tags.1:vip", ""),
    ("data.tags.1:new", "a"),
    ("data.customer.1.email:EVE@example.com", "e"),
    ("data.customer.0.email:EVE*", ""),
    # ... and opens an array inside an array, which a path alone never searches
    ("data.nested.0.sku:ABC", "d"),
    ("data.nested.0.0.sku:ABC", "d"),
    ("data.nested.0.1.sku:*", ""),
    ("data.matrix:*", "g"),
    ("data.matrix:1", ""),
    ("data.matrix.1:3", "g"),
    ("data.matrix.0.1:2", "g"),
    ("data.matrix.0:[2 TO 5]", "g"),
    ("data.matrix.0.0.0:*", ""),
    ("data.nested.0.0.0.0.0.0.0:*", ""),  # the most positions a path holds: still one query
    ("data.items.0.sku:ABC OR data.items.1.sku:ABC OR data.customer.1.email:*", "ae"),
    # ... while on an object it is a key; "01" is always a key
    ("data.lines.0.sku:OBJ", "g"),
    ('data.lines.12:"twelve"', "g"),
    ("data.lines.1:*", ""),
    ("data.items.01.sku:*", ""),
]


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[c[0] or "<empty>" for c in CASES])
def test_query(seeded: Seeded, query: str, expected: str) -> None:
    page = search_deliveries(seeded.store, query, limit=100)
    assert seeded.names(page.items) == set(expected)
    assert page.next_cursor is None
    assert count_deliveries(seeded.store, query) == len(expected)
    # The Python evaluator agrees on the same rows.
    test = predicate(parse_query(query, now=seeded.now))
    everything = list(iter_deliveries(seeded.store, "*"))
    assert {seeded.labels[d.id] for d in everything if test(delivery_record(d))} == set(expected)


def test_uuid(seeded: Seeded) -> None:
    delivery_id = seeded.ids["c"]
    assert seeded.names(search_deliveries(seeded.store, f"uuid:{delivery_id}").items) == {"c"}
    prefix = delivery_id[:8]
    assert "c" in seeded.names(search_deliveries(seeded.store, f"uuid:{prefix}*").items)
    assert search_deliveries(seeded.store, f"uuid:{delivery_id.upper()}").items == []


def test_results_newest_first(seeded: Seeded) -> None:
    items = search_deliveries(seeded.store, "*").items
    assert [seeded.labels[d.id] for d in items] == ["f", "g", "e", "d", "c", "b", "a"]
    assert items[0].payload["customer"]["email"] == "frank@example.net"
    record = items[2]
    assert record.attempts == 4 and record.status == "delivered"
