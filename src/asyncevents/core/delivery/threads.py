"""The engine's thread pools: blocking I/O (store, broker) and synchronous sinks.

The event loop owns the delivery state; these threads only run calls handed to
them and give back their results, touching nothing of the loop's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["Threads"]

_P = ParamSpec("_P")
_T = TypeVar("_T")
_IO_THREADS = 4


class Threads:
    """The engine's thread pools: blocking I/O (store, broker) and synchronous sinks."""

    def __init__(self, sink_threads: int) -> None:
        self._io = ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="asyncevents-io")
        self._sinks = ThreadPoolExecutor(max(1, sink_threads),
                                         thread_name_prefix="asyncevents-sink")

    async def io(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a store or broker call in an I/O thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._io, lambda: fn(*args, **kwargs))

    async def sink(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a synchronous sink's call in a sink thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._sinks, lambda: fn(*args, **kwargs))

    def shutdown(self) -> None:
        """Wait for the running calls and stop the threads."""
        self._io.shutdown(wait=True)
        self._sinks.shutdown(wait=True)
