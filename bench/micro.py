"""Unit costs behind a delivery, one at a time in this process: what each step costs.

    python -m bench.micro [--n 2000]

Prints wall and CPU microseconds per operation for: a store transaction with
one primary-key SELECT (as ``Store.get_delivery`` does it, with and without
``pool_pre_ping``), the same through psycopg alone, a confirmed kombu
publish, an httpx POST to the bench receiver, and a whole ``HttpSink.deliver``
(signing, address check, CloudEvent body, POST) to it. Multiply by the counts
``profile_handlers`` reports to see where an event's time goes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench import harness as h
from bench.receiver import Receiver


def _time(label: str, n: int, work: Callable[[], object]) -> str:
    for _ in range(min(100, n)):
        work()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        work()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return f"  {label:<62} {wall / n * 1e6:8.0f} us wall {cpu / n * 1e6:8.0f} us CPU"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    n = args.n

    import httpx
    import psycopg
    from kombu import Connection, Exchange, Producer, Queue
    from sqlalchemy import select

    from asyncevents.core.clock import utcnow
    from asyncevents.core.settings import Settings
    from asyncevents.core.sink import DeliveryRequest
    from asyncevents.core.store import Store
    from asyncevents.core.store.engine import make_engine
    from asyncevents.core.store.schema import deliveries
    from asyncevents.sinks.http import HttpSink

    lines = [f"unit costs, {n} operations each, one thread:"]
    with h.pg_database("micro") as url:
        Store.open(url, auto_migrate=True).close()
        query = select(deliveries).where(deliveries.c.id == "00000000-0000-0000-0000-000000000000")
        for ping in (True, False):
            engine = make_engine(url, pool_pre_ping=ping)

            def tx(engine: object = engine) -> None:
                with engine.begin() as conn:  # type: ignore[attr-defined]
                    conn.execute(query).mappings().first()

            lines.append(_time(f"SQLAlchemy transaction, 1 SELECT by pk, pre_ping={ping}", n, tx))
            engine.dispose()
        with psycopg.connect(url, autocommit=True) as pg:
            sql = "SELECT * FROM asyncevents_delivery WHERE id = %s"
            lines.append(_time("psycopg autocommit, the same SELECT", n,
                               lambda: pg.execute(sql, ("x",)).fetchone()))
        with psycopg.connect(url) as pg:
            def tx_raw() -> None:
                pg.execute(sql, ("x",)).fetchone()
                pg.commit()

            lines.append(_time("psycopg, the same SELECT + COMMIT", n, tx_raw))

    name = f"bench-micro-{h.uid()}"
    exchange = Exchange(name, type="direct", durable=True)
    try:
        with Connection(h.AMQP_URL, transport_options={"confirm_publish": True}) as conn:
            Queue(name, exchange=exchange, routing_key=name, durable=True)(
                conn.default_channel).declare()
            producer = Producer(conn, exchange=exchange, routing_key=name, serializer="json")
            body = {"delivery_id": "00000000-0000-0000-0000-000000000000", "deaths": 0}
            lines.append(_time("kombu publish, confirmed (the dispatcher's deliver message)", n,
                               lambda: producer.publish(body, delivery_mode=2)))
    finally:
        h.rabbit_delete([name], [name])

    with Receiver() as receiver, httpx.Client(trust_env=False) as client:
        payload = h.cloudevent_body(1)
        lines.append(_time("httpx POST to the bench receiver (reused client)", n,
                           lambda: client.post(receiver.url, content=payload)))
        sink = HttpSink(Settings(allowed_networks=["127.0.0.0/8"]))
        request = DeliveryRequest(
            delivery_id="00000000-0000-4000-8000-000000000001", event_id=h.uid(),
            event_name=h.EVENT, subscription_id="s", recipient=receiver.url, token=h.TOKEN,
            payload=h.payload(1), published_at=utcnow(), attempt=1, source="bench", metadata={})
        lines.append(_time("HttpSink.deliver to the bench receiver (sign, check, POST)", n,
                           lambda: sink.deliver(request)))
        sink.close()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
