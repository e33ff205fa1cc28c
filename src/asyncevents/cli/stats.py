"""``asyncevents stats``: queue depths, and deliveries pending, retrying and dead.

Queues come from the transport (:meth:`~asyncevents.core.transport.Transport.queue_stats`):
ready, in flight, delayed and consumers, each ``null`` (``n/a`` in the table)
where the transport cannot know it. On a transport without delays of its own
(Redis, memory) the delayed messages wait in the database schedule, and are
counted from there. Deliveries come from the store
(:class:`~asyncevents.core.store.stats.StatsQueries`): ``pending`` and
``retrying`` now, ``dead`` in the last hour and the last day.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import click

from asyncevents.cli.context import get_app, json_option
from asyncevents.cli.output import console, print_json, print_table
from asyncevents.core.app import App
from asyncevents.core.messages import ROUTES
from asyncevents.core.transport.base import QueueStats, first_line
from asyncevents.core.transport.topology import Topology
from asyncevents.errors import AsyncEventsError, TransportError

__all__ = ["collect", "stats"]

_COUNTS = ("pending", "retrying", "dead_last_hour", "dead_last_day")
_HEADINGS = {"in_flight": "in flight", "dead_last_hour": "dead 1h",
             "dead_last_day": "dead 24h", "subscription_id": "subscription",
             "event_name": "event"}


def _queues(app: App) -> list[QueueStats]:
    transport = app.transport
    try:
        found = transport.queue_stats()
    except AsyncEventsError:
        raise
    except Exception as exc:  # the broker is down or refuses us
        raise TransportError(f"cannot read the queues at {transport.safe_url()}: "
                             f"{first_line(exc)}") from None
    if transport.native_delays or transport.runs_inline:
        return found
    # Delays on this transport are rows of the database schedule, by route.
    scheduled = app.store.count_scheduled_by_route()
    names = {Topology(app.settings.queue_prefix).queue(route).name: route for route in ROUTES}
    return [replace(q, delayed=scheduled.get(names[q.name], 0)) if q.name in names else q
            for q in found]


def collect(app: App) -> dict[str, Any]:
    """Everything ``stats`` prints, as the JSON document it prints with ``--json``."""
    store = app.store
    return {
        "transport": app.transport.scheme,
        "queues": [asdict(q) for q in _queues(app)],
        "events": [{"event_name": r.key, **{n: getattr(r, n) for n in _COUNTS}}
                   for r in store.delivery_counts_by_event()],
        "subscriptions": [{"subscription_id": r.key, "event_name": r.pattern, "sink": r.sink,
                           **{n: getattr(r, n) for n in _COUNTS}}
                          for r in store.delivery_counts_by_subscription()],
    }


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...], title: str) -> None:
    shown = [{_HEADINGS.get(k, k): "n/a" if v is None and k in (
        "ready", "in_flight", "delayed", "consumers") else v for k, v in row.items()}
        for row in rows]
    print_table(shown, [_HEADINGS.get(c, c) for c in columns], title=title)


@click.command()
@json_option
def stats(as_json: bool) -> None:
    """Queue depths; deliveries pending, retrying and dead per event and subscription."""
    found = collect(get_app())
    if as_json:
        print_json(found)
        return
    _table(found["queues"], ("name", "ready", "in_flight", "delayed", "consumers"),
           f"Queues ({found['transport']})")
    if any(None in q.values() for q in found["queues"]):
        why = (" (RabbitMQ tells in-flight and delayed counts only through its management "
               "API; the deliveries below say what is retrying)"
               if found["transport"] == "amqp" else "")
        console.print(f"n/a: not known to this transport{why}")
    _table(found["events"], ("event_name", *_COUNTS), "Deliveries by event")
    _table(found["subscriptions"], ("subscription_id", "event_name", "sink", *_COUNTS),
           "Deliveries by subscription")
