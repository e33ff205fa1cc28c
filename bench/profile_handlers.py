"""Where a worker's CPU goes per event, without the worker loop around it.

Runs the engine of an App in this process, in batches as the worker does,
with its store and sink calls made in this one thread so that cProfile sees
them (store on a fresh PostgreSQL database, transport RabbitMQ, the bench
receiver as the one subscriber), and reports for batches of triggers (first
attempts inline) and of delivery messages: wall and CPU time per message,
SQL statements and transactions per message, and the top functions by
cumulative time under cProfile.

    python -m bench.profile_handlers [--events 500] [--top 25] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
from typing import Any, cast

from bench import harness as h
from bench import rigs
from bench.receiver import Receiver


class _InlineThreads:
    """The engine's thread pools replaced by direct calls, so cProfile sees all the work.

    Everything then runs in this thread, on one event loop: the CPU figures
    are the engine's, the concurrency between store calls and sinks is not.
    """

    async def io(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    async def sink(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def shutdown(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--transport", default="amqp", choices=["amqp", "pg", "sqlite"])
    parser.add_argument("--sort", default="cumulative", help="pstats sort key (tottime...)")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    from sqlalchemy import event

    from asyncevents.core.log import configure_logging

    configure_logging("WARNING")  # as the bench's workers run

    from asyncevents.core.clock import utcnow
    from asyncevents.core.delivery.dispatch import Dispatcher
    from asyncevents.core.messages import TriggerMessage, decode

    with Receiver() as receiver, rigs.AsyncEventsRig(receiver, args.transport,
                                                       start=False) as rig:
        app = rig.app
        counts = {"statements": 0, "transactions": 0}

        def on_exec(*_: Any) -> None:
            counts["statements"] += 1

        def on_begin(*_: Any) -> None:
            counts["transactions"] += 1

        event.listen(app.store.engine, "before_cursor_execute", on_exec)
        event.listen(app.store.engine, "begin", on_begin)
        from asyncevents.core.worker.worker import batch_size

        engine = app._engine(args.concurrency)
        engine.threads = _InlineThreads()
        loop = asyncio.new_event_loop()
        # Only creates deliveries, for the delivery-queue pass (retries, replays).
        dispatcher = Dispatcher(app.catalog, app.store, app.transport, app.retries, app.policy,
                                app.filter_fn())
        sub = app.store.list_subscriptions()[0]
        size = batch_size(args.concurrency)

        def triggers(n: int, base: int) -> list[dict[str, Any]]:
            return [TriggerMessage(f"00000000-0000-4000-8000-{base + i:012d}", h.EVENT,
                                   h.payload(i), utcnow()).body() for i in range(n)]

        def deliveries(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
            found = app.store._deliveries_of
            return [{"delivery_id": found(b["event_id"], [sub.id])[sub.id].id, "deaths": 0,
                     "replay": False} for b in bodies]

        def run(messages: list[Any]) -> None:
            # As the worker does: batches of up to ``size`` messages through the engine.
            for i in range(0, len(messages), size):
                loop.run_until_complete(engine.run([(m, False) for m in messages[i:i + size]]))

        def batch(base: int, route: str) -> list[Any]:
            bodies = triggers(args.events, base)
            if route == "trigger":
                return [decode("trigger", b) for b in bodies]
            dispatcher.handle_many([cast(Any, decode("trigger", b)) for b in bodies], 0)
            return [decode("deliver", d) for d in deliveries(bodies)]

        run(batch(0, "trigger"))  # warm: connections, statement caches, the HTTP pool
        run(batch(100_000, "deliver"))
        report = []
        passes = (("Engine.run, trigger batches (first attempts inline)", "trigger"),
                  ("Engine.run, delivery batches", "deliver"))
        for k, (label, route) in enumerate(passes):
            # a plain pass for honest timings, then one under cProfile for the listing
            messages = batch(1_000_000 * (2 * k + 1), route)
            counts.update(statements=0, transactions=0)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            run(messages)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            n = len(messages)
            statements, transactions = counts["statements"] / n, counts["transactions"] / n
            messages = batch(1_000_000 * (2 * k + 2), route)
            prof = cProfile.Profile()
            prof.enable()
            run(messages)
            prof.disable()
            stream = io.StringIO()
            stats = pstats.Stats(prof, stream=stream)
            stats.sort_stats(args.sort).print_stats(args.top)
            report.append(
                f"== {label}: {n} messages in batches of {size}, {wall / n * 1000:.2f} ms wall "
                f"and {cpu / n * 1000:.2f} ms CPU per message (no profiler; every thread of "
                f"the process), {statements:.2f} SQL statements and {transactions:.2f} "
                "transactions per message"
                "\n" + "\n".join(stream.getvalue().splitlines()[:args.top + 12]))
        loop.run_until_complete(engine.deliverer.aclose())
        loop.close()
        rig.app.transport.close()
    print("\n\n".join(report))


if __name__ == "__main__":
    main()
