"""Quorum queues on a three-node RabbitMQ cluster while nodes die and restart.

Each row runs on the cluster of :mod:`faults.cluster` with
``ASYNCEVENTS_AMQP_QUEUE_TYPE=quorum`` and a transport URL listing the three
nodes. The stack's queues are declared through one node, so that node leads
them (RabbitMQ places a new quorum queue's leader on the declaring client's
node); the publisher (this process) is connected to a second node and the
worker to the third, so a row can hit one role at a time:

- ``quorum-node``: the worker's node is killed (``kill -9`` of its
  ``beam.smp``); the worker must fail over to another node and go on.
- ``quorum-leader``: the queues' leader is killed; a new leader must be
  elected and delivery go on, with neither client disconnected.
- ``quorum-rolling``: every node is stopped and started again, one after the
  other (each once the cluster is whole again), while events flow.
- ``quorum-retry``: no node fails; every other delivery fails once (the receiver's
  ``flaky`` path), so it goes through a retry, parked in a quorum delay
  queue that the worker's threads create on first use (together: a backlog
  waits for the worker when it starts, in every row), for longer than the
  delay queue's ``x-expires``.

Every confirmed publish must arrive (lost 0); duplicates must carry one
``webhook-id``. When some do not, the row says where they are: their
deliveries' status in the store and the messages left in the stack's
queues. Killed nodes are started again and the cluster must be whole (every
node running, every queue with a leader and all members online) before the
row ends.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from asyncevents.core.transport.amqp import AmqpTransport
from faults.cluster import Cluster, ClusterError, Node
from faults.figures import Row, tally
from faults.publishing import Publisher
from faults.receiver import Hit, Receiver
from faults.stack import Stack, WorkerProcess

__all__ = ["LABEL", "RETRY_FLOW", "connected_ports", "run_leader", "run_node", "run_retry",
           "run_rolling"]

#: The transport column of these rows.
LABEL = "amqp, quorum, 3 nodes"


def connected_ports(pid: int) -> set[int]:
    """The remote ports of the TCP connections process ``pid`` has open (from /proc)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        for fd in fd_dir.iterdir():
            try:
                target = fd.readlink().as_posix()
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            # local, remote, state (01: established), ..., inode (10th field)
            if len(parts) > 9 and parts[3] == "01" and parts[9] in inodes:
                ports.add(int(parts[2].rsplit(":", 1)[1], 16))
    return ports


def _node_of(cluster: Cluster, pid: int) -> Node | None:
    ports = connected_ports(pid)
    for node in cluster.nodes:
        if node.port in ports:
            return node
    return None


@dataclass
class _Run:
    """One row's installation on the cluster and who is where."""

    cluster: Cluster
    stack: Stack
    receiver: Receiver
    leader: Node
    publisher_node: Node
    worker_node: Node
    worker: WorkerProcess
    publisher: Publisher
    short: bool
    path: str
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def down_for(self) -> float:
        """Seconds a node stays down while events flow."""
        return 3.0 if self.short else 10.0

    def worker_at(self) -> Node | None:
        """The node the worker is connected to now."""
        return _node_of(self.cluster, self.worker.pid)

    def leaders(self) -> dict[str, str]:
        """Queue name -> leading node, for the stack's two work queues."""
        prefix = self.stack.settings.queue_prefix
        found = self.cluster.queues(prefix)
        return {name: str(info.get("leader")) for name, info in found.items()
                if name in (f"{prefix}.trigger", f"{prefix}.deliver")}


