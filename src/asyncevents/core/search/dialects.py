"""How each database spells what search needs: payload values at a path, types,
exact (code point, case-sensitive, no padding) text comparison, wildcards.

Values reach the database only as bound parameters. Payload paths become JSON
path strings (SQLite, MySQL) only after ``fields`` checked every segment
against ``[A-Za-z0-9_-]``; they are bound too. PostgreSQL uses ``->`` with the
key as a bound parameter.

A numeric segment after a key (``items.0``) is a position (see
:attr:`.ir.JsonPath.steps`): it picks one element of an array, or the key
``"0"`` of an object, chosen by the value's JSON type at run time (SQLite and
MySQL paths ``$[0]`` / ``$."0"``, PostgreSQL ``jsonb_extract_path``, which does
both). Where a step needs the picked value more than once it is held in a
one-row table first, so the SQL grows linearly with the number of positions.

On PostgreSQL an exact payload term also gets a pre-filter that the GIN
``jsonb_path_ops`` index on the payload answers (migration 0004): ``payload @?
:jsonpath``, a lax SQL/JSON path whose values are JSON-encoded into the path,
which is itself one bound parameter. It only narrows: every row the exact test
accepts, it accepts (see :func:`equals_jsonpath`).
"""

from __future__ import annotations

import json
import math
import re
import typing
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Numeric,
    String,
    Text,
    and_,
    case,
    cast,
    column,
    func,
    literal,
    literal_column,
    null,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB, JSONPATH
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from asyncevents.core.search.ir import Equals, JsonPath, Piece

__all__ = ["Flavor", "equals_jsonpath", "flavor_for"]

Expr = ColumnElement[Any]


def like_pattern(pieces: tuple[Piece, ...]) -> str:
    """A LIKE pattern with ``!`` as the escape character."""
    out = []
    for kind, text in pieces:
        if kind == "lit":
            out.append(text.replace("!", "!!").replace("%", "!%").replace("_", "!_"))
        else:
            out.append("%" if kind == "any" else "_")
    return "".join(out)


def glob_pattern(pieces: tuple[Piece, ...]) -> str:
    """A SQLite GLOB pattern (case-sensitive); ``*``, ``?`` and ``[`` escaped as classes."""
    out = []
    for kind, text in pieces:
        if kind == "lit":
            out.append("".join(f"[{c}]" if c in "*?[" else c for c in text))
        else:
            out.append("*" if kind == "any" else "?")
    return "".join(out)


_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _jsonpath_number(value: int | float) -> str:
    """A number as a jsonpath literal: plain digits, the exact decimal a float prints as."""
    if isinstance(value, int):
        return str(value)
    return format(Decimal(repr(value)), "f")


def equals_jsonpath(keys: tuple[str, ...], text: str | None, number: int | float | None = None,
                    boolean: bool | None = None) -> str | None:
    """A lax SQL/JSON path that holds for every payload where an exact term matches.

    ``lax $."k1"."k2" ? (@ == "text" || @ == 42 || @ == true)``. Lax mode unwraps
    an array before each key and in the filter, as the search's path rules do
    (one level; where lax mode unwraps more, the path only accepts more), and
    its ``==`` is the exact test: strings byte for byte, numbers by numeric
    value, booleans as booleans. Strings are JSON string literals, which the
    jsonpath grammar reads back unchanged; numbers are plain decimals. ``None``
    when no form is given (nothing to narrow on).

    Raises ``ValueError`` for a key that is not 1-64 of ``[A-Za-z0-9_-]``.
    """
    tests = []
    if text is not None:
        tests.append("@ == " + json.dumps(text, ensure_ascii=False))
    if number is not None:
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"not a finite number: {number!r}")
        tests.append("@ == " + _jsonpath_number(number))
    if boolean is not None:
        tests.append("@ == " + ("true" if boolean else "false"))
    if not tests or not keys:
        return None
    for key in keys:
        if not _KEY.fullmatch(key):
            raise ValueError(f"invalid payload key {key!r}")
    path = "".join(f'."{key}"' for key in keys)
    return f"lax ${path} ? ({' || '.join(tests)})"


