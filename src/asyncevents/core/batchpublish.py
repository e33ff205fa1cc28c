"""Publishing many messages to RabbitMQ with one wait for all their confirms.

py-amqp's confirmed publish waits for each message's confirm before sending
the next: one round trip per message. Here the channel is put in confirm
mode once, every message is sent, and the confirms (which RabbitMQ may send
for several messages at once with ``multiple``) are collected at the end.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

import amqp

from asyncevents.errors import TransportError

__all__ = ["publish_confirmed_batch"]


class _Confirms:
    """Counts confirmed delivery tags; ``multiple`` acks cover every tag up to theirs."""

    def __init__(self) -> None:
        self.upto = 0  # every tag <= upto is confirmed
        self.singles: set[int] = set()  # confirmed tags above upto

    @property
    def count(self) -> int:
        return self.upto + len(self.singles)

    def ack(self, tag: int, multiple: bool) -> None:
        if tag <= self.upto:
            return
        if multiple:
            self.upto = tag
            self.singles = {t for t in self.singles if t > tag}
        else:
            self.singles.add(tag)


def publish_confirmed_batch(connection: Any, exchange: str, routing_key: str,
                            bodies: Sequence[dict[str, Any]], *, timeout: float = 30.0) -> None:
    """Send ``bodies`` on a fresh confirm-mode channel of ``connection``; wait for all acks.

    ``connection`` is a connected kombu ``Connection`` over py-amqp. Raises
    ``TransportError`` when RabbitMQ nacks any message or the acks do not come.
    """
    if not bodies:
        return
    raw: amqp.Connection = connection.connection
    channel = raw.channel()
    confirms = _Confirms()
    nacked: list[int] = []
    top = 0

    def on_ack(tag: int, multiple: bool) -> None:
        confirms.ack(tag, multiple)

    def on_nack(tag: int, multiple: bool) -> None:
        nacked.append(tag)

    try:
        channel.confirm_select()
        channel.events["basic_ack"].add(on_ack)
        channel.events["basic_nack"].add(on_nack)
        for body in bodies:
            message = amqp.Message(
                json.dumps(body, separators=(",", ":")), content_type="application/json",
                content_encoding="utf-8", delivery_mode=2, application_headers={},
            )
            # The plain publish: basic_publish may be the one that waits per message.
            channel._basic_publish(message, exchange=exchange, routing_key=routing_key)
            top += 1
        deadline = time.monotonic() + timeout
        while confirms.count < top and not nacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError(f"RabbitMQ confirmed {confirms.count} of {top} messages "
                                     f"within {timeout:.0f} s")
            try:
                raw.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        if nacked:
            raise TransportError(f"RabbitMQ refused {len(nacked)} of {top} messages")
    finally:
        # The connection may be gone; the error above already says why.
        with contextlib.suppress(Exception):
            channel.close()
