"""Lucene-style search over deliveries, and subscription filters over payloads.

One query language, parsed by luqum into a small typed tree (:mod:`.ir`),
compiled to parameterised SQL for SQLite, PostgreSQL and MySQL/MariaDB
(:mod:`.sql`) or evaluated in Python (:mod:`.evaluate`); both agree.
"""

from asyncevents.core.search.query import (
    FilterPredicate,
    SearchPage,
    check_cursor,
    check_query,
    compile_filter,
    count_deliveries,
    iter_deliveries,
    search_deliveries,
)

__all__ = [
    "FilterPredicate",
    "SearchPage",
    "check_cursor",
    "check_query",
    "compile_filter",
    "count_deliveries",
    "iter_deliveries",
    "search_deliveries",
]
