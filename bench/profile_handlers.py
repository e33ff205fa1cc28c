"""Where a worker's CPU goes per event, without the worker loop around it.

Runs the dispatcher and the deliverer of an App in this process, one message
at a time (store on a fresh PostgreSQL database, transport RabbitMQ, the
bench receiver as the one subscriber), and reports for each handler:
wall and CPU time per call, SQL statements and transactions per call, and
the top functions by cumulative time under cProfile.

    python -m bench.profile_handlers [--events 500] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from typing import Any, cast

from bench import harness as h
from bench import rigs
from bench.receiver import Receiver


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--transport", default="amqp", choices=["amqp", "pg", "sqlite"])
    parser.add_argument("--sort", default="cumulative", help="pstats sort key (tottime...)")
    args = parser.parse_args()

    from sqlalchemy import event

    from asyncevents.core.log import configure_logging

    configure_logging("WARNING")  # as the bench's workers run

    from asyncevents.core.clock import utcnow
    from asyncevents.core.deliver import Deliverer
    from asyncevents.core.dispatch import Dispatcher
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
        deliverer = Deliverer(app.settings, app.store, app.plugins, app.retries, app.policy)
        # As the worker runs it: the first attempt made by the dispatcher itself.
        inline = Dispatcher(app.catalog, app.store, app.transport, app.retries, app.policy,
                            app.filter_fn(), deliverer=deliverer)
        # Only creates deliveries, for the deliverer's own pass (retries, replays).
        dispatcher = Dispatcher(app.catalog, app.store, app.transport, app.retries, app.policy,
                                app.filter_fn())
        sub = app.store.list_subscriptions()[0]

        def triggers(n: int, base: int) -> list[dict[str, Any]]:
            return [TriggerMessage(f"00000000-0000-4000-8000-{base + i:012d}", h.EVENT,
                                   h.payload(i), utcnow()).body() for i in range(n)]

        def deliveries(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
            found = app.store._deliveries_of
            return [{"delivery_id": found(b["event_id"], [sub.id])[sub.id].id, "deaths": 0,
                     "replay": False} for b in bodies]

        # warm: connections, statement caches, the HTTP pool
        warm = triggers(20, 0)
        for b in warm:
            inline.handle(cast(Any, decode("trigger", b)))
        warm = triggers(20, 100)
        for b in warm:
            dispatcher.handle(cast(Any, decode("trigger", b)))
        for d in deliveries(warm):
            deliverer.handle(cast(Any, decode("deliver", d)))

        report = []
        handlers: tuple[tuple[str, Any, str | None], ...] = (
            ("Dispatcher.handle (trigger, first attempt inline)", inline.handle, None),
            ("Deliverer.handle (delivery)", deliverer.handle, "deliver"),
        )
        for k, (label, handler, make) in enumerate(handlers):
            def batch(base: int, make: str | None = make) -> list[Any]:
                bodies = triggers(args.events, base)
                if make is None:
                    return [decode("trigger", b) for b in bodies]
                for b in bodies:
                    dispatcher.handle(cast(Any, decode("trigger", b)))
                return [decode("deliver", d) for d in deliveries(bodies)]

            # a plain pass for honest timings, then one under cProfile for the listing
            bodies = batch(1_000_000 * (2 * k + 1))
            counts.update(statements=0, transactions=0)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for b in bodies:
                handler(b)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            n = len(bodies)
            statements, transactions = counts["statements"] / n, counts["transactions"] / n
            bodies = batch(1_000_000 * (2 * k + 2))
            prof = cProfile.Profile()
            prof.enable()
            for b in bodies:
                handler(b)
            prof.disable()
            stream = io.StringIO()
            stats = pstats.Stats(prof, stream=stream)
            stats.sort_stats(args.sort).print_stats(args.top)
            report.append(
                f"== {label}: {n} calls, {wall / n * 1000:.2f} ms wall and "
                f"{cpu / n * 1000:.2f} ms CPU per call (no profiler), "
                f"{statements:.1f} SQL statements and {transactions:.1f} transactions per call"
                "\n" + "\n".join(stream.getvalue().splitlines()[:args.top + 12]))
        rig.app.transport.close()
    print("\n\n".join(report))


if __name__ == "__main__":
    main()
