"""Deliveries as the API and the console export and replay them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Literal

from asyncevents.core.app import App
from asyncevents.core.models import Delivery
from asyncevents.core.search.results import SEARCH_FIELDS, cell, search_row

__all__ = ["export_lines", "replay_all"]


def export_lines(deliveries: Iterator[Delivery], fmt: Literal["csv", "jsonl"]) -> Iterator[str]:
    """Deliveries as CSV (with a header line) or JSON lines, one row at a time."""
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
        writer.writerow([cell(row[c]) for c in SEARCH_FIELDS])
        yield flush()


def replay_all(app: App, ids: Iterator[str]) -> int:
    """Replay each delivery; return how many."""
    done = 0
    for delivery_id in ids:
        app.replay(delivery_id)
        done += 1
    return done
