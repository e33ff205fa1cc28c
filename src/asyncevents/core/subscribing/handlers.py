"""Python handlers: functions of the application that subscribe to events (sink ``python``).

::

    from asyncevents import Event, handler

    @handler("sales.order.*")
    def on_order(event: Event) -> None:
        ...

A handler is declared by a module that ``handler_modules`` names in
asyncevents.toml (every ``@handler`` in it and in the submodules it imports),
or by a plugin's ``register_handlers(register)`` hook. When a worker starts,
:mod:`~asyncevents.core.subscribing.handler_sync` makes each declared handler
a subscription with sink ``python`` and, as its recipient, the handler's import path
``module:qualname``: created when missing, brought in line with the code
(pattern, filter, retry policy) when changed, never switched on or off
(``active`` is the operator's). From then on a handler gets what a webhook
gets: fan-out, retries, traces, search and replay.

Subscriptions of sink ``python`` are only ever made from code: the
subscription rules refuse them from the CLI, the Python API and the REST API,
so no one can point one at an arbitrary import path. A python subscription
whose handler is gone (its module no longer imports, or the function lost its
``@handler``) is left in place with a warning at worker start; its deliveries
fail as retryable and end ``dead``, replayable once the handler is back.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from asyncevents.core.log import get_logger
from asyncevents.core.sink import PYTHON_SINK, DeliveryRequest
from asyncevents.errors import AsyncEventsError, ConfigError

if TYPE_CHECKING:
    from asyncevents.core.plugins import Plugins
    from asyncevents.core.settings import Settings

__all__ = [
    "PYTHON_SINK",
    "Event",
    "HandlerGone",
    "HandlerSpec",
    "declared_handlers",
    "handler",
    "handler_of",
    "load_handler",
]

log = get_logger("asyncevents.handlers")


_MARK = "__asyncevents_handler__"
_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Event:
    """What a Python handler is called with: one event, on one delivery attempt.

    ``id`` is the event id (the same for every subscription), ``delivery_id``
    the id of this subscription's copy (the same on every attempt and replay:
    use it to drop duplicates), ``attempt`` counts from 1 and goes on counting
    through replays. ``data`` is the payload, after the event's resolver.
    """

    id: str
    name: str
    data: dict[str, Any]
    published_at: datetime
    attempt: int
    delivery_id: str
    subscription_id: str

    @classmethod
    def from_request(cls, request: DeliveryRequest) -> Event:
        """The event of a sink's delivery request."""
        return cls(id=request.event_id, name=request.event_name, data=request.payload,
                   published_at=request.published_at, attempt=request.attempt,
                   delivery_id=request.delivery_id, subscription_id=request.subscription_id)


@dataclass(frozen=True)
class HandlerSpec:
    """One ``@handler``: the function, its import path, and its subscription's fields."""

    path: str
    event_name: str
    function: Callable[[Event], object] = field(repr=False, compare=False)
    filter: str | None = None
    retry_policy: dict[str, Any] | None = None


class HandlerGone(AsyncEventsError):
    """A handler's import path no longer leads to a ``@handler`` function."""


# Every @handler seen in this process, by import path (a reloaded module replaces its own).
_declared: dict[str, HandlerSpec] = {}
_declared_lock = threading.Lock()


def handler(event_name: str, *, filter: str | None = None,
            retry_policy: dict[str, Any] | None = None) -> Callable[[_F], _F]:
    """Declare the decorated function a handler of ``event_name`` (a name or a pattern).

    The function takes one :class:`Event` and returns nothing; it raises
    ``RetryableSinkError`` (optionally with ``retry_after``) or any other
    exception to be tried again by the retry policy, ``PermanentSinkError``
    to give up at once. ``filter`` (a Lucene query over the payload) and
    ``retry_policy`` (overrides such as ``{"max_deaths": 3}``) are the
    subscription's own. The function must be reachable by its import path:
    defined at module level (or as a static method of a module-level class).
    """
    if not isinstance(event_name, str) or not event_name.strip():
        raise ConfigError("@handler needs an event name or pattern, e.g. "
                          "@handler(\"sales.order.*\")")

    def decorate(function: _F) -> _F:
        path = _path_of(function)
        if getattr(function, _MARK, None) is not None:
            raise ConfigError(f"{path} has two @handler decorators: a handler is one "
                              "subscription; use one pattern, or two functions")
        spec = HandlerSpec(path=path, event_name=event_name, function=function,
                           filter=filter, retry_policy=retry_policy)
        setattr(function, _MARK, spec)
        with _declared_lock:
            _declared[path] = spec
        return function

    return decorate


