"""How every console page is rendered: the templates, the security headers, the session's user.

A page carries no script unless it asks for one: then its one inline
script is allowed by a nonce fresh for that response (and ``fetch`` to
this origin), never by ``'unsafe-inline'``.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape

from asyncevents.api.console import session
from asyncevents.core.models import shown_recipient

__all__ = ["back", "page", "templates", "user"]

templates = Jinja2Templates(env=Environment(
    loader=PackageLoader("asyncevents.api", "templates"),
    autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True,
))
# A recipient as pages show it: a URL's credentials (user:pass@) as ***.
templates.env.filters["recipient"] = shown_recipient
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False,
                                                           sort_keys=True, default=str)
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer, browsers send "Origin: null" on
    # form posts, which the CSRF check must refuse.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def page(request: Request, name: str, status: int = 200, *, script: bool = False,
         **context: Any) -> HTMLResponse:
    """Render template ``name`` with the console's headers.

    With ``script``, the template gets a ``nonce`` for its inline script.
    """
    csp = _CSP
    if script:
        nonce = secrets.token_urlsafe(18)
        context["nonce"] = nonce
        csp += f"; script-src 'nonce-{nonce}'; connect-src 'self'"
    response = templates.TemplateResponse(request, name, context, status_code=status,
                                          headers={"Content-Security-Policy": csp, **_HEADERS})
    assert isinstance(response, HTMLResponse)
    return response


def user(request: Request, scope: str) -> dict[str, Any]:
    """The template context of a page that needs ``scope``: the user and the CSRF token."""
    token, secret = session.current_token(request, scope)
    return {"user": token, "csrf": session.csrf_token(secret)}


def back(url: str, **params: str) -> RedirectResponse:
    """A 303 to ``url`` with the non-empty ``params`` as its query."""
    query = urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(url + ("?" + query if query else ""), status_code=303)
