"""The store is the only door to the database: no transaction, no private name outside it.

Read from the source with ``ast``, so a new caller that opens its own
transaction or reaches into a store module fails here, not in review.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import asyncevents.core.store as store_package

SRC = Path(__file__).resolve().parents[2] / "src" / "asyncevents"
STORE = "core/store/"
# Outside the store, but not the store's tables: the SQL transport's own queue
# tables (kombu's, on the transport URL's database).
OWN_DATABASE = ("core/transport/",)
# Store modules that others may use, and who: the table definitions, for the
# migrations and the search compiler (which builds WHERE clauses over the
# deliveries table; the store runs them), and the engine helpers (driver map,
# SQLite pragmas) that the SQL transport shares for its own database; the queue's
# lease reclaim reads the workers table's definition, to join it in one UPDATE when
# the queue shares the store's database.
ALLOWED = {
    "asyncevents.core.store.schema": ("core/migrations/", "core/search/sql.py",
                                      "core/transport/sql/schema.py"),
    "asyncevents.core.store.engine": ("core/transport/",),
    "asyncevents.core.store.columns": ("core/transport/",),  # the queue table's types
}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if not name.startswith(STORE):
            yield name, ast.parse(path.read_text(encoding="utf-8"), name)


def _under(name: str, places: tuple[str, ...]) -> bool:
    return any(name.startswith(p) if p.endswith("/") else name == p for p in places)


def test_no_transaction_is_opened_outside_the_store() -> None:
    found = [
        f"{name}:{node.lineno}"
        for name, tree in _modules() if not _under(name, OWN_DATABASE)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr == "begin"
    ]
    assert found == []


def _store_imports(tree: ast.Module) -> Iterator[tuple[int, str, list[str]]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module.startswith("asyncevents.core.store")):
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("asyncevents.core.store."):
                    yield node.lineno, alias.name, []


def test_callers_import_the_store_package_only() -> None:
    found = []
    for name, tree in _modules():
        for line, module, names in _store_imports(tree):
            if module == "asyncevents.core.store":
                found += [f"{name}:{line} {n}" for n in names if n.startswith("_")]
            elif not _under(name, ALLOWED.get(module, ())):
                found.append(f"{name}:{line} {module}")
    assert found == []


def test_the_package_exports_a_sorted_all() -> None:
    exported = store_package.__all__
    # The order ruff keeps (RUF022): constants, then classes, then functions.
    assert list(exported) == sorted(exported, key=lambda n: (
        0 if n.isupper() else 1 if n[0].isupper() else 2, n))
    assert "Store" in exported
    for name in exported:
        assert getattr(store_package, name) is not None
        assert not name.startswith("_")


@pytest.mark.parametrize("name", [n for n in dir(store_package.Store) if not n.startswith("_")])
def test_every_public_store_method_is_documented(name: str) -> None:
    assert getattr(store_package.Store, name).__doc__, name
