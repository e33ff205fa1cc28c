"""A three-node RabbitMQ cluster on 127.0.0.1, beside the machine's own RabbitMQ.

The machine's RabbitMQ (node ``rabbit@localhost``, port 5672) is never
touched. The extra nodes, ``aecluster1@localhost`` to ``aecluster3@localhost``,
listen on 5681-5683 (Erlang distribution on 25681-25683), run as the
``rabbitmq`` user with ``HOME=/var/lib/rabbitmq`` (so they share the Erlang
cookie with the CLI tools), load no plugins (no management or Prometheus port
to collide) and keep everything under one directory
(``$ASYNCEVENTS_CLUSTER_DIR``, default ``/tmp/asyncevents-rabbitmq-cluster``),
which :meth:`Cluster.stop` removes.

``python -m faults.cluster start|stop|status`` (``scripts/rabbitmq-cluster.sh``)
runs it by hand; the fault rows use :func:`running`, which always stops it.

The ports are the machine's, so one run at a time: :func:`running` holds an
exclusive lock (:data:`LOCK`) from start to stop, and another fault run (a
second ``make test`` in the same machine) waits for it instead of killing the
nodes in use; ``start`` and ``stop`` by hand refuse while it is held.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BASE_PORT", "LOCK", "Cluster", "ClusterError", "Node", "exclusive", "main",
           "running"]

#: The first node's AMQP port; node ``i`` (1-based) listens on ``BASE_PORT + i - 1``.
BASE_PORT = 5681
_DIST_OFFSET = 20000
_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
_CTL_DIR = "/usr/lib/rabbitmq/bin"
_RABBIT_HOME = "/var/lib/rabbitmq"
_DEFAULT_DIR = "/tmp/asyncevents-rabbitmq-cluster"
#: Held while a run uses the cluster (the ports are machine-wide, whatever the directory).
LOCK = Path("/tmp/asyncevents-rabbitmq-cluster.lock")


class ClusterError(RuntimeError):
    """The cluster could not be started, checked or stopped."""


@dataclass(frozen=True)
class Node:
    """One extra RabbitMQ node: its name, ports and files."""

    index: int
    base: Path

    @property
    def name(self) -> str:
        """The Erlang node name (``aeclusterN@localhost``)."""
        return f"aecluster{self.index}@localhost"

    @property
    def port(self) -> int:
        """The AMQP port on 127.0.0.1."""
        return BASE_PORT + self.index - 1

    @property
    def dist_port(self) -> int:
        """The Erlang distribution port on 127.0.0.1."""
        return self.port + _DIST_OFFSET

    @property
    def url(self) -> str:
        """The AMQP URL of this node alone."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def directory(self) -> Path:
        """Where this node keeps its configuration, data, logs and pid file."""
        return self.base / f"node{self.index}"

    @property
    def pid_file(self) -> Path:
        """The pid file the node writes once it runs."""
        return self.directory / "rabbitmq.pid"

    def environment(self) -> dict[str, str]:
        """The variables ``rabbitmq-server`` needs to be this node and no other."""
        d = self.directory
        return {
            "HOME": _RABBIT_HOME,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # Our own (empty) rabbitmq-env.conf: the machine's one names rabbit@localhost.
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def write_files(self, peers_of: Sequence[str] = ()) -> None:
        """The node's configuration: its listener on 127.0.0.1, the peers it joins, no plugins."""
        d = self.directory
        for sub in ("mnesia", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        # A blank node joins the first of its peers that runs (peer discovery).
        peers = "".join(f"cluster_formation.classic_config.nodes.{i} = {name}\n"
                        for i, name in enumerate(peers_of, 1))
        if peers:
            peers = "cluster_formation.peer_discovery_backend = classic_config\n" + peers
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            + peers +
            # A restarted node rejoins its peers: keep it from giving up too soon.
            "mnesia_table_loading_retry_limit = 30\n"
            "mnesia_table_loading_retry_timeout = 10000\n"
        )
        (d / "rabbitmq-env.conf").write_text("")
        (d / "advanced.config").write_text("[].\n")
        (d / "enabled_plugins").write_text("[].\n")

    def pid(self) -> int | None:
        """The pid of this node's ``beam.smp``, if it runs.

        Found by its environment (``RABBITMQ_NODENAME``), not the pid file: the
        command line does not name the node, and a killed run may have left a
        node whose directory is gone.
        """
        marker = f"RABBITMQ_NODENAME={self.name}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (entry / "comm").read_text().strip() != "beam.smp":
                    continue
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ:
                return int(entry.name)
        return None

    def listening(self) -> bool:
        """Whether the node accepts AMQP connections."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
        except OSError:
            return False
        return True


@dataclass
class Cluster:
    """Three extra RabbitMQ nodes joined into one cluster (see the module docstring)."""

    base: Path
    size: int = 3

    @classmethod
    def default(cls) -> Cluster:
        """The cluster in ``$ASYNCEVENTS_CLUSTER_DIR`` (default under ``/tmp``)."""
        return cls(Path(os.environ.get("ASYNCEVENTS_CLUSTER_DIR", _DEFAULT_DIR)))

    @property
    def nodes(self) -> list[Node]:
        """The nodes, first one first."""
        return [Node(i, self.base) for i in range(1, self.size + 1)]

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise ClusterError(f"{name!r} is not a node of this cluster")

    @property
    def url(self) -> str:
        """A failover URL listing every node (kombu moves to the next one on loss)."""
        return ";".join(node.url for node in self.nodes)

    def url_from(self, first: Node) -> str:
        """The failover URL starting at ``first``, then the others in turn."""
        nodes = self.nodes
        at = nodes.index(first)
        return ";".join(node.url for node in nodes[at:] + nodes[:at])

    # -- the CLI tools ------------------------------------------------------

    def ctl(self, tool: str, node: Node, *args: str, timeout: float = 60.0,
            check: bool = True) -> str:
        """Run ``rabbitmqctl``/``rabbitmq-queues``/... ``-n NODE ARGS`` as the rabbitmq user."""
        command = [f"{_CTL_DIR}/{tool}", "-n", node.name, *args]
        # The rabbitmq user must be able to read its working directory (the CLI
        # loads code relative to it), and a timeout must stop the CLI's own VM too.
        process = subprocess.Popen(_as_rabbitmq(command, {"HOME": _RABBIT_HOME}),
                                   cwd=_RABBIT_HOME, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise ClusterError(f"{tool} -n {node.name} {' '.join(args)}: no answer in "
                               f"{timeout:.0f} s") from None
        if check and process.returncode != 0:
            detail = (stderr.strip() or stdout.strip()).splitlines()
            raise ClusterError(f"{tool} -n {node.name} {' '.join(args)} failed: "
                               f"{detail[0] if detail else process.returncode}")
        return stdout

    # -- one node -----------------------------------------------------------

    def start_node(self, node: Node, timeout: float = 90.0) -> None:
        """Start ``node`` (detached) and wait until its AMQP listener answers."""
        if node.pid() is not None:
            raise ClusterError(f"{node.name} already runs")
        for port in (node.port, node.dist_port):
            if _port_taken(port):
                raise ClusterError(f"port {port} is taken: cannot start {node.name}")
        node.pid_file.unlink(missing_ok=True)
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("RABBITMQ_", "ERL_"))}
        env.update(node.environment())
        subprocess.run(_as_rabbitmq([_SERVER, "-detached"], node.environment()), env=env,
                       cwd=node.directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60, check=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.listening():
                return
            time.sleep(0.2)
        raise ClusterError(f"{node.name} did not listen on {node.port} within {timeout:.0f} s "
                           f"(log: {node.directory / 'log'})")

    def kill_node(self, node: Node, timeout: float = 30.0) -> float:
        """``kill -9`` the node's ``beam.smp``; return when it died (monotonic)."""
        pid = node.pid()
        if pid is None:
            raise ClusterError(f"{node.name} does not run")
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        deadline = killed + timeout
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        return killed

    def stop_node(self, node: Node, timeout: float = 60.0) -> None:
        """Stop ``node`` gracefully (``rabbitmqctl stop``), or kill it if that fails."""
        pid = node.pid()
        if pid is None:
            return
        with suppress(ClusterError):
            self.ctl("rabbitmqctl", node, "stop", timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            self.kill_node(node)

    # -- the whole cluster --------------------------------------------------

    def start(self, timeout: float = 180.0) -> float:
        """Start the nodes, join them into one cluster, wait until healthy; seconds taken.

        The nodes boot one after the other: node 1 alone (the seed), then each
        of the others finds it through its ``classic_config`` peer and joins
        (booting them at once gains nothing on two CPUs). A node that
        did not (it booted alone) is joined by hand: ``rabbitmqctl stop_app;
        join_cluster aecluster1@localhost; start_app``.
        """
        began = time.monotonic()
        self.stop()  # what a killed run left behind
        self.base.mkdir(parents=True, exist_ok=True)
        seed = self.nodes[0]
        for node in self.nodes:
            node.write_files([] if node == seed else [seed.name])
        _chown_rabbitmq(self.base)
        try:
            for node in self.nodes:
                self.start_node(node)
            first = self.nodes[0]
            running = self.running_nodes(first)
            for node in self.nodes[1:]:
                if node.name in running:
                    continue
                self.ctl("rabbitmqctl", node, "await_startup", "--timeout", "60", timeout=90)
                self.ctl("rabbitmqctl", node, "stop_app")
                self.ctl("rabbitmqctl", node, "join_cluster", first.name)
                self.ctl("rabbitmqctl", node, "start_app")
            self.wait_healthy(timeout=max(10.0, timeout - (time.monotonic() - began)))
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - began

    def stop(self) -> None:
        """Stop every node of ours (never the machine's own RabbitMQ) and remove the files."""
        for node in self.nodes:
            pid = node.pid()
            if pid is not None:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # it is all thrown away: no need to be nice
        for node in self.nodes:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and node.pid() is not None:
                time.sleep(0.1)
        shutil.rmtree(self.base, ignore_errors=True)

    def running_nodes(self, asked: Node | None = None) -> list[str]:
        """The nodes ``asked`` (default: any running one) sees running in the cluster."""
        nodes = [asked] if asked else [n for n in self.nodes if n.pid() is not None]
        for node in nodes:
            try:
                out = self.ctl("rabbitmqctl", node, "cluster_status", "--formatter", "json",
                               timeout=30)
                status = json.loads(out)
                return sorted(str(n) for n in status.get("running_nodes", []))
            except (ClusterError, ValueError):
                continue
        return []

    def queues(self, prefix: str = "", asked: Node | None = None) -> dict[str, dict[str, object]]:
        """Queues (name -> type, leader, members, online, messages) named ``prefix``..."""
        nodes = [asked] if asked else [n for n in self.nodes if n.pid() is not None]
        for node in nodes:
            try:
                out = self.ctl("rabbitmqctl", node, "list_queues", "--formatter", "json",
                               "name", "type", "leader", "members", "online", "messages",
                               timeout=30)
                rows = json.loads(out)
            except (ClusterError, ValueError):
                continue
            return {str(r["name"]): r for r in rows if str(r["name"]).startswith(prefix)}
        raise ClusterError("no node answered list_queues")

    def leader(self, queue: str) -> Node:
        """The node leading the quorum queue ``queue``."""
        info = self.queues(queue).get(queue)
        if not info or not info.get("leader"):
            raise ClusterError(f"no leader known for {queue!r}")
        return self.node(str(info["leader"]))

    def health(self, prefix: str = "") -> list[str]:
        """What is wrong with the cluster (empty: every node runs and every queue is whole)."""
        problems = []
        names = sorted(node.name for node in self.nodes)
        for node in self.nodes:
            if node.pid() is None or not node.listening():
                problems.append(f"{node.name} is not running")
        if problems:
            return problems
        seen = self.running_nodes()
        if seen != names:
            problems.append(f"the cluster runs {seen}, not {names}")
        for name, info in self.queues(prefix).items():
            if info.get("type") != "quorum":
                continue
            online = info.get("online") or []
            if not info.get("leader") or len(list(online)) != self.size:  # type: ignore[call-overload]
                problems.append(f"queue {name}: leader {info.get('leader')!r}, "
                                f"online {online}")
        return problems

    def wait_healthy(self, prefix: str = "", timeout: float = 120.0) -> float:
        """Wait until :meth:`health` finds nothing wrong; seconds waited."""
        began = time.monotonic()
        deadline = began + timeout
        problems = ["not checked yet"]
        while time.monotonic() < deadline:
            try:
                problems = self.health(prefix)
            except ClusterError as exc:
                problems = [str(exc)]
            if not problems:
                return time.monotonic() - began
            time.sleep(0.5)
        raise ClusterError(f"the cluster is not healthy after {timeout:.0f} s: "
                           + "; ".join(problems))

    def restart_node(self, node: Node, *, kill: bool = False, down_for: float = 0.0) -> float:
        """Stop (or ``kill``) ``node``, wait ``down_for``, start it; the seconds it was down."""
        began = time.monotonic()
        if kill:
            self.kill_node(node)
        else:
            self.stop_node(node)
        time.sleep(down_for)
        self.start_node(node)
        return time.monotonic() - began

    def status(self) -> str:
        """A few lines: each node's state, and the cluster as the first running node sees it."""
        lines = []
        for node in self.nodes:
            pid = node.pid()
            state = f"running (pid {pid})" if pid else "stopped"
            lines.append(f"{node.name}  127.0.0.1:{node.port}  {state}")
        if any(node.pid() for node in self.nodes):
            lines.append(f"running nodes: {', '.join(self.running_nodes()) or '?'}")
            lines.append(f"url: {self.url}")
        return "\n".join(lines)


def _as_rabbitmq(command: list[str], env: dict[str, str]) -> list[str]:
    pairs = [f"{key}={value}" for key, value in env.items()]
    if os.geteuid() == 0:
        return ["runuser", "-u", "rabbitmq", "--", "env", *pairs, *command]
    return ["env", *pairs, *command]


def _chown_rabbitmq(path: Path) -> None:
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs),
                     *(os.path.join(root, f) for f in files)]:
            shutil.chown(name, "rabbitmq", "rabbitmq")


def _port_taken(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@contextmanager
def exclusive(wait: float) -> Iterator[None]:
    """Hold :data:`LOCK` for the body, waiting up to ``wait`` seconds for another holder."""
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ClusterError(
                        f"another fault run uses the cluster (it holds {LOCK})") from None
                time.sleep(1.0)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def running(cluster: Cluster | None = None, wait: float = 600.0) -> Iterator[Cluster]:
    """A started, healthy cluster for the body; stopped and removed afterwards, always.

    Waits up to ``wait`` seconds while another run uses the cluster.
    """
    cluster = cluster or Cluster.default()
    with exclusive(wait):
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``start``, ``stop`` or ``status``."""
    parser = argparse.ArgumentParser(prog="rabbitmq-cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("start", "stop", "status"))
    args = parser.parse_args(argv)
    cluster = Cluster.default()
    try:
        if args.action == "start":
            with exclusive(wait=0):
                took = cluster.start()
            print(f"started in {took:.1f} s")
            print(cluster.status())
        elif args.action == "stop":
            with exclusive(wait=0):
                cluster.stop()
            print("stopped; removed " + str(cluster.base))
        else:
            print(cluster.status())
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
