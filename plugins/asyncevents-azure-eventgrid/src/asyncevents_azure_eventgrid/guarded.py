"""An HTTP session for the Event Grid client that connects only where the address guard lets it.

azure-core sends through ``requests`` (urllib3 underneath). Here urllib3's
connections resolve the endpoint's name once when they open, check every
address with ``asyncevents.guarded_addresses`` (``ASYNCEVENTS_ALLOWED_NETWORKS``
opens private ones) and connect to those addresses, never to a second DNS
answer; TLS keeps the name for SNI and the certificate check. A refused
address raises ``InvalidRecipient`` out of the send. No proxy is taken from
the environment: it would connect past the guard.
"""

from __future__ import annotations

import socket
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection
from urllib3.util.retry import Retry

from asyncevents import Settings, guarded_addresses

__all__ = ["guarded_session"]


def guarded_session(settings: Settings) -> requests.Session:
    """A ``requests`` session for https endpoints, guarded and pinned; no retries of its own."""

    class GuardedConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            error: OSError | None = None
            for address in guarded_addresses(self._dns_host, self.port, settings):
                try:
                    return connection.create_connection(
                        tuple(address), self.timeout, source_address=self.source_address,
                        socket_options=self.socket_options)
                except TimeoutError as exc:
                    raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. "
                                                    f"(connect timeout={self.timeout})") from exc
                except OSError as exc:
                    error = exc
            raise NewConnectionError(self, f"Failed to establish a new connection: {error}")

    class GuardedPool(HTTPSConnectionPool):
        ConnectionCls = GuardedConnection

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"https": GuardedPool}
            self.poolmanager.key_fn_by_scheme = {
                "https": self.poolmanager.key_fn_by_scheme["https"]}

    session = requests.Session()
    session.trust_env = False  # no proxy, no .netrc from the environment
    for prefix in ("http://", "https://"):  # plain http has no pool class: refused
        session.mount(prefix, GuardedAdapter(
            max_retries=Retry(total=False, redirect=False, raise_on_status=False)))
    return session
