"""One MQTT connection (a paho client and its network thread), and what the broker answers.

paho's ``publish`` is thread-safe, so every worker thread publishing to the
same broker with the same credentials shares one ``Connection``. A
connection does not reconnect by itself: once lost it is dropped, and the
next delivery opens a new one.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from asyncevents import Address, Settings, guarded_addresses
from asyncevents_mqtt.recipient import Target
from asyncevents_mqtt.settings import MqttSettings

__all__ = ["RETRYABLE_REASONS", "BrokerRefused", "Connection"]

#: MQTT 5 reason codes that may clear by themselves: unspecified or implementation-specific
#: errors, server unavailable or busy, packet id in use, quota or connection rate exceeded.
RETRYABLE_REASONS = frozenset({0x80, 0x83, 0x88, 0x89, 0x91, 0x97, 0x9F})


def _reason_name(reason: ReasonCode | int) -> str:
    if isinstance(reason, ReasonCode):
        return str(reason.getName())
    try:  # a code read off the wire: PUBACK and PUBREC share their names
        return str(ReasonCode(PacketTypes.PUBACK, identifier=reason).getName())
    except Exception:
        return "reason"


class BrokerRefused(Exception):
    """The broker answered a CONNECT or PUBLISH with a failure reason code."""

    def __init__(self, what: str, reason: ReasonCode | int) -> None:
        self.value = reason.value if isinstance(reason, ReasonCode) else int(reason)
        super().__init__(f"the broker refused the {what}: {_reason_name(reason)} "
                         f"(0x{self.value:02X})")

    @property
    def retryable(self) -> bool:
        """Whether the reason may clear by itself (throttling, an unavailable server)."""
        return self.value in RETRYABLE_REASONS


class _Client(mqtt.Client):
    """paho's client, also reporting a failure reason in a PUBREC (QoS 2), which paho ignores,
    and connecting only to the addresses the guard checked."""

    on_pubrec_refused: Callable[[int, int], None] | None = None
    #: Where the next connect goes: the broker's addresses, resolved once and checked
    #: (pinning). paho keeps the name for TLS (SNI, certificate check).
    addresses: Sequence[Address] = ()

    def _create_socket_connection(self) -> socket.socket:
        error: OSError | None = None
        for address in self.addresses:
            try:
                return socket.create_connection(address, timeout=self._connect_timeout)
            except OSError as exc:
                error = exc
        raise error or ConnectionError("no checked address to connect to")

    def _handle_pubrec(self) -> MQTTErrorCode:
        # A reading of paho's internals must never break the client: errors are ignored.
        with contextlib.suppress(Exception):
            # MQTT 5 PUBREC: the packet id (2 bytes), then the reason code if there is one.
            packet = self._in_packet["packet"]
            if (self.protocol == MQTTProtocolVersion.MQTTv5 and len(packet) >= 3
                    and packet[2] >= 0x80 and self.on_pubrec_refused is not None):
                self.on_pubrec_refused(int.from_bytes(packet[0:2], "big"), packet[2])
        result: MQTTErrorCode = super()._handle_pubrec()
        return result


class Connection:
    """A connected paho client for one broker and one set of credentials."""

    def __init__(self, target: Target, password: str | None, options: MqttSettings,
                 settings: Settings) -> None:
        self.target = target
        self.options = options
        self.settings = settings
        self.protocol = (MQTTProtocolVersion.MQTTv5 if options.protocol == "5"
                         else MQTTProtocolVersion.MQTTv311)
        self._connected = threading.Event()
        self._connack: ReasonCode | None = None
        self._lock = threading.Lock()
        self._acks: dict[int, tuple[float, int]] = {}  # mid -> (when, reason code)
        self._refused: dict[int, tuple[float, int]] = {}  # mid -> (when, PUBREC reason code)
        self.client = _Client(
            CallbackAPIVersion.VERSION2, client_id=f"asyncevents-{uuid.uuid4().hex[:16]}",
            protocol=self.protocol, reconnect_on_failure=False)
        self.client.on_pubrec_refused = self._on_pubrec_refused
        self.client.connect_timeout = options.timeout
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        username = target.user or options.username
        if username:
            self.client.username_pw_set(username, password)
        if target.tls:
            self.client.tls_set_context(ssl.create_default_context(
                cafile=str(options.ca_file) if options.ca_file else None))

    def open(self) -> None:
        """Connect and wait for the CONNACK; ``BrokerRefused`` if the broker says no.

        The broker's name is resolved here, once, and every address checked by the
        address guard (``InvalidRecipient`` when one is private and not allowed).
        """
        self.client.addresses = guarded_addresses(self.target.host, self.target.port,
                                                  self.settings)
        self.client.connect(self.target.host, self.target.port, keepalive=self.options.keepalive)
        self.client.loop_start()
        if not self._connected.wait(self.options.timeout):
            self.close()
            raise TimeoutError(f"no CONNACK from {self.target.broker} "
                               f"within {self.options.timeout:g}s")
        if self._connack is None:
            self.close()
            raise ConnectionError(f"{self.target.broker} closed the connection before its CONNACK")
        if self._connack.is_failure:
            self.close()
            raise BrokerRefused("connection", self._connack)

    @property
    def usable(self) -> bool:
        """Whether the connection is up and can take a publish."""
        return self.client.is_connected()

    def publish(self, topic: str, payload: bytes, qos: int,
                properties: Properties | None) -> None:
        """Publish and wait for the PUBACK (QoS 1) or PUBCOMP (QoS 2).

        Raises ``BrokerRefused`` for a failure reason code (MQTT 5),
        ``TimeoutError`` when no ack comes in time, ``ConnectionError`` when
        the connection is down.
        """
        started = time.monotonic()
        info = self.client.publish(topic, payload, qos=qos, properties=properties)
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            raise ConnectionError(f"the connection to {self.target.broker} is down")
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")
        info.wait_for_publish(self.options.timeout)
        with self._lock:
            answers = [self._refused.pop(info.mid, None), self._acks.pop(info.mid, None)]
        if not info.is_published():
            raise TimeoutError(f"no ack from {self.target.broker} within "
                               f"{self.options.timeout:g}s")
        for answer in answers:  # an old answer to the same packet id does not count
            if answer is not None and answer[0] >= started and answer[1] >= 0x80:
                raise BrokerRefused("message", answer[1])

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Properties | None) -> None:
        self._connack = reason
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Properties | None) -> None:
        self._connected.set()  # a CONNECT refused by closing the socket ends the wait too

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Properties | None) -> None:
        # Called before paho marks the message published: the code is there when we look.
        with self._lock:
            self._acks[mid] = (time.monotonic(), reason.value)

    def _on_pubrec_refused(self, mid: int, reason: int) -> None:
        with self._lock:
            self._refused[mid] = (time.monotonic(), reason)
