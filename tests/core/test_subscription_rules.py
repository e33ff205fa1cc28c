"""One set of subscription rules for the CLI, the Python API and the REST API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncevents.core.app import App
from asyncevents.core.subscribing.rules import SubscriptionRules, collect_warnings
from asyncevents.errors import (
    AsyncEventsError,
    ConfigError,
    InvalidQuery,
    InvalidRecipient,
    RecipientWarning,
    UnknownEvent,
    UnknownSink,
)
from tests.helpers import run_cli

TOKEN = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
GOOD: dict[str, Any] = {"event_name": "shop.order.created", "sink": "http",
                        "recipient": "http://127.0.0.1:9/hook", "token": TOKEN}


@pytest.fixture
def app(make_settings: Callable[..., Any]) -> Iterator[App]:
    built = App(make_settings())
    yield built
    built.close()


def _subscribe(app: App, **fields: Any) -> Any:
    values = {**GOOD, **fields}
    return app.subscribe(values.pop("event_name"), values.pop("recipient"), **values)


@pytest.mark.parametrize(("fields", "error", "field"), [
    ({"token": "whsec_!!"}, ConfigError, "token"),  # a whsec_ token must be base64
    ({"token": ""}, ConfigError, "token"),
    ({"token": " \t\n"}, ConfigError, "token"),  # signs, but is no secret
    ({"filter": "data.x:(unclosed"}, InvalidQuery, "filter"),
    ({"retry_policy": {"bogus": 1}}, ConfigError, "retry_policy"),
    ({"retry_policy": {"max_deaths": -1}}, ConfigError, "retry_policy"),
    ({"event_name": ""}, UnknownEvent, "event_name"),
    ({"sink": "nope"}, UnknownSink, "sink"),
    ({"recipient": "ftp://127.0.0.1/x"}, InvalidRecipient, "recipient"),
    ({"recipient": "http://169.254.169.254/"}, InvalidRecipient, "recipient"),  # metadata
])
def test_subscribe_refuses_and_names_the_field(app: App, fields: dict[str, Any],
                                               error: type[AsyncEventsError],
                                               field: str) -> None:
    with pytest.raises(error) as caught:
        _subscribe(app, **fields)
    assert caught.value.field == field
    assert app.store.list_subscriptions() == []


def test_the_token_never_shows_in_its_error(app: App) -> None:
    with pytest.raises(ConfigError) as caught:
        _subscribe(app, token="whsec_s3cr3t!!")
    assert "s3cr3t" not in str(caught.value)
    assert str(caught.value).startswith("invalid verification token: ")


def test_strict_catalog_lists_the_known_events(make_settings: Callable[..., Any]) -> None:
    app = App(make_settings(strict_events=True, events={"shop.order.created": {}}))
    with pytest.raises(UnknownEvent, match=r"shop\.order\.created") as caught:
        _subscribe(app, event_name="crm.x")
    assert caught.value.field == "event_name"
    app.close()


@pytest.mark.parametrize(("changes", "error", "field"), [
    ({"recipient": "http://169.254.169.254/"}, InvalidRecipient, "recipient"),
    ({"recipient": ""}, ConfigError, "recipient"),
    ({"token": ""}, ConfigError, "token"),
    ({"token": "   "}, ConfigError, "token"),
    ({"token": "whsec_!!"}, ConfigError, "token"),
    ({"filter": "a:("}, InvalidQuery, "filter"),
    ({"retry_policy": {"backoff": "random"}}, ConfigError, "retry_policy"),
    ({"active": None}, ConfigError, "active"),
    ({"event_name": "x"}, ConfigError, "event_name"),  # not changeable
    ({"active": False, "filter": "a:("}, InvalidQuery, "filter"),  # nothing half-applied
])
def test_update_refuses_what_creation_would_and_changes_nothing(
        app: App, changes: dict[str, Any], error: type[AsyncEventsError], field: str) -> None:
    sub = _subscribe(app)
    with pytest.raises(error) as caught:
        app.update_subscription(sub.id, **changes)
    assert caught.value.field == field
    assert app.store.get_subscription(sub.id) == sub


def test_update_applies_and_normalises_changes(app: App) -> None:
    sub = _subscribe(app, filter="data.x:1", metadata={"team": "a"})
    changed = app.update_subscription(
        sub.id, active=False, recipient="http://127.0.0.1:10/other", token="rotated",
        filter="", retry_policy={"max_deaths": 2}, metadata=None)
    assert (changed.active, changed.recipient, changed.filter, changed.metadata) == (
        False, "http://127.0.0.1:10/other", None, {})
    assert changed.retry_policy == {"max_deaths": 2}
    assert app.store.get_subscription(sub.id).token == "rotated"
    assert app.update_subscription(sub.id) == changed  # no change, no write


def test_the_api_runs_each_check_once(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncevents.api.services import subscriptions as service

    calls: list[str] = []
    check = SubscriptionRules.check_recipient

    def counted(self: SubscriptionRules, sink: str, recipient: str) -> None:
        calls.append(recipient)
        check(self, sink, recipient)

    monkeypatch.setattr(SubscriptionRules, "check_recipient", counted)
    sub = service.create(app, event_name="shop.order.created", recipient=GOOD["recipient"],
                         token=TOKEN).subscription
    assert calls == [GOOD["recipient"]]
    service.update(app, sub.id, {"recipient": "http://127.0.0.1:10/x", "active": True})
    assert calls == [GOOD["recipient"], "http://127.0.0.1:10/x"]


def test_cli_names_the_option_and_disables_through_the_rules(tmp_path: Path) -> None:
    (tmp_path / "asyncevents.toml").write_text('allowed_networks = ["127.0.0.0/8"]\n'
                                               "strict_events = false\n")
    bad = run_cli("subscribe", "a.b", "http://127.0.0.1:9/x", "--token", "t",
                  "--filter", "a:(", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.startswith("error: --filter: "), bad.stderr
    made = run_cli("subscribe", "a.b", "http://127.0.0.1:9/x", "--token", "t", "--json",
                   cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    sub_id = json.loads(made.stdout)["id"]
    off = run_cli("subscriptions", "disable", sub_id, "--json", cwd=tmp_path)
    assert off.returncode == 0 and '"active": false' in off.stdout, off.stderr
    missing = run_cli("subscriptions", "enable", "no-such-id", cwd=tmp_path)
    assert missing.returncode == 1 and "no subscription" in missing.stderr


# A reserved name (RFC 6761): it never resolves, as a name does while DNS is down.
NOWHERE = "https://hooks.asyncevents.invalid/magento"


@pytest.fixture
def strict_app(make_settings: Callable[..., Any]) -> Iterator[App]:
    """No network allowed beyond the public internet."""
    built = App(make_settings(allowed_networks=[]))
    yield built
    built.close()


def test_a_name_that_does_not_resolve_is_accepted_with_a_warning(strict_app: App) -> None:
    with pytest.warns(RecipientWarning, match=r"hooks\.asyncevents\.invalid.*does not "
                                              r"resolve.*checked again before every delivery"):
        sub = _subscribe(strict_app, recipient=NOWHERE)
    assert strict_app.store.get_subscription(sub.id).recipient == NOWHERE
    with pytest.warns(RecipientWarning):
        strict_app.update_subscription(sub.id, recipient=NOWHERE + "/2")


def test_collect_warnings_gathers_instead_of_warning(strict_app: App) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning issued here would fail the test
        with collect_warnings() as found:
            _subscribe(strict_app, recipient=NOWHERE)
        assert len(found) == 1 and "does not resolve" in found[0]
        with collect_warnings() as none:
            _subscribe(strict_app, recipient="https://93.184.216.34/hook")
        assert none == []


@pytest.mark.parametrize("recipient", [
    "http://10.1.2.3/hook",  # a literal private address
    "http://[::1]/hook",
    "http://localhost:8080/hook",  # a name that does resolve, to loopback
    "https://" + "a" * 64 + ".invalid/",  # never a host name: no DNS answer can fix it
])
def test_private_and_impossible_recipients_stay_refused(strict_app: App, recipient: str) -> None:
    with collect_warnings() as found, pytest.raises(InvalidRecipient) as caught:
        _subscribe(strict_app, recipient=recipient)
    assert caught.value.field == "recipient" and found == []
    assert strict_app.store.list_subscriptions() == []


def test_allowed_networks_still_open_a_private_name(make_settings: Callable[..., Any]) -> None:
    app = App(make_settings(allowed_networks=["127.0.0.0/8", "::1/128"]))
    with collect_warnings() as found:
        _subscribe(app, recipient="http://localhost:8080/hook")
    assert found == []
    app.close()


def test_cli_accepts_an_unresolvable_name_with_a_line_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "asyncevents.toml").write_text("strict_events = false\n")
    made = run_cli("subscribe", "a.b", NOWHERE, "--token", TOKEN, "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["recipient"] == NOWHERE
    lines = made.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: recipient not checked: "), lines
    assert "does not resolve" in lines[0]
    refused = run_cli("subscribe", "a.b", "http://10.1.2.3/", "--token", "t", cwd=tmp_path)
    assert refused.returncode == 1 and "allowed_networks" in refused.stderr



def test_cli_refuses_a_blank_token_naming_the_option(tmp_path: Path) -> None:
    (tmp_path / "asyncevents.toml").write_text('allowed_networks = ["127.0.0.0/8"]\n'
                                               "strict_events = false\n")
    cli = run_cli("subscribe", "a.b", "http://127.0.0.1:9/x", "--token", "   ", cwd=tmp_path)
    assert cli.returncode == 1
    assert cli.stderr.startswith("error: --token: invalid verification token: it is only "
                                 "whitespace"), cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1
