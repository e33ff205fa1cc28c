"""``asyncevents search``, ``trace`` and ``replay``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import click
from rich.progress import Progress

from asyncevents.cli.context import get_app, json_option
from asyncevents.cli.output import console, print_csv, print_json, print_table
from asyncevents.core import search as engine
from asyncevents.core.search.results import SEARCH_FIELDS, search_row, trace_document

__all__ = ["replay", "search", "trace"]


def _rows(query: str, limit: int | None) -> Iterator[dict[str, Any]]:
    app = get_app()
    if limit is None:
        for delivery in engine.iter_deliveries(app.store, query):
            yield search_row(delivery)
        return
    for delivery in engine.search_deliveries(app.store, query, limit=limit).items:
        yield search_row(delivery)


@click.command()
@click.argument("query", default="*")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many, newest first.")
@click.option("--all", "everything", is_flag=True, help="Every match (streamed; no limit).")
@click.option("--json", "fmt", flag_value="json", help="A JSON array.")
@click.option("--jsonl", "fmt", flag_value="jsonl", help="JSON lines.")
@click.option("--csv", "fmt", flag_value="csv", help="CSV with a header line.")
def search(query: str, limit: int, everything: bool, fmt: str | None) -> None:
    """Deliveries matching a Lucene QUERY (e.g. 'status:dead AND event_name:sales.*')."""
    engine.check_query(query)
    rows = _rows(query, None if everything else limit)
    if fmt == "csv":
        print_csv(rows, SEARCH_FIELDS)
    elif fmt == "jsonl":
        for row in rows:
            sys.stdout.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
    elif fmt == "json":
        # Written item by item so an export of every match needs no list in memory.
        sys.stdout.write("[")
        for i, row in enumerate(rows):
            sys.stdout.write(("," if i else "") + "\n  " + json.dumps(row, default=str))
        sys.stdout.write("\n]\n")
    else:
        print_table(rows, SEARCH_FIELDS[:-1], title="Deliveries")


@click.command()
@click.argument("delivery_id", metavar="UUID")
@json_option
def trace(delivery_id: str, as_json: bool) -> None:
    """Every attempt of one delivery."""
    doc = trace_document(get_app().store, delivery_id)
    if as_json:
        print_json(doc)
        return
    console.print(f"delivery  {doc['uuid']}  ({doc['status']})")
    console.print(f"event     {doc['event_name']}  ({doc['event_id']})")
    console.print(f"to        {doc['sink']} {doc['recipient']}  "
                  f"(subscription {doc['subscription_id']})")
    if doc["next_attempt_at"]:
        console.print(f"next try  {doc['next_attempt_at']}")
    print_table(doc["attempts"], ("number", "started_at", "success", "status_code",
                                  "duration_ms", "error", "response"), title="Attempts")
    console.print("payload:")
    print_json(doc["data"])


@click.command()
@click.argument("delivery_ids", nargs=-1, metavar="UUID...")
@click.option("--query", default=None, help="Replay every delivery matching this query.")
@click.option("--dry-run", is_flag=True, help="Only count what would be replayed.")
@json_option
def replay(delivery_ids: tuple[str, ...], query: str | None, dry_run: bool,
           as_json: bool) -> None:
    """Deliver again, under the same uuid, with a fresh retry budget."""
    if bool(delivery_ids) == bool(query):
        raise click.UsageError("give delivery uuids or --query, not both and not neither")
    app = get_app()
    if query is not None:
        engine.check_query(query)
        total = engine.count_deliveries(app.store, query)
        ids: Iterator[str] = (d.id for d in engine.iter_deliveries(app.store, query))
    else:
        for delivery_id in delivery_ids:
            app.store.get_delivery(delivery_id)  # every uuid must exist before any replay
        total, ids = len(delivery_ids), iter(delivery_ids)
    if dry_run:
        if as_json:
            print_json({"would_replay": total})
        else:
            console.print(f"{total} deliveries would be replayed")
        return
    done = 0
    with Progress(console=console, transient=True, disable=total < 100 or as_json) as bar:
        task = bar.add_task("replaying", total=total)
        for delivery_id in ids:
            app.replay(delivery_id)
            done += 1
            bar.advance(task)
    if as_json:
        print_json({"replayed": done})
    else:
        console.print(f"{done} deliveries replayed")
