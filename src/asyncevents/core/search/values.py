"""Reading query values: escapes, wildcards, numbers, dates and ``now`` arithmetic."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone

from asyncevents.core.search.ir import Piece

__all__ = [
    "DateOutOfRange",
    "DateSpan",
    "parse_date",
    "parse_number",
    "show",
    "unescape",
    "unquote_phrase",
    "wildcard_pieces",
]

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT_LIMIT = 2**63

_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:[Tt ](?P<h>\d{2})(?::(?P<mi>\d{2})(?::(?P<s>\d{2})(?P<f>\.\d{1,6})?)?)?)?)?)?"
    r"(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?"
)
_NOW = re.compile(r"now(?P<math>(?:[+-]\d{1,9}[smhdw])*)(?:/(?P<round>[smhdw]))?")
_STEP = re.compile(r"([+-])(\d+)([smhdw])")
_UNITS = {
    "s": timedelta(seconds=1), "m": timedelta(minutes=1), "h": timedelta(hours=1),
    "d": timedelta(days=1), "w": timedelta(weeks=1),
}

#: A span of time ``[start, end)`` that a date value denotes (a day, a second, an instant).
DateSpan = tuple[datetime, datetime]


class DateOutOfRange(ValueError):
    """A well-formed date whose span does not fit between 0001-01-01 and 9999-12-31 UTC."""


def show(text: str, limit: int = 60) -> str:
    """``text`` quoted for a one-line error message, cut when long."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text)


def unescape(raw: str) -> str:
    r"""A word's text with Lucene backslash escapes removed (``\:`` is ``:``)."""
    return re.sub(r"\\(.)", r"\1", raw, flags=re.DOTALL)


def unquote_phrase(raw: str) -> str:
    """A phrase's text, without its quotes and escapes."""
    return unescape(raw[1:-1])


def wildcard_pieces(raw: str) -> tuple[Piece, ...]:
    r"""Split a word on its unescaped ``*`` and ``?``; ``\*`` stays a literal star."""
    pieces: list[Piece] = []
    literal: list[str] = []
    chars = iter(raw)
    for char in chars:
        if char == "\\":
            literal.append(next(chars, ""))
        elif char in "*?":
            if literal:
                pieces.append(("lit", "".join(literal)))
                literal = []
            pieces.append(("any" if char == "*" else "one", ""))
        else:
            literal.append(char)
    if literal:
        pieces.append(("lit", "".join(literal)))
    return tuple(pieces)


def parse_number(text: str) -> int | float | None:
    """The number ``text`` spells (``12``, ``-3.5``, ``1e3``), or ``None``.

    Integers beyond 64 bits and numbers a double cannot hold are not numbers.
    """
    if not _NUMBER.fullmatch(text):
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        value = int(text)
        return value if -_INT_LIMIT < value < _INT_LIMIT else None
    number = float(text)
    return number if math.isfinite(number) else None


def _add_months(moment: datetime, months: int) -> datetime:
    total = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=total // 12, month=total % 12 + 1)


def _date_literal(text: str) -> DateSpan | None:
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    parts = match.groupdict()
    zone = UTC
    if parts["tz"] and parts["tz"] not in "Zz":
        tz = parts["tz"].replace(":", "")
        hours, minutes = int(tz[1:3]), int(tz[3:5] or 0)
        delta = timedelta(hours=hours, minutes=minutes)
        zone = timezone(-delta if tz[0] == "-" else delta)
    fraction = parts["f"] or ""
    try:
        start = datetime(
            int(parts["y"]), int(parts["mo"] or 1), int(parts["d"] or 1), int(parts["h"] or 0),
            int(parts["mi"] or 0), int(parts["s"] or 0),
            int((fraction[1:] + "000000")[:6]) if fraction else 0, tzinfo=zone,
        )
    except ValueError:
        return None
    try:
        end = _span_end(start, parts, fraction)
        return start.astimezone(UTC), end.astimezone(UTC)
    except (ValueError, OverflowError):
        # The span ends after 9999-12-31, or its zone moves it before 0001-01-01.
        raise DateOutOfRange(text) from None


def _span_end(start: datetime, parts: dict[str, str | None], fraction: str) -> datetime:
    """Where the span a date literal spells ends: its year, month, day... later."""
    if parts["mo"] is None:
        return start.replace(year=start.year + 1)
    if parts["d"] is None:
        return _add_months(start, 1)
    if parts["h"] is None:
        return start + timedelta(days=1)
    if parts["mi"] is None:
        return start + timedelta(hours=1)
    if parts["s"] is None:
        return start + timedelta(minutes=1)
    if not fraction:
        return start + timedelta(seconds=1)
    return start + timedelta(microseconds=10 ** (7 - len(fraction)))


def _floor(moment: datetime, unit: str) -> datetime:
    moment = moment.replace(microsecond=0)
    if unit == "s":
        return moment
    moment = moment.replace(second=0)
    if unit == "m":
        return moment
    moment = moment.replace(minute=0)
    if unit == "h":
        return moment
    moment = moment.replace(hour=0)
    if unit == "d":
        return moment
    return moment - timedelta(days=moment.weekday())


def _now_math(text: str, now: datetime) -> DateSpan | None:
    match = _NOW.fullmatch(text)
    if match is None:
        return None
    moment = now
    for sign, amount, unit in _STEP.findall(match["math"]):
        step = _UNITS[unit] * int(amount)
        try:
            moment = moment + step if sign == "+" else moment - step
        except OverflowError:
            return None
    if match["round"]:
        start = _floor(moment, match["round"])
        return start, start + _UNITS[match["round"]]
    return moment, moment + timedelta(microseconds=1)


def parse_date(text: str, now: datetime) -> DateSpan | None:
    """The UTC span a date value denotes, or ``None`` when ``text`` is not a date.

    ``2026-01-02`` is that whole day, ``2026-01-02T10:00`` that minute, ``2026``
    that year; zones are honoured and a missing zone means UTC. ``now`` is an
    instant; ``now-1d``, ``now+2h`` shift it (units s, m, h, d, w) and
    ``now/d``, ``now-1d/d`` mean that whole day (or second, minute, hour, week).
    Raises :class:`DateOutOfRange` for a date whose span does not fit in
    0001-01-01 to 9999-12-31 UTC (``9999`` is a year that ends in 10000).
    """
    try:
        return _date_literal(text) or _now_math(text, now)
    except OverflowError:
        return None
