"""Helpers shared by the receiver-protection tests: the subscriptions' secret, a proxy."""

from __future__ import annotations

import http.client
import socketserver

from standardwebhooks.webhooks import Webhook

WHSEC = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


def verify(headers: dict[str, str], body: bytes) -> None:
    """Check a request's Standard Webhooks signature made with ``WHSEC``."""
    Webhook(WHSEC).verify(body, {k: headers[k] for k in
                                 ("webhook-id", "webhook-timestamp", "webhook-signature")})


class Forwarder(socketserver.StreamRequestHandler):
    """A plain HTTP forward proxy: ``POST http://host:port/path`` is sent on, and recorded."""

    def handle(self) -> None:
        line = self.rfile.readline().decode("latin-1").strip()
        headers: dict[str, str] = {}
        while (raw := self.rfile.readline().decode("latin-1").strip()):
            name, _, value = raw.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.rfile.read(int(headers.get("content-length", "0")))
        method, target, _ = line.split(" ", 2)
        self.server.seen.append((method, target, headers))  # type: ignore[attr-defined]
        if not target.startswith("http://"):
            self.wfile.write(b"HTTP/1.1 405 Not Here\r\ncontent-length: 0\r\n\r\n")
            return
        hostport, _, path = target[len("http://"):].partition("/")
        host, _, port = hostport.partition(":")
        upstream = http.client.HTTPConnection(host, int(port or 80), timeout=5)
        sent = {k: v for k, v in headers.items()
                if k not in ("proxy-connection", "connection", "keep-alive")}
        upstream.request(method, "/" + path, body=body, headers=sent)
        answer = upstream.getresponse()
        data = answer.read()
        self.wfile.write(f"HTTP/1.1 {answer.status} {answer.reason}\r\n".encode())
        self.wfile.write(f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode())
        self.wfile.write(data)
        upstream.close()
