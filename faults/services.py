"""Short, always-reverted outages of the RabbitMQ and PostgreSQL servers on 127.0.0.1.

Other people's tests share these servers, so an outage is one detached shell
script that stops the service, sleeps, and starts it again: even if the fault
run itself is killed half-way, the service comes back. :func:`outage` also
checks on the way out that the service answers, and starts it if not.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SERVICES", "Outage", "listening", "outage", "wait_listening"]


def _pg_cluster() -> tuple[str, str]:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    return (versions[-1] if versions else "15"), "main"


def _pg(action: str) -> str:
    version, cluster = _pg_cluster()
    mode = " -m fast" if action == "stop" else ""
    return f"pg_ctlcluster --skip-systemctl-redirect {version} {cluster} {action}{mode}"


@dataclass(frozen=True)
class _Service:
    port: int
    stop: str
    start: str
    rescue: str
    """Run when the service is still down after its outage."""


SERVICES = {
    "rabbitmq": _Service(5672, "rabbitmqctl stop_app", "rabbitmqctl start_app",
                         "rabbitmqctl start_app || rabbitmq-server -detached"),
    "postgresql": _Service(5432, _pg("stop"), _pg("start"), _pg("start")),
}


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


def wait_listening(port: int, up: bool, timeout: float) -> bool:
    """Wait until the port is (``up``) or is not accepting connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(port) == up:
            return True
        time.sleep(0.1)
    return listening(port) == up


@dataclass
class Outage:
    """When a service went down and came back (monotonic seconds)."""

    service: str
    down_at: float = 0.0
    up_at: float = 0.0

    @property
    def seconds(self) -> float:
        """How long it did not answer."""
        return max(0.0, self.up_at - self.down_at)


@contextmanager
def outage(service: str, down_for: float, log: Path) -> Iterator[Outage]:
    """Stop ``service`` for about ``down_for`` seconds, in the background.

    The body runs while the service goes down and comes back; on exit the
    outage is over and the service answers again (or this raises).
    """
    spec = SERVICES[service]
    script = f"{spec.stop}; sleep {down_for}; {spec.start}"
    with open(log, "ab") as out:
        # A session of its own: a SIGKILL of this process (or of pytest) does
        # not stop the script before it has started the service again.
        proc = subprocess.Popen(["sh", "-c", script], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    record = Outage(service)
    try:
        if wait_listening(spec.port, up=False, timeout=60):
            record.down_at = time.monotonic()
        yield record
    finally:
        try:
            proc.wait(timeout=down_for + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not wait_listening(spec.port, up=True, timeout=60):
            subprocess.run(["sh", "-c", spec.rescue], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=120, check=False)
            if not wait_listening(spec.port, up=True, timeout=60):
                raise RuntimeError(f"{service} did not come back on port {spec.port}")
        record.up_at = time.monotonic()
