"""A local stand-in for Pub/Sub: a gRPC server on 127.0.0.1 implementing
``google.pubsub.v1.Publisher/Publish``, the only call the sink makes.

It decodes requests with google-cloud-pubsub's own message types, keeps
every published message, and answers scripted gRPC errors for some topics.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from google.pubsub_v1.types import PublishRequest, PublishResponse


@dataclass(frozen=True)
class Published:
    """One message as the server received it."""

    topic: str
    data: bytes
    attributes: dict[str, str]
    ordering_key: str
    message_id: str


class PublisherServer:
    """The Publish RPC on an ephemeral port; ``fail[topic] = code`` scripts an error."""

    def __init__(self) -> None:
        self.messages: list[Published] = []
        self.metadata: list[dict[str, str]] = []
        self.fail: dict[str, grpc.StatusCode] = {}
        self._lock = threading.Lock()
        # Pub/Sub takes requests up to 10 MB; gRPC servers refuse over 4 MB unless told.
        self._server = grpc.server(ThreadPoolExecutor(max_workers=8), options=[
            ("grpc.max_receive_message_length", 20 * 1024 * 1024)])
        handler = grpc.method_handlers_generic_handler("google.pubsub.v1.Publisher", {
            "Publish": grpc.unary_unary_rpc_method_handler(
                self._publish, request_deserializer=PublishRequest.deserialize,
                response_serializer=PublishResponse.serialize),
        })
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as PUBSUB_EMULATOR_HOST takes it."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> PublisherServer:
        """Start serving."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop at once."""
        self._server.stop(grace=None)

    def received(self, topic: str | None = None) -> list[Published]:
        """The messages received so far (for ``topic`` only, if given)."""
        with self._lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def _publish(self, request: PublishRequest, context: Any) -> PublishResponse:
        with self._lock:
            self.metadata.append(dict(context.invocation_metadata()))
            code = self.fail.get(request.topic)
        if code is not None:
            context.abort(code, f"scripted {code.name} for {request.topic}")
        with self._lock:
            ids = []
            for message in request.messages:
                published = Published(request.topic, message.data, dict(message.attributes),
                                      message.ordering_key, str(len(self.messages) + 1))
                self.messages.append(published)
                ids.append(published.message_id)
        return PublishResponse(message_ids=ids)
