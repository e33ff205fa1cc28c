"""The REST API and the web console (FastAPI).

``create_app(App())`` builds the ASGI application; ``asyncevents serve`` runs
it with uvicorn. Importing this package is cheap: FastAPI is loaded only
when ``create_app`` is first used, so the CLI's other commands stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asyncevents.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from asyncevents.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
