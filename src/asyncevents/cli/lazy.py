"""A click group whose commands in other modules are imported only when one runs.

``asyncevents --help`` and ``--version`` answer at once: the store
(SQLAlchemy), the transports (kombu), the REST API (FastAPI) and the plugins
are imported by the command that needs them, not by the command line itself.
The listing of ``--help`` shows each lazy command's declared help (the first
sentence of its docstring; a test checks that they agree).
"""

from __future__ import annotations

import importlib

import click

__all__ = ["LazyGroup"]


class LazyGroup(click.Group):
    """A group with commands added by import path (``module:attribute``) and short help."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        #: name -> (``module:attribute``, the help shown before the module is imported).
        self.lazy: dict[str, tuple[str, str]] = {}

    def add_lazy(self, name: str, target: str, help: str) -> None:
        """Add the command at ``target`` (``module:attribute``) as ``name``, imported when used."""
        self.lazy[name] = (target, help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, imported or not."""
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, its module imported now if it was not yet."""
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.commands[cmd_name] = self.load(cmd_name)
        return self.commands.get(cmd_name)

    def load(self, name: str) -> click.Command:
        """Import the lazy command ``name``."""
        module, _, attribute = self.lazy[name][0].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[name][0]} is not a click command")
        return command

    def listed(self, name: str) -> click.Command:
        """What the listing shows for ``name``: the command, or a stand-in with its help."""
        if name in self.commands:
            return self.commands[name]
        return click.Command(name, help=self.lazy[name][1])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's command listing, without importing the commands not loaded yet."""
        commands = [(name, self.listed(name)) for name in self.list_commands(ctx)]
        commands = [(name, command) for name, command in commands if not command.hidden]
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(limit))
                                for name, command in commands])
