"""Bad input, through the CLI and through a worker: a clear error or a recorded failure.

Each row of the CLI table must end with one line on stderr, a non-zero exit
and nothing written; each hostile thing a worker meets must end as a
recorded attempt (or a dropped poison message) while the worker goes on.
"""

from __future__ import annotations

import json
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from asyncevents.core.app import App
from asyncevents.core.sink import DeliveryRequest
from asyncevents.errors import InvalidPayload
from asyncevents.sinks.http import HttpSink
from faults.hostile import POISON, inject
from faults.receiver import Receiver
from faults.stack import Stack
from tests.helpers import drain, run_cli, sqlite_rows

CATALOG = (
    'allowed_networks = ["127.0.0.0/8"]\n'
    '[events."sales.order.created"]\ndescription = "placed"\n'
    '[events."ventes.commande.créée"]\ndescription = "passée, en français"\n'
)
TOKEN = "whsec_Z3VhcmQtdGVzdHMtc2lnbmluZy1rZXk="


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "asyncevents.toml").write_text(CATALOG, encoding="utf-8")
    return tmp_path


def _rows(workdir: Path, table: str) -> int:
    return sqlite_rows(workdir / "asyncevents.db", table)


def _queued(workdir: Path) -> int:
    path = workdir / "asyncevents-queue.db"
    if not path.exists():
        return 0
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(
                sa.text("SELECT count(*) FROM asyncevents_queue_message")).scalar_one())
    finally:
        engine.dispose()


BIG = json.dumps({"blob": "x" * 2000})
UNREACHABLE = {"ASYNCEVENTS_TRANSPORT_URL": "amqp://guest:guest@127.0.0.1:1//"}


@pytest.mark.parametrize(
    ("args", "env", "needles"),
    [
        # malformed JSON, and JSON that is not an object
        (["publish", "sales.order.created", "--data", '{"id": 4'], {},
         ["--data", "not valid JSON"]),
        (["publish", "sales.order.created", "--data", '"just a string"'], {}, ["JSON object"]),
        # an event the catalog does not know, listed with the known ones (unicode intact)
        (["publish", "sales.order.deleted"], {}, ["unknown event", "ventes.commande.créée"]),
        (["publish", "sales.*"], {}, ["plain dotted name"]),
        (["publish", ""], {}, ["plain dotted name"]),
        (["subscribe", "crm.*", "http://127.0.0.1:9/x", "--token", "t"], {}, ["unknown event"]),
        # an unknown sink, listed with the installed ones
        (["subscribe", "sales.order.created", "http://127.0.0.1:9/x", "--sink", "carrier-pigeon",
          "--token", "t"], {}, ["unknown sink", "http"]),
        # invalid URLs
        (["subscribe", "sales.order.created", "http://[::1/x", "--token", "t"], {},
         ["not a valid URL"]),
        (["subscribe", "sales.order.created", "gopher://127.0.0.1/x", "--token", "t"], {},
         ["gopher"]),
        (["subscribe", "sales.order.created", "http://169.254.169.254/latest", "--token", "t"],
         {"ASYNCEVENTS_ALLOWED_NETWORKS": ""}, ["allowed_networks"]),
        # invalid Lucene queries, wherever a query goes
        (["search", "status:(dead"], {}, ["syntax error"]),
        (["search", "nosuchfield:1"], {}, ["nosuchfield"]),
        (["replay", "--query", "created:[2024 TO"], {}, ["syntax error"]),
        (["subscribe", "sales.order.created", "http://127.0.0.1:9/x", "--token", "t",
          "--filter", "data.total:>>5"], {}, ["error"]),
        # oversize payload: refused before the broker is even asked (it is unreachable here)
        (["publish", "sales.order.created", "--data", BIG],
         {"ASYNCEVENTS_MAX_PAYLOAD_BYTES": "1000", **UNREACHABLE},
         ["1000-byte limit", "max_payload_bytes"]),
    ],
    ids=["bad-json", "not-object", "unknown-event", "pattern-published", "empty-name",
         "unknown-pattern", "unknown-sink", "broken-url", "bad-scheme", "metadata-url",
         "lucene-unclosed", "lucene-field", "lucene-range", "filter-syntax", "oversize"],
)
def test_cli_refuses_bad_input_in_one_line(workdir: Path, args: list[str],
                                           env: dict[str, str], needles: list[str]) -> None:
    began = time.monotonic()
    result = run_cli(*args, cwd=workdir, env=env)
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert time.monotonic() - began < 20
    assert _rows(workdir, "asyncevents_subscription") == 0
    assert _rows(workdir, "asyncevents_delivery") == 0
    assert _queued(workdir) == 0


def test_unicode_event_names_go_through_the_cli(workdir: Path) -> None:
    sub = run_cli("subscribe", "ventes.*", "http://127.0.0.1:9/x", "--token", "t", "--json",
                  cwd=workdir)
    assert sub.returncode == 0, sub.stderr
    assert json.loads(sub.stdout)["event_name"] == "ventes.*"
    published = run_cli("publish", "ventes.commande.créée", "--data",
                        '{"client": "Zoë", "note": "🎉 déjà"}', cwd=workdir)
    assert published.returncode == 0, published.stderr
    uuid.UUID(published.stdout.strip())
    events = run_cli("events", "--json", cwd=workdir)
    assert "ventes.commande.créée" in {e["name"] for e in json.loads(events.stdout)}


