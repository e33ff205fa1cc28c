"""Verification tokens off the command line, and weak ones flagged (issue 23, item 8).

``subscribe``, ``subscriptions update`` and ``subscriptions rotate-token`` read the token
from ``--token-file PATH`` or from standard input with ``--token -``, so it need not be in
``ps`` or the shell history. A weak token (shorter than 16 characters, few different
characters, a short ``whsec_`` key) is accepted with one ``warning:`` line on stderr, and a
``warnings`` entry in the REST answers (tests/api/test_weak_tokens.py); the token is never
quoted.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from asyncevents.cli import main
from asyncevents.core.app import App
from asyncevents.core.subscribing.strength import weak_token_warning
from tests.api.conftest import TOKEN

STRONG = TOKEN  # a whsec_ key of 32 bytes
HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("ASYNCEVENTS_DATABASE_URL", "ASYNCEVENTS_TRANSPORT_URL", "ASYNCEVENTS_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "asyncevents.toml").write_text(
        'allowed_networks = ["127.0.0.0/8"]\nstrict_events = false\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def stored_token(subscription_id: str) -> str:
    app = App()
    try:
        return app.store.get_subscription(subscription_id).token
    finally:
        app.close()


def subscribe(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["subscribe", "shop.order.created", HOOK, "--json", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_subscribe_reads_the_token_from_a_file(workdir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "token").write_text(STRONG + "\n")
    code, out, err = subscribe(capsys, "--token-file", "token")
    assert code == 0 and err == ""
    assert stored_token(json.loads(out)["id"]) == STRONG  # the line end is not part of it


def test_subscribe_reads_the_token_from_stdin(workdir: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(STRONG + "\r\n"))
    code, out, err = subscribe(capsys, "--token", "-")
    assert code == 0 and err == ""
    assert stored_token(json.loads(out)["id"]) == STRONG


@pytest.mark.parametrize(("args", "content", "needle"), [
    ([], None, "give the verification token"),
    (["--token", STRONG, "--token-file", "token"], STRONG, "not both"),
    (["--token-file", "missing"], None, "cannot read missing"),
    (["--token-file", "token"], "  \n", "no token in token"),
    (["--token-file", "token"], f"{STRONG}\n{STRONG}\n", "more than one line"),
])
def test_bad_token_sources_are_one_line_errors(workdir: Path, capsys: pytest.CaptureFixture[str],
                                               args: list[str], content: str | None,
                                               needle: str) -> None:
    if content is not None:
        (workdir / "token").write_text(content)
    code, out, err = subscribe(capsys, *args)
    assert code != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert STRONG not in err
    assert main(["subscriptions", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # nothing stored


def test_update_and_rotate_take_the_token_from_a_file(workdir: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _, out, _ = subscribe(capsys, "--token", STRONG)
    sub_id = json.loads(out)["id"]
    second = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
    (workdir / "second").write_text(second)
    assert main(["subscriptions", "update", sub_id, "--token-file", "second"]) == 0
    assert capsys.readouterr().err == ""
    assert stored_token(sub_id) == second
    monkeypatch.setattr("sys.stdin", io.StringIO(STRONG))
    assert main(["subscriptions", "rotate-token", sub_id, "--token", "-", "--grace", "1h"]) == 0
    assert capsys.readouterr().err == ""
    assert stored_token(sub_id) == STRONG
    assert main(["subscriptions", "rotate-token", sub_id]) != 0
    assert "give the new verification token" in capsys.readouterr().err


@pytest.mark.parametrize("weak", ["secret", "aaaaaaaaaaaaaaaaaaaaaaaa", "passwordpassword",
                                  "whsec_MTIzNDU2Nzg="])
def test_weak_tokens_are_accepted_with_a_warning(workdir: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 weak: str) -> None:
    (workdir / "token").write_text(weak)
    code, out, err = subscribe(capsys, "--token-file", "token")
    assert code == 0
    sub_id = json.loads(out)["id"]  # stdout stays parseable
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: weak verification token"), err
    assert weak not in err
    assert main(["subscriptions", "update", sub_id, "--token", weak]) == 0
    assert capsys.readouterr().err.startswith("warning: weak verification token")
    assert main(["subscriptions", "rotate-token", sub_id, "--token", weak]) == 0
    assert capsys.readouterr().err.startswith("warning: weak verification token")


@pytest.mark.parametrize("token", [STRONG, "whsk_" + "A" * 43, "Tr0ub4dor&3-horse-battery",
                                   "0123456789abcdef", ""])
def test_strong_tokens_get_no_warning(token: str) -> None:
    assert weak_token_warning(token) is None

