"""Lucene query text to the typed tree in :mod:`.ir`, with one-line errors.

Parsing uses luqum's thread-safe parser. Implicit operators (``a:1 b:2``)
mean AND. A term or range without a field searches ``event_name``, as in the
Magento module's examples (``*.created``, ``customer.* AND success:false``);
``*`` alone matches everything. A subscription filter tests a payload, so
there a bare term is refused unless the caller evaluates it with the event's
name (``event_names=True``, see :func:`.query.compile_filter`).
"""

from __future__ import annotations

import decimal
import re
from datetime import datetime
from typing import Any

from luqum import tree
from luqum.exceptions import IllegalCharacterError, ParseError
from luqum.thread import parse as luqum_parse

from asyncevents.core.clock import utcnow
from asyncevents.core.events.glob import check_pattern
from asyncevents.core.search import values as v
from asyncevents.core.search.fields import COLUMNS, STATUSES, SUCCESS, Mode, resolve_field
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
from asyncevents.errors import InvalidQuery

__all__ = ["MAX_DEPTH", "MAX_INT", "MAX_LENGTH", "MAX_TERMS", "MIN_INT", "parse_query"]

MAX_LENGTH = 4096
MAX_DEPTH = 32
MAX_TERMS = 64
#: The range of the integer columns (``attempts``): SQL ``INTEGER``, 32 bits.
MIN_INT, MAX_INT = -(2**31), 2**31 - 1

_UNSUPPORTED = {
    tree.Regex: "regular expressions are not supported",
    tree.Fuzzy: "fuzzy search ('~') is not supported",
    tree.Proximity: "proximity search ('~') is not supported",
    tree.Boost: "boosting ('^') is not supported",
}

Field = Column | JsonPath | str

#: ``items[0]``: a position written as in JavaScript or JSONPath (a syntax error to Lucene).
_BRACKETS = re.compile(r"[A-Za-z0-9_]\[[0-9*]*\]")

#: Bare words that look like operators but are not ones to luqum.
_NOT_OPERATORS = frozenset({"and", "or", "not", "&&", "||", "!"})


def _at(item: Any) -> str:
    pos = getattr(item, "pos", None)
    return f" at position {pos}" if pos is not None else ""


def _syntax_error(exc: ParseError) -> InvalidQuery:
    text = str(exc)
    if isinstance(exc, IllegalCharacterError):
        match = re.search(r"Illegal character (.*) at position (\d+)", text, re.DOTALL)
        if match and match[1].startswith("'\""):
            return InvalidQuery(f"syntax error at position {match[2]}: unclosed quote")
        if match:
            return InvalidQuery(
                f"syntax error at position {match[2]}: unexpected {v.show(match[1][1:-1])}"
            )
    match = re.search(r"unexpected\s+'(.*)' at position (\d+)", text, re.DOTALL)
    if match:
        return InvalidQuery(f"syntax error at position {match[2]}: unexpected {v.show(match[1])}")
    if "end of expression" in text:
        return InvalidQuery(
            "syntax error at the end: the query stops early (unclosed parenthesis or range?)"
        )
    return InvalidQuery("syntax error: " + " ".join(text.split()))


