"""The App a CLI invocation works on, built once and on demand."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from asyncevents.core.app import App

__all__ = ["get_app", "json_option", "parse_json_object", "read_value"]

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def get_app() -> App:
    """The App for this invocation (settings errors surface as ``ConfigError``).

    Built on first use (and the plugins loaded then), never by ``--help``.
    """
    from asyncevents.core.app import App
    from asyncevents.core.log import configure_logging

    ctx = click.get_current_context()
    root = ctx.find_root()
    app = root.meta.get("asyncevents.app")
    if app is None:
        app = App()
        configure_logging(app.settings.log_level, app.settings.log_json)
        root.meta["asyncevents.app"] = app
        root.call_on_close(app.close)
    assert isinstance(app, App)
    return app


def parse_json_object(value: str | None, option: str) -> dict[str, Any] | None:
    """Parse an option's JSON object, or raise a ``BadParameter`` saying what is wrong."""
    if value is None:
        return None
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg} at character {exc.pos})",
                                 param_hint=option) from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"must be a JSON object, not {type(data).__name__}",
                                 param_hint=option)
    return data


def read_value(value: str, option: str) -> str:
    """An option's text as given, or read from ``@FILE``, or from stdin for ``-`` (or ``@-``).

    For payloads the command line cannot hold; a file that cannot be read is
    a ``BadParameter`` naming it.
    """
    if value in ("-", "@-"):
        raw = sys.stdin.buffer.read()
        where = "standard input"
    elif value.startswith("@"):
        path = Path(value[1:])
        where = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {where}: {exc.strerror}",
                                     param_hint=option) from None
    else:
        return value
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{where} is not UTF-8 text", param_hint=option) from None
