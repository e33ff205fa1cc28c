"""structlog set-up: key=value lines on stderr, or JSON lines."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging", "get_logger"]


def _drop_none(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    # "error=None retry_in=None" on every success is noise, not information.
    return {key: value for key, value in event.items() if value is not None}


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    # The stderr of the moment, not the one of the call to configure_logging: a
    # process (or a test runner) that swaps sys.stderr keeps its log lines, and a
    # closed one is never written to.
    return structlog.PrintLogger(sys.stderr)


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    """Route structlog to stderr at ``level``; call once per process."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _drop_none,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A bound logger for a module."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
