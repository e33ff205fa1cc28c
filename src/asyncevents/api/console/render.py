"""How every console page is rendered: the templates, the security headers, the session's user.

A page carries no script unless it asks for one: then its one inline
script is allowed by a nonce fresh for that response (and ``fetch`` to
this origin), never by ``'unsafe-inline'``. The headers are those of
:mod:`asyncevents.api.headers`, which ``/docs`` sends too.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape

from asyncevents.api.console import session
from asyncevents.api.headers import content_security_policy, new_nonce, page_headers
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


def page(request: Request, name: str, status: int = 200, *, script: bool = False,
         **context: Any) -> HTMLResponse:
    """Render template ``name`` with the console's headers.

    With ``script``, the template gets a ``nonce`` for its inline script.
    """
    nonce = new_nonce() if script else None
    if nonce:
        context["nonce"] = nonce
    response = templates.TemplateResponse(
        request, name, context, status_code=status,
        headers=page_headers(content_security_policy(nonce=nonce)))
    assert isinstance(response, HTMLResponse)
    return response


def user(request: Request, scope: str) -> dict[str, Any]:
    """The template context of a page that needs ``scope``: the user and the CSRF token."""
    token, session_id = session.current_token(request, scope)
    return {"user": token, "csrf": session.csrf_token(session_id)}


def back(url: str, **params: str) -> RedirectResponse:
    """A 303 to ``url`` with the non-empty ``params`` as its query."""
    query = urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(url + ("?" + query if query else ""), status_code=303)
