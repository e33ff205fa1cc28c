"""Exact ``data.`` terms on PostgreSQL: a GIN ``jsonb_path_ops`` index answers them.

The compiler puts ``payload @? jsonpath`` before the exact test. These tests
check that the plan uses the index (migration 0004 made it), that results are
still the Python evaluator's (on every database, and on PostgreSQL with the
index forced), that the pre-filter alone never drops a row the exact test
keeps, and that the jsonpath reads every string back unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Select, create_engine, func, literal, select, text
from sqlalchemy.dialects import mysql, postgresql, sqlite

from asyncevents.core.search import count_deliveries, iter_deliveries, search_deliveries
from asyncevents.core.search.dialects import equals_jsonpath
from asyncevents.core.search.evaluate import delivery_record, predicate
from asyncevents.core.search.ir import Equals, JsonPath
from asyncevents.core.search.parse import parse_query
from asyncevents.core.search.sql import compile_where
from asyncevents.core.store import Store
from asyncevents.core.store import migrate as store_migrate
from asyncevents.core.store.schema import deliveries

from .conftest import open_store, temporary_database, wipe
from .seed import Seeded
from .strategies import EXAMPLES, QUERIES, ROWS, store_rows

INDEX = "ix_asyncevents_delivery_payload"
PG = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
# One loaded PostgreSQL store for the module (pg_store, loaded): one xdist worker.
pytestmark = pytest.mark.xdist_group("payload-index")

# Exact payload terms over the seed rows (see seed.py), with the labels they match.
EXACT: list[tuple[str, str]] = [
    # strings: exact, case-sensitive, nested paths
    ("data.customer.email:alice@example.com", "a"),
    ('data.customer.email:"bob@EXAMPLE.com"', "b"),
    ("data.customer.email:bob@example.com", ""),
    ('data.customer.name:"Alice Smith"', "a"),
    ("data.customer.name:Alice", ""),
    ("data.x.y.z:deep", "g"),
    ("data.data.x:1", "g"),
    ("data.x.y:deep", ""),
    ("data.missing:x", ""),
    # quotes and unicode
    ('data.customer.name:"Dave O\'Brien"', "d"),
    ('data.note:"It\'s \\"quoted\\""', "d"),
    ('data.note:"It\'s"', ""),
    ('data.note:"50% off_now"', "c"),
    ("data.tags:é", "e"),
    ('data.tags:"é"', "e"),
    ("data.tags:E", ""),
    ('data.tags:"a b"', "e"),
    ('data.tags:"ABC "', "e"),
    ('data.tags:"ABC"', ""),
    # arrays: any element, objects in arrays, a scalar or an array at the same path
    ("data.items.sku:ABC", "a"),
    ("data.items.sku:abc", "b"),
    ('data.items.sku:"XYZ-1"', "a"),
    ("data.items.sku:CK-123", "f"),
    ("data.customer.email:eve@example.com", "e"),
    ("data.customer.email:EVE@example.com", "e"),
    ("data.tags:vip", "ab"),
    ("data.tags:new", "a"),
    ("data.nested.sku:ABC", ""),
    ("data.items:ABC", ""),
    # numbers: by value, never a string's digits (and a string never a number)
    ("data.total:42", "ac"),
    ("data.total:42.0", "a"),
    ('data.total:"42"', "c"),
    ("data.total:7.5", "b"),
    ("data.total:7.50", "b"),
    ("data.total:\\-3", "d"),
    ("data.total:100", "f"),
    ("data.items.qty:1", "ab"),
    ("data.items.qty:2", "a"),
    ("data.amount:1000", "e"),
    ("data.amount:1e3", "e"),
    ('data.amount:"1000"', ""),
    ("data.data.x:1.0", "g"),
    # booleans and null: null is only ever the text "null"
    ("data.paid:true", "a"),
    ("data.paid:false", "b"),
    ('data.paid:"true"', ""),
    ("data.paid:null", ""),
    ('data.paid:"null"', ""),
    # combined with other terms, negated
    ("data.items.sku:ABC OR data.tags:é", "ae"),
    ("NOT data.tags:vip", "cdefg"),
    ("NOT NOT data.tags:vip", "ab"),
    ("data.items.sku:ABC AND NOT data.total:42", ""),
    ("status:dead AND data.tags:vip", "b"),
    ("data.tags:(vip OR new) AND -data.paid:false", "a"),
]


def count_query(query: str, dialect: str) -> Select[Any]:
    where = compile_where(parse_query(query), dialect)
    return select(func.count()).select_from(deliveries).where(where)


def explain(conn: Connection, stmt: Select[Any]) -> str:
    """The plan PostgreSQL picks for ``stmt``, its values bound as usual."""
    compiled = stmt.compile(dialect=conn.dialect)
    rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params).all()
    return "\n".join(row[0] for row in rows)


def python_matches(seeded: Seeded, query: str) -> set[str]:
    test = predicate(parse_query(query, now=seeded.now))
    return {seeded.labels[d.id] for d in iter_deliveries(seeded.store, "*")
            if test(delivery_record(d))}


# -- every database: the same answers as before -----------------------------------------


@pytest.mark.parametrize(("query", "expected"), EXACT, ids=[c[0] for c in EXACT])
def test_exact_terms_agree_with_python(seeded: Seeded, query: str, expected: str) -> None:
    assert python_matches(seeded, query) == set(expected)
    assert seeded.names(search_deliveries(seeded.store, query, limit=100).items) == set(expected)
    assert count_deliveries(seeded.store, query) == len(expected)


# -- PostgreSQL: the index is there, used, and changes no answer ---------------------------


@PG
@pytest.mark.parametrize(("query", "expected"), EXACT, ids=[c[0] for c in EXACT])
def test_exact_terms_through_the_index(seeded: Seeded, query: str, expected: str) -> None:
    stmt = count_query(query, "postgresql")
    with seeded.store.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        assert conn.execute(stmt).scalar_one() == len(expected)
        if isinstance(parse_query(query), Equals):  # a lone term: nothing else to use
            assert INDEX in explain(conn, stmt)


@PG
@pytest.mark.parametrize("query", [q for q, _ in EXACT if isinstance(parse_query(q), Equals)])
def test_the_pre_filter_alone_keeps_every_match(seeded: Seeded, query: str) -> None:
    """``payload @? path`` on its own: a superset of what the exact test matches."""
    node = parse_query(query)
    assert isinstance(node, Equals) and isinstance(node.target, JsonPath)
    path = equals_jsonpath(node.target.keys, node.text, node.number, node.boolean)
    assert path is not None
    stmt = select(deliveries.c.id).where(
        deliveries.c.payload.op("@?", is_comparison=True)(
            literal(path).cast(postgresql.JSONPATH)))
    with seeded.store.begin() as conn:
        kept = {seeded.labels[row.id] for row in conn.execute(stmt)}
    assert kept >= python_matches(seeded, query)


@PG
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS, queries=st.lists(QUERIES, min_size=1, max_size=6))
def test_sql_and_python_agree_through_the_index(scratch_db: Store, rows: list[Any],
                                                queries: list[str]) -> None:
    """The property test's payloads and queries, with PostgreSQL kept off sequential scans."""
    wipe(scratch_db)
    store_rows(scratch_db, rows)
    stored = list(iter_deliveries(scratch_db, "*"))
    with scratch_db.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        for query in queries:
            test = predicate(parse_query(query))
            expected = {d.id for d in stored if test(delivery_record(d))}
            where = compile_where(parse_query(query), "postgresql")
            found = set(conn.execute(select(deliveries.c.id).where(where)).scalars())
            assert found == expected, (query, [d.payload for d in stored])


