"""What becomes of a message once the engine has handled it: :class:`Settle`."""

from __future__ import annotations

from enum import Enum

__all__ = ["Settle"]


class Settle(Enum):
    """How the worker settles a message the engine handed back.

    The values are the old ``bool | None`` encoding (True ack, False requeue,
    None drop), so ``Settle(value)`` reads an outcome still written that way.
    """

    ACK = True
    """Done, its records written: the queue forgets it."""
    REQUEUE = False
    """Not done (the store was away, the handler failed): back in line for another try."""
    DROP = None
    """Never to be done (it points at nothing): removed, with an error in the log."""
