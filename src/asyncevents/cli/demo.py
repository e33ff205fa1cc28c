"""``asyncevents demo``: subscribe a local receiver, publish, deliver, show the traces."""

from __future__ import annotations

import base64
import secrets

from asyncevents.cli.output import console, print_table
from asyncevents.core.app import App
from asyncevents.core.log import configure_logging
from asyncevents.core.settings import EventDefinition, load_settings
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.receiver import Receiver

__all__ = ["run_demo"]

DEMO_EVENTS = {
    "demo.order.created": EventDefinition(description="Demo: an order was placed"),
    "demo.order.shipped": EventDefinition(description="Demo: an order left the warehouse"),
}


def run_demo(count: int = 5, fail_first: bool = False) -> None:
    """Run the whole flow in this process on the configured (default: SQLite) store."""
    base = load_settings()
    # The worker's own log lines, in the format `asyncevents worker` prints them.
    configure_logging(base.log_level, base.log_json)
    settings = base.model_copy(update={
        "events": {**base.events, **DEMO_EVENTS},
        # The receiver listens on loopback, which deliveries refuse by default.
        "allowed_networks": [*base.allowed_networks, "127.0.0.0/8"],
    })
    app = App(settings)
    token = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    receiver = Receiver(token=token, fail_first=fail_first).start()
    console.print(f"transport: {app.transport.safe_url()}")
    console.print(f"store:     {app.store.engine.url.render_as_string(hide_password=True)}")
    console.print(f"receiver:  {receiver.url}")
    subs = [
        app.subscribe("demo.order.*", receiver.url, token=token),
        app.subscribe("demo.order.shipped", receiver.url, token=token),
    ]
    for sub in subs:
        console.print(f"subscribed {sub.id} to {sub.event_name}")
    event_ids = []
    for n in range(count):
        name = "demo.order.created" if n % 2 == 0 else "demo.order.shipped"
        event_ids.append(app.publish(name, {"order_id": 1000 + n, "total": 9.5 * (n + 1)}))
    console.print(f"published {count} events; running a worker until it is idle...")
    try:
        report = app.run_worker(WorkerLimits(concurrency=4, max_idle_time=1.5,
                                             time_limit=120))
    finally:
        receiver.stop()
        for sub in subs:
            # The receiver is gone: keep the traces, stop the subscriptions.
            app.store.delete_subscription(sub.id)
    rows = [
        {"webhook-id": r.webhook_id, "type": r.event_type, "signature": "valid"
         if r.signature_ok else "INVALID", "answered": r.status}
        for r in receiver.received
    ]
    print_table(rows, ("webhook-id", "type", "signature", "answered"),
                title="Received by the local webhook receiver")
    deliveries = [d for d in app.store.recent_deliveries(limit=4 * count)
                  if d.event_id in set(event_ids)]
    print_table([d.public() for d in deliveries],
                ("uuid", "event_name", "status", "attempts", "recipient"), title="Deliveries")
    delivered = sum(1 for d in deliveries if d.status == "delivered")
    console.print(f"{delivered} of {len(deliveries)} deliveries delivered "
                  f"({report.handled} messages handled).")
    if deliveries:
        console.print("Look closer:")
        console.print(f"  asyncevents trace {deliveries[0].id}")
        console.print("  asyncevents search 'event_name:demo.order.* AND status:delivered'")
    app.close()
