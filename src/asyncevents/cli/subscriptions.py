"""``asyncevents subscribe`` and ``asyncevents subscriptions ...``.

A verification token need not be on the command line, where other users of
the host can read it (``ps``, shell history): ``--token -`` reads it from
standard input (asked for, hidden, on a terminal) and ``--token-file PATH``
from a file. A weak token is accepted with a ``warning:`` line on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from asyncevents.cli.context import get_app, json_option, parse_json_object
from asyncevents.cli.output import console, print_fields, print_json, print_table
from asyncevents.core.models import shown_recipient
from asyncevents.core.subscribing.rules import collect_warnings
from asyncevents.core.subscribing.strength import weak_token_warning
from asyncevents.errors import AsyncEventsError

__all__ = ["subscribe", "subscriptions"]

_COLUMNS = ("id", "event_name", "sink", "recipient", "active", "filter", "created_at")
# The options of ``subscribe`` by the field they set (see core/subscribing/rules.py).
_OPTIONS = {"sink": "--sink", "token": "--token", "filter": "--filter",
            "retry_policy": "--retry-policy", "recipient": "--recipient",
            "rate": "--rate", "max_in_flight": "--max-in-flight",
            "ordering_key": "--ordering-key", "signature": "--signature",
            "headers": "--header", "disable_after": "--disable-after", "grace": "--grace"}
_F = TypeVar("_F", bound=Callable[..., Any])
# Given to an option of `subscriptions update`, these words unset it.
_UNSET = ("", "none", "off")


def _protection_options(func: _F) -> _F:
    """The receiver protection options, shared by ``subscribe`` and ``subscriptions update``."""
    for option in reversed([
        click.option("--rate", default=None, metavar="N/s|N/m",
                     help="At most N deliveries a second (N/s) or a minute (N/m), "
                          "across every worker."),
        click.option("--max-in-flight", default=None, metavar="N",
                     help="At most N deliveries in flight at once, across every worker."),
        click.option("--ordering-key", default=None, metavar="data.PATH",
                     help="Deliveries with the same value at PATH go one at a time, in order."),
        click.option("--signature", default=None, type=click.Choice(["hmac", "ed25519"]),
                     help="Standard Webhooks v1 (HMAC, the default) or v1a (Ed25519)."),
        click.option("--header", "headers", multiple=True, metavar="'Name: value'",
                     help="A header sent with every delivery (repeatable)."),
        click.option("--disable-after", default=None, metavar="HOURS",
                     help="Disable after failing this long without a success "
                          "(default: ASYNCEVENTS_DISABLE_AFTER)."),
    ]):
        func = option(func)
    return func


def _token_options(token_help: str) -> Callable[[_F], _F]:
    """``--token`` (a value, or ``-`` for standard input) and ``--token-file PATH``."""
    def decorate(func: _F) -> _F:
        func = click.option("--token-file", "token_file", default=None, metavar="PATH",
                            help="Read the verification token from PATH (one line), so it "
                                 "is not on the command line.")(func)
        return click.option("--token", default=None, metavar="TOKEN|-",
                            help=f"{token_help} '-' reads it from standard input.")(func)
    return decorate


def _read_token(token: str | None, token_file: str | None) -> str | None:
    """The token given by ``--token``, ``--token -`` or ``--token-file``; None when none was."""
    if token is not None and token_file is not None:
        raise click.UsageError("give --token or --token-file, not both")
    if token_file is not None:
        option, where = "--token-file", token_file
        try:
            text = Path(token_file).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise click.BadParameter(f"cannot read {token_file}: {reason}",
                                     param_hint=option) from None
    elif token == "-":
        option, where = "--token", "standard input"
        if sys.stdin.isatty():
            text = click.prompt("Verification token", hide_input=True, err=True)
        else:
            text = sys.stdin.read()
    else:
        return token
    value = text.strip()
    if not value:
        raise click.BadParameter(f"no token in {where}", param_hint=option)
    if "\n" in value:
        raise click.BadParameter(f"{where} holds more than one line; the token is one line",
                                 param_hint=option)
    return value


def _warn_weak(token: str | None, found: list[str]) -> None:
    """Print the warnings gathered, and one for a weak ``token``, on stderr."""
    weak = weak_token_warning(token) if token else None
    for warning in [*found, *([weak] if weak else [])]:
        click.echo(f"warning: {warning}", err=True)


def _signs(sink: str) -> bool:
    """Whether ``sink`` signs deliveries, so that a token is needed (unknown: the rules say)."""
    info = get_app().plugins.sinks().get(sink)
    return info is not None and info.signs


def _number(value: str, option: str, kind: type[int] | type[float]) -> int | float | None:
    if value.strip().lower() in _UNSET:
        return None
    try:
        return kind(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a {'whole ' if kind is int else ''}number",
                                 param_hint=option) from None


def _headers(given: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in given:
        name, colon, value = item.partition(":")
        if not colon or not name.strip():
            raise click.BadParameter(f"{item!r} is not 'Name: value'", param_hint="--header")
        headers[name.strip()] = value.strip()
    return headers


def _protection(rate: str | None, max_in_flight: str | None, ordering_key: str | None,
                signature: str | None, headers: tuple[str, ...], disable_after: str | None,
                *, clear_headers: bool = False) -> dict[str, Any]:
    """The options given on the command line (those not given are left out)."""
    given: dict[str, Any] = {}
    if rate is not None:
        given["rate"] = None if rate.strip().lower() in _UNSET else rate
    if max_in_flight is not None:
        given["max_in_flight"] = _number(max_in_flight, "--max-in-flight", int)
    if ordering_key is not None:
        given["ordering_key"] = (None if ordering_key.strip().lower() in _UNSET
                                 else ordering_key)
    if signature is not None:
        given["signature"] = signature
    if headers or clear_headers:
        given["headers"] = _headers(headers)
    if disable_after is not None:
        given["disable_after"] = _number(disable_after, "--disable-after", float)
    return given


@contextmanager
def _options_named() -> Iterator[None]:
    """An error about an option's value starts with the option's name."""
    try:
        yield
    except AsyncEventsError as exc:
        option = _OPTIONS.get(exc.field or "")
        if option is None:
            raise
        raise click.ClickException(f"{option}: {exc}") from None


@click.command()
@click.argument("event")
@click.argument("recipient")
@click.option("--sink", default="http", show_default=True, help="Sink plugin name.")
@_token_options("Verification token (secret) used to sign (this or --token-file; not needed "
                "for a sink that does not sign, such as eventbridge).")
@click.option("--filter", "filter_", default=None, help="Lucene query over the payload.")
@click.option("--retry-policy", default=None, help='JSON, e.g. {"max_deaths": 3}.')
@click.option("--metadata", default=None, help="JSON object kept with the subscription.")
@_protection_options
@json_option
def subscribe(event: str, recipient: str, sink: str, token: str | None,
              token_file: str | None, filter_: str | None, retry_policy: str | None,
              metadata: str | None, rate: str | None, max_in_flight: str | None,
              ordering_key: str | None, signature: str | None, headers: tuple[str, ...],
              disable_after: str | None, as_json: bool) -> None:
    """Subscribe RECIPIENT to EVENT (a name or a pattern such as sales.order.*)."""
    token = _read_token(token, token_file)
    if token is None and _signs(sink):
        raise click.UsageError(f"the {sink} sink signs every delivery: give the verification "
                               "token: --token-file PATH, --token - (standard input) or "
                               "--token TOKEN")
    policy = parse_json_object(retry_policy, "--retry-policy")
    meta = parse_json_object(metadata, "--metadata")
    options = _protection(rate, max_in_flight, ordering_key, signature, headers, disable_after)
    with _options_named(), collect_warnings() as found:
        sub = get_app().subscribe(event, recipient, sink=sink, token=token or "",
                                  filter=filter_, retry_policy=policy, metadata=meta, **options)
    _warn_weak(token, found)  # accepted all the same: exit 0, stdout stays parseable
    if as_json:
        print_json(sub.public())
    else:
        console.print(f"subscription {sub.id} created: {sub.event_name} -> "
                      f"{shown_recipient(sub.recipient)}")


@click.group()
def subscriptions() -> None:
    """List, show, change, enable, disable and delete subscriptions."""


@subscriptions.command()
@click.argument("subscription_id")
@click.option("--recipient", default=None, help="Deliver somewhere else.")
@_token_options("A new verification token (no grace period; see rotate-token for one).")
@click.option("--filter", "filter_", default=None, help="Lucene query over the payload "
              "('' removes it).")
@click.option("--retry-policy", default=None, help='JSON, e.g. {"max_deaths": 3}; '
              "'null' returns to the global policy.")
@click.option("--metadata", default=None, help="JSON object kept with the subscription.")
@_protection_options
@click.option("--no-headers", is_flag=True, help="Send no extra header any more.")
@json_option
def update(subscription_id: str, recipient: str | None, token: str | None,
           token_file: str | None, filter_: str | None, retry_policy: str | None,
           metadata: str | None,
           rate: str | None, max_in_flight: str | None, ordering_key: str | None,
           signature: str | None, headers: tuple[str, ...], disable_after: str | None,
           no_headers: bool, as_json: bool) -> None:
    """Change a subscription: the options of subscribe; those not given stay as they are.

    An option given as '' or none (--rate none, --max-in-flight none, ...) is unset;
    --header replaces every extra header.
    """
    if no_headers and headers:
        raise click.UsageError("give --header or --no-headers, not both")
    token = _read_token(token, token_file)
    changes = _protection(rate, max_in_flight, ordering_key, signature, headers,
                          disable_after, clear_headers=no_headers)
    if recipient is not None:
        changes["recipient"] = recipient
    if token is not None:
        changes["token"] = token
    if filter_ is not None:
        changes["filter"] = filter_ or None
    if retry_policy is not None:
        changes["retry_policy"] = (None if retry_policy.strip() == "null"
                                   else parse_json_object(retry_policy, "--retry-policy"))
    if metadata is not None:
        changes["metadata"] = parse_json_object(metadata, "--metadata")
    if not changes:
        raise click.UsageError("nothing to change: give at least one option (see --help)")
    with _options_named(), collect_warnings() as found:
        sub = get_app().update_subscription(subscription_id, **changes)
    _warn_weak(token, found)
    if as_json:
        print_json(sub.public())
    else:
        console.print(f"subscription {sub.id} updated")


@subscriptions.command("rotate-token")
@click.argument("subscription_id")
@_token_options("The new verification token (required: this or --token-file).")
@click.option("--grace", default="24h", show_default=True, metavar="DURATION",
              help="How long the old token still signs too (24h, 30m, 90s, 2d; 0: not at all).")
@json_option
def rotate_token(subscription_id: str, token: str | None, token_file: str | None, grace: str,
                 as_json: bool) -> None:
    """Sign with a new token; during the grace, deliveries carry both signatures."""
    token = _read_token(token, token_file)
    if token is None:
        raise click.UsageError("give the new verification token: --token-file PATH, --token - "
                               "(standard input) or --token TOKEN")
    with _options_named():
        sub = get_app().rotate_token(subscription_id, token, grace)
    _warn_weak(token, [])
    if as_json:
        print_json(sub.public())
    elif sub.previous_token_until is not None:
        console.print(f"subscription {sub.id}: new token; the old one also signs until "
                      f"{sub.previous_token_until.isoformat()}")
    else:
        console.print(f"subscription {sub.id}: new token; the old one no longer signs")


@subscriptions.command("list")
@click.option("--active/--inactive", default=None, help="Only active or inactive ones.")
@json_option
def list_(active: bool | None, as_json: bool) -> None:
    """Every subscription."""
    subs = [s.public() for s in get_app().store.list_subscriptions(active=active)]
    if as_json:
        print_json(subs)
    else:
        print_table(subs, _COLUMNS, title="Subscriptions")


@subscriptions.command()
@click.argument("subscription_id")
@json_option
def show(subscription_id: str, as_json: bool) -> None:
    """One subscription (the token is never shown), with its circuit's state."""
    store = get_app().store
    sub = store.get_subscription(subscription_id).public()
    circuit = store.circuit_health([subscription_id])[subscription_id].public()
    if as_json:
        print_json({**sub, "circuit": circuit})
    else:  # one line each, as a user would type them back
        print_fields({**sub, **{f"circuit_{key}": value for key, value in circuit.items()}})


def _set_active(subscription_id: str, active: bool, as_json: bool) -> None:
    sub = get_app().update_subscription(subscription_id, active=active).public()
    if as_json:
        print_json(sub)
    else:
        console.print(f"subscription {subscription_id} {'enabled' if active else 'disabled'}")


@subscriptions.command()
@click.argument("subscription_id")
@json_option
def enable(subscription_id: str, as_json: bool) -> None:
    """Start delivering to a subscription again."""
    _set_active(subscription_id, True, as_json)


@subscriptions.command()
@click.argument("subscription_id")
@json_option
def disable(subscription_id: str, as_json: bool) -> None:
    """Stop delivering to a subscription (its deliveries stay)."""
    _set_active(subscription_id, False, as_json)


@subscriptions.command()
@click.argument("subscription_id")
@json_option
def delete(subscription_id: str, as_json: bool) -> None:
    """Delete a subscription; its deliveries and traces stay searchable."""
    get_app().store.delete_subscription(subscription_id)
    if as_json:
        print_json({"id": subscription_id, "deleted": True})
    else:
        console.print(f"subscription {subscription_id} deleted")
