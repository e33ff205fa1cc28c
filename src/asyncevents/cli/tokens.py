"""``asyncevents tokens create|list|revoke``: API tokens for the REST API and the console.

``tokens create NAME --scope ... --expires 90d`` makes a token refused from
then on, like a revoked one; ``tokens list`` shows each token's expiry and
status (``active``, ``expired``, ``revoked``).
"""

from __future__ import annotations

import click

from asyncevents.api.services import tokens as repo
from asyncevents.cli.context import get_app, json_option
from asyncevents.cli.output import console, print_json, print_table
from asyncevents.errors import ConfigError

__all__ = ["tokens"]


@click.group()
def tokens() -> None:
    """Create, list and revoke API tokens (stored hashed; shown once)."""


@tokens.command()
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(repo.SCOPES),
              help="Repeat for several; 'admin' grants every scope.")
@click.option("--expires", default=None, metavar="DURATION|DATE",
              help="Refuse the token from then on: a duration from now (90d, 12h, 30m, 2w) "
                   "or a date (2027-03-01, UTC). Default: never.")
@json_option
def create(name: str, scopes: tuple[str, ...], expires: str | None, as_json: bool) -> None:
    """Create a token called NAME and print it (this once: it is not stored)."""
    try:
        expires_at = None if expires is None else repo.parse_expires(expires, "--expires")
    except ConfigError as exc:
        raise click.BadParameter(str(exc).removeprefix("invalid ").removeprefix("--expires "),
                                 param_hint="--expires") from None
    token, secret = repo.create_token(get_app().store, name, scopes, expires_at=expires_at)
    if as_json:
        print_json({**token.public(), "token": secret})
        return
    click.echo(secret)
    until = f", expires {token.expires_at.isoformat()}" if token.expires_at else ""
    click.echo(f"token {token.id} ({token.name}: {', '.join(token.scopes)}{until}) created; "
               "copy it now, it is not shown again", err=True)


@tokens.command("list")
@click.option("--revoked", is_flag=True, help="Include revoked tokens.")
@json_option
def list_(revoked: bool, as_json: bool) -> None:
    """Tokens, without their secrets, expired ones included (see their status)."""
    rows = [t.public() for t in repo.list_tokens(get_app().store, revoked=revoked)]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["scopes"] = " ".join(row["scopes"])
    print_table(rows, ("id", "name", "prefix", "scopes", "status", "created_at",
                       "expires_at", "last_used_at", "revoked_at"), title="Tokens")


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
