"""Pub/Sub recipients: a topic's resource name, ``projects/PROJECT/topics/TOPIC``."""

from __future__ import annotations

import re

from asyncevents import InvalidRecipient

__all__ = ["parse_recipient"]

# A project id (6-30 characters), optionally domain-scoped ("example.com:my-project").
_PROJECT = r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]"
# A topic id: 3-255 characters, starting with a letter.
_TOPIC = r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}"
_NAME = re.compile(rf"^projects/(?P<project>{_PROJECT})/topics/(?P<topic>{_TOPIC})$")


def parse_recipient(recipient: str) -> tuple[str, str]:
    """The project and topic ids of ``projects/P/topics/T``; ``InvalidRecipient`` otherwise."""
    match = _NAME.match(recipient.strip())
    if match is None:
        raise InvalidRecipient(
            "a Pub/Sub recipient is a topic name projects/PROJECT/topics/TOPIC (a project id of "
            "6-30 lower-case letters, digits or -; a topic id of 3-255 letters, digits or "
            "- _ . ~ + %, starting with a letter)")
    if match["topic"].startswith("goog"):
        raise InvalidRecipient("topic ids starting with 'goog' are reserved by Google")
    return match["project"], match["topic"]
