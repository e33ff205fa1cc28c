"""Operational events, a built-in plugin: what happened to deliveries and subscriptions."""

from __future__ import annotations

from collections.abc import Callable

from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.pipeline import MiddlewareFactory
from asyncevents.features.operational.middleware import OperationalEvents

__all__ = ["OperationalEvents", "register_middleware"]


@hookimpl
def register_middleware(register: Callable[[MiddlewareFactory], None]) -> None:
    """Operational events on every engine that can publish."""
    register(OperationalEvents.for_engine)
