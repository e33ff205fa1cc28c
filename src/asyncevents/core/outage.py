"""Riding out a short outage of the database or the broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from asyncevents.errors import StoreError, TransportError

__all__ = ["through_outage"]

_T = TypeVar("_T")


def through_outage(work: Callable[[], _T], *, patience: float, first: float, longest: float,
                   on_retry: Callable[[Exception, float], None]) -> _T:
    """Run ``work``, retrying on ``StoreError``/``TransportError`` for up to ``patience`` s.

    Waits ``first`` seconds after the first failure, doubling up to
    ``longest``; ``on_retry(error, wait)`` is told before each wait. Once the
    next wait would pass ``patience``, the error goes up.
    """
    wait, deadline = first, time.monotonic() + patience
    while True:
        try:
            return work()
        except (StoreError, TransportError) as exc:
            if time.monotonic() + wait > deadline:
                raise
            on_retry(exc, wait)
            time.sleep(wait)
            wait = min(wait * 2, longest)
