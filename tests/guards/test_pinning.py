"""The address guard at delivery time, after DNS, with the checked address pinned.

A name is resolved once per attempt; the connection goes to exactly the
address that passed the check, even when DNS answers differently a moment
later (rebinding), while the Host header and TLS (SNI and certificate
verification) keep using the name.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from asyncevents.core.settings import load_settings
from asyncevents.core.sink import DeliveryRequest
from asyncevents.sinks.addresses import AllowList
from asyncevents.sinks.http import HttpSink
from asyncevents.sinks.pinning import PinnedTransport, PinningBackend, checked_addresses, pinned
from tests.guards.conftest import FakeDNS
from tests.helpers import AsyncClientOnly, both_http_clients  # noqa: F401


@dataclass
class Server:
    """A tiny HTTP(S) server on 127.0.0.1 that records Host headers and SNI names."""

    httpd: ThreadingHTTPServer
    hosts: list[str] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])


def _serve(context: ssl.SSLContext | None = None) -> Iterator[Server]:
    server: Server

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            server.hosts.append(self.headers.get("host", ""))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server = Server(httpd)
    if context is not None:
        context.sni_callback = lambda _sock, name, _ctx: server.sni.append(name)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    yield from _serve()


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate valid for the DNS name ``name`` only (not for any IP)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def request_for(url: str) -> DeliveryRequest:
    return DeliveryRequest(
        delivery_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()), event_name="guard.test",
        subscription_id="sub", recipient=url, token="pinning-test-token", payload={"n": 1},
        published_at=datetime.now(UTC),
    )


def test_the_checked_address_is_connected_even_if_dns_changes(
    fake_dns: FakeDNS, server: Server, sink_settings: Callable[..., Any]
) -> None:
    # The check sees 127.0.0.1 (allowed); any later lookup would get 127.0.0.2,
    # where nothing listens: connecting there would fail the delivery.
    fake_dns.set("hooks.test", ["127.0.0.1"], ["127.0.0.2"])
    sink = HttpSink(sink_settings())
    try:
        result = sink.deliver(request_for(f"http://hooks.test:{server.port}/hook"))
    finally:
        sink.close()
    assert result.success, result.error
    assert fake_dns.lookups("hooks.test") == 1
    assert server.hosts == [f"hooks.test:{server.port}"]


class _Spy(httpcore.NetworkBackend):
    """Records where the pinning backend connects, then connects for real."""

    def __init__(self) -> None:
        self.inner = httpcore.SyncBackend()
        self.targets: list[tuple[str, int]] = []

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        self.targets.append((host, port))
        return self.inner.connect_tcp(host, port, timeout, local_address, socket_options)


def test_the_backend_connects_to_the_pinned_ip_not_the_name(
    fake_dns: FakeDNS, server: Server
) -> None:
    fake_dns.set("hooks.test", ["127.0.0.1"], ["10.0.0.1"])
    addresses = checked_addresses("hooks.test", AllowList.parse(["127.0.0.0/8"]))
    spy = _Spy()
    with httpx.Client(transport=PinnedTransport(backend=PinningBackend(spy))) as client, \
            pinned("hooks.test", addresses):
        response = client.post(f"http://hooks.test:{server.port}/hook", content=b"{}")
    assert response.status_code == 200
    assert spy.targets == [("127.0.0.1", server.port)]
    assert fake_dns.lookups("hooks.test") == 1


def test_the_next_checked_address_is_tried_when_the_first_refuses(
    fake_dns: FakeDNS, server: Server
) -> None:
    fake_dns.set("multi.test", ["127.0.0.2", "127.0.0.1"])
    addresses = checked_addresses("multi.test", AllowList.parse(["127.0.0.0/8"]))
    spy = _Spy()
    with httpx.Client(transport=PinnedTransport(backend=PinningBackend(spy))) as client, \
            pinned("multi.test", addresses):
        response = client.post(f"http://multi.test:{server.port}/hook", content=b"{}")
    assert response.status_code == 200
    assert spy.targets == [("127.0.0.2", server.port), ("127.0.0.1", server.port)]


def test_a_connection_without_a_pin_fails_closed(fake_dns: FakeDNS, server: Server) -> None:
    fake_dns.set("hooks.test", ["127.0.0.1"])
    with httpx.Client(transport=PinnedTransport()) as client, \
            pytest.raises(httpx.ConnectError, match="no checked address"):
        client.post(f"http://hooks.test:{server.port}/hook", content=b"{}")
    assert fake_dns.lookups("hooks.test") == 0
    assert server.hosts == []


def test_tls_keeps_the_name_for_sni_host_and_certificate(
    fake_dns: FakeDNS, tmp_path: Path, sink_settings: Callable[..., Any]
) -> None:
    # The certificate names hooks.test only: verification passes only if the
    # client checks it against the name, not against the pinned IP.
    cert, key = _certificate(tmp_path, "hooks.test")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    trust = ssl.create_default_context(cafile=str(cert))
    fake_dns.set("hooks.test", ["127.0.0.1"], ["127.0.0.2"])
    for tls in _serve(server_context):
        sink = HttpSink(sink_settings(), ssl_context=trust)
        try:
            result = sink.deliver(request_for(f"https://hooks.test:{tls.port}/hook"))
        finally:
            sink.close()
        assert result.success, result.error
        assert tls.sni == ["hooks.test"]
        assert tls.hosts == [f"hooks.test:{tls.port}"]
    assert fake_dns.lookups("hooks.test") == 1


def test_tls_to_an_untrusted_certificate_still_fails(
    fake_dns: FakeDNS, tmp_path: Path, sink_settings: Callable[..., Any]
) -> None:
    cert, key = _certificate(tmp_path, "hooks.test")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    fake_dns.set("hooks.test", ["127.0.0.1"])
    for tls in _serve(server_context):
        sink = HttpSink(sink_settings())  # the system's CAs: the self-signed one is unknown
        try:
            result = sink.deliver(request_for(f"https://hooks.test:{tls.port}/hook"))
        finally:
            sink.close()
        assert not result.success and result.retryable
        assert "CERTIFICATE_VERIFY_FAILED" in (result.error or "")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "10.1.2.3",  # private
        "192.168.0.10",
        "172.16.0.1",
        "169.254.169.254",  # link-local: cloud metadata
        "100.100.100.200",  # Alibaba metadata (shared address space)
        "224.0.0.251",  # multicast
        "0.0.0.0",  # unspecified
        "::1",
        "fe80::1",  # IPv6 link-local
        "fd00:ec2::254",  # AWS metadata over IPv6 (unique local)
        "ff02::1",  # IPv6 multicast
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",  # IPv4-mapped metadata
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    ],
)
def test_internal_addresses_are_refused_after_resolution(
    fake_dns: FakeDNS, sink_settings: Callable[..., Any], address: str
) -> None:
    fake_dns.set("evil.test", [address])
    spy = _Spy()
    sink = HttpSink(sink_settings(allowed_networks=[]))
    sink._transport = PinnedTransport(backend=PinningBackend(spy))
    try:
        result = sink.deliver(request_for("http://evil.test:8080/hook"))
    finally:
        sink.close()
    assert not result.success and not result.retryable
    assert result.error is not None and result.error.startswith("recipient address refused")
    assert str(ipaddress.ip_address(address)) in result.error
    assert spy.targets == []  # never connected


def test_one_internal_record_among_public_ones_is_refused(
    fake_dns: FakeDNS, sink_settings: Callable[..., Any]
) -> None:
    fake_dns.set("mixed.test", ["93.184.216.34", "10.0.0.1"])
    sink = HttpSink(sink_settings(allowed_networks=[]))
    try:
        result = sink.deliver(request_for("http://mixed.test/hook"))
    finally:
        sink.close()
    assert not result.retryable and "10.0.0.1" in (result.error or "")


def test_allowed_networks_from_the_environment_let_loopback_through(
    fake_dns: FakeDNS, server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASYNCEVENTS_ALLOWED_NETWORKS", "127.0.0.0/8")
    fake_dns.set("local.test", ["127.0.0.1"])
    sink = HttpSink(load_settings())
    try:
        result = sink.deliver(request_for(f"http://local.test:{server.port}/hook"))
    finally:
        sink.close()
    assert result.success, result.error
