"""Printing for the CLI: JSON when asked, rich tables otherwise."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["console", "print_csv", "print_json", "print_table"]

# Not a terminal (a pipe, a CI log): wide enough that uuids and timestamps stay whole.
console = Console(highlight=False, markup=False,
                  width=None if sys.stdout.isatty() else 200)


def print_json(data: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[str], title: str = "") -> None:
    """A table of ``columns`` picked from each row."""
    table = Table(title=title or None)
    for column in columns:
        table.add_column(column, overflow="fold")
    count = 0
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
        count += 1
    if count:
        console.print(table)
    else:
        console.print(f"no {title.lower() or 'rows'}")


def print_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """CSV with a header line, streamed row by row."""
    writer = csv.writer(sys.stdout)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)
