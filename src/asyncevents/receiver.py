"""A tiny webhook receiver that verifies Standard Webhooks signatures.

Used by ``asyncevents demo`` and handy for trying a subscription locally; it
shows what a receiver has to do: check the signature, then drop duplicates by
``webhook-id``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Received", "Receiver", "verify_signature"]


def verify_signature(token: str, headers: dict[str, str], body: bytes) -> bool:
    """True when ``webhook-signature`` signs ``{id}.{timestamp}.{body}`` with ``token``."""
    key = base64.b64decode(token[6:]) if token.startswith("whsec_") else token.encode()
    signed = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in headers.get("webhook-signature", "").split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


@dataclass
class Received:
    """One request the receiver got."""

    webhook_id: str
    event_type: str
    signature_ok: bool
    status: int
    body: dict[str, Any]


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every webhook it receives.

    ``fail_first`` answers 503 to the first request of each ``webhook-id``, to
    show retries.
    """

    token: str
    fail_first: bool = False
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """Where to subscribe."""
        assert self._server is not None, "start() the receiver first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks"

    def start(self) -> Receiver:
        """Listen on a free port in a background thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._answer(headers, body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _answer(self, headers: dict[str, str], body: bytes) -> int:
        ok = verify_signature(self.token, headers, body)
        webhook_id = headers.get("webhook-id", "")
        with self._lock:
            seen = any(r.webhook_id == webhook_id for r in self.received)
            status = 401 if not ok else 503 if self.fail_first and not seen else 200
            try:
                document = json.loads(body)
            except ValueError:
                document = {}
            self.received.append(Received(webhook_id, str(document.get("type", "")), ok,
                                          status, document))
        return status

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
