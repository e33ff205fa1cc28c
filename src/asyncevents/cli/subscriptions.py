"""``asyncevents subscribe`` and ``asyncevents subscriptions ...``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from asyncevents.cli.context import get_app, json_option, parse_json_object
from asyncevents.cli.output import console, print_fields, print_json, print_table
from asyncevents.core.subscriptions import collect_warnings
from asyncevents.errors import AsyncEventsError

__all__ = ["subscribe", "subscriptions"]

_COLUMNS = ("id", "event_name", "sink", "recipient", "active", "filter", "created_at")
# The options of ``subscribe`` by the field they set (see core/subscriptions.py).
_OPTIONS = {"sink": "--sink", "token": "--token", "filter": "--filter",
            "retry_policy": "--retry-policy"}


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
@click.option("--token", required=True, help="Verification token (secret) used to sign.")
@click.option("--filter", "filter_", default=None, help="Lucene query over the payload.")
@click.option("--retry-policy", default=None, help='JSON, e.g. {"max_deaths": 3}.')
@click.option("--metadata", default=None, help="JSON object kept with the subscription.")
@json_option
def subscribe(event: str, recipient: str, sink: str, token: str, filter_: str | None,
              retry_policy: str | None, metadata: str | None, as_json: bool) -> None:
    """Subscribe RECIPIENT to EVENT (a name or a pattern such as sales.order.*)."""
    policy = parse_json_object(retry_policy, "--retry-policy")
    meta = parse_json_object(metadata, "--metadata")
    with _options_named(), collect_warnings() as found:
        sub = get_app().subscribe(event, recipient, sink=sink, token=token, filter=filter_,
                                  retry_policy=policy, metadata=meta)
    for warning in found:  # accepted all the same: exit 0, stdout stays parseable
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        print_json(sub.public())
    else:
        console.print(f"subscription {sub.id} created: {sub.event_name} -> {sub.recipient}")


@click.group()
def subscriptions() -> None:
    """List, show, enable, disable and delete subscriptions."""


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
    """One subscription (the token is never shown)."""
    sub = get_app().store.get_subscription(subscription_id).public()
    if as_json:
        print_json(sub)
    else:
        print_fields(sub)


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
