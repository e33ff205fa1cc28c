"""The ``python`` sink: calls a ``@handler`` function of the application in the worker.

The recipient is the handler's import path ``module:qualname``; the sink
imports it once (and again after a failed import, so a fixed module is found
without a restart), checks that it is a function decorated with
``@asyncevents.handler`` under that very path, and calls it with an
:class:`asyncevents.Event`. Its subscriptions come from code only (see
:mod:`asyncevents.core.subscribing.handlers`).
"""

from __future__ import annotations

import re
import threading
import traceback
from collections.abc import Callable
from typing import Any, ClassVar

from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.settings import Settings
from asyncevents.core.sink import PYTHON_SINK, DeliveryRequest, DeliveryResult
from asyncevents.core.subscribing.handlers import (
    Event,
    HandlerGone,
    HandlerSpec,
    load_handler,
)
from asyncevents.errors import InvalidRecipient, PermanentSinkError, RetryableSinkError

__all__ = ["PythonSink", "register_sinks"]

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_ERROR_LIMIT = 500


def _where(exc: BaseException) -> str:
    """Where the handler raised: the innermost frame, as ``file:line in function``."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {last.filename}:{last.lineno} in {last.name})"


class PythonSink:
    """Delivers by calling the ``@handler`` function named by the recipient.

    Thread-safe: the worker calls ``deliver`` from several threads; loaded
    handlers are cached under a lock, and calls run in parallel.
    """

    name: ClassVar[str] = PYTHON_SINK
    #: A call in the worker's own process: nothing to sign.
    signs: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._handlers: dict[str, HandlerSpec] = {}
        self._lock = threading.Lock()

    def validate_recipient(self, recipient: str) -> None:
        """A recipient is an import path ``package.module:function``; nothing is imported."""
        if not _PATH.match(recipient):
            raise InvalidRecipient(f"a python recipient is an import path "
                                   f"'package.module:function', not {recipient!r}")

    def _load(self, path: str) -> HandlerSpec:
        with self._lock:
            spec = self._handlers.get(path)
            if spec is None:
                # Not cached on failure: the next attempt imports again.
                spec = self._handlers[path] = load_handler(path)
            return spec

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Call the handler; its exceptions decide what happens next."""
        try:
            spec = self._load(request.recipient)
        except HandlerGone as exc:
            # Like a sink that is not installed: failed attempts, retried by the
            # policy until dead, and replayable once the handler is back.
            return DeliveryResult.failed(str(exc), retryable=True)
        try:
            spec.function(Event.from_request(request))
        except RetryableSinkError as exc:
            return DeliveryResult.failed(_error(exc), retryable=True,
                                         retry_after=exc.retry_after)
        except PermanentSinkError as exc:
            return DeliveryResult.failed(_error(exc), retryable=False)
        except Exception as exc:  # any other exception: worth another try
            return DeliveryResult.failed(_error(exc) + _where(exc), retryable=True)
        return DeliveryResult.ok()

    def close(self) -> None:
        """Forget the loaded handlers (nothing is held open)."""
        with self._lock:
            self._handlers.clear()


def _error(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:_ERROR_LIMIT]


@hookimpl
def register_sinks(register: Callable[[str, Any], None]) -> None:
    """Register the ``python`` sink."""
    register(PYTHON_SINK, PythonSink)
