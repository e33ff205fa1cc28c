"""NATS recipients: ``nats://[user@]host[:port]/subject`` (``tls://`` for TLS)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from asyncevents import InvalidRecipient

__all__ = ["Target", "parse_recipient"]

DEFAULT_PORT = 4222
# A subject to publish to: dot-separated tokens, no wildcards, no spaces.
_SUBJECT = re.compile(r"^[^\s*>./]+(?:\.[^\s*>./]+)*$")
_FORM = "nats://[user@]host[:port]/subject (or tls://…)"


@dataclass(frozen=True)
class Target:
    """A recipient read: the server to connect to and the subject to publish on."""

    scheme: str
    host: str
    port: int
    subject: str
    user: str | None = None

    @property
    def server(self) -> str:
        """The server URL as nats-py takes it, without credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_recipient(recipient: str) -> Target:
    """Read a NATS recipient; ``InvalidRecipient`` says what is wrong with it."""
    try:
        url = urlsplit(recipient.strip())
        port = url.port or DEFAULT_PORT
    except ValueError:
        raise InvalidRecipient(f"not a URL; expected {_FORM}") from None
    if url.scheme not in ("nats", "tls") or not url.hostname:
        raise InvalidRecipient(f"expected {_FORM}")
    if url.password is not None:
        raise InvalidRecipient("no password in the recipient: the subscription's token is the "
                               "credential")
    if url.query or url.fragment:
        raise InvalidRecipient(f"no query or fragment in a NATS recipient; expected {_FORM}")
    subject = url.path[1:]
    if not _SUBJECT.match(subject):
        raise InvalidRecipient("the subject is dot-separated tokens without spaces, / or the "
                               "wildcards * and >, for example orders.created")
    user = unquote(url.username) if url.username else None
    return Target(url.scheme, url.hostname, port, subject, user)
