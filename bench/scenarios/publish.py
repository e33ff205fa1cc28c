"""4. Publishing to RabbitMQ with confirms: asyncevents against raw kombu/py-amqp.

- asyncevents ``publish()`` in a loop (a confirm per event);
- asyncevents ``publish_many`` in batches of 500, when the App has it;
- raw kombu ``Producer.publish`` with ``confirm_publish`` (a round trip per message);
- raw py-amqp with batched confirms (publish 500, then wait once);
- raw kombu without confirms, for scale.
Nothing consumes: the queues are deleted afterwards.
"""

from __future__ import annotations

import time
from typing import Any

from bench import harness as h
from bench import rigs

NAME = "publish"
BATCH = 500


def _rate(n: int, work: Any) -> float:
    t0 = time.monotonic()
    work()
    return n / (time.monotonic() - t0)


def _asyncevents(ctx: h.Context, receiver: Any, n: int) -> None:
    rig = rigs.AsyncEventsRig(receiver, "amqp", start=False)
    with rig:
        app = rig.app
        app.publish(h.EVENT, h.payload(-1))  # connect and declare first

        def loop() -> None:
            for i in range(n):
                app.publish(h.EVENT, h.payload(i))

        ctx.results.add(NAME, "asyncevents publish() loop", "events/s", _rate(n, loop), "ev/s")
        if rig.batch_api:
            def batched() -> None:
                for start in range(0, n, BATCH):
                    app.publish_many([(h.EVENT, h.payload(i))
                                      for i in range(start, min(n, start + BATCH))])

            ctx.results.add(NAME, "asyncevents publish_many", "events/s",
                            _rate(n, batched), "ev/s", note=f"batches of {BATCH}")
        else:
            ctx.results.info["publish_many"] = "App.publish_many does not exist yet"


def _kombu(ctx: h.Context, n: int) -> None:
    from kombu import Connection, Exchange, Producer, Queue

    from bench.amqp_batch import BatchPublisher

    name = f"bench-pub-{h.uid()}"
    exchange = Exchange(name, type="direct", durable=True)
    queue = Queue(name, exchange=exchange, routing_key=name, durable=True)
    bodies = [h.cloudevent_body(i) for i in range(n)]
    try:
        for confirm in (True, False):
            with Connection(h.AMQP_URL, transport_options={"confirm_publish": confirm}) as conn:
                producer = Producer(conn, exchange=exchange, routing_key=name)
                queue(conn.default_channel).declare()
                producer.publish(bodies[0], delivery_mode=2, content_type="application/json",
                                 content_encoding="utf-8")

                def loop(producer: Any = producer) -> None:
                    for body in bodies:
                        producer.publish(body, delivery_mode=2, content_type="application/json",
                                         content_encoding="utf-8")

                label = "kombu, confirm per message" if confirm else "kombu, no confirms"
                ctx.results.add(NAME, label, "events/s", _rate(n, loop), "ev/s")
        batcher = BatchPublisher(h.AMQP_URL)
        try:
            def batched() -> None:
                for start in range(0, n, BATCH):
                    batcher.publish(name, name, bodies[start:start + BATCH])

            ctx.results.add(NAME, "py-amqp, batched confirms", "events/s", _rate(n, batched),
                            "ev/s", note=f"batches of {BATCH}")
        finally:
            batcher.close()
    finally:
        h.rabbit_delete([name], [name])


def run(ctx: h.Context, receiver: Any) -> None:
    n = ctx.n(5_000, 500)
    for rep in range(ctx.repeat):
        h.log(f"{NAME}: repetition {rep + 1}/{ctx.repeat}, {n} events each")
        _asyncevents(ctx, receiver, n)
        _kombu(ctx, n)
