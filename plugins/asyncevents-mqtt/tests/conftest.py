"""Fixtures: the real Mosquitto on 127.0.0.1:1883 (started if down), a listener per test,
and a private Mosquitto with passwords and an ACL."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from asyncevents import Settings

HOST, PORT = "127.0.0.1", 1883
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


def wait_listening(port: int, seconds: float = 10.0) -> None:
    """Wait until 127.0.0.1:``port`` listens; fail the test if it never does."""
    deadline = time.monotonic() + seconds
    while not listening(port):
        if time.monotonic() > deadline:
            pytest.fail(f"nothing listens on {HOST}:{port} after {seconds:g}s")
        time.sleep(0.05)


def free_port() -> int:
    """A port nothing listens on (yet)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="session", autouse=True)
def mosquitto() -> None:
    """The machine's Mosquitto on 127.0.0.1:1883, started the packaged way if down."""
    if not listening(PORT):
        subprocess.run([MOSQUITTO, "-d", "-c", "/etc/mosquitto/mosquitto.conf"], check=False,
                       timeout=30)
        wait_listening(PORT)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("ASYNCEVENTS_") and not key.startswith("ASYNCEVENTS_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings() -> Settings:
    """Core settings: SQLite queue and store in the test's directory; the local brokers
    (127.0.0.1) let through the address guard."""
    return Settings(strict_events=False, polling_interval=0.05, allowed_networks=["127.0.0.0/8"])


@dataclass
class Listener:
    """A subscriber to ``<prefix>/#`` that keeps every message it gets."""

    port: int
    prefix: str
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def recipient(self, leaf: str = "orders", query: str = "") -> str:
        """The sink recipient for topic ``<prefix>/<leaf>``."""
        return f"mqtt://{HOST}:{self.port}/{self.prefix}/{leaf}{query}"

    def on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """paho callback: keep the message."""
        with self.lock:
            self.messages.append(message)

    def wait_for(self, event_id: str, seconds: float = 5.0) -> mqtt.MQTTMessage:
        """The message carrying the CloudEvent ``event_id``; ``AssertionError`` if none comes."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                for message in self.messages:
                    if json.loads(message.payload)["id"] == event_id:
                        return message
            time.sleep(0.02)
        raise AssertionError(f"event {event_id} did not arrive under {self.prefix}/#")

    def wait_count(self, count: int, seconds: float = 5.0) -> list[mqtt.MQTTMessage]:
        """Wait until ``count`` messages arrived; return them."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.messages)} of {count} messages arrived")


def listen(port: int = PORT, root: str = "asyncevents-test", **credentials: str,
           ) -> Iterator[Listener]:
    """Subscribe to a fresh prefix under ``root`` (QoS 2, MQTT 5) until the generator closes."""
    listener = Listener(port, f"{root}/{uuid.uuid4().hex[:12]}")
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    if credentials:
        client.username_pw_set(credentials["username"], credentials["password"])
    client.on_message = listener.on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect(HOST, port)
    client.subscribe(f"{listener.prefix}/#", qos=2)
    client.loop_start()
    if not subscribed.wait(5):
        pytest.fail("the test subscriber got no SUBACK")
    try:
        yield listener
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def listener() -> Iterator[Listener]:
    """A subscriber on the machine's Mosquitto."""
    yield from listen()


@dataclass
class SecuredBroker:
    """A private Mosquitto: user ``publisher`` may write under ``allowed/``, nowhere else."""

    port: int
    password: str


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    """A Mosquitto with a password file and an ACL on an ephemeral port, stopped afterwards."""
    broker = SecuredBroker(free_port(), "pw-" + uuid.uuid4().hex)
    passwords, acl, conf = tmp_path / "passwd", tmp_path / "acl", tmp_path / "mosquitto.conf"
    passwords.touch(mode=0o600)
    for user, password in (("publisher", broker.password), ("reader", "reader-pw")):
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True,
                       capture_output=True, timeout=30)
    acl.write_text("user publisher\ntopic write allowed/#\n\nuser reader\ntopic read #\n")
    acl.chmod(0o600)
    conf.write_text(
        f"listener {broker.port} {HOST}\nallow_anonymous false\npersistence false\n"
        # Started as root, Mosquitto would switch to its own user, who cannot read tmp_path.
        f"user root\npassword_file {passwords}\nacl_file {acl}\n")
    process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_listening(broker.port)
        yield broker
    finally:
        process.terminate()
        process.wait(10)