def _scenario(cluster: Cluster | None, directory: Path, name: str, short: bool,
              fault: Callable[[_Run], None], mode: str = "ok") -> Row:
    """Run ``fault`` while events flow to the receiver's ``mode`` path; drain, count."""
    row = Row(name, LABEL)
    if cluster is None:
        from faults.cluster import running

        with running() as started:
            return _scenario(started, directory, name, short, fault, mode)
    path = f"/{mode}/quorum"
    cluster.wait_healthy(timeout=120)
    nodes = cluster.nodes
    leader, publisher_node, worker_node = nodes[2], nodes[0], nodes[1]
    receiver = Receiver()
    run: _Run | None = None
    try:
        with Stack.open("amqp", directory, transport_url=cluster.url_from(publisher_node),
                        amqp_queue_type="quorum") as stack:
            # Declared through one node, which then leads every queue.
            declare = AmqpTransport(stack.settings.model_copy(
                update={"transport_url": leader.url}))
            declare.check()
            declare.close()
            stack.subscribe(f"http://127.0.0.1:{receiver.port}{path}")
            # A backlog for the worker's first moments: its threads start together
            # (and, on the flaky path, park their first retries together).
            backlog = [stack.app.publish("fault.quorum", {"backlog": n}) for n in range(40)]
            backlog_at = time.monotonic()
            worker = stack.worker(env={"ASYNCEVENTS_TRANSPORT_URL": cluster.url_from(worker_node)},
                                  name="worker")
            publisher = Publisher(stack.app, "quorum", pause=0.02)
            publisher.accepted.extend(backlog)
            publisher.accepted_at.extend([backlog_at] * len(backlog))
            run = _Run(cluster, stack, receiver, leader, publisher_node, worker_node, worker,
                       publisher, short, path)
            leaders = run.leaders()
            if set(leaders.values()) != {leader.name}:
                run.notes.append(f"queue leaders {leaders} (expected {leader.name})")
            publisher.start()
            try:
                if not receiver.wait_for(60, timeout=60):
                    raise RuntimeError("nothing delivered through the cluster within 60 s")
                if run.worker_at() != worker_node:
                    run.notes.append(f"the worker was connected to {run.worker_at()}, "
                                     f"not {worker_node.name}")
                fault(run)
                time.sleep(2 if short else 5)  # more events once all is back
            finally:
                publisher.stop()
            arrived = receiver.wait_for(len(publisher.accepted), timeout=120, path=path)
            receiver.wait_quiet(2.0, timeout=30)
            if not arrived:
                run.notes.append(_missing(run, receiver.snapshot()))
            alive = worker.alive()
            worker.signal(signal.SIGTERM)
            code = worker.wait(timeout=30)
            log = worker.text()
            healthy = cluster.wait_healthy(stack.settings.queue_prefix, timeout=120)
        hits = receiver.snapshot()
    finally:
        receiver.close()
        # Whatever happened, every node runs again for the next row.
        for node in cluster.nodes:
            if node.pid() is None:
                cluster.start_node(node)
    assert run is not None
    row.add(tally(hits, publisher.accepted, [path]))
    row.notes.extend(run.notes)
    row.notes.append(
        f"{len(publisher.accepted)} publishes confirmed, {len(publisher.refused)} refused with "
        f"an error (slowest publish {publisher.slowest:.1f} s); longest pause between two "
        f"deliveries {_longest_gap(hits, path):.1f} s; worker logged "
        f"{log.count('broker connection lost')} lost connections, "
        f"{log.count('broker connection restored')} restored; cluster whole again "
        f"{healthy:.1f} s after the drain")
    if publisher.refused:
        row.notes.append(f"publisher was told: {publisher.refused[0][:200]}")
    row.problems.extend(run.problems)
    row.check(all(r.startswith("TransportError") for r in publisher.refused),
              "a publish failed with something other than TransportError")
    row.check(arrived, "confirmed events still missing 120 s after the fault")
    row.check(alive, "the worker died")
    row.check(code == 0, f"the worker exited with {code} on SIGTERM")
    return row


def _missing(run: _Run, hits: list[Hit]) -> str:
    """Where the confirmed events that did not arrive are: the store, the queues."""
    arrived = {h.event_id for h in hits if h.status == 200 and h.path == run.path}
    missing = set(run.publisher.accepted) - arrived
    store = run.stack.app.store
    statuses: Counter[str] = Counter()
    for delivery in store.recent_deliveries(limit=2 * len(run.publisher.accepted) + 100):
        if delivery.event_id in missing:
            statuses[f"{delivery.status} after {delivery.attempts} attempts"] += 1
    prefix = run.stack.settings.queue_prefix
    try:
        held = {name: info.get("messages") for name, info in run.cluster.queues(prefix).items()
                if info.get("messages")}
    except ClusterError as exc:
        held = {"?": str(exc)}
    unknown = len(missing) - sum(statuses.values())
    delayed = {name: n for name, n in held.items() if ".delay." in name}
    return (f"{len(missing)} confirmed events missing; their deliveries: "
            + ", ".join(f"{n} {what}" for what, n in statuses.most_common())
            + (f", {unknown} never dispatched" if unknown else "")
            + f"; messages left in the stack's queues: {held or 'none'}"
            + ("; messages whose delay ran out long ago still sit in delay queues"
               if delayed else ""))


def _longest_gap(hits: list[Hit], path: str) -> float:
    times = sorted(h.at for h in hits if h.status == 200 and h.path == path)
    return max((b - a for a, b in pairwise(times)), default=0.0)


def _delivering_again(run: _Run, since: float, timeout: float = 90.0) -> float | None:
    """Seconds from ``since`` until an event published after it arrives (None: none did)."""
    deadline = since + timeout
    publisher = run.publisher
    while time.monotonic() < deadline:
        fresh = {event for event, at in zip(list(publisher.accepted),
                                            list(publisher.accepted_at), strict=False)
                 if at > since}
        later = [h.at for h in run.receiver.snapshot()
                 if h.status == 200 and h.path == run.path and h.event_id in fresh]
        if later:
            return min(later) - since
        time.sleep(0.05)
    return None


