"""Event-name patterns: ``sales.order.*``, ``*``, and the operational namespace.

A pattern is matched by :class:`~asyncevents.core.events.glob.Glob`, in time
linear in the name whatever the pattern holds (``a*a*a*a*a*b`` included).
"""

from __future__ import annotations

from functools import lru_cache

from asyncevents.core.events.glob import Glob

__all__ = ["OPERATIONAL_PREFIX", "is_pattern", "matches"]


def is_pattern(name: str) -> bool:
    """True when ``name`` holds a wildcard."""
    return "*" in name


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> Glob:
    # ``*`` spans any characters, dots included: ``sales.*`` covers
    # ``sales.order.created`` as Magento's wildcard subscriptions do.
    return Glob.of(pattern)


OPERATIONAL_PREFIX = "asyncevents."
"""The namespace of asyncevents' own events: only patterns in it match them."""


def matches(pattern: str, name: str) -> bool:
    """True when the event ``name`` falls under ``pattern``.

    asyncevents' own events (``asyncevents.…``) fall only under patterns that
    name that namespace (``asyncevents.*``, not ``*``): an application's
    wildcard subscriptions do not start receiving operational events.
    """
    if not is_pattern(pattern):
        return pattern == name
    if name.startswith(OPERATIONAL_PREFIX) and not pattern.startswith(OPERATIONAL_PREFIX):
        return False
    return _compile(pattern).match(name)
