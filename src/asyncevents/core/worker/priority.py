"""Priority between named queues, for a worker given several (``--queues a,b``).

Earlier names first, as Symfony Messenger does: the worker starts with the
first queue alone, and every ``_GATE_EVERY`` seconds opens the next one once
nothing of those it consumes waits (the transport counts the ready messages,
on the SQL queue those claimed for us too) nor is in its hands; a message
arriving from an earlier queue pauses the later ones again at once. A paused
queue's consumers are cancelled, so the broker keeps its messages for the
other workers; what it had already sent is handled, after the earlier
queues' messages (a batch takes them in priority order).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence

from asyncevents.core.transport import Consumption, Received
from asyncevents.core.transport.base import Prioritised

__all__ = ["QueuePriority"]

# Seconds between two looks at the earlier queues while later ones are paused.
_GATE_EVERY = 0.2


class QueuePriority:
    """Which of a worker's queues it consumes now, and in which order it handles them."""

    def __init__(self, queues: Sequence[str]) -> None:
        self.queues = list(queues)
        # Later queues from this index on are paused (None: none is), the
        # earliest queue a message came from this turn, and when to look at
        # the earlier queues again.
        self._paused_from: int | None = None
        self._arrived: int | None = None
        self._gate_due = 0.0
        self._held: Counter[int] = Counter()  # messages in hand, by queue rank

    def start(self) -> list[str]:
        """A new consuming connection: the queues to begin paused (all but the first)."""
        self._paused_from = 1
        self._arrived, self._gate_due = None, 0.0
        return self.queues[1:]

    def rank(self, received: Received) -> int:
        """The place of ``received``'s queue in the order (unknown queues last)."""
        try:
            return self.queues.index(received.message.queue)
        except ValueError:  # not one of ours (a transport that ignores queues)
            return len(self.queues)

    def arrived(self, received: Received) -> None:
        """A message is in hand (until :meth:`let_go`)."""
        rank = self.rank(received)
        self._held[rank] += 1
        if self._arrived is None or rank < self._arrived:
            self._arrived = rank

    def let_go(self, received: Iterable[Received]) -> None:
        """These messages are settled, or lost with their connection."""
        for one in received:
            self._held[self.rank(one)] -= 1

    def step(self, session: Consumption) -> None:
        """Pause later queues while an earlier one has messages; open them in turn when not."""
        if not isinstance(session, Prioritised):
            return
        arrived, self._arrived = self._arrived, None
        if arrived is not None and arrived + 1 < len(self.queues) and (
                self._paused_from is None or arrived + 1 < self._paused_from):
            session.pause(self.queues[arrived + 1:])
            self._paused_from = arrived + 1
            self._gate_due = time.monotonic() + _GATE_EVERY
            return
        now = time.monotonic()
        if self._paused_from is None or now < self._gate_due:
            return
        self._gate_due = now + _GATE_EVERY
        earlier = self.queues[:self._paused_from]
        if (sum(self._held[rank] for rank in range(self._paused_from)) == 0
                and session.ready(earlier) == 0):
            # Nothing of the queues we take waits, nor is in hand: open the next one.
            session.resume(self.queues[self._paused_from:self._paused_from + 1])
            self._paused_from += 1
            if self._paused_from >= len(self.queues):
                self._paused_from = None
