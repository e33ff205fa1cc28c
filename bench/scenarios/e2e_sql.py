"""2. End to end on SQL queues: asyncevents' own transport against kombu's stock ``sqla+``.

Contenders in every repetition: asyncevents on ``sqla+postgresql`` (queue and
store in one fresh database) and on ``sqla+sqlite`` (queue and store in SQLite
files), and a bare kombu consume + POST loop on kombu's stock transport over
the same two databases. Both poll every 0.1 s.

Once per run, the PostgreSQL contenders run again with 100,000 events behind
them: for asyncevents, 100,000 delivered deliveries (and their attempts) in the
store and 200,000 queue rows inserted and deleted (as consumed messages leave
them); for stock kombu, 100,000 consumed (invisible) rows in
``kombu_message``, which it never deletes. Then VACUUM ANALYZE: the steady
state once autovacuum has caught up.
"""

from __future__ import annotations

import json
from typing import Any

from bench import harness as h
from bench import rigs

NAME = "e2e_sql"
BEHIND = 100_000


def _pg(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def fill_asyncevents(rig: Any, behind: int = BEHIND) -> None:
    sub = rig.app.store.list_subscriptions()[0]
    with _pg(rig.database_url) as conn:
        conn.execute("""
            INSERT INTO asyncevents_delivery (id, event_id, event_name, subscription_id, sink,
                recipient, status, attempts, payload, published_at, created_at, updated_at,
                next_attempt_at)
            SELECT gen_random_uuid()::text, gen_random_uuid()::text, %(name)s, %(sub)s, 'http',
                %(url)s, 'delivered', 1,
                jsonb_build_object('seq', -1, 'order_id', g, 'total', 42.5,
                    'customer', jsonb_build_object('id', g %% 997,
                                                   'email', 'c' || (g %% 997) || '@example.com')),
                ts, ts, ts, NULL
            FROM generate_series(1, %(n)s) g,
                 LATERAL (SELECT (now() AT TIME ZONE 'utc') - interval '1 hour'
                                 + g * interval '1 millisecond' AS ts) t
        """, {"name": h.EVENT, "sub": sub.id, "url": sub.recipient, "n": behind})
        conn.execute("""
            INSERT INTO asyncevents_attempt (delivery_id, number, started_at, duration_ms,
                success, status_code, response, error, replay)
            SELECT id, 1, created_at, 1.5, true, 200, '', NULL, false FROM asyncevents_delivery
        """)
        with conn.transaction():
            conn.execute("""
                INSERT INTO asyncevents_queue_message (queue, payload, created_at, visible_at,
                    deliveries)
                SELECT %(q)s, '{}', now(), now() + interval '100 years', 1
                FROM generate_series(1, %(n)s)
            """, {"q": f"{rig.prefix}.deliver", "n": 2 * behind})
            conn.execute("DELETE FROM asyncevents_queue_message WHERE payload = '{}'")
        conn.execute("VACUUM ANALYZE")  # the steady state, once autovacuum caught up


def fill_kombu(rig: Any, behind: int = BEHIND) -> None:
    body = h.cloudevent_body(-1).decode()
    with _pg(rig.url.replace("sqla+", "").replace("+psycopg", "")) as conn:
        conn.execute("""
            INSERT INTO kombu_message (id, visible, timestamp, payload, version, queue_id)
            SELECT nextval('message_id_sequence'), false, now(), %(p)s, 1,
                   (SELECT id FROM kombu_queue WHERE name = %(q)s)
            FROM generate_series(1, %(n)s)
        """, {"p": json.dumps({"body": body, "headers": {}}),
              "q": rig.queue_name, "n": behind})
        conn.execute("VACUUM ANALYZE")


def one(ctx: h.Context, receiver: Any, rig: rigs.Rig, contender: str, n: int,
        cap: float) -> float:
    with rig:
        db = getattr(rig, "database_url", "")
        sessions0 = h.pg_sessions(db) if db.startswith("postgresql") else None
        run = h.measure(receiver, rig.publish, n, cap, cpu_pids=rig.pids, alive=rig.alive)
        if sessions0 is not None:
            opened = h.pg_sessions(db) - sessions0
            ctx.results.add(NAME, contender, "PG connections opened per 1k events",
                            opened / max(1, run.received) * 1000, "conn",
                            higher_is_better=False)
    note = None if run.complete else f"capped: {run.received} of {n} in {run.elapsed:.0f} s"
    ctx.results.add(NAME, contender, "events/s", run.rate, "ev/s", note=note)
    ctx.results.add(NAME, contender, "consumer CPU per 1k events",
                    run.cpu / max(1, run.received) * 1000, "cpu-s", higher_is_better=False)
    used = run.server_cpu.get("postgres", 0.0)
    if "postgresql" in contender:
        ctx.results.add(NAME, contender, "postgres CPU per 1k events",
                        used / max(1, run.received) * 1000, "cpu-s", higher_is_better=False)
    rigs.settle()
    return run.rate


def run(ctx: h.Context, receiver: Any) -> None:
    n = ctx.n(3_000, 300)
    cap = ctx.n(90, 20)
    behind = ctx.n(BEHIND, 10_000)
    for rep in range(ctx.repeat):
        h.log(f"{NAME}: repetition {rep + 1}/{ctx.repeat}, {n} events")
        one(ctx, receiver, rigs.AsyncEventsRig(receiver, "pg"), "asyncevents sqla+postgresql",
            n, cap)
        one(ctx, receiver, rigs.KombuLoopRig(receiver, "pg"), "kombu stock sqla+postgresql",
            n, cap)
        one(ctx, receiver, rigs.AsyncEventsRig(receiver, "sqlite"), "asyncevents sqla+sqlite",
            n, cap)
        one(ctx, receiver, rigs.KombuLoopRig(receiver, "sqlite"), "kombu stock sqla+sqlite",
            n, cap)
        if rep == 0:
            label = f"{behind // 1000}k behind"
            h.log(f"{NAME}: PostgreSQL with {behind} events behind")
            ae = rigs.AsyncEventsRig(receiver, "pg")
            ae.before_start = lambda rig: fill_asyncevents(rig, behind)
            one(ctx, receiver, ae, f"asyncevents sqla+postgresql, {label}", n, cap)
            stock = rigs.KombuLoopRig(receiver, "pg")
            stock.before_start = lambda rig: fill_kombu(rig, behind)
            one(ctx, receiver, stock, f"kombu stock sqla+postgresql, {label}", n, cap)