class Flavor:
    """The operations of one database family; subclasses fill them in."""

    def elements(self, payload: Expr, keys: tuple[str, ...]) -> tuple[FromClause, Any]:
        """A FROM clause with one row per payload value at ``keys``, and a handle on it."""
        raise NotImplementedError

    def is_string(self, e: Any) -> Expr:
        """The element is a JSON string."""
        raise NotImplementedError

    def string(self, e: Any) -> Expr:
        """The element's text, compared exactly."""
        raise NotImplementedError

    def is_number(self, e: Any) -> Expr:
        """The element is a JSON number."""
        raise NotImplementedError

    def number(self, e: Any) -> Expr:
        """The element as a number (only meaningful when it is one)."""
        raise NotImplementedError

    def number_param(self, value: int | float) -> Any:
        """A number as a bound value."""
        return value

    def is_bool(self, e: Any, value: bool) -> Expr:
        """The element is the JSON boolean ``value``."""
        raise NotImplementedError

    def not_null(self, e: Any) -> Expr:
        """The element is not JSON null."""
        raise NotImplementedError

    def exact(self, expr: Expr) -> Expr:
        """``expr`` compared in code point order, case-sensitive, without padding."""
        return expr

    def narrow_equals(self, payload: Expr, node: Equals, keys: tuple[str, ...]) -> Expr | None:
        """An index-friendly condition every payload matching ``node`` at ``keys`` meets.

        ``None`` (the default) when the database has none; the exact test is
        always kept beside it, so the pre-filter may only drop rows it rejects.
        """
        return None

    def equals(self, col: Expr, text: str) -> Expr:
        """A text column equals ``text`` exactly (index-friendly)."""
        return col == text

    def like(self, expr: Expr, pieces: tuple[Piece, ...]) -> Expr:
        """Text matches a wildcard pattern, case-sensitive."""
        return self.exact(expr).like(like_pattern(pieces), escape="!")

    def like_column(self, col: Expr, pieces: tuple[Piece, ...]) -> Expr:
        """A text column matches a wildcard pattern (index-friendly when possible)."""
        return self.like(col, pieces)


def _col(e: Any, name: str) -> Expr:
    """Column ``name`` of a table-valued function."""
    return typing.cast(Expr, e.c[name])


def _join(frm: FromClause | None, tv: FromClause) -> FromClause:
    return tv if frm is None else frm.join(tv, true())


class SQLiteFlavor(Flavor):
    """SQLite JSON1: ``json_each`` over each step; GLOB for wildcards."""

    def elements(self, payload: Expr, keys: tuple[str, ...]) -> tuple[FromClause, Any]:
        """Nested ``json_each`` (arrays wrapped with ``json_array`` when not arrays)."""
        src, frm, prev = payload, None, None
        for key, indexes in JsonPath(keys).steps:
            path = literal(f'$."{key}"', String())
            if prev is not None:
                is_object = _col(prev, "type") == "object"
                src = case((is_object, _col(prev, "value")), else_=literal("{}"))
            child: Expr = src.op("->")(path)
            if indexes:
                frm, child = self._positions(frm, child, indexes)
                is_array = func.json_type(child) == "array"
            else:
                is_array = func.json_type(src, path) == "array"
            wrapped = case((is_array, child), else_=func.json_array(child))
            prev = func.json_each(wrapped).table_valued("value", "type", joins_implicitly=True)
            frm = _join(frm, prev)
        assert frm is not None
        return frm, prev

    @staticmethod
    def _positions(frm: FromClause | None, value: Expr,
                   indexes: tuple[int, ...]) -> tuple[FromClause | None, Expr]:
        """``value`` (JSON text) at each position: ``$[i]`` of an array, ``$."i"`` of an object."""
        for n, index in enumerate(indexes):
            if n:
                held = func.json_each(func.json_array(value)).table_valued(
                    "value", "type", joins_implicitly=True)
                frm = _join(frm, held)
                value = case((_col(held, "type").in_(("array", "object")), _col(held, "value")),
                             else_=null())
            at = case((func.json_type(value) == "array", literal(f"$[{index}]", String())),
                      (func.json_type(value) == "object", literal(f'$."{index}"', String())),
                      else_=null())
            value = value.op("->")(at)
        return frm, value

    def is_string(self, e: Any) -> Expr:
        return _col(e, "type") == "text"

    def string(self, e: Any) -> Expr:
        return _col(e, "value")

    def is_number(self, e: Any) -> Expr:
        return _col(e, "type").in_(("integer", "real"))

    def number(self, e: Any) -> Expr:
        return _col(e, "value")

    def is_bool(self, e: Any, value: bool) -> Expr:
        return _col(e, "type") == ("true" if value else "false")

    def not_null(self, e: Any) -> Expr:
        return _col(e, "type") != "null"

    def like(self, expr: Expr, pieces: tuple[Piece, ...]) -> Expr:
        """GLOB: SQLite's LIKE ignores case."""
        return expr.op("GLOB", is_comparison=True)(literal(glob_pattern(pieces), String()))