@pytest.mark.parametrize("name", ["bad\nname", "x" * 300], ids=["newline", "300-chars"])
def test_unusable_event_names_are_refused(workdir: Path, name: str) -> None:
    result = run_cli("publish", name, cwd=workdir, env={"ASYNCEVENTS_STRICT_EVENTS": "false"})
    assert result.returncode != 0


def test_an_oversize_payload_fails_at_once_in_python(make_settings: Callable[..., Any]) -> None:
    # The default limit (1,000,000 bytes), and a broker nobody answers at: the
    # error must be about the payload, at once, not about the broker later.
    app = App(make_settings(transport_url="amqp://guest:guest@127.0.0.1:1//"))
    try:
        began = time.monotonic()
        with pytest.raises(InvalidPayload, match="over the 1000000-byte limit"):
            app.publish("sales.order.created", {"blob": "x" * 1_000_001})
        assert time.monotonic() - began < 2
    finally:
        app.close()


def _request(url: str) -> DeliveryRequest:
    return DeliveryRequest(
        delivery_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()), event_name="guard.big",
        subscription_id="sub", recipient=url, token=TOKEN, payload={"n": 1},
        published_at=datetime.now(UTC),
    )


def test_a_100_mb_body_is_read_only_up_to_the_excerpt(make_settings: Callable[..., Any]) -> None:
    receiver = Receiver()
    sink = HttpSink(make_settings(http_timeout=10.0))
    try:
        tracemalloc.start()
        began = time.monotonic()
        result = sink.deliver(_request(receiver.url("bigbody")))
        took = time.monotonic() - began
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        sink.close()
        receiver.close()
    assert result.success, result.error
    assert len(result.response.encode()) <= 1024
    assert peak < 8 * 1024 * 1024, f"{peak / 1e6:.1f} MB allocated while delivering"
    assert took < 5
    # What left the receiver is what the kernel buffers held when we hung up.
    assert max(receiver.body_bytes_per_request) < 16 * 1024 * 1024


def test_huge_response_headers_are_a_recorded_retryable_failure(
    make_settings: Callable[..., Any]
) -> None:
    receiver = Receiver()
    sink = HttpSink(make_settings())
    try:
        result = sink.deliver(_request(receiver.url("bigheaders")))
    finally:
        sink.close()
        receiver.close()
    assert not result.success and result.retryable
    assert result.error is not None and "RemoteProtocolError" in result.error
    assert len(result.error) < 1000


def test_a_worker_survives_poison_and_hostile_receivers(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    """Poison messages, 256 KB headers and 100 MB bodies, all in one worker run."""
    receiver = Receiver()
    settings = make_settings(max_deaths=2, backoff="fixed", backoff_base=0.2)
    stack = Stack("sqla+sqlite", settings, tmp_path)
    app = stack.app
    try:
        good = app.subscribe("*", receiver.url("ok", "good"), token=TOKEN)
        app.subscribe("*", receiver.url("bigheaders"), token=TOKEN)
        app.subscribe("*", receiver.url("bigbody"), token=TOKEN)
        inject(stack)
        event_ids = [app.publish("guard.ünïcode.événement", {"n": n, "nom": "Zoë"})
                     for n in range(5)]
        report = drain(app, idle=2.0, concurrency=2)
        deliveries = app.store.recent_deliveries(limit=100)
        circuits = app.store.circuit_health({d.subscription_id for d in deliveries})
    finally:
        stack.close()
        receiver.close()
    assert report.dropped == len(POISON)
    assert report.failed == 0
    by_path: dict[str, list[str]] = {}
    for delivery in deliveries:
        by_path.setdefault(delivery.recipient.rsplit("/", 2)[1], []).append(delivery.status)
    assert by_path["ok"] == ["delivered"] * 5
    assert by_path["bigbody"] == ["delivered"] * 5
    # Each failed: dead at its third failure (max_deaths=2), or waiting, visible,
    # behind the circuit that the tenth failure in a row opened. Which of the
    # two is a race between the retries (0.2 s) and the health write that opens
    # the circuit; both are the policy at work.
    big = [d for d in deliveries if "/bigheaders/" in d.recipient]
    assert len(big) == 5
    assert all(d.attempts == 3 for d in big if d.status == "dead")
    waiting = [d for d in big if d.status != "dead"]
    assert all(d.status == "retrying" and d.attempts == 2 for d in waiting)
    if waiting:
        assert circuits[waiting[0].subscription_id].state == "open"
    hits = [h for h in receiver.snapshot() if h.path == "/ok/good"]
    assert {h.event_id for h in hits} == set(event_ids)
    assert good.event_name == "*"


def test_unicode_event_names_are_delivered(make_settings: Callable[..., Any]) -> None:
    receiver = Receiver()
    app = App(make_settings())
    try:
        app.subscribe("ventes.*", receiver.url("ok", "fr"), token=TOKEN)
        event_id = app.publish("ventes.commande.créée", {"client": "Zoë", "emoji": "🎉"})
        drain(app, idle=1.0)
        delivery = app.store.recent_deliveries(limit=1)[0]
    finally:
        app.close()
        receiver.close()
    assert delivery.status == "delivered"
    assert delivery.event_name == "ventes.commande.créée"
    assert delivery.payload == {"client": "Zoë", "emoji": "🎉"}
    assert [h.event_id for h in receiver.snapshot()] == [event_id]