def _path_of(function: Callable[..., Any]) -> str:
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname or not callable(function):
        raise ConfigError(f"@handler decorates functions, not {function!r}")
    if "<locals>" in qualname or "<lambda>" in qualname or module == "__main__":
        # A worker finds a handler again by its import path: it must have one.
        raise ConfigError(f"@handler on {module}.{qualname}: a handler must be a function "
                          "defined at module level in an importable module (not nested, not "
                          "a lambda, not in __main__)")
    return f"{module}:{qualname}"


def handler_of(function: object) -> HandlerSpec | None:
    """The ``@handler`` declaration of ``function``, or None."""
    spec = getattr(function, _MARK, None)
    return spec if isinstance(spec, HandlerSpec) else None


def _import(module_name: str) -> ModuleType:
    # The console script's sys.path starts at its own bin/ directory, where
    # `python -m` starts at the working directory: handler modules of the
    # project a worker runs in are found either way (after installed packages).
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    return importlib.import_module(module_name)


def _reason(exc: BaseException) -> str:
    first = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_handler(path: str) -> HandlerSpec:
    """Import ``module:qualname`` and return its ``@handler`` declaration.

    Raises :class:`HandlerGone` saying why when the module does not import,
    the name is not in it, or the function is not (or no longer) a handler.
    """
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise HandlerGone(f"{path!r} is not a handler path 'package.module:function'")
    try:
        target: object = _import(module_name)
    except Exception as exc:  # not found, or the module itself fails (a syntax error...)
        raise HandlerGone(f"handler {path} cannot be loaded: module {module_name!r} does "
                          f"not import ({_reason(exc)})") from None
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerGone(f"handler {path} cannot be loaded: {module_name!r} has no "
                              f"{qualname!r}") from None
    spec = handler_of(target)
    if spec is None or spec.path != path:
        raise HandlerGone(f"handler {path} cannot be loaded: {path} is not decorated with "
                          "@asyncevents.handler")
    return spec


def _in_module(module_name: str) -> list[HandlerSpec]:
    try:
        _import(module_name)
    except Exception as exc:
        raise ConfigError(f"handler_modules: cannot import {module_name!r}: {_reason(exc)}"
                          ) from None
    with _declared_lock:
        specs = [spec for path, spec in sorted(_declared.items())
                 if path.split(":", 1)[0] == module_name
                 or path.startswith(module_name + ".")]
    return [spec for spec in specs if _current(spec)]


def _current(spec: HandlerSpec) -> bool:
    # A module imported again (reloaded, or changed and re-imported) may have
    # dropped a handler that the registry still remembers.
    try:
        return load_handler(spec.path) is spec
    except HandlerGone:
        return False


def _registered(plugins: Plugins) -> list[HandlerSpec]:
    found: list[HandlerSpec] = []

    def register(target: object) -> None:
        if isinstance(target, ModuleType):
            found.extend(_in_module(target.__name__))
            return
        spec = handler_of(target)
        if spec is None:
            name = ":".join(str(getattr(target, attr, "?")) for attr in ("__module__",
                                                                         "__qualname__"))
            raise ConfigError(f"register_handlers: {name} is not decorated with "
                              "@asyncevents.handler (register a @handler function or a module)")
        found.append(spec)

    plugins.hook.register_handlers(register=register)
    return found


def declared_handlers(settings: Settings, plugins: Plugins) -> list[HandlerSpec]:
    """Every handler that ``handler_modules`` and the ``register_handlers`` hooks declare.

    Raises ``ConfigError`` when a module does not import, or when a hook
    registers something that is neither a ``@handler`` function nor a module.
    """
    found: dict[str, HandlerSpec] = {}
    sources: Iterable[HandlerSpec] = [
        *(spec for name in settings.handler_modules for spec in _in_module(name)),
        *_registered(plugins),
    ]
    for spec in sources:
        found.setdefault(spec.path, spec)
    return [found[path] for path in sorted(found)]