def _kill_worker_node(run: _Run) -> None:
    node = run.worker_at() or run.worker_node
    killed = run.cluster.kill_node(node)
    resumed = _delivering_again(run, killed)
    deadline = time.monotonic() + 30
    moved = run.worker_at()
    while (moved is None or moved == node) and time.monotonic() < deadline:
        time.sleep(0.1)
        moved = run.worker_at()
    run.notes.append(
        f"killed {node.name} (the worker's node; leader {run.leader.name}, publisher on "
        f"{run.publisher_node.name}); the worker moved to "
        f"{moved.name if moved else 'nowhere'}; the first event published after the kill arrived "
        + (f"{resumed:.1f} s after the kill" if resumed is not None else "never"))
    if moved is None or moved == node:
        run.problems.append("the worker did not reconnect to another node")
    if resumed is None:
        run.problems.append("nothing was delivered after the kill")
    time.sleep(run.down_for)  # events flow with one node down
    began = time.monotonic()
    run.cluster.start_node(node)
    run.cluster.wait_healthy(run.stack.settings.queue_prefix, timeout=120)
    run.notes.append(f"{node.name} restarted and the cluster whole after "
                     f"{time.monotonic() - began:.1f} s")


def _kill_leader(run: _Run) -> None:
    before = run.leaders()
    node = run.cluster.node(before.get(f"{run.stack.settings.queue_prefix}.deliver",
                                       run.leader.name))
    worker_at = run.worker_at()
    killed = run.cluster.kill_node(node)
    resumed = _delivering_again(run, killed)
    elected: float | None = None
    after: dict[str, str] = {}
    while time.monotonic() < killed + 60:
        try:
            after = run.leaders()
        except Exception:
            after = {}
        if after and all(v and v != node.name for v in after.values()):
            elected = time.monotonic() - killed
            break
        time.sleep(0.2)
    run.notes.append(
        f"killed {node.name}, leader of {sorted(before)} (worker on "
        f"{worker_at.name if worker_at else '?'}, publisher on {run.publisher_node.name}); "
        "new leaders " + (f"{sorted(set(after.values()))} seen {elected:.1f} s after the kill"
                          if elected is not None else "never seen")
        + "; the first event published after the kill arrived "
        + (f"{resumed:.1f} s after the kill" if resumed is not None else "never"))
    if elected is None:
        run.problems.append("no new leader was elected within 60 s")
    if resumed is None:
        run.problems.append("nothing was delivered after the kill")
    time.sleep(run.down_for)
    began = time.monotonic()
    run.cluster.start_node(node)
    run.cluster.wait_healthy(run.stack.settings.queue_prefix, timeout=120)
    run.notes.append(f"{node.name} restarted and the cluster whole after "
                     f"{time.monotonic() - began:.1f} s")


def _rolling_restart(run: _Run) -> None:
    steps = []
    for node in run.cluster.nodes:
        began = time.monotonic()
        roles = [name for name, who in (("leader", run.leader), ("publisher", run.publisher_node),
                                         ("worker", run.worker_node)) if who == node]
        down = run.cluster.restart_node(node, down_for=run.down_for / 2)
        whole = run.cluster.wait_healthy(run.stack.settings.queue_prefix, timeout=120)
        steps.append(f"{node.name} ({', '.join(roles) or 'no role'}) down {down:.1f} s, "
                     f"whole again {whole:.1f} s later ({time.monotonic() - began:.0f} s)")
    run.notes.append("rolling restart (rabbitmqctl stop, start): " + "; ".join(steps))


def run_node(transport: str, directory: Path, *, short: bool = False,
             cluster: Cluster | None = None) -> Row:
    """``quorum-node``: kill -9 of the node the worker is connected to."""
    return _scenario(cluster, directory, "worker's RabbitMQ node killed", short,
                     _kill_worker_node)


def run_leader(transport: str, directory: Path, *, short: bool = False,
               cluster: Cluster | None = None) -> Row:
    """``quorum-leader``: kill -9 of the node leading the queues."""
    return _scenario(cluster, directory, "queue leader node killed", short, _kill_leader)


def run_rolling(transport: str, directory: Path, *, short: bool = False,
                cluster: Cluster | None = None) -> Row:
    """``quorum-rolling``: the three nodes restarted one after another."""
    return _scenario(cluster, directory, "rolling restart of 3 nodes", short, _rolling_restart)


#: How long the full ``quorum-retry`` row keeps retries flowing: past the delay
#: queue's ``x-expires`` (its delay + 60 s), which a quorum queue does not renew.
RETRY_FLOW = 75.0


def _retries_flow(run: _Run) -> None:
    # Every delivery fails once and waits in a delay queue.
    time.sleep(run.down_for if run.short else RETRY_FLOW)


def run_retry(transport: str, directory: Path, *, short: bool = False,
              cluster: Cluster | None = None) -> Row:
    """``quorum-retry``: every other delivery retried once through a quorum delay queue."""
    return _scenario(cluster, directory, "retries through quorum delay queues", short,
                     _retries_flow, mode="flaky")
