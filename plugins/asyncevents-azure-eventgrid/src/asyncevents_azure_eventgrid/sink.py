"""The Event Grid sink: one CloudEvents 1.0 event per delivery, sent to a topic endpoint.

Authentication is the topic's access key (the subscription's token, sent as
``aeg-sas-key``), or an Entra ID token from azure-identity's
``DefaultAzureCredential`` when ``ASYNCEVENTS_EVENTGRID_AUTH=entra`` or the
token is empty.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

try:
    # The topic ("basic") client itself. Since 4.18 the public EventGridPublisherClient wraps
    # it for topics but drops the pipeline options (retries, timeouts, TLS trust) and turns
    # a dict into an SDK CloudEvent; this one sends our document as it is.
    from azure.eventgrid._legacy import EventGridPublisherClient
except ImportError:  # before 4.18 the public class is the topic client
    from azure.eventgrid import EventGridPublisherClient

from azure.core.pipeline.transport import RequestsTransport

from asyncevents import (
    DeliveryRequest,
    DeliveryResult,
    InvalidRecipient,
    Settings,
    UnverifiedRecipient,
    check_address,
    cloudevent,
)
from asyncevents_azure_eventgrid.guarded import guarded_session
from asyncevents_azure_eventgrid.recipient import parse_recipient
from asyncevents_azure_eventgrid.settings import EventGridSettings

__all__ = ["EventGridSink", "classify"]

_RETRYABLE_STATUS = frozenset({408, 425, 429})
_EXCERPT = 500


class EventGridSink:
    """Sends events to Azure Event Grid topics and domains, in the CloudEvents 1.0 schema."""

    name: ClassVar[str] = "eventgrid"

    def __init__(self, settings: Settings, options: EventGridSettings | None = None, *,
                 entra_credential: Any = None) -> None:
        self.settings = settings
        self.options = options if options is not None else EventGridSettings.from_env()
        self._entra = entra_credential  # built on first use unless given (tests)
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def validate_recipient(self, recipient: str) -> None:
        """Raise ``InvalidRecipient`` unless ``recipient`` is an allowed topic endpoint on an
        address the address guard lets through (``ASYNCEVENTS_ALLOWED_NETWORKS``)."""
        check_address(parse_recipient(recipient, self.options.hosts), self.settings)

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Send the CloudEvent; succeed on Event Grid's 200."""
        try:
            endpoint = parse_recipient(request.recipient, self.options.hosts)
        except InvalidRecipient as exc:
            return DeliveryResult.failed(f"invalid recipient: {exc}", retryable=False)
        try:
            client = self._client(endpoint, request.token)
            client.send(cloudevent(request))
        except UnverifiedRecipient as exc:  # the name does not resolve (perhaps only now)
            return DeliveryResult.failed(str(exc))
        except InvalidRecipient as exc:  # the address guard, when the client connected
            return DeliveryResult.failed(f"recipient address refused: {exc}", retryable=False)
        except Exception as exc:
            result = classify(exc)
            token = request.token
            if token and (token in (result.error or "") or token in result.response):
                return DeliveryResult.failed(
                    (result.error or "").replace(token, "***"), retryable=result.retryable,
                    retry_after=result.retry_after, status_code=result.status_code,
                    response=result.response.replace(token, "***"))
            return result
        return DeliveryResult.ok(200)

    def close(self) -> None:
        """Close every client's connection pool."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _uses_entra(self, token: str) -> bool:
        return self.options.auth == "entra" or not token

    def _client(self, endpoint: str, token: str) -> Any:
        entra = self._uses_entra(token)
        # The key's digest, not the key, tells clients apart: a rotated key gets a new one.
        key = (endpoint, "entra" if entra else hashlib.sha256(token.encode()).hexdigest())
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                credential = self._entra_credential() if entra else AzureKeyCredential(token)
                client = EventGridPublisherClient(endpoint, credential, **self._pipeline())
                self._clients[key] = client
            return client

    def _pipeline(self) -> dict[str, Any]:
        connection: dict[str, Any] = {
            "connection_timeout": self.options.connect_timeout,
            "read_timeout": self.options.timeout,
        }
        if self.options.ca_file is not None:
            connection["connection_verify"] = str(self.options.ca_file)
        # Connections only to addresses the guard checked, resolved once (pinning); the
        # transport is ours, so it takes the connection options itself.
        transport = RequestsTransport(session=guarded_session(self.settings), session_owner=True,
                                      use_env_settings=False, **connection)
        options: dict[str, Any] = {"transport": transport, **connection,
                                   "retry_total": 0}  # the core retries, with its own back-off
        return options

    def _entra_credential(self) -> Any:
        if self._entra is None:
            try:
                from azure.identity import DefaultAzureCredential
            except ImportError:
                raise MissingIdentity() from None
            self._entra = DefaultAzureCredential()
        return self._entra


class MissingIdentity(Exception):
    """Entra ID is asked for but azure-identity is not installed."""

    def __str__(self) -> str:
        return ("Entra ID needs azure-identity: pip install 'asyncevents-azure-eventgrid[entra]'"
                " (or set ASYNCEVENTS_EVENTGRID_AUTH=key and subscribe with the access key)")


def _retry_after(error: HttpResponseError) -> float | None:
    value = error.response.headers.get("Retry-After") if error.response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def classify(exc: BaseException) -> DeliveryResult:
    """The failed result for what ``send`` raised: retryable or not, with status and excerpt."""
    cause = exc.__cause__
    if (isinstance(exc, HttpResponseError) and exc.response is None
            and isinstance(cause, HttpResponseError)):
        exc = cause  # the SDK re-raises a 404 without its response; the cause has it
    if isinstance(exc, HttpResponseError) and exc.response is not None:
        status = int(exc.status_code or exc.response.status_code)
        try:
            excerpt = exc.response.text()[:_EXCERPT]
        except Exception:
            excerpt = ""
        retryable = status >= 500 or status in _RETRYABLE_STATUS
        what = ("refused the credentials" if status in (401, 403)
                else "has no such topic" if status == 404 else "answered")
        return DeliveryResult.failed(
            f"Event Grid {what}: {status} {exc.response.reason or ''}".rstrip(),
            retryable=retryable, retry_after=_retry_after(exc) if retryable else None,
            status_code=status, response=excerpt)
    if isinstance(exc, ClientAuthenticationError):  # from the credential, not from Event Grid
        return DeliveryResult.failed(f"could not get an Entra ID token: {exc.message}")
    if isinstance(exc, MissingIdentity):
        return DeliveryResult.failed(str(exc))
    if isinstance(exc, ServiceRequestError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return DeliveryResult.failed("the endpoint's TLS certificate is not trusted "
                                     "(ASYNCEVENTS_EVENTGRID_CA_FILE)", retryable=False)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        # Connection refused or reset, DNS, timeouts: worth another try.
        return DeliveryResult.failed(f"cannot reach Event Grid: {type(exc).__name__}: "
                                     f"{exc.message}")
    if isinstance(exc, AzureError):
        return DeliveryResult.failed(f"{type(exc).__name__}: {exc.message}")
    if isinstance(exc, (TypeError, ValueError)):  # the SDK refusing the event itself
        return DeliveryResult.failed(f"the Event Grid client refused the event: {exc}",
                                     retryable=False)
    return DeliveryResult.failed(f"{type(exc).__name__}: {exc}")
