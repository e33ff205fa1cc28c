"""The ``asyncevents`` command group and its small commands.

Nothing heavy is imported here: the commands of other modules are added by
name (:class:`~asyncevents.cli.lazy.LazyGroup`), and the ones below import
the store, the transports and the App when they run, so that ``asyncevents
--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import click

from asyncevents.cli.context import get_app, json_option, parse_json_object, read_value
from asyncevents.cli.lazy import LazyGroup
from asyncevents.cli.output import console, print_json, print_table
from asyncevents.cli.processes import process_count, supervise
from asyncevents.errors import ConfigError

if TYPE_CHECKING:
    from asyncevents.core.app import App

__all__ = ["cli"]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asyncevents")
def cli() -> None:
    """Deliver application events reliably to webhooks and other sinks."""


assert isinstance(cli, LazyGroup)
# name, where it is, and its help until imported (the first sentence of its docstring).
for _name, _target, _help in [
    ("subscribe", "asyncevents.cli.subscriptions:subscribe",
     "Subscribe RECIPIENT to EVENT (a name or a pattern such as sales.order.*)."),
    ("subscriptions", "asyncevents.cli.subscriptions:subscriptions",
     "List, show, change, enable, disable and delete subscriptions."),
    ("search", "asyncevents.cli.deliveries:search",
     "Deliveries matching a Lucene QUERY (e.g. 'status:dead AND event_name:sales.*')."),
    ("trace", "asyncevents.cli.deliveries:trace", "Every attempt of one delivery."),
    ("replay", "asyncevents.cli.deliveries:replay",
     "Deliver again, under the same uuid, with a fresh retry budget."),
    ("serve", "asyncevents.cli.serve:serve",
     "Serve the REST API (OpenAPI at /docs) and the web console (/console)."),
    ("tokens", "asyncevents.cli.tokens:tokens",
     "Create, list and revoke API tokens (stored hashed; shown once)."),
    ("workers", "asyncevents.cli.workers:workers",
     "Workers: host, pid, queues, in flight, last heartbeat; a silent one is marked gone."),
    ("stop-workers", "asyncevents.cli.workers:stop_workers",
     "Ask every worker, on any host, to finish what it holds and exit."),
    ("stats", "asyncevents.cli.stats:stats",
     "Queue depths; deliveries pending, retrying and dead per event and subscription."),
    ("rotate-key", "asyncevents.cli.keys:rotate_key",
     "Re-encrypt every stored secret with a new key, in one transaction."),
]:
    cli.add_lazy(_name, _target, _help)


@cli.command()
@click.argument("event")
@click.option("--data", default="{}", show_default=True,
              help="The payload, a JSON object; @FILE reads it from FILE, - from stdin.")
@click.option("--delay", type=click.FloatRange(min=0), default=None,
              help="Dispatch no earlier than this many seconds from now.")
@json_option
def publish(event: str, data: str, delay: float | None, as_json: bool) -> None:
    """Publish EVENT with --data; print the event id."""
    payload = parse_json_object(read_value(data, "--data"), "--data")
    event_id = get_app().publish(event, payload, delay=delay)
    if as_json:
        print_json({"event_id": event_id})
    else:
        click.echo(event_id)


@cli.command()
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Deliveries in flight at once.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Stop after this many messages (each process, with --processes).")
@click.option("--time-limit", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds.")
@click.option("--memory-limit", type=click.FloatRange(min=1), default=None,
              help="Stop once resident memory reaches this many MB.")
@click.option("--max-idle-time", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds with no message and no retry due.")
@click.option("--retention-days", type=click.FloatRange(min=0), default=None,
              help="Also remove final deliveries older than this, hourly.")
@click.option("--processes", metavar="N|auto", default="1", show_default=True,
              callback=process_count,
              help="Run this many worker processes ('auto': one per core) under a supervisor "
                   "that restarts a crashed one; the other options apply to each.")
@click.option("--queues", metavar="Q1,Q2", default=None,
              help="Consume only these named queues ([routing]), earlier ones first "
                   "[default: every routed queue and 'default', in no order].")
@click.option("--failure-limit", type=click.IntRange(min=1), default=None,
              help="Stop after this many failed handlings in a row (messages requeued).")
@click.option("--only-if-waiting", is_flag=True,
              help="Exit at once (code 0) when no message waits on the worker's queues.")
@click.option("--burst", is_flag=True,
              help="Exit once the queues are drained: nothing waiting, nothing in hand, "
                   "no retry due within a second (later ones are left for the next worker).")
@json_option
def worker(concurrency: int, limit: int | None, time_limit: float | None,
           memory_limit: float | None, max_idle_time: float | None,
           retention_days: float | None, processes: int, queues: str | None,
           failure_limit: int | None, only_if_waiting: bool, burst: bool,
           as_json: bool) -> None:
    """Consume events and deliver them until a limit or SIGTERM."""
    from asyncevents.core.worker.worker import WorkerLimits

    # Checked here, so a supervisor refuses a bad name before starting anything.
    names = _known_queues(get_app(), queues) if queues is not None else None
    if processes > 1:
        supervise(click.get_current_context(), processes)
        return
    app = get_app()
    _wait_for_services(app)
    consumer = app.worker(WorkerLimits(
        concurrency=concurrency, limit=limit, time_limit=time_limit,
        memory_limit_mb=memory_limit, max_idle_time=max_idle_time,
        failure_limit=failure_limit, only_if_waiting=only_if_waiting, burst=burst,
    ), retention_days=retention_days)
    consumer.use_queues(names)
    report = consumer.run()
    if report.skipped and not app.settings.log_json:  # else its log line says so, in JSON
        click.echo(f"{report.reason}: the worker did not start", err=True)
    summary = {"handled": report.handled, "failed": report.failed, "reason": report.reason}
    if as_json:
        print_json(summary)


def _known_queues(app: App, text: str) -> list[str]:
    """``--queues``, checked against ``[routing]``: a name it never uses is a typo."""
    from asyncevents.core.events.routing import Router, parse_queues

    names = parse_queues(text)
    known = Router(app.settings.routing).queues
    for name in names:
        if name not in known:
            raise ConfigError(f"--queues: no [routing] rule sends anything to queue {name!r} "
                              f"(known: {', '.join(known)})")
    return names


def _wait_for_services(app: App, patience: float = 30.0) -> None:
    from asyncevents.core.log import get_logger
    from asyncevents.core.retry.outage import through_outage

    log = get_logger("asyncevents.cli")

    # A worker started while the database or broker restarts (a deploy, a
    # failover) waits for them a while instead of exiting at once.
    def check() -> None:
        app.store  # noqa: B018 - opens and checks the schema
        app.transport.check()

    def waiting(exc: Exception, wait: float) -> None:
        log.warning("waiting for the database and the broker", error=str(exc), retry_in=wait)

    through_outage(check, patience=patience, first=0.5, longest=5.0, on_retry=waiting)


@cli.command()
@json_option
def sinks(as_json: bool) -> None:
    """Installed sinks, and plugins that failed to load.

    A sink whose distribution's extra is not installed (``eventbridge``
    without boto3) is listed under its plugin's name as ``needs
    asyncevents[aws]``: not a failure, an install away.
    """
    plugins = get_app().plugins
    rows = [
        {"name": s.name, "plugin": s.plugin, "distribution": s.distribution,
         "version": s.version, "status": "installed"}
        for s in sorted(plugins.sinks().values(), key=lambda s: s.name)
    ]
    unavailable = [{"plugin": m.plugin, "distribution": m.distribution, "version": m.version,
                    "needs": m.needs, "missing": m.module} for m in plugins.unavailable]
    failures = [{"plugin": f.plugin, "distribution": f.distribution, "error": f.error}
                for f in plugins.failures]
    if as_json:
        print_json({"sinks": rows, "unavailable": unavailable, "failed": failures})
        return
    shown = rows + [{"name": m["plugin"], "plugin": m["plugin"],
                     "distribution": m["distribution"], "version": m["version"],
                     "status": f"needs {m['needs']} (pip install '{m['needs']}')"}
                    for m in unavailable]
    print_table(sorted(shown, key=lambda row: row["name"]),
                ("name", "distribution", "version", "plugin", "status"), title="Sinks")
    if failures:
        print_table(failures, ("plugin", "distribution", "error"), title="Failed plugins")


@cli.command()
@json_option
def events(as_json: bool) -> None:
    """The event catalog."""
    catalog = get_app().catalog
    rows = [{"name": name, "description": d.description, "resolver": d.resolver,
             "deprecated": d.deprecated, "schema_file": d.schema_file,
             "schema": catalog.schemas[name].schema if name in catalog.schemas else None}
            for name, d in sorted(catalog.definitions.items())]
    if as_json:
        print_json(rows)
    else:
        for row in rows:
            row["schema"] = row["schema_file"] or ("inline" if row["schema"] else "")
            row["deprecated"] = "deprecated" if row["deprecated"] else ""
        print_table(rows, ("name", "description", "resolver", "schema", "deprecated"),
                    title="Events")
        if not catalog.strict:
            console.print("strict_events is off: any event name may be published")


@cli.command()
@click.option("--days", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Keep deliveries younger than this.")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@json_option
def cleanup(days: float, dry_run: bool, as_json: bool) -> None:
    """Remove delivered and dead deliveries (and their attempts) older than --days."""
    count = get_app().cleanup(days, dry_run=dry_run)
    key = "would_remove" if dry_run else "removed"
    if as_json:
        print_json({key: count})
    else:
        console.print(f"{count} deliveries {'would be ' if dry_run else ''}removed")


@cli.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from asyncevents.core.store import Store

    app = get_app()
    store = Store.open(app.settings.database_url, auto_migrate=True)
    try:
        done = store.migrate()
    finally:
        store.close()
    if store.opened_migration is not None:  # open() created or upgraded it already
        done = replace(done, before=store.opened_migration.before)
    console.print(done.describe())


@cli.command()
@click.option("--events", "count", type=click.IntRange(min=1), default=5, show_default=True,
              help="How many events to publish.")
@click.option("--fail-first", is_flag=True,
              help="Make the receiver fail the first try of each event, to show retries.")
def demo(count: int, fail_first: bool) -> None:
    """The whole system on the embedded SQLite default, end to end."""
    from asyncevents.cli.demo import run_demo

    run_demo(count=count, fail_first=fail_first)
