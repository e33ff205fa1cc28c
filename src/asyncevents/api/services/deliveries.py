"""Deliveries as the API and the console export and replay them."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from typing import Literal

from asyncevents.core.app import App
from asyncevents.core.models import Delivery
from asyncevents.core.search.results import SEARCH_FIELDS, csv_cell, search_row

__all__ = ["export_lines", "replay_all", "started"]


def started(deliveries: Iterator[Delivery]) -> Iterator[Delivery]:
    """``deliveries`` with the first one fetched now: a search that fails (out of time)
    fails before a streamed response has sent its status, as a problem the client sees."""
    first = next(deliveries, None)
    if first is None:
        return iter(())
    return itertools.chain((first,), deliveries)


def export_lines(deliveries: Iterator[Delivery], fmt: Literal["csv", "jsonl"]) -> Iterator[str]:
    """Deliveries as CSV (with a header line) or JSON lines, one row at a time.

    A CSV cell that a spreadsheet would run as a formula is escaped (see
    :func:`~asyncevents.core.search.results.csv_cell`).
    """
    if fmt == "jsonl":
        for delivery in deliveries:
            yield json.dumps(search_row(delivery), default=str, ensure_ascii=False) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(SEARCH_FIELDS)
    yield flush()
    for delivery in deliveries:
        row = search_row(delivery)
        writer.writerow([csv_cell(row[c]) for c in SEARCH_FIELDS])
        yield flush()


def replay_all(app: App, ids: Iterator[str]) -> int:
    """Replay each delivery; return how many."""
    done = 0
    for delivery_id in ids:
        app.replay(delivery_id)
        done += 1
    return done