class PostgresFlavor(Flavor):
    """PostgreSQL jsonb: ``->`` with bound keys and ``jsonb_array_elements``."""

    def elements(self, payload: Expr, keys: tuple[str, ...]) -> tuple[FromClause, Any]:
        """Nested ``jsonb_array_elements`` (non-arrays wrapped with ``jsonb_build_array``)."""
        src, frm, prev = payload, None, None
        for key, indexes in JsonPath(keys).steps:
            child: Expr = src.op("->", return_type=JSONB)(cast(literal(key, Text()), Text()))
            if indexes:
                # Each path element is an array position or an object key, as the value is.
                child = func.jsonb_extract_path(
                    child, *(cast(literal(str(i), Text()), Text()) for i in indexes),
                    type_=JSONB)
            wrapped = case((func.jsonb_typeof(child) == "array", child),
                           else_=func.jsonb_build_array(child, type_=JSONB))
            prev = func.jsonb_array_elements(wrapped).table_valued(
                column("value", JSONB), joins_implicitly=True)
            frm = _join(frm, prev)
            src = _col(prev, "value")
        assert frm is not None
        return frm, prev

    def is_string(self, e: Any) -> Expr:
        return func.jsonb_typeof(_col(e, "value")) == "string"

    def string(self, e: Any) -> Expr:
        return _col(e, "value").op("#>>", return_type=Text)(literal_column("'{}'"))

    def is_number(self, e: Any) -> Expr:
        return func.jsonb_typeof(_col(e, "value")) == "number"

    def number(self, e: Any) -> Expr:
        return case((self.is_number(e), cast(self.string(e), Numeric())), else_=null())

    def number_param(self, value: int | float) -> Any:
        """Floats as the decimal they print as, compared exactly with jsonb numerics."""
        return value if isinstance(value, int) else literal(Decimal(repr(value)), Numeric())

    def is_bool(self, e: Any, value: bool) -> Expr:
        return and_(func.jsonb_typeof(_col(e, "value")) == "boolean",
                    self.string(e) == ("true" if value else "false"))

    def not_null(self, e: Any) -> Expr:
        return func.jsonb_typeof(_col(e, "value")) != "null"

    def exact(self, expr: Expr) -> Expr:
        """The "C" collation: byte order of UTF-8, which is code point order."""
        return expr.collate("C")

    def narrow_equals(self, payload: Expr, node: Equals, keys: tuple[str, ...]) -> Expr | None:
        """``payload @? CAST(:path AS jsonpath)``: the GIN ``jsonb_path_ops`` index answers it.

        None for a path with positions: a lax jsonpath has no step that is an
        array position and an object key at once, so it could drop a match.
        """
        if JsonPath(keys).positional:
            return None
        path = equals_jsonpath(keys, node.text, node.number, node.boolean)
        if path is None:
            return None
        return payload.op("@?", is_comparison=True)(cast(literal(path, Text()), JSONPATH))

    def like(self, expr: Expr, pieces: tuple[Piece, ...]) -> Expr:
        """LIKE is case-sensitive on PostgreSQL."""
        return expr.like(like_pattern(pieces), escape="!")


class _JsonTable(FunctionElement[Any]):
    """``JSON_TABLE(doc, '$[*]' COLUMNS (j JSON, v exact text))``: one row per element."""

    name = "json_table"
    inherit_cache = True


class _Exact(FunctionElement[str]):
    """Text converted to utf8mb4 with a binary, no-pad collation."""

    name = "exact_text"
    type = String()
    inherit_cache = True


class _Double(FunctionElement[float]):
    """``CAST(x AS DOUBLE)``."""

    name = "as_double"
    inherit_cache = True


def _binary_collation(compiler: SQLCompiler) -> str:
    return "utf8mb4_nopad_bin" if getattr(compiler.dialect, "is_mariadb", False) \
        else "utf8mb4_0900_bin"


@compiles(_JsonTable)
def _compile_json_table(element: _JsonTable, compiler: SQLCompiler, **kw: Any) -> str:
    doc = compiler.process(next(iter(element.clauses)), **kw)
    collation = _binary_collation(compiler)
    return (f"JSON_TABLE({doc}, '$[*]' COLUMNS (j JSON PATH '$', "
            f"v LONGTEXT CHARACTER SET utf8mb4 COLLATE {collation} PATH '$'))")


