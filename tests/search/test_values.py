"""Reading values: dates and ``now`` arithmetic, numbers, wildcards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from asyncevents.core.search.values import parse_date, parse_number, wildcard_pieces

NOW = datetime(2026, 3, 18, 15, 42, 7, 123456, tzinfo=UTC)  # a Wednesday


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
        micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize(("text", "start", "end"), [
    ("2026", utc(2026, 1, 1), utc(2027, 1, 1)),
    ("2026-12", utc(2026, 12, 1), utc(2027, 1, 1)),
    ("2026-02-28", utc(2026, 2, 28), utc(2026, 3, 1)),
    ("2026-02-28T10", utc(2026, 2, 28, 10), utc(2026, 2, 28, 11)),
    ("2026-02-28T10:05", utc(2026, 2, 28, 10, 5), utc(2026, 2, 28, 10, 6)),
    ("2026-02-28T10:05:09", utc(2026, 2, 28, 10, 5, 9), utc(2026, 2, 28, 10, 5, 10)),
    ("2026-02-28T10:05:09.5", utc(2026, 2, 28, 10, 5, 9, 500000),
     utc(2026, 2, 28, 10, 5, 9, 600000)),
    ("2026-02-28T10:05:09.123456Z", utc(2026, 2, 28, 10, 5, 9, 123456),
     utc(2026, 2, 28, 10, 5, 9, 123457)),
    ("2026-02-28T10:05:09+02:00", utc(2026, 2, 28, 8, 5, 9), utc(2026, 2, 28, 8, 5, 10)),
    ("2026-02-28 10:05:09-0130", utc(2026, 2, 28, 11, 35, 9), utc(2026, 2, 28, 11, 35, 10)),
    ("now", NOW, NOW + timedelta(microseconds=1)),
    ("now-1d", NOW - timedelta(days=1), NOW - timedelta(days=1, microseconds=-1)),
    ("now+2h-30m", NOW + timedelta(minutes=90), NOW + timedelta(minutes=90, microseconds=1)),
    ("now/d", utc(2026, 3, 18), utc(2026, 3, 19)),
    ("now-1d/d", utc(2026, 3, 17), utc(2026, 3, 18)),
    ("now/h", utc(2026, 3, 18, 15), utc(2026, 3, 18, 16)),
    ("now/w", utc(2026, 3, 16), utc(2026, 3, 23)),
])
def test_dates(text: str, start: datetime, end: datetime) -> None:
    assert parse_date(text, NOW) == (start, end)


@pytest.mark.parametrize("text", ["2026-13-01", "2026-02-30", "26-01-01", "yesterday", "now-1y",
                                  "now/M", "now-", "2026-01-01T25:00", "now-99999999999d", ""])
def test_not_dates(text: str) -> None:
    assert parse_date(text, NOW) is None


@pytest.mark.parametrize(("text", "number"), [
    ("42", 42), ("-3", -3), ("+7", 7), ("7.5", 7.5), ("1e3", 1000.0), (".5", 0.5), ("2.", 2.0),
    ("abc", None), ("1e999", None), ("inf", None), ("nan", None), ("0x10", None),
    (str(2**63), None), ("1_000", None), ("", None),
])
def test_numbers(text: str, number: float | None) -> None:
    assert parse_number(text) == number
    if number is not None:
        assert type(parse_number(text)) is type(number)


def test_wildcards() -> None:
    assert wildcard_pieces("ab*c?") == (("lit", "ab"), ("any", ""), ("lit", "c"), ("one", ""))
    assert wildcard_pieces("a\\*b") == (("lit", "a*b"),)
    assert wildcard_pieces("\\\\*") == (("lit", "\\"), ("any", ""))
    assert wildcard_pieces("*") == (("any", ""),)
