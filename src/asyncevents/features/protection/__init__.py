"""Receiver protection, a built-in plugin: circuits, limits, ordering keys, auto-disable."""

from __future__ import annotations

from collections.abc import Callable

from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.pipeline import MiddlewareFactory
from asyncevents.features.protection.middleware import Protection

__all__ = ["Protection", "register_middleware"]


@hookimpl
def register_middleware(register: Callable[[MiddlewareFactory], None]) -> None:
    """Receiver protection on every engine."""
    register(Protection.for_engine)
