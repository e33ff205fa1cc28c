"""Wildcards in linear time: event-name patterns, routing, subscription filters.

A backtracking regular expression took minutes on ``*a*a*a*a*a*b`` against a
few thousand ``a``; each test below runs such a pattern on 100,000 characters
under pytest-timeout's guard (10 s) and times nothing itself.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncevents.core.events.glob import MAX_PATTERN_LENGTH, MAX_STARS, Glob, check_pattern
from asyncevents.core.events.patterns import matches
from asyncevents.core.events.routing import Router, check_routing
from asyncevents.core.search import check_query, compile_filter
from asyncevents.errors import InvalidQuery

EVIL = "*a*a*a*a*a*b"
LONG = "a" * 100_000


def reference(pattern: str) -> re.Pattern[str]:
    """The backtracking regular expression the glob replaces (right, only slow)."""
    parts = {"*": ".*", "?": "."}
    return re.compile("".join(parts.get(c) or re.escape(c) for c in pattern), re.DOTALL)


@given(st.text("ab?*.\n", max_size=9), st.text("ab.\n", max_size=12))
def test_glob_agrees_with_the_regular_expression(pattern: str, text: str) -> None:
    assert Glob.of(pattern, one=True).match(text) is \
        (reference(pattern).fullmatch(text) is not None)


@pytest.mark.parametrize(("pattern", "text", "expected"), [
    ("", "", True), ("", "a", False), ("*", "", True), ("**", "abc", True),
    ("a*", "a", True), ("*a", "ba", True), ("*a", "ab", False), ("a*a", "a", False),
    ("a*a", "aa", True), ("?", "", False), ("?", "\n", True), ("a?c", "abc", True),
    ("*b??*?a", "baa", False), ("*ab*ab*", "abab", True), ("*ab*ab*", "aba", False),
    ("a.c", "abc", False), ("a+*", "aa", False), ("[a]*", "[a]b", True),  # regex: literal
])
def test_glob_examples(pattern: str, text: str, expected: bool) -> None:
    assert Glob.of(pattern, one=True).match(text) is expected


@pytest.mark.timeout(10)
def test_event_patterns_match_a_long_name_at_once() -> None:
    assert matches("a*a*a*a*a*b", LONG) is False
    assert matches("a*a*a*a*a*b", LONG + "b") is True
    assert matches("*a?a*", LONG) is False  # "?" is literal in event-name patterns
    assert matches("*a?a*", "xa?ay") is True


@pytest.mark.timeout(10)
def test_routing_matches_a_long_name_at_once() -> None:
    router = Router({"a*a*a*a*a*b": "slow", "a*a*a*a*a*c http": "other"})
    assert router.trigger_queue(LONG) == "default"
    assert router.deliver_queue(LONG + "c", "http") == "other"


@pytest.mark.timeout(10)
def test_a_wildcard_filter_tests_a_100000_character_value_at_once() -> None:
    wild = compile_filter(f"customer.note:{EVIL}")
    assert wild({"customer": {"note": LONG}}) is False
    assert wild({"customer": {"note": LONG + "b"}}) is True
    assert compile_filter("note:*a?a?a?a?a?b*")({"note": LONG}) is False
    assert compile_filter("note:*a?a?a?a?a?b*")({"note": LONG + "xb"}) is True
    by_name = compile_filter("a*a*a*a*a*b", event_names=True)
    assert by_name({}, LONG) is False


def test_filters_refuse_oversized_patterns_naming_the_field() -> None:
    compile_filter("note:" + "*a" * MAX_STARS)  # at the bounds: accepted
    compile_filter("note:" + "a" * (MAX_PATTERN_LENGTH - 1) + "*")
    compile_filter("note:" + "a" * 3000)  # no wildcard: an exact test, any length
    with pytest.raises(InvalidQuery, match=r"^customer\.note at position 14: the wildcard "
                                           r"pattern has 17 '\*' wildcards, at most 16$"):
        compile_filter("customer.note:" + "*a" * (MAX_STARS + 1))
    with pytest.raises(InvalidQuery, match=r"^note at position 5: the wildcard pattern is "
                                           r"257 characters long, at most 256$"):
        compile_filter("note:" + "a" * MAX_PATTERN_LENGTH + "*")
    with pytest.raises(InvalidQuery, match=r"^data\.note at position 10: .* 17 '\*'"):
        check_query("data.note:" + "*a" * (MAX_STARS + 1))
    with pytest.raises(InvalidQuery, match=r"^event_name at position 0: .* 17 '\*'"):
        check_query("*a" * (MAX_STARS + 1))


def test_runs_of_stars_count_once() -> None:
    check_pattern([("any", ""), ("any", ""), ("lit", "a")] * MAX_STARS)
    with pytest.raises(ValueError, match="17"):
        check_pattern([("any", ""), ("lit", "a")] * (MAX_STARS + 1))


def test_routing_refuses_an_oversized_pattern() -> None:
    with pytest.raises(ValueError, match=r"routing key .* 17 '\*' wildcards, at most 16"):
        check_routing({"*a" * (MAX_STARS + 1): "bulk"})
    assert check_routing({"*a" * MAX_STARS: "bulk"}) == {"*a" * MAX_STARS: "bulk"}
