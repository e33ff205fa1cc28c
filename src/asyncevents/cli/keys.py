"""``asyncevents rotate-key``: every stored secret re-encrypted under a new key, at once.

The current key is the one this installation runs with (``ASYNCEVENTS_SECRET_KEY``,
or with SQLite the ``asyncevents.key`` file beside the database); the new
key is read from a file or standard input, never from the command line,
where other users of the host could read it (``ps``, shell history).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from asyncevents.cli.context import get_app, json_option
from asyncevents.cli.output import console, print_json
from asyncevents.core.store import Store, TokenCipher, key_file_for, replacing_key_file

__all__ = ["rotate_key"]

_OPTION = "--new-key-file"


def _read_new_key(source: str) -> str:
    """The new key from ``source`` (a file, or ``-``: stdin, asked hidden on a terminal)."""
    if source == "-":
        if sys.stdin.isatty():
            text = click.prompt("New key", hide_input=True, confirmation_prompt=True,
                                err=True)
        else:
            text = sys.stdin.read()
        where = "standard input"
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise click.BadParameter(f"cannot read {source}: {reason}",
                                     param_hint=_OPTION) from None
        where = source
    key = text.strip()
    if not key:
        raise click.BadParameter(f"no key in {where}", param_hint=_OPTION)
    if "\n" in key:
        raise click.BadParameter(f"{where} holds more than one line; the key is one line",
                                 param_hint=_OPTION)
    return key


@click.command("rotate-key")
@click.option(_OPTION, "new_key_file", metavar="FILE", default="-", show_default=True,
              help="Read the new key from FILE; '-' reads standard input (a terminal asks "
                   "for it, hidden). Never given on the command line.")
@json_option
def rotate_key(new_key_file: str, as_json: bool) -> None:
    """Re-encrypt every stored secret with a new key, in one transaction.

    Verification tokens, rotated tokens, Ed25519 signing keys and header
    values. The current key is ASYNCEVENTS_SECRET_KEY (with SQLite and no
    such setting: the asyncevents.key file, which then receives the new key);
    a current key that is not the installation's changes nothing. Secrets
    stored in clear by an older version are encrypted too (give the current
    key as the new one to do only that). Then give every process the new
    ASYNCEVENTS_SECRET_KEY: those still on the old one refuse to start.
    """
    new_key = _read_new_key(new_key_file)
    app = get_app()
    store = app.store  # a missing key file beside encrypted secrets stops here
    key_file = (key_file_for(app.settings.database_url)
                if app.settings.secret_key is None else None)
    rotated = Store(store.engine, TokenCipher(new_key))
    if key_file is not None:
        with replacing_key_file(key_file, new_key):
            changed = rotated.rotate_tokens(store.cipher)
    else:
        changed = rotated.rotate_tokens(store.cipher)
    if as_json:
        print_json({"reencrypted": changed, "key_file": str(key_file) if key_file else None})
        return
    then = (f"the key file {key_file} now holds the new key" if key_file is not None else
            "set ASYNCEVENTS_SECRET_KEY to the new key in every process and restart them")
    console.print(f"{changed} secrets re-encrypted; {then}")
