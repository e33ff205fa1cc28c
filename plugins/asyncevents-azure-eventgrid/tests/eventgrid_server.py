"""A local stand-in for an Event Grid topic: an HTTPS server on 127.0.0.1 with a
self-signed certificate made here, checking what Event Grid checks on publish.

``POST /api/events`` takes a CloudEvents batch when the ``aeg-sas-key`` header
holds the key or ``Authorization`` holds the expected bearer token; the paths
``/<status>/api/events`` answer that status (``/429/...`` with a Retry-After).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asyncevents test topic")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "topic.crt", directory / "topic.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Received:
    """One accepted publish request."""

    path: str
    headers: dict[str, str]
    events: list[dict[str, Any]]


@dataclass
class TopicServer:
    """The HTTPS stand-in; ``key`` and ``bearer`` are the credentials it accepts."""

    directory: Path
    key: str
    bearer: str = "entra-test-token"
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> TopicServer:
        """Serve on an ephemeral port, on a thread."""
        self.cert, key = self_signed(self.directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def endpoint(self, prefix: str = "") -> str:
        """``https://127.0.0.1:PORT[/prefix]/api/events``."""
        port = self._httpd.server_address[1]
        return f"https://127.0.0.1:{port}{'/' + prefix if prefix else ''}/api/events"

    def events(self) -> list[dict[str, Any]]:
        """Every event accepted so far."""
        with self.lock:
            return [event for r in self.received for event in r.events]


def _handler(server: TopicServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            authorized = (self.headers.get("aeg-sas-key") == server.key
                          or self.headers.get("Authorization") == f"Bearer {server.bearer}")
            if not authorized:
                return self._answer(401, {"error": {"code": "Unauthorized",
                                                    "message": "The request is unauthorized"}})
            if not self.path.startswith("/api/events"):
                status = int(self.path.split("/")[1])
                extra = {"Retry-After": "7"} if status == 429 else {}
                return self._answer(status, {"error": {"code": str(status)}}, extra)
            if self.headers.get("Content-Type") != "application/cloudevents-batch+json; " \
                                                  "charset=utf-8":
                return self._answer(400, {"error": {"message": "not a CloudEvents batch"}})
            events = json.loads(body)
            if not isinstance(events, list) or not all(
                    e.get("specversion") == "1.0" and e.get("id") and e.get("source")
                    and e.get("type") for e in events):
                return self._answer(400, {"error": {"message": "invalid CloudEvent"}})
            with server.lock:
                server.received.append(Received(self.path, dict(self.headers), events))
            self._answer(200, None)

        def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
