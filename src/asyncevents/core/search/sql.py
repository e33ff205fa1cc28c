"""The typed tree as a SQLAlchemy Core condition on the deliveries table.

Every value is a bound parameter; see :mod:`.dialects` for the per-database
spelling of payload access. A payload test is an ``EXISTS`` over the values
found at its path, so ``NOT`` keeps its meaning on arrays and missing keys.
An exact payload term may also get the flavor's index-friendly pre-filter,
ANDed before the ``EXISTS``: it accepts every row the ``EXISTS`` accepts (and is
never NULL then), so ``pre AND exact`` is ``exact`` under AND, OR and NOT.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Table, and_, false, literal_column, not_, or_, select, true

from asyncevents.core.search.dialects import Flavor, flavor_for
from asyncevents.core.search.ir import (
    And,
    Column,
    Equals,
    Exists,
    JsonPath,
    Like,
    MatchAll,
    Node,
    Not,
    Or,
    Range,
)
from asyncevents.core.store.schema import deliveries

__all__ = ["compile_where"]

Expr = ColumnElement[Any]


def _between(value: Expr, node: Range, low: Any, high: Any) -> Expr:
    tests = []
    if low is not None:
        tests.append(value >= low if node.include_low else value > low)
    if high is not None:
        tests.append(value <= high if node.include_high else value < high)
    return and_(*tests)


class _Compiler:
    def __init__(self, flavor: Flavor, table: Table) -> None:
        self.flavor = flavor
        self.table = table

    def node(self, node: Node) -> Expr:
        if isinstance(node, MatchAll):
            return true()
        if isinstance(node, And):
            return and_(*(self.node(item) for item in node.items))
        if isinstance(node, Or):
            return or_(*(self.node(item) for item in node.items))
        if isinstance(node, Not):
            inner = node.item
            return false() if isinstance(inner, MatchAll) else not_(self.node(inner))
        if isinstance(node.target, JsonPath):
            return self.json(node, node.target)
        return self.column(node, node.target)

    def column(self, node: Exists | Equals | Like | Range, target: Column) -> Expr:
        col = self.table.c[target.column]
        if isinstance(node, Exists):
            return col.is_not(None)
        if isinstance(node, Equals):
            if target.kind == "text":
                assert node.text is not None
                return self.flavor.equals(col, node.text)
            return col == node.number
        if isinstance(node, Like):
            return self.flavor.like_column(col, node.pieces)
        if target.kind == "text":
            return _between(self.flavor.exact(col), node, node.low, node.high)
        return _between(col, node, node.low, node.high)

    def json(self, node: Exists | Equals | Like | Range, target: JsonPath) -> Expr:
        f = self.flavor
        frm, e = f.elements(self.table.c.payload, target.keys)
        test: Expr
        if isinstance(node, Exists):
            test = f.not_null(e)
        elif isinstance(node, Equals):
            forms = []
            if node.text is not None:
                forms.append(and_(f.is_string(e), f.exact(f.string(e)) == node.text))
            if node.number is not None:
                forms.append(and_(f.is_number(e), f.number(e) == f.number_param(node.number)))
            if node.boolean is not None:
                forms.append(f.is_bool(e, node.boolean))
            test = or_(*forms)
        elif isinstance(node, Like):
            test = and_(f.is_string(e), f.like(f.string(e), node.pieces))
        elif isinstance(node.low, str) or isinstance(node.high, str):
            test = and_(f.is_string(e), _between(f.exact(f.string(e)), node, node.low, node.high))
        else:
            low = None if node.low is None else f.number_param(node.low)  # type: ignore[arg-type]
            high = None if node.high is None else f.number_param(node.high)  # type: ignore[arg-type]
            test = and_(f.is_number(e), _between(f.number(e), node, low, high))
        exact = select(literal_column("1")).select_from(frm).where(test).exists()
        if isinstance(node, Equals):
            pre = f.narrow_equals(self.table.c.payload, node, target.keys)
            if pre is not None:
                return and_(pre, exact)
        return exact


def compile_where(node: Node, dialect_name: str, table: Table = deliveries) -> Expr:
    """The WHERE condition for ``node`` on ``table`` (the deliveries table by default)."""
    return _Compiler(flavor_for(dialect_name), table).node(node)
