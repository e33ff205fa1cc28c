"""Publishing touches only the transport: the store's database may be down."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from kombu import Connection

from faults.stack import delete_amqp
from tests.helpers import run_cli


def test_publish_on_rabbitmq_with_the_store_database_down(tmp_path: Path,
                                                          amqp_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    env = {
        "ASYNCEVENTS_TRANSPORT_URL": amqp_url,
        # Nothing listens on port 1: any use of the store would fail.
        "ASYNCEVENTS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "ASYNCEVENTS_QUEUE_PREFIX": prefix,
        "ASYNCEVENTS_STRICT_EVENTS": "false",
    }
    result = run_cli("publish", "sales.order.created", "--data", '{"id": 1}', cwd=tmp_path,
                     env=env)
    assert result.returncode == 0, result.stderr
    event_id = result.stdout.strip()
    try:
        with Connection(amqp_url) as conn, conn.channel() as channel:
            message = channel.basic_get(f"{prefix}.trigger", no_ack=True)
            assert message is not None
            assert json.loads(message.body)["event_id"] == event_id
    finally:
        delete_amqp(prefix, amqp_url)
    # The same with the store reached: a sanity check that the URL really is unusable.
    status = run_cli("subscriptions", "list", cwd=tmp_path, env=env)
    assert status.returncode != 0
