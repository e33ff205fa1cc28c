"""The small typed tree a query compiles to, shared by the SQL and Python evaluators.

Every node is an immutable dataclass. Values are already typed and validated:
nothing in the tree is raw query text that still needs interpreting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = [
    "And",
    "Column",
    "ColumnKind",
    "Equals",
    "Exists",
    "JsonPath",
    "Like",
    "MatchAll",
    "Node",
    "Not",
    "Or",
    "Piece",
    "Range",
    "Step",
    "Target",
    "index_of",
]

ColumnKind = Literal["text", "int", "datetime"]


@dataclass(frozen=True)
class Column:
    """A delivery column: ``name`` as written in queries, ``column`` in the table."""

    name: str
    column: str
    kind: ColumnKind


#: A path segment that can be an array position: ``0`` or a number without leading zeros.
_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")


def index_of(key: str) -> int | None:
    """The array position a path segment names (``"0"`` → 0), or ``None`` for a plain key.

    ``"01"`` and numbers of ten digits or more are only ever object keys.
    """
    return int(key) if _INDEX.fullmatch(key) else None


#: One step of a payload path: a key, then the array positions that follow it.
Step = tuple[str, tuple[int, ...]]


@dataclass(frozen=True)
class JsonPath:
    """A path into the payload. Arrays met at any step are searched element by element.

    A numeric segment after the first (``items.0``) is a position: on an array it
    picks that element (no searching), on an object it is the key ``"0"``.
    """

    keys: tuple[str, ...]

    @property
    def name(self) -> str:
        """The field as written in a search query."""
        return "data." + ".".join(self.keys)

    @property
    def steps(self) -> tuple[Step, ...]:
        """The keys grouped as (key, positions after it): ``a.0.1.b`` is ``(a, (0, 1)), (b, ())``.

        The first segment is always a key (the payload is an object).
        """
        steps: list[tuple[str, list[int]]] = []
        for key in self.keys:
            index = index_of(key)
            if steps and index is not None:
                steps[-1][1].append(index)
            else:
                steps.append((key, []))
        return tuple((key, tuple(indexes)) for key, indexes in steps)

    @property
    def positional(self) -> bool:
        """Whether any segment after the first is an array position."""
        return any(indexes for _, indexes in self.steps)


Target = Column | JsonPath

#: One piece of a wildcard pattern: ("lit", text), ("any", "") for ``*``, ("one", "") for ``?``.
Piece = tuple[Literal["lit", "any", "one"], str]


@dataclass(frozen=True)
class MatchAll:
    """Matches everything (an empty query, ``*``)."""


@dataclass(frozen=True)
class And:
    """Every item matches."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """At least one item matches."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """The item does not match."""

    item: Node


@dataclass(frozen=True)
class Exists:
    """The target has a non-null value (``field:*``)."""

    target: Target


@dataclass(frozen=True)
class Equals:
    """A value equals one of the given forms.

    A string value matches ``text``; a JSON number matches ``number``; a JSON
    boolean matches ``boolean``. Forms that are ``None`` never match.
    """

    target: Target
    text: str | None
    number: int | float | None = None
    boolean: bool | None = None


@dataclass(frozen=True)
class Like:
    """A string value matches a wildcard pattern (case-sensitive, whole value)."""

    target: Target
    pieces: tuple[Piece, ...]


@dataclass(frozen=True)
class Range:
    """A value between bounds; ``None`` is unbounded.

    Bounds are all numbers (matches numbers), all strings (matches strings,
    code point order) or all datetimes (the ``created`` column).
    """

    target: Target
    low: str | int | float | datetime | None
    high: str | int | float | datetime | None
    include_low: bool = True
    include_high: bool = True


Node = MatchAll | And | Or | Not | Exists | Equals | Like | Range
