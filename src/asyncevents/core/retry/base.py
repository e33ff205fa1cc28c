"""RetryManagement: the hook interface that puts a message back in line after its wait."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from asyncevents.core.messages import Message

__all__ = ["RetryManagement"]


@runtime_checkable
class RetryManagement(Protocol):
    """Puts a message back on its route no earlier than ``delay`` seconds from now."""

    def schedule(self, message: Message, delay: float) -> None:
        """Hold ``message`` for ``delay`` seconds, then send it on ``message.route``."""

    def pump(self) -> int:
        """Send what is due (the worker calls it often); return how many."""

    def seconds_until_due(self) -> float | None:
        """Seconds until the next held message is due, or None when none is known."""

    def close(self) -> None:
        """Release resources."""
