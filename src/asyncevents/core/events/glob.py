"""Wildcard patterns matched in linear time: ``*`` (any run) and ``?`` (one character).

Every Python-side wildcard test uses this: event-name patterns, ``[routing]``
keys, and the search engine's Python twin (subscription filters). A regular
expression such as ``a.*a.*a.*b`` backtracks: on a long run of ``a`` it takes
time that grows with the value's length to the power of the number of stars
(a filter ``*a*a*a*a*a*b`` on 3,000 characters never finishes). Here the
pattern is cut at its stars into segments of fixed length (literal text and
``?``); the first must match at the start, the last at the end, and each one
between at its leftmost place after the one before. Taking the leftmost place
is never wrong (it leaves the most room for the rest), so nothing is ever
retried: a test costs at most the value's length times the pattern's (linear
in the value), and a pattern is bounded
(:data:`MAX_PATTERN_LENGTH`, :data:`MAX_STARS`; see :func:`check_pattern`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MAX_PATTERN_LENGTH", "MAX_STARS", "Glob", "check_pattern", "pieces_of"]

#: The longest wildcard pattern a filter or search accepts (its characters, ``*`` included).
MAX_PATTERN_LENGTH = 256
#: The most runs of ``*`` one wildcard pattern may hold (``**`` counts once).
MAX_STARS = 16


class _Segment:
    """A run of the pattern without ``*``: literal text and ``?``, so of one fixed length.

    Its regular expression has no quantifier and no alternation: the engine
    cannot backtrack, and a search costs at most the value's length times the
    segment's.
    """

    __slots__ = ("length", "regex")

    def __init__(self, pieces: list[tuple[str, str]]) -> None:
        self.length = sum(len(text) if kind == "lit" else 1 for kind, text in pieces)
        self.regex = re.compile(
            "".join(re.escape(text) if kind == "lit" else "." for kind, text in pieces),
            re.DOTALL,
        )

    def at(self, text: str, start: int) -> bool:
        """Whether the segment matches ``text`` at ``start``."""
        return self.regex.match(text, start) is not None

    def find(self, text: str, start: int, end: int) -> int:
        """The leftmost place ``>= start`` where it matches inside ``text[:end]``, or -1."""
        found = self.regex.search(text, start, end)
        return -1 if found is None else found.start()


class Glob:
    """A compiled wildcard pattern; :meth:`match` tests a whole value, case-sensitively.

    Built from pieces ``("lit", text)``, ``("any", "")`` for ``*`` and
    ``("one", "")`` for ``?`` (the search engine's :data:`~asyncevents.core.search.ir.Piece`),
    or from a pattern string with :meth:`of`.
    """

    __slots__ = ("_first", "_last", "_middle", "_star")

    def __init__(self, pieces: Iterable[tuple[str, str]]) -> None:
        runs: list[list[tuple[str, str]]] = [[]]
        for kind, text in pieces:
            if kind == "any":
                runs.append([])
            else:
                runs[-1].append((kind, text))
        segments = [_Segment(run) for run in runs]
        self._star = len(segments) > 1
        self._first = segments[0]
        self._last = segments[-1]
        self._middle = tuple(s for s in segments[1:-1] if s.length)

    @classmethod
    def of(cls, pattern: str, *, one: bool = False) -> Glob:
        """The glob a pattern string spells: ``*`` any run, and ``?`` one character if ``one``."""
        return cls(pieces_of(pattern, one=one))

    def match(self, text: str) -> bool:
        """Whether the whole of ``text`` matches the pattern."""
        first, last = self._first, self._last
        if not self._star:
            return len(text) == first.length and first.at(text, 0)
        end = len(text) - last.length
        if end < first.length or not first.at(text, 0) or not last.at(text, end):
            return False
        position = first.length
        for segment in self._middle:
            found = segment.find(text, position, end)
            if found < 0:
                return False
            position = found + segment.length
        return True


def pieces_of(pattern: str, *, one: bool = False) -> list[tuple[str, str]]:
    """A pattern string as pieces: ``*`` any run, ``?`` one character if ``one``, else text."""
    pieces: list[tuple[str, str]] = []
    literal: list[str] = []
    for char in pattern:
        if char == "*" or (one and char == "?"):
            if literal:
                pieces.append(("lit", "".join(literal)))
                literal = []
            pieces.append(("any" if char == "*" else "one", ""))
        else:
            literal.append(char)
    if literal:
        pieces.append(("lit", "".join(literal)))
    return pieces


def check_pattern(pieces: Iterable[tuple[str, str]]) -> None:
    """Raise ``ValueError`` (a short reason) when a pattern is too large to accept.

    At most :data:`MAX_PATTERN_LENGTH` characters and :data:`MAX_STARS` runs of
    ``*``: a match costs the value's length times the pattern's.
    """
    length = stars = 0
    previous = ""
    for kind, text in pieces:
        length += len(text) if kind == "lit" else 1
        if kind == "any" and previous != "any":
            stars += 1
        previous = kind
    if length > MAX_PATTERN_LENGTH:
        raise ValueError(f"the wildcard pattern is {length} characters long, "
                         f"at most {MAX_PATTERN_LENGTH}")
    if stars > MAX_STARS:
        raise ValueError(f"the wildcard pattern has {stars} '*' wildcards, at most {MAX_STARS}")
