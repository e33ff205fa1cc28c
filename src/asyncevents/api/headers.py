"""The security headers of every HTML page the server sends: the console and ``/docs``.

One Content-Security-Policy base (nothing loads unless allowed; no page may
be framed; forms post only here), the frame, sniffing and referrer headers,
and ``no-store``. A page with a script allows it by a nonce fresh for that
response, never by ``'unsafe-inline'``.
"""

from __future__ import annotations

import secrets

__all__ = ["PAGE_HEADERS", "content_security_policy", "new_nonce", "page_headers"]

_BASE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
             "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer, browsers send "Origin: null" on
    # form posts, which the CSRF check must refuse.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""The headers besides the Content-Security-Policy."""


def new_nonce() -> str:
    """A fresh script nonce for one response."""
    return secrets.token_urlsafe(18)


def content_security_policy(*, nonce: str | None = None, scripts_from_self: bool = False,
                            styles_from_self: bool = False, images: str = "") -> str:
    """The policy of a page: the base one, plus what the page needs.

    ``nonce``: its inline script runs (and may ``fetch`` this origin);
    ``scripts_from_self``/``styles_from_self``: it loads script files or
    stylesheets from this server; ``images``: image sources besides
    ``'self'`` (``data:``).
    """
    csp = _BASE_CSP
    if styles_from_self:
        csp = csp.replace("style-src 'unsafe-inline'", "style-src 'self' 'unsafe-inline'")
    if images:
        csp = csp.replace("img-src 'self'", f"img-src 'self' {images}")
    sources = (["'self'"] if scripts_from_self else []) + (
        [f"'nonce-{nonce}'"] if nonce else [])
    if sources:
        csp += f"; script-src {' '.join(sources)}; connect-src 'self'"
    return csp


def page_headers(csp: str) -> dict[str, str]:
    """Every security header of a page whose policy is ``csp``."""
    return {"Content-Security-Policy": csp, **PAGE_HEADERS}
