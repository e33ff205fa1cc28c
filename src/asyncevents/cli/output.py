"""Printing for the CLI: JSON when asked, rich tables otherwise.

rich is imported at the first line printed through it, not with the module
(``asyncevents --help`` prints none).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["console", "print_csv", "print_fields", "print_json", "print_table", "shown"]


class _Console:
    """rich's ``Console``, made at its first use."""

    _made: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._made is None:
            from rich.console import Console

            # Not a terminal (a pipe, a CI log): wide enough that uuids and timestamps stay whole.
            self._made = Console(highlight=False, markup=False,
                                 width=None if sys.stdout.isatty() else 200)
        return getattr(self._made, name)


console = cast("Console", _Console())
"""Where the tables and lines of the CLI are printed (rich, on stdout)."""


def print_json(data: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def shown(value: Any) -> str:
    """A value on a ``key: value`` line: a string as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def print_fields(fields: dict[str, Any]) -> None:
    """One aligned ``key: value`` line per field (see :func:`shown`)."""
    width = max((len(key) for key in fields), default=0)
    for key, value in fields.items():
        console.print(f"{key:>{width}}: {shown(value)}")


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[str], title: str = "") -> None:
    """A table of ``columns`` picked from each row (cells as ``cell`` writes them)."""
    from rich.table import Table

    from asyncevents.core.search.results import cell

    table = Table(title=title or None)
    for column in columns:
        table.add_column(column, overflow="fold")
    count = 0
    for row in rows:
        table.add_row(*(cell(row.get(c)) for c in columns))
        count += 1
    if count:
        console.print(table)
    else:
        console.print(f"no {title.lower() or 'rows'}")


def print_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """CSV with a header line, streamed row by row; formula-like text escaped (``csv_cell``)."""
    from asyncevents.core.search.results import csv_cell

    writer = csv.writer(sys.stdout)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(c)) for c in columns])