@pytest.fixture(scope="module")
def pg_store(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A PostgreSQL store of its own: the plan tests load thousands of rows into it."""
    with open_store("postgresql", tmp_path_factory.mktemp("pgindex")) as store:
        yield store


ROWS = 20_000
LOAD = text("""
INSERT INTO asyncevents_delivery (id, event_id, event_name, subscription_id, sink, recipient,
    status, attempts, payload, published_at, created_at, updated_at)
SELECT 'd-' || i, 'e-' || i, 'order.created', 'sub-1', 'http', 'https://x.test', 'delivered', 1,
    jsonb_build_object(
        'customer', jsonb_build_object('email', 'c' || (i % 997) || '@example.com',
                                       'id', i % 997),
        'items', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (i % 50))),
        'total', i % 1000, 'paid', i % 500 = 0),
    now(), now(), now()
FROM generate_series(1, :rows) AS i
""")


@pytest.fixture(scope="module")
def loaded(pg_store: Store) -> Store:
    """``ROWS`` order-like deliveries, analyzed."""
    wipe(pg_store)
    with pg_store.begin() as conn:
        conn.execute(LOAD, {"rows": ROWS})
    with pg_store.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "ANALYZE asyncevents_delivery")
    return pg_store


def test_migration_made_the_gin_index(pg_store: Store) -> None:
    with pg_store.begin() as conn:
        definition = conn.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = :name"), {"name": INDEX}
        ).scalar_one()
        kind = conn.execute(text(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'asyncevents_delivery' AND column_name = 'payload'")).scalar_one()
    assert "USING gin (payload jsonb_path_ops)" in definition
    assert kind == "jsonb"


@pytest.mark.parametrize(("query", "matched"), [
    ('data.customer.email:"c5@example.com"', 21),
    ("data.customer.email:c5@example.com", 21),
    ("data.items.sku:SKU-7", 400),
    ("data.customer.id:5", 21),
    ("data.total:999", 20),
    ("data.paid:true", 40),
    ("status:delivered AND data.customer.email:c5@example.com", 21),
])
def test_the_planner_picks_the_index(loaded: Store, query: str, matched: int) -> None:
    stmt = count_query(query, "postgresql")
    with loaded.begin() as conn:
        plan = explain(conn, stmt)
        assert INDEX in plan, plan
        assert "Seq Scan" not in plan, plan
        assert conn.execute(stmt).scalar_one() == matched
        # The same count when every row is read.
        conn.execute(text("SET LOCAL enable_bitmapscan = off"))
        conn.execute(text("SET LOCAL enable_indexscan = off"))
        assert "Seq Scan" in explain(conn, stmt)
        assert conn.execute(stmt).scalar_one() == matched
    assert count_deliveries(loaded, query) == matched


@pytest.mark.parametrize("query", [
    "data.customer.email:c5*", "data.total:[998 TO 999]", "data.customer:*",
    "NOT data.customer.email:c5@example.com",
])
def test_other_forms_keep_their_plan(loaded: Store, query: str) -> None:
    """Wildcards, ranges and exists have no pre-filter; a lone NOT cannot use one."""
    with loaded.begin() as conn:
        assert INDEX not in explain(conn, count_query(query, "postgresql"))


# -- the SQL text ----------------------------------------------------------------------------

DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect(),  # type: ignore[no-untyped-call]
            "mariadb": mysql.dialect(is_mariadb=True)}


@pytest.mark.parametrize(("query", "pre"), [
    ("data.a:x", True), ('data.a:"x y"', True), ("data.a.b:1", True), ("data.a:true", True),
    ("NOT data.a:x", True), ("data.a:x*", False), ("data.a:[1 TO 2]", False),
    ("data.a:*", False), ("status:dead", False), ("event_name:x", False),
])
@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_only_exact_payload_terms_on_postgresql_get_the_pre_filter(
        dialect: str, query: str, pre: bool) -> None:
    compiled = count_query(query, dialect).compile(dialect=DIALECTS[dialect])
    sql = str(compiled)
    assert ("@?" in sql) is (pre and dialect == "postgresql")
    if "@?" in sql:
        paths = [v for v in compiled.params.values() if isinstance(v, str) and "$" in v]
        assert len(paths) == 1 and paths[0].startswith("lax $.")
        assert paths[0] not in sql


@pytest.mark.parametrize(("args", "path"), [
    ((("a",), "x"), 'lax $."a" ? (@ == "x")'),
    ((("a", "b-c"), "42", 42), 'lax $."a"."b-c" ? (@ == "42" || @ == 42)'),
    ((("a",), "7.50", 7.5), 'lax $."a" ? (@ == "7.50" || @ == 7.5)'),
    ((("a",), "1e-7", 1e-7), 'lax $."a" ? (@ == "1e-7" || @ == 0.0000001)'),
    ((("a",), "1e3", 1000.0), 'lax $."a" ? (@ == "1e3" || @ == 1000.0)'),
    ((("a",), "-3", -3), 'lax $."a" ? (@ == "-3" || @ == -3)'),
    ((("a",), "true", None, True), 'lax $."a" ? (@ == "true" || @ == true)'),
    ((("a",), 'q"\\\n'), 'lax $."a" ? (@ == "q\\"\\\\\\n")'),
    ((("a",), "é😀"), 'lax $."a" ? (@ == "é😀")'),
    ((("a",), None), None),
])
def test_equals_jsonpath(args: tuple[Any, ...], path: str | None) -> None:
    assert equals_jsonpath(*args) == path


@pytest.mark.parametrize("key", ["a.b", 'a"', "", "a b", "$", "é", "x" * 65])
def test_equals_jsonpath_refuses_odd_keys(key: str) -> None:
    with pytest.raises(ValueError):
        equals_jsonpath(("ok", key), "x")


def test_equals_jsonpath_refuses_non_finite_numbers() -> None:
    with pytest.raises(ValueError):
        equals_jsonpath(("a",), "x", float("inf"))


TEXTS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=TEXTS, number=st.one_of(st.none(), st.integers(-2**63 + 1, 2**63 - 1),
                                      st.floats(allow_nan=False, allow_infinity=False)))
def test_jsonpath_reads_values_back_unchanged(pg_store: Store, value: str,
                                              number: int | float | None) -> None:
    """A string (any characters PostgreSQL stores) and a number match themselves, only.

    Numbers are bound as the exact predicate binds them: a float as the decimal it prints as.
    """
    path = equals_jsonpath(("k",), value, number)
    assert path is not None
    bound = Decimal(repr(number)) if isinstance(number, float) else number
    stmt = text("SELECT jsonb_build_object('k', CAST(:v AS text)) @? CAST(:p AS jsonpath), "
                "jsonb_build_object('k', CAST(:v AS text) || 'z') @? CAST(:p AS jsonpath), "
                "jsonb_build_object('k', CAST(:n AS numeric)) @? CAST(:p AS jsonpath)")
    with pg_store.begin() as conn:
        same, other, as_number = conn.execute(stmt, {"v": value, "p": path, "n": bound}).one()
    assert same is True
    assert other is False
    assert as_number is (number is not None)


# -- the migration -------------------------------------------------------------------------


def alembic_config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(store_migrate._SCRIPTS))
    config.attributes["connection"] = conn
    return config


@pytest.mark.usefixtures("pg_admin_url")
def test_migration_converts_a_json_payload_and_keeps_a_prebuilt_index(tmp_path: Path) -> None:
    with temporary_database("postgresql", tmp_path) as url:
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                command.upgrade(alembic_config(conn), "0003")
                conn.execute(text("ALTER TABLE asyncevents_delivery ALTER COLUMN payload "
                                  "TYPE json USING payload::json"))
                conn.execute(text(
                    "INSERT INTO asyncevents_delivery VALUES ('d', 'e', 'n', 's', 'http', 'r', "
                    "'pending', 0, CAST(:p AS json), now(), now(), now(), NULL)"),
                    {"p": '{"a": [1, "x", {"b": null}], "n": 1.50}'})
            with engine.begin() as conn:
                command.upgrade(alembic_config(conn), "0004")
                kind = conn.execute(text(
                    "SELECT data_type FROM information_schema.columns WHERE "
                    "table_name = 'asyncevents_delivery' AND column_name = 'payload'")
                ).scalar_one()
                payload = conn.execute(text("SELECT payload FROM asyncevents_delivery")).scalar()
                valid = conn.execute(text(
                    "SELECT indisvalid FROM pg_index WHERE indexrelid = CAST(:i AS regclass)"),
                    {"i": INDEX}).scalar_one()
            assert kind == "jsonb"
            assert payload == {"a": [1, "x", {"b": None}], "n": 1.5}
            assert valid is True
            # An index that a failed CREATE INDEX CONCURRENTLY left invalid is built again.
            with engine.begin() as conn:
                command.downgrade(alembic_config(conn), "0003")
                conn.execute(text(f"CREATE INDEX {INDEX} ON asyncevents_delivery "
                                  "USING gin (payload jsonb_path_ops)"))
                conn.execute(text("UPDATE pg_index SET indisvalid = false "
                                  "WHERE indexrelid = CAST(:i AS regclass)"), {"i": INDEX})
                command.upgrade(alembic_config(conn), "0004")
                assert conn.execute(text(
                    "SELECT indisvalid FROM pg_index WHERE indexrelid = CAST(:i AS regclass)"),
                    {"i": INDEX}).scalar_one() is True
        finally:
            engine.dispose()
