"""The kombu topology: one exchange, the trigger and delivery queues, delay queues."""

from __future__ import annotations

import math
from dataclasses import dataclass

from kombu import Exchange, Queue

from asyncevents.core.messages import ROUTES, Route

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

    def queue(self, route: Route) -> Queue:
        """The durable queue for ``route``."""
        arguments = self._quorum("", self.dead_queue(route).name)
        if arguments:
            arguments["x-delivery-limit"] = self.delivery_limit
        return Queue(f"{self.prefix}.{route}", exchange=self.exchange, routing_key=route,
                     durable=True, queue_arguments=arguments or None)

    def dead_queue(self, route: Route) -> Queue:
        """Where a quorum queue puts what reached its delivery limit."""
        name = f"{self.prefix}.{route}.dead"
        arguments = {"x-queue-type": "quorum"} if self.quorum else None
        return Queue(name, exchange=Exchange(""), routing_key=name, durable=True,
                     queue_arguments=arguments)

    @property
    def queues(self) -> list[Queue]:
        """The trigger and delivery queues (and with ``quorum`` their dead-letter queues)."""
        found = [self.queue(route) for route in ROUTES]
        if self.quorum:
            found += [self.dead_queue(route) for route in ROUTES]
        return found

    def delay_queue(self, route: Route, ms: int) -> Queue:
        """A queue whose messages go back to ``route`` after ``ms`` milliseconds.

        One queue per distinct delay: RabbitMQ only expires messages at the head
        of a queue, so mixing delays in one queue would hold short ones back.
        """
        return Queue(
            f"{self.prefix}.delay.{route}.{ms}",
            exchange=Exchange(""),
            routing_key=f"{self.prefix}.delay.{route}.{ms}",
            durable=True,
            queue_arguments={
                "x-message-ttl": ms,
                "x-dead-letter-exchange": self.prefix,
                "x-dead-letter-routing-key": route,
                "x-expires": ms + _EXPIRY_MARGIN_MS,
            },
        )
