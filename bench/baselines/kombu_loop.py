"""The bare baseline: kombu consume, one httpx POST per message, ack. Nothing else.

``python -m bench.baselines.kombu_loop --url URL --queue NAME [--prefetch N]``; a
``sqla+`` URL uses kombu's stock SQLAlchemy transport (polled every 0.1 s, the
same interval asyncevents' SQL transport uses). Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
from typing import Any

import httpx
from kombu import Connection, Consumer, Exchange, Queue


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--prefetch", type=int, default=20)
    parser.add_argument("--polling-interval", type=float, default=0.1)
    args = parser.parse_args()

    stop = False

    def on_signal(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    client = httpx.Client(timeout=30.0, trust_env=False)
    headers = {"content-type": "application/cloudevents+json"}
    exchange = Exchange(args.queue, type="direct", durable=True)
    queue = Queue(args.queue, exchange=exchange, routing_key=args.queue, durable=True)

    def handle(body: dict[str, Any], message: Any) -> None:
        response = client.post(body["url"], content=body["body"].encode(), headers=headers)
        if response.is_success:
            message.ack()
        else:
            message.requeue()

    with Connection(args.url) as conn:
        conn.ensure_connection(max_retries=3)
        if args.url.startswith("sqla"):
            conn.transport.polling_interval = args.polling_interval
        with Consumer(conn, queues=[queue], callbacks=[handle], accept=["json"],
                      prefetch_count=args.prefetch):
            while not stop:
                with contextlib.suppress(TimeoutError, socket.timeout):
                    conn.drain_events(timeout=0.5)
    client.close()


if __name__ == "__main__":
    main()
