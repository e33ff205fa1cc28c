"""Event-name patterns: exact names and ``*`` wildcards (``sales.order.*``, ``*``)."""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["is_pattern", "matches"]


def is_pattern(name: str) -> bool:
    """True when ``name`` holds a wildcard."""
    return "*" in name


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    # ``*`` spans any characters, dots included: ``sales.*`` covers
    # ``sales.order.created`` as Magento's wildcard subscriptions do.
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")


def matches(pattern: str, name: str) -> bool:
    """True when the event ``name`` falls under ``pattern``."""
    if not is_pattern(pattern):
        return pattern == name
    return _compile(pattern).match(name) is not None
