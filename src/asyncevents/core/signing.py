"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``.
Shared by every sink that signs what it sends.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

__all__ = ["SECRET_PREFIX", "sign", "signing_key"]

SECRET_PREFIX = "whsec_"


def signing_key(token: str) -> bytes:
    """The HMAC key for ``token``.

    A ``whsec_`` token is the base64 of the key, as Standard Webhooks
    libraries generate it; any other token is the key itself, as UTF-8.
    Raises ``ValueError`` (whose message never contains the token) when the
    token is empty or a ``whsec_`` token is not valid base64.
    """
    if not token.startswith(SECRET_PREFIX):
        if not token:
            raise ValueError("the verification token is empty")
        return token.encode("utf-8")
    encoded = token[len(SECRET_PREFIX):].rstrip("=")
    try:
        # Padding is often dropped from these secrets; accept it either way,
        # as the reference library does. Stray characters are refused rather
        # than skipped, so a mangled token fails loudly instead of signing
        # with a key the receiver does not have.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"the verification token starts with {SECRET_PREFIX!r} but the rest is not base64"
        ) from None
    if not key:
        raise ValueError(f"the verification token has nothing after {SECRET_PREFIX!r}")
    return key


def sign(token: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    signed = b"%s.%d.%s" % (msg_id.encode("utf-8"), timestamp, body)
    digest = hmac.new(signing_key(token), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")
