"""Transports: the queues between publish, dispatch and delivery, one module per family.

- :mod:`.base`: the interface (:class:`Transport`, :class:`Received`, :class:`Consumption`)
- :mod:`.kombubase`: kombu publishing and consuming; ``memory://`` and ``redis://``
- :mod:`.amqp`: RabbitMQ, batched confirms, TTL delay queues
- :mod:`.sql`: the crash-safe SQL queue (:mod:`.sql.channel`, :mod:`.sql.schema`,
  :mod:`.sql.wakeup`), delays as a future ``visible_at``
"""

from asyncevents.core.transport.base import (
    Consumption,
    Received,
    Transport,
    describe,
    first_line,
    safe_url,
    scheme_of,
)

__all__ = [
    "Consumption",
    "Received",
    "Transport",
    "describe",
    "first_line",
    "safe_url",
    "scheme_of",
]
