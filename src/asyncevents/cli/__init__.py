"""The ``asyncevents`` command.

Every command prints data as a table, or as JSON with ``--json``; a user's
mistake ends with a one-line ``error: ...`` on stderr and exit code 1, and
what is accepted but worth a look (asyncevents' own warnings) is a one-line
``warning: ...`` on stderr.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import TextIO

import click

from asyncevents.cli.commands import cli
from asyncevents.errors import AsyncEventsError, AsyncEventsWarning

__all__ = ["cli", "main"]


def _showwarning(message: Warning | str, category: type[Warning], filename: str,
                 lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
    """Print asyncevents' own warnings as one ``warning:`` line; others as Python does."""
    if issubclass(category, AsyncEventsWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return (and exit with) its code."""
    with warnings.catch_warnings():
        warnings.showwarning = _showwarning
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        cli.main(args=argv, prog_name="asyncevents", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        code = 130
    except click.UsageError as exc:
        # One line, like every other error; the usage text is one --help away.
        where = exc.ctx.command_path if exc.ctx is not None else "asyncevents"
        click.echo(f"error: {exc.format_message()} (see '{where} --help')", err=True)
        code = exc.exit_code
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        code = exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except AsyncEventsError as exc:
        click.echo(f"error: {exc}", err=True)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # a bug, not the user's fault: still one line, unless asked
        if os.environ.get("ASYNCEVENTS_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} "
                   "(set ASYNCEVENTS_DEBUG=1 for the traceback)", err=True)
        code = 2
    else:
        code = 0
    if argv is None:
        sys.exit(code)
    return code
