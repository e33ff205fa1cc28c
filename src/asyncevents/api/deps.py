"""What routes get from the request: the App the API serves."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from asyncevents.core.app import App

__all__ = ["AppDep", "app_of"]


def app_of(request: Request) -> App:
    """The asyncevents App that ``create_app`` was given."""
    app = request.app.state.asyncevents
    assert isinstance(app, App)
    return app


AppDep = Annotated[App, Depends(app_of)]
