"""Publisher confirms in batches with py-amqp: publish many, then wait once.

py-amqp's ``confirm_publish`` waits for each confirm (one round trip per
message). Here the channel is put in confirm mode once; a batch is sent with
the plain ``basic_publish`` and the broker's ``basic.ack`` frames (which may
cover several messages with ``multiple``) are drained until the last delivery
tag of the batch is confirmed. A ``basic.nack`` raises.
"""

from __future__ import annotations

from typing import Any

import amqp


class Nacked(Exception):
    pass


class BatchPublisher:
    def __init__(self, url: str = "amqp://guest:guest@127.0.0.1:5672//") -> None:
        from kombu.utils.url import url_to_parts

        _, host, port, user, password, vhost, _ = url_to_parts(url)
        self.conn = amqp.Connection(host=f"{host or '127.0.0.1'}:{port or 5672}",
                                    userid=user or "guest", password=password or "guest",
                                    virtual_host=vhost or "/")
        self.conn.connect()
        self.channel = self.conn.channel()
        self.channel.confirm_select()
        self.tag = 0
        self.confirmed = 0
        self.nacked = False
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)

    def _on_ack(self, tag: int, multiple: bool) -> None:
        # Acks arrive in order for one channel; ``multiple`` covers all up to tag.
        self.confirmed = max(self.confirmed, tag)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self.nacked = True

    def publish(self, exchange: str, routing_key: str, bodies: list[bytes],
                content_type: str = "application/json") -> None:
        publish = self.channel._basic_publish  # the unconfirmed send
        for body in bodies:
            msg = amqp.Message(body, content_type=content_type, content_encoding="utf-8",
                               delivery_mode=2)
            publish(msg, exchange=exchange, routing_key=routing_key)
            self.tag += 1
        while self.confirmed < self.tag:
            self.conn.drain_events(timeout=30)
            if self.nacked:
                raise Nacked("the broker refused a message of the batch")

    def close(self) -> None:
        try:
            self.channel.close()
        finally:
            self.conn.close()


__all__: list[Any] = ["BatchPublisher", "Nacked"]
