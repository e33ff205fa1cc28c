"""The kombu topology: one exchange, the trigger and delivery queues, delay queues.

Queue names, for the prefix ``P``, a route (``trigger``, ``deliver``) and a
named queue (:mod:`asyncevents.core.events.routing`):

============================  ==============================  =================================
what                          ``default``                     a named queue ``Q``
============================  ==============================  =================================
a route's queue               ``P.<route>``                   ``P.Q.<route>``
its routing key               ``<route>``                     ``Q.<route>``
its dead letters (quorum)     ``P.<route>.dead``              ``P.Q.<route>.dead``
a delay of ``ms``             ``P.delay.<route>.<ms>``        ``P.delay.Q.<route>.<ms>``
============================  ==============================  =================================

The ``default`` names are those of installations from before named queues, so
they keep working as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kombu import Exchange, Queue

from asyncevents.core.messages import DEFAULT_QUEUE, ROUTES, Route

__all__ = ["Topology", "delay_ms"]

# An unused delay queue lives this long after its TTL, then RabbitMQ drops it;
# the margin keeps a queue alive while its last message waits.
_EXPIRY_MARGIN_MS = 60_000


def delay_ms(seconds: float) -> int:
    """Round a delay up so that jittered delays share a few queues, not one each."""
    ms = max(1, math.ceil(seconds * 1000))
    step = 100 if ms < 10_000 else 1000
    return math.ceil(ms / step) * step


@dataclass(frozen=True)
class Topology:
    """Names derived from one prefix, so several installations can share a broker.

    With ``quorum`` (RabbitMQ), every queue is a replicated quorum queue: a
    route's queue dead-letters a message handed out ``delivery_limit`` times
    without an ack (a poison message) into ``<prefix>.<route>.dead`` instead
    of looping. Delay queues stay classic even then: a quorum queue's
    ``x-expires`` is counted from its creation, not its last use (RabbitMQ
    3.10, rabbitmq-server#5894), so it was deleted with retries inside, and
    one declared by several clients at once could stop expiring messages at
    all (the fault suite's cluster rows lost deliveries both ways).
    """

    prefix: str = "asyncevents"
    quorum: bool = False
    delivery_limit: int = 20
    names: tuple[str, ...] = (DEFAULT_QUEUE,)
    """Every named queue of the installation (``[routing]``'s and ``default``)."""

    def _quorum(self, dead_letter_exchange: str, dead_letter_key: str) -> dict[str, object]:
        if not self.quorum:
            return {}
        return {"x-queue-type": "quorum", "x-dead-letter-exchange": dead_letter_exchange,
                "x-dead-letter-routing-key": dead_letter_key,
                "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}

    @property
    def exchange(self) -> Exchange:
        """The durable direct exchange every message goes through."""
        return Exchange(self.prefix, type="direct", durable=True)

    @staticmethod
    def routing_key(route: Route, name: str = DEFAULT_QUEUE) -> str:
        """The key that routes to ``route``'s queue of the named queue ``name``."""
        return route if name == DEFAULT_QUEUE else f"{name}.{route}"

    def queue(self, route: Route, name: str = DEFAULT_QUEUE) -> Queue:
        """The durable queue for ``route`` of the named queue ``name``."""
        arguments = self._quorum("", self.dead_queue(route, name).name)
        if arguments:
            arguments["x-delivery-limit"] = self.delivery_limit
        key = self.routing_key(route, name)
        return Queue(f"{self.prefix}.{key}", exchange=self.exchange, routing_key=key,
                     durable=True, queue_arguments=arguments or None)

    def dead_queue(self, route: Route, name: str = DEFAULT_QUEUE) -> Queue:
        """Where a quorum queue puts what reached its delivery limit."""
        name = f"{self.prefix}.{self.routing_key(route, name)}.dead"
        arguments = {"x-queue-type": "quorum"} if self.quorum else None
        return Queue(name, exchange=Exchange(""), routing_key=name, durable=True,
                     queue_arguments=arguments)

    @property
    def queues(self) -> list[Queue]:
        """Every named queue's trigger and delivery queues (and with ``quorum`` their dead ones)."""
        return self.queues_of(self.names)

    def queues_of(self, names: tuple[str, ...] | list[str]) -> list[Queue]:
        """The trigger and delivery queues of ``names`` (and with ``quorum`` their dead ones)."""
        found = [self.queue(route, name) for name in names for route in ROUTES]
        if self.quorum:
            found += [self.dead_queue(route, name) for name in names for route in ROUTES]
        return found

    def delay_queue(self, route: Route, ms: int, name: str = DEFAULT_QUEUE) -> Queue:
        """A queue whose messages go back to ``route`` after ``ms`` milliseconds.

        One queue per distinct delay: RabbitMQ only expires messages at the head
        of a queue, so mixing delays in one queue would hold short ones back.
        """
        key = self.routing_key(route, name)
        return Queue(
            f"{self.prefix}.delay.{key}.{ms}",
            exchange=Exchange(""),
            routing_key=f"{self.prefix}.delay.{key}.{ms}",
            durable=True,
            queue_arguments={
                "x-message-ttl": ms,
                "x-dead-letter-exchange": self.prefix,
                "x-dead-letter-routing-key": key,
                "x-expires": ms + _EXPIRY_MARGIN_MS,
            },
        )