class _Converter:
    def __init__(self, mode: Mode, now: datetime, event_names: bool) -> None:
        self.mode = mode
        self.now = now
        self.event_names = mode == "search" or event_names
        self.terms = 0

    def bare(self, item: Any, what: str) -> Column:
        """The field of a term or range written without one: the event name."""
        if self.event_names:
            return _EVENT_NAME
        raise InvalidQuery(
            f"{what}{_at(item)} has no field: a subscription filter tests the payload, so "
            "write a payload field (e.g. customer.email:...); choose events with the "
            "subscription's event pattern (e.g. '*.created')"
        )

    def node(self, item: Any, field: tuple[Field, Any] | None, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise InvalidQuery(f"query nested too deeply{_at(item)}: at most {MAX_DEPTH} levels")
        if isinstance(item, (tree.AndOperation, tree.UnknownOperation)):
            return And(tuple(self.node(o, field, depth + 1) for o in item.operands))
        if isinstance(item, tree.OrOperation):
            return Or(tuple(self.node(o, field, depth + 1) for o in item.operands))
        if isinstance(item, (tree.Not, tree.Prohibit)):
            return Not(self.node(item.a, field, depth + 1))
        if isinstance(item, tree.Plus):
            return self.node(item.a, field, depth + 1)
        if isinstance(item, tree.BaseGroup):
            return self.node(item.expr, field, depth + 1)
        if isinstance(item, tree.SearchField):
            if field is not None:
                raise InvalidQuery(
                    f"field {v.show(item.name)}{_at(item)} is inside field "
                    f"{v.show(str(field[1].name))}; write a:x AND b:y instead of a:b:x"
                )
            target = resolve_field(item.name, item.pos, self.mode)
            return self.node(item.expr, (target, item), depth + 1)
        for kind, message in _UNSUPPORTED.items():
            if isinstance(item, kind):
                raise InvalidQuery(f"{message} (at position {item.pos})")
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise InvalidQuery(f"too many terms{_at(item)}: at most {MAX_TERMS}")
        if isinstance(item, (tree.Word, tree.Phrase)):
            if field is None:
                if isinstance(item, tree.Word) and item.value == "*":
                    return MatchAll()
                if isinstance(item, tree.Word) and item.value.lower() in _NOT_OPERATORS:
                    # Lucene's && || and lower-case operators would otherwise quietly
                    # search for an event named "and".
                    raise InvalidQuery(
                        f"{v.show(item.value)}{_at(item)} is not an operator: write AND, OR, "
                        "NOT in capitals (quote the word to search event names for it)"
                    )
                return self.term(self.bare(item, f"term {v.show(item.value)}"), item,
                                 "event_name")
            return self.term(field[0], item, str(field[1].name))
        if isinstance(item, (tree.Range, tree.From, tree.To)):
            if field is None:
                return self.range(self.bare(item, "range"), "event_name", item)
            return self.range(field[0], field[1].name, item)
        raise InvalidQuery(f"unsupported query element {v.show(str(item))}{_at(item)}")

    # -- terms -------------------------------------------------------------------------

    def term(self, target: Field, item: Any, name: str) -> Node:
        phrase = isinstance(item, tree.Phrase)
        text = v.unquote_phrase(item.value) if phrase else v.unescape(item.value)
        pieces = () if phrase else v.wildcard_pieces(item.value)
        wild = any(kind != "lit" for kind, _ in pieces)
        if wild and pieces == (("any", ""),):
            return MatchAll() if target == SUCCESS else Exists(_target(target))
        if wild:
            try:
                check_pattern(pieces)
            except ValueError as exc:
                raise InvalidQuery(f"{name}{_at(item)}: {exc}") from None
        if isinstance(target, JsonPath):
            if wild:
                return Like(target, pieces)
            if phrase:
                return Equals(target, text)
            boolean = {"true": True, "false": False}.get(text)
            return Equals(target, text, v.parse_number(text), boolean)
        if isinstance(target, str):
            if wild or text not in ("true", "false"):
                raise InvalidQuery(f"success is true or false, not {v.show(item.value)}{_at(item)}")
            delivered = Equals(_STATUS, "delivered")
            return delivered if text == "true" else Not(delivered)
        if wild:
            if target.kind != "text":
                raise InvalidQuery(
                    f"wildcards only work on text fields, not {target.name}{_at(item)}"
                )
            return Like(target, pieces)
        if target.kind == "int":
            return Equals(target, None, self.integer(target, text, item))
        if target.kind == "datetime":
            start, end = self.date(target, text, item)
            return Range(target, start, end, True, False)
        if target.name == "status" and text not in STATUSES:
            raise InvalidQuery(
                f"unknown status {v.show(text)}{_at(item)}; statuses: {', '.join(STATUSES)}"
            )
        return Equals(target, text)

    def integer(self, target: Column, text: str, item: Any) -> int:
        number = v.parse_number(text)
        if not isinstance(number, int):
            raise InvalidQuery(f"{target.name} needs an integer, not {v.show(text)}{_at(item)}")
        if not MIN_INT <= number <= MAX_INT:
            # The column is a 32-bit INTEGER: PostgreSQL refuses a larger parameter.
            raise InvalidQuery(f"{target.name} is between {MIN_INT} and {MAX_INT}, not "
                               f"{v.show(text)}{_at(item)}")
        return number

    def date(self, target: Column, text: str, item: Any) -> v.DateSpan:
        try:
            span = v.parse_date(text, self.now)
        except v.DateOutOfRange:
            raise InvalidQuery(
                f"date {v.show(text)} for {target.name}{_at(item)} is out of range: it must "
                "fit between 0001-01-01 and 9999-12-31 (UTC)"
            ) from None
        if span is None:
            raise InvalidQuery(
                f"invalid date {v.show(text)} for {target.name}{_at(item)}: use an ISO date or "
                "datetime (2026-01-31, 2026-01-31T12:00:00Z), now, now-1d or now/d"
            )
        return span

    # -- ranges ------------------------------------------------------------------------

    def range(self, target: Field, name: str, item: Any) -> Node:
        if isinstance(item, tree.Range):
            low, high = _bound(item.low), _bound(item.high)
            inc_low, inc_high = item.include_low, item.include_high
        elif isinstance(item, tree.From):
            low, high, inc_low, inc_high = _bound(item.a), None, item.include, True
        else:
            low, high, inc_low, inc_high = None, _bound(item.a), True, item.include
        if isinstance(target, str):
            raise InvalidQuery(f"success takes true or false, not a range{_at(item)}")
        if low is None and high is None:
            return Exists(target)
        if isinstance(target, JsonPath):
            lo_n, hi_n = _number(low), _number(high)
            if (low is None or lo_n is not None) and (high is None or hi_n is not None):
                return Range(target, lo_n, hi_n, inc_low, inc_high)
            return Range(target, _text(low), _text(high), inc_low, inc_high)
        if target.kind == "text":
            return Range(target, _text(low), _text(high), inc_low, inc_high)
        if target.kind == "int":
            lo_i = None if low is None else self.integer(target, low[0], item)
            hi_i = None if high is None else self.integer(target, high[0], item)
            return Range(target, lo_i, hi_i, inc_low, inc_high)
        start = end = None
        if low is not None:
            span = self.date(target, low[0], item)
            start = span[0] if inc_low else span[1]
        if high is not None:
            span = self.date(target, high[0], item)
            end = span[1] if inc_high else span[0]
        return Range(target, start, end, True, False)


_STATUS = COLUMNS["status"]
_EVENT_NAME = COLUMNS["event_name"]


def _target(target: Field) -> Column | JsonPath:
    assert not isinstance(target, str)
    return target


def _number(bound: tuple[str, bool] | None) -> int | float | None:
    return None if bound is None or bound[1] else v.parse_number(bound[0])


def _text(bound: tuple[str, bool] | None) -> str | None:
    return None if bound is None else bound[0]


def _bound(item: Any) -> tuple[str, bool] | None:
    """A range bound as (text, is_phrase); ``None`` for ``*``."""
    if isinstance(item, tree.Prohibit) and isinstance(item.a, tree.Word):
        return "-" + v.unescape(item.a.value), False
    if isinstance(item, tree.Phrase):
        return v.unquote_phrase(item.value), True
    if isinstance(item, tree.Word):
        return (None if item.value == "*" else (v.unescape(item.value), False))
    raise InvalidQuery(f"invalid range bound {v.show(str(item))}{_at(item)}")


def parse_query(q: str | None, mode: Mode = "search", now: datetime | None = None, *,
                event_names: bool = False) -> Node:
    """The typed tree of query ``q``; an empty query matches everything.

    A bare term searches ``event_name``; in ``filter`` mode only with
    ``event_names`` (the evaluator will be given the event's name), and is
    refused otherwise. Raises :class:`InvalidQuery` with a one-line message that
    points at the problem.
    """
    if q is None or not q.strip():
        return MatchAll()
    if len(q) > MAX_LENGTH:
        raise InvalidQuery(f"query too long: {len(q)} characters, at most {MAX_LENGTH}")
    if "\x00" in q:
        raise InvalidQuery(f"NUL character at position {q.index(chr(0))}: not allowed in queries")
    try:
        parsed = luqum_parse(q)
    except ParseError as exc:
        error = _syntax_error(exc)
        if _BRACKETS.search(q):
            error = InvalidQuery(f"{error}; array positions are written with dots: "
                                 "data.items.0.sku, not data.items[0].sku")
        raise error from None
    except RecursionError:
        raise InvalidQuery("query nested too deeply") from None
    except decimal.InvalidOperation:
        # luqum turns the number after ~ or ^ into a Decimal while parsing.
        raise InvalidQuery("invalid number after '~' or '^' (fuzzy and boost are not "
                           "supported)") from None
    return _Converter(mode, now or utcnow(), event_names).node(parsed, None, 0)
