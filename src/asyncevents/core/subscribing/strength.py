"""How guessable a verification token is: a warning for weak ones, never a refusal.

Receivers check each delivery's signature with the subscription's token, so
whoever guesses the token can sign deliveries of their own. A token shorter
than 16 characters, or made of fewer than 8 different characters
(``aaaaaaaaaaaaaaaa``, ``passwordpassword``), is easy to guess. A ``whsec_``
key (Standard Webhooks: the base64 of random bytes) is fine unless it
decodes to fewer than 16 bytes; a ``whsk_`` Ed25519 key is never weak.
The warning never quotes the token.
"""

from __future__ import annotations

from asyncevents.core.sink import PRIVATE_KEY_PREFIX, SECRET_PREFIX, signing_key

__all__ = ["MIN_DISTINCT", "MIN_LENGTH", "weak_token_warning"]

MIN_LENGTH = 16
"""Characters (or, for a ``whsec_`` key, bytes of key) a token should have at least."""
MIN_DISTINCT = 8
"""Different characters a token should be made of at least."""

_ADVICE = ("receivers verify signatures with it, so whoever guesses it can sign deliveries; "
           "use a long random one, e.g. whsec_ and the base64 of 24 random bytes")


def weak_token_warning(token: str) -> str | None:
    """One line saying why ``token`` is weak, or ``None`` when it is not (or is empty: a
    sink that does not sign needs none)."""
    if not token or token.startswith(PRIVATE_KEY_PREFIX):
        return None
    if token.startswith(SECRET_PREFIX):
        try:
            size = len(signing_key(token))
        except ValueError:
            return None  # refused as invalid elsewhere
        if size >= MIN_LENGTH:
            return None
        reason = f"its whsec_ key is only {size} bytes (give at least {MIN_LENGTH})"
    elif len(token) < MIN_LENGTH:
        reason = f"it is shorter than {MIN_LENGTH} characters"
    elif len(set(token)) < MIN_DISTINCT:
        reason = f"it is made of only {len(set(token))} different characters"
    else:
        return None
    return f"weak verification token: {reason}; {_ADVICE}"
