"""Event Grid recipients: a topic (or domain) endpoint, ``https://HOST/api/events``."""

from __future__ import annotations

from urllib.parse import urlsplit

from asyncevents import InvalidRecipient

__all__ = ["parse_recipient"]

_FORM = "https://TOPIC.REGION-1.eventgrid.azure.net/api/events"


def parse_recipient(recipient: str, hosts: tuple[str, ...]) -> str:
    """The endpoint URL of ``recipient``; ``InvalidRecipient`` unless it is an https
    endpoint ending in ``/api/events`` on a host ``hosts`` allows (a name, or a ``.suffix``)."""
    try:
        url = urlsplit(recipient.strip())
        url.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise InvalidRecipient(f"not a URL; expected {_FORM}") from None
    if url.scheme != "https" or not url.hostname:
        raise InvalidRecipient(f"an Event Grid recipient is an https URL: {_FORM}")
    if url.username is not None or url.query or url.fragment:
        raise InvalidRecipient("no credentials, query or fragment in the endpoint: the "
                               "subscription's token is the access key")
    if not url.path.rstrip("/").endswith("/api/events"):
        raise InvalidRecipient(f"a topic endpoint ends in /api/events: {_FORM}")
    host = url.hostname.lower()
    if not any(host == h or (h.startswith(".") and host.endswith(h)) for h in hosts):
        raise InvalidRecipient(f"the host {host} is not an Event Grid host allowed by "
                               "ASYNCEVENTS_EVENTGRID_ALLOWED_HOSTS")
    return recipient.strip()
