"""Search over 1,000,000 stored deliveries on PostgreSQL (issues 4 and 14).

A dedicated database gets the schema (migrations) and 1,000,000 deliveries by
COPY: five event names, twenty subscriptions, 97% delivered / 2% dead / 1%
retrying, spread over 30 days, with order-like payloads. Then, for each query,
the median time of ``search_deliveries`` (the 50 newest matches, the first
page) and of ``count_deliveries``, after one untimed run.

Target (issue 14): the count of an exact ``data.`` term (``EXACT``) within
``EXACT_TARGET_MS``; the count's note says PASS or MISS, and which plan
PostgreSQL chose (the GIN payload index of migration 0004, or not).
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import harness as h

NAME = "search"
NAMES = ["sales.order.created", "sales.order.paid", "sales.order.shipped",
         "customer.created", "catalog.product.updated"]
EXACT = 'data.customer.email:"c5@example.com"'
EXACT_TARGET_MS = 50.0
PAYLOAD_INDEX = "ix_asyncevents_delivery_payload"
COLUMNS = ("id, event_id, event_name, subscription_id, sink, recipient, status, attempts, "
           "payload, published_at, created_at, updated_at, next_attempt_at")


def queries(sub: str) -> list[tuple[str, str]]:
    return [
        ("indexed field, selective", "status:dead"),
        ("indexed field, 20% of rows", "event_name:sales.order.created"),
        ("indexed field, prefix wildcard", "event_name:sales.*"),
        ("indexed field, subscription", f"subscription_id:{sub}"),
        ("data. field, exact (0.1% of rows)", EXACT),
        ("data. field in an array (2%)", "data.items.sku:SKU-7"),
        ("data. field, wildcard, rare", "data.customer.email:*@example.org"),
        ("data. numeric range", "data.total:[100 TO 101]"),
        ("indexed AND data.", "status:dead AND data.customer.id:5"),
    ]


def fill(url: str, rows: int) -> list[str]:
    import psycopg

    subs = [str(uuid.uuid4()) for _ in range(20)]
    now = datetime.now(UTC).replace(tzinfo=None)
    span = 30 * 24 * 3600
    t0 = time.monotonic()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY asyncevents_delivery ({COLUMNS}) FROM STDIN") as copy:
            chunk: list[str] = []
            for i in range(rows):
                status = "dead" if i % 50 == 7 else "retrying" if i % 100 == 3 else "delivered"
                email = f"c{i % 997}@example.org" if i % 1000 == 999 else f"c{i % 997}@example.com"
                data = {"seq": i, "order_id": 100000 + i, "total": round(10 + (i % 9000) / 10, 2),
                        "customer": {"id": i % 997, "email": email},
                        "items": [{"sku": f"SKU-{i % 50}", "qty": 1 + i % 3},
                                  {"sku": f"SKU-{(i * 7) % 50}", "qty": 1}]}
                created = (now - timedelta(seconds=span * (rows - i) / rows)).isoformat(sep=" ")
                chunk.append("\t".join((
                    str(uuid.uuid4()), str(uuid.uuid4()), NAMES[i % 5], subs[i % 20], "http",
                    f"https://hooks.example.com/{i % 20}", status,
                    "1" if status == "delivered" else "3", json.dumps(data), created, created,
                    created, r"\N")) + "\n")
                if len(chunk) >= 5000:
                    copy.write("".join(chunk))
                    chunk = []
            if chunk:
                copy.write("".join(chunk))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE asyncevents_delivery")
    h.log(f"{NAME}: {rows} rows copied and analyzed in {time.monotonic() - t0:.0f} s")
    return subs


def _median_ms(work: Any, times: int) -> float:
    work()  # untimed: plans and caches
    spent = []
    for _ in range(times):
        t0 = time.perf_counter()
        work()
        spent.append((time.perf_counter() - t0) * 1000)
    return statistics.median(spent)


def _plan(store: Any, q: str) -> str:
    """Which access path PostgreSQL picks for the count of ``q``, in a few words."""
    from sqlalchemy import func, select

    from asyncevents.core.search.parse import parse_query
    from asyncevents.core.search.sql import compile_where
    from asyncevents.core.store.schema import deliveries

    stmt = select(func.count()).select_from(deliveries).where(
        compile_where(parse_query(q), "postgresql"))
    compiled = stmt.compile(dialect=store.engine.dialect)
    with store.engine.connect() as conn:
        plan = "\n".join(row[0] for row in conn.exec_driver_sql(
            "EXPLAIN " + str(compiled), compiled.params))
    if PAYLOAD_INDEX in plan:
        return "plan: GIN payload index"
    return "plan: seq scan" if "Seq Scan" in plan else "plan: other index"


def run(ctx: h.Context, receiver: Any) -> None:
    from asyncevents.core.search import count_deliveries, search_deliveries
    from asyncevents.core.store import Store

    rows = ctx.n(1_000_000, 20_000)
    label = f"{rows // 1000}k rows" if rows < 1_000_000 else f"{rows // 1_000_000}M rows"
    with h.pg_database("search") as url:
        store = Store.open(url, auto_migrate=True)
        try:
            subs = fill(url.replace("postgresql://", "postgresql://", 1), rows)
            ctx.results.info["search rows"] = rows
            for what, q in queries(subs[3]):
                matched = count_deliveries(store, q)
                search = _median_ms(lambda q=q: search_deliveries(store, q, limit=50), 3)
                count = _median_ms(lambda q=q: count_deliveries(store, q), 3)
                contender = f"{what}: {q}"
                ctx.results.add(NAME, contender, f"search 50 newest ({label})", search, "ms",
                                higher_is_better=False, note=f"{matched} match")
                note = None
                if q == EXACT:
                    verdict = "PASS" if count <= EXACT_TARGET_MS else "MISS"
                    note = (f"[{verdict}] exact data. term count <= {EXACT_TARGET_MS:.0f} ms "
                            f"over {label}: {count:.1f} ms; {_plan(store, q)}")
                    ctx.results.info["search exact data. count target"] = note
                    h.log(f"{NAME}: {note}")
                ctx.results.add(NAME, contender, f"count ({label})", count, "ms",
                                higher_is_better=False, note=note)
        finally:
            store.close()
