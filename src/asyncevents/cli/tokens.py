"""``asyncevents tokens create|list|revoke``: API tokens for the REST API and the console."""

from __future__ import annotations

import click

from asyncevents.api.services import tokens as repo
from asyncevents.cli.context import get_app, json_option
from asyncevents.cli.output import console, print_json, print_table

__all__ = ["tokens"]


@click.group()
def tokens() -> None:
    """Create, list and revoke API tokens (stored hashed; shown once)."""


@tokens.command()
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(repo.SCOPES),
              help="Repeat for several; 'admin' grants every scope.")
@json_option
def create(name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create a token called NAME and print it (this once: it is not stored)."""
    token, secret = repo.create_token(get_app().store, name, scopes)
    if as_json:
        print_json({**token.public(), "token": secret})
        return
    click.echo(secret)
    click.echo(f"token {token.id} ({token.name}: {', '.join(token.scopes)}) created; "
               "copy it now, it is not shown again", err=True)


@tokens.command("list")
@click.option("--revoked", is_flag=True, help="Include revoked tokens.")
@json_option
def list_(revoked: bool, as_json: bool) -> None:
    """Tokens, without their secrets."""
    rows = [t.public() for t in repo.list_tokens(get_app().store, revoked=revoked)]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["scopes"] = " ".join(row["scopes"])
    print_table(rows, ("id", "name", "prefix", "scopes", "created_at", "last_used_at",
                       "revoked_at"), title="Tokens")


@tokens.command()
@click.argument("token_id", metavar="ID")
@json_option
def revoke(token_id: str, as_json: bool) -> None:
    """Revoke token ID at once."""
    token = repo.revoke_token(get_app().store, token_id)
    if as_json:
        print_json(token.public())
    else:
        console.print(f"token {token.id} ({token.name}) revoked")
