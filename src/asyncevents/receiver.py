"""A tiny webhook receiver that verifies Standard Webhooks signatures.

Used by ``asyncevents demo`` and handy for trying a subscription locally; it
shows what a receiver has to do: check the signature, then drop duplicates by
``webhook-id``. Run on its own, it prints a line per webhook::

    python -m asyncevents.receiver --port 8765 --token "$TOKEN"
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DEFAULT_PORT", "Received", "Receiver", "main", "verify_signature"]

DEFAULT_PORT = 8765
"""The port ``python -m asyncevents.receiver`` listens on unless told otherwise."""


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
    show retries; ``port`` 0 picks a free one; ``echo`` prints a line per webhook.
    """

    token: str
    fail_first: bool = False
    port: int = 0
    echo: bool = False
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

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
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
            got = Received(webhook_id, str(document.get("type", "")), ok, status, document)
            self.received.append(got)
        if self.echo:
            print(f"receiver: {got.event_type} {got.webhook_id}: signature "
                  f"{'valid' if ok else 'INVALID'}, answered {status}", flush=True)
        return status

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def main(argv: list[str] | None = None) -> int:
    """``python -m asyncevents.receiver``: receive webhooks on 127.0.0.1 until stopped."""
    parser = argparse.ArgumentParser(
        prog="python -m asyncevents.receiver",
        description="A local webhook receiver: checks each Standard Webhooks signature "
                    "and prints a line per webhook.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    parser.add_argument("--token", required=True,
                        help="the subscription's verification token (whsec_... or any string)")
    parser.add_argument("--fail-first", action="store_true",
                        help="answer 503 to each webhook's first try, to show retries")
    args = parser.parse_args(argv)
    try:
        receiver = Receiver(token=args.token, fail_first=args.fail_first, port=args.port,
                            echo=True).start()
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    print(f"receiver: listening on {receiver.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