@compiles(_Exact)
def _compile_exact(element: _Exact, compiler: SQLCompiler, **kw: Any) -> str:
    inner = compiler.process(next(iter(element.clauses)), **kw)
    return f"CONVERT({inner} USING utf8mb4) COLLATE {_binary_collation(compiler)}"


@compiles(_Double)
def _compile_double(element: _Double, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(next(iter(element.clauses)), **kw)} AS DOUBLE)"


class MySQLFlavor(Flavor):
    """MySQL 8 / MariaDB: ``JSON_EXTRACT`` with validated paths, ``JSON_TABLE`` rows."""

    _NUMBER_TYPES = ("INTEGER", "DOUBLE", "DECIMAL", "UNSIGNED INTEGER")

    def elements(self, payload: Expr, keys: tuple[str, ...]) -> tuple[FromClause, Any]:
        """Nested ``JSON_TABLE`` (non-arrays wrapped with ``JSON_ARRAY``)."""
        src, frm, prev = payload, None, None
        for key, indexes in JsonPath(keys).steps:
            child: Expr = func.json_extract(src, literal(f'$."{key}"', String()))
            if indexes:
                frm, child = self._positions(frm, child, indexes)
            wrapped = case((func.json_type(child) == "ARRAY", child), else_=func.json_array(child))
            prev = _JsonTable(wrapped).table_valued("j", "v", joins_implicitly=True)
            frm = _join(frm, prev)
            src = _col(prev, "j")
        assert frm is not None
        return frm, prev

    @staticmethod
    def _positions(frm: FromClause | None, value: Expr,
                   indexes: tuple[int, ...]) -> tuple[FromClause | None, Expr]:
        """``value`` at each position in turn: ``$[i]`` of an array, ``$."i"`` of an object.

        The path is chosen by the JSON type (MySQL would read ``$[0]`` of an
        object as the object itself); ``JSON_EXTRACT`` stays the outer call so
        that MariaDB still knows the result is JSON.
        """
        for n, index in enumerate(indexes):
            if n:
                held = _JsonTable(func.json_array(value)).table_valued(
                    "j", "v", joins_implicitly=True)
                frm = _join(frm, held)
                value = _col(held, "j")
            at = case((func.json_type(value) == "ARRAY", literal(f"$[{index}]", String())),
                      (func.json_type(value) == "OBJECT", literal(f'$."{index}"', String())),
                      else_=null())
            value = func.json_extract(value, at)
        return frm, value

    def is_string(self, e: Any) -> Expr:
        return func.json_type(_col(e, "j")) == "STRING"

    def string(self, e: Any) -> Expr:
        return _col(e, "v")

    def is_number(self, e: Any) -> Expr:
        return func.json_type(_col(e, "j")).in_(self._NUMBER_TYPES)

    def number(self, e: Any) -> Expr:
        return _Double(_col(e, "v"))

    def is_bool(self, e: Any, value: bool) -> Expr:
        return and_(func.json_type(_col(e, "j")) == "BOOLEAN",
                    _col(e, "v") == ("true" if value else "false"))

    def not_null(self, e: Any) -> Expr:
        return func.json_type(_col(e, "j")) != "NULL"

    def exact(self, expr: Expr) -> Expr:
        """utf8mb4 with a binary no-pad collation: ``'a' != 'A'``, ``'a' != 'a '``."""
        return _Exact(expr)

    def equals(self, col: Expr, text: str) -> Expr:
        """The column's own collation first (uses its index), then the exact test."""
        return and_(col == text, _Exact(col) == text)

    def like(self, expr: Expr, pieces: tuple[Piece, ...]) -> Expr:
        """LIKE under the binary collation."""
        return _Exact(expr).like(like_pattern(pieces), escape="!")

    def like_column(self, col: Expr, pieces: tuple[Piece, ...]) -> Expr:
        """The column's own collation first (uses its index), then the exact test."""
        return and_(col.like(like_pattern(pieces), escape="!"), self.like(col, pieces))


def flavor_for(dialect_name: str) -> Flavor:
    """The flavor for a SQLAlchemy dialect name."""
    if dialect_name == "sqlite":
        return SQLiteFlavor()
    if dialect_name == "postgresql":
        return PostgresFlavor()
    if dialect_name in ("mysql", "mariadb"):
        return MySQLFlavor()
    raise NotImplementedError(f"search does not support {dialect_name} databases")
