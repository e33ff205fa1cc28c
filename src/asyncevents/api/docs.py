"""``/docs``: Swagger UI served from the installed ``swagger-ui-bundle-v2`` package.

FastAPI's own page loads Swagger UI from a CDN, so a server without internet
access (or a browser behind a strict proxy) shows a blank page. Here the
page, its script, stylesheet and icon all come from this server, and
Swagger UI's online validator badge is off: ``/docs`` calls nothing outside.

The page has the console's security headers (:mod:`asyncevents.api.headers`):
it may not be framed, and its Content-Security-Policy lets it load only
Swagger UI's files from this server and run only its own inline script, by
a nonce fresh for each response.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from asyncevents.api.headers import content_security_policy, new_nonce, page_headers

__all__ = ["ASSETS", "DOCS", "install_docs"]

DOCS = "/docs"
"""Where the page is."""
ASSETS = "/docs/assets"
"""Where Swagger UI's files are, from the package."""


def install_docs(api: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` for ``api.openapi_url``, with local assets only."""
    api.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
    openapi_url = api.openapi_url or "/openapi.json"

    @api.get(DOCS, include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        """The Swagger UI page."""
        # Behind a proxy (serve --root-path) every URL carries the prefix.
        root = str(request.scope.get("root_path", "")).rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{api.title} - API docs",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        ).body
        html = bytes(page).decode()
        nonce = new_nonce()
        # The one inline script (the one without src) runs by the nonce.
        html = html.replace("<script>", f'<script nonce="{nonce}">')
        # Swagger UI's stylesheet draws its icons as data: images.
        csp = content_security_policy(nonce=nonce, scripts_from_self=True,
                                      styles_from_self=True, images="data:")
        return HTMLResponse(html, headers=page_headers(csp))
