"""What every scenario needs: databases, queues, worker processes, timing, results."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
PG_SERVER = os.environ.get("BENCH_PG", "postgres@127.0.0.1:5432")
EVENT = "bench.order.created"
TOKEN = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # any base64 key
WORKER_CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
#: A copy of src/asyncevents taken when the run starts (see ``snapshot_source``).
SNAPSHOT: str | None = None


def snapshot_source() -> str:
    """Copy ``src/asyncevents`` aside and import it from there, here and in every child.

    A long run then measures one version of the code even if the working tree
    changes meanwhile. Returns a short digest of the copied files.
    """
    import hashlib

    global SNAPSHOT
    target = Path(tempfile.mkdtemp(prefix="asyncevents-bench-src-"))
    shutil.copytree(ROOT / "src" / "asyncevents", target / "asyncevents",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = hashlib.sha256()
    for path in sorted((target / "asyncevents").rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(target)).encode())
            digest.update(path.read_bytes())
    if "asyncevents" in sys.modules:
        raise RuntimeError("asyncevents was imported before the snapshot")
    sys.path.insert(0, str(target))
    SNAPSHOT = str(target)
    import atexit

    atexit.register(shutil.rmtree, target, True)
    return digest.hexdigest()[:12]


def log(msg: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def uid() -> str:
    """A short unique name part for queues and databases."""
    return f"b{os.getpid()}x{secrets.token_hex(3)}"


def payload(seq: int) -> dict[str, Any]:
    """A small order-like event payload carrying its sequence number."""
    return {"seq": seq, "order_id": 100000 + seq, "total": 42.5, "currency": "EUR",
            "customer": {"id": seq % 997, "email": f"c{seq % 997}@example.com"},
            "items": [{"sku": f"SKU-{seq % 50}", "qty": 1 + seq % 3}]}


def cloudevent_body(seq: int) -> bytes:
    """A body like the one the HTTP sink sends, for the baselines to POST."""
    doc = {"specversion": "1.0", "id": secrets.token_hex(16), "source": "bench",
           "type": EVENT, "time": "2026-01-01T00:00:00Z",
           "datacontenttype": "application/json", "data": payload(seq)}
    return json.dumps(doc, separators=(",", ":")).encode()


# -- results ---------------------------------------------------------------------------


@dataclass
class Sample:
    scenario: str
    contender: str
    metric: str
    unit: str
    values: list[float] = field(default_factory=list)
    higher_is_better: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        vals = [v for v in self.values if v == v]
        return statistics.median(vals) if vals else None


class Results:
    """Samples keyed by (scenario, contender, metric), kept in insertion order."""

    def __init__(self) -> None:
        self.samples: dict[tuple[str, str, str], Sample] = {}
        self.info: dict[str, Any] = {}
        self.errors: list[str] = []

    def add(self, scenario: str, contender: str, metric: str, value: float, unit: str, *,
            higher_is_better: bool = True, note: str | None = None) -> None:
        key = (scenario, contender, metric)
        sample = self.samples.get(key)
        if sample is None:
            sample = self.samples[key] = Sample(scenario, contender, metric, unit,
                                                higher_is_better=higher_is_better)
        sample.values.append(float(value))
        if note and note not in sample.notes:
            sample.notes.append(note)
        log(f"  {scenario} / {contender} / {metric} = {value:,.3f} {unit}")

    def get(self, scenario: str, contender: str, metric: str) -> float | None:
        sample = self.samples.get((scenario, contender, metric))
        return sample.median if sample else None

    def to_json(self) -> dict[str, Any]:
        return {
            "info": self.info,
            "errors": self.errors,
            "samples": [
                {"scenario": s.scenario, "contender": s.contender, "metric": s.metric,
                 "unit": s.unit, "median": s.median, "values": s.values,
                 "higher_is_better": s.higher_is_better, "notes": s.notes}
                for s in self.samples.values()
            ],
        }


@dataclass
class Context:
    results: Results
    quick: bool
    repeat: int
    profile: str | None = None  # py-spy output path for the RabbitMQ end-to-end worker

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full


# -- services --------------------------------------------------------------------------


def wait_services(timeout: float = 120.0) -> None:
    """Wait until PostgreSQL and RabbitMQ accept connections (another job may restart them)."""
    import socket

    deadline = time.monotonic() + timeout
    for port in (5432, 5672):
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
                time.sleep(1)


def loadavg() -> float:
    with open("/proc/loadavg") as fh:
        return float(fh.read().split()[0])


# -- PostgreSQL ------------------------------------------------------------------------


def _pg_admin() -> Any:
    import psycopg

    return psycopg.connect(f"postgresql://{PG_SERVER}/postgres", autocommit=True)


def pg_sessions(url: str) -> int:
    """Sessions ever opened on the database of ``url`` (pg_stat_database.sessions)."""
    name = url.rsplit("/", 1)[1]
    with _pg_admin() as conn:
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s",
                           (name,)).fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def pg_database(tag: str) -> Iterator[str]:
    """A fresh database, dropped afterwards; yields its ``postgresql://`` URL."""
    name = f"bench_{tag}_{uid()}".lower()
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{PG_SERVER}/{name}"
    finally:
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def temp_dir(tag: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"asyncevents-bench-{tag}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- RabbitMQ --------------------------------------------------------------------------


def rabbit_delete(queues: list[str], exchanges: list[str] = ()) -> None:  # type: ignore[assignment]
    """Delete queues and exchanges (missing ones are fine)."""
    from kombu import Connection

    with Connection(AMQP_URL) as conn:
        for name in queues:
            try:
                conn.default_channel.queue_delete(name)
            except Exception:
                conn.close()
                conn = Connection(AMQP_URL)
        for name in exchanges:
            try:
                conn.default_channel.exchange_delete(name)
            except Exception:
                conn.close()
                conn = Connection(AMQP_URL)
        conn.close()


def rabbit_consumers(queues: list[str]) -> dict[str, int]:
    """Consumers on each of these queues (missing queues left out)."""
    from kombu import Connection

    counts: dict[str, int] = {}
    with Connection(AMQP_URL) as conn:
        for name in queues:
            try:
                _, _, consumers = conn.default_channel.queue_declare(name, passive=True)
            except Exception:
                conn.close()
                conn = Connection(AMQP_URL)
                continue
            counts[name] = int(consumers)
        conn.close()
    return counts


# -- processes -------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def _started(pid: int) -> str | None:
    """When ``pid`` started (clock ticks after boot), None once it has gone or is a zombie."""
    st = _stat(pid)
    return None if st is None or st[0] == "Z" else st[19]


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and int(st[1]) == pid:
                found.append(int(entry))
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU of these processes and their descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for root in pids:
        for p in tree(root):
            st = _stat(p)
            if st is not None:
                total += int(st[11]) + int(st[12])
    return total / ticks


def server_pids() -> dict[str, list[int]]:
    """The PostgreSQL and RabbitMQ server processes on this machine (shared with others)."""
    found: dict[str, list[int]] = {"postgres": [], "rabbitmq": []}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as fh:
                comm = fh.read().strip()
        except OSError:
            continue
        if comm == "postgres":
            found["postgres"].append(int(entry))
        elif comm == "beam.smp":
            found["rabbitmq"].append(int(entry))
    return found


def own_cpu(pids: list[int]) -> float:
    """User+system CPU of these processes and of their children that ended (reaped).

    A PostgreSQL backend that exits is reaped by the postmaster, whose
    ``cutime``/``cstime`` then hold its CPU: so connection churn is counted.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        st = _stat(p)
        if st is not None:
            total += int(st[11]) + int(st[12]) + int(st[13]) + int(st[14])
    return total / ticks


def rss_mb(pid: int) -> float:
    """Resident memory of one process, MB."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Procs:
    """Subprocesses with their logs, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, tag: str, logdir: Path) -> None:
        self.tag = tag
        self.logdir = logdir
        self.items: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, argv: list[str], env: dict[str, str], cwd: Path | None = None,
              wrap: list[str] | None = None) -> subprocess.Popen[bytes]:
        logfile = self.logdir / f"{self.tag}-{len(self.items)}.log"
        out = open(logfile, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([*(wrap or []), *argv], env=env, cwd=cwd or self.logdir,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.items.append((proc, logfile))
        return proc

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _ in self.items]

    def tail(self, chars: int = 1500) -> str:
        """The end of each process's log."""
        parts = []
        for _, logfile in self.items:
            text = logfile.read_text(errors="replace") if logfile.exists() else ""
            parts.append(f"--- {logfile.name}:\n{text[-chars:]}")
        return "\n".join(parts)

    def check_alive(self) -> None:
        for proc, logfile in self.items:
            if proc.poll() is not None:
                tail = logfile.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.tag} process exited ({proc.returncode}):\n{tail}")

    def stop(self, timeout: float = 60.0) -> None:
        # Descendants in sessions of their own (``worker --processes``' children)
        # are outside the process group: noted now, killed below if they outlive it.
        descendants = [(p, _started(p)) for proc, _ in self.items if proc.poll() is None
                       for p in tree(proc.pid) if p != proc.pid]
        for proc, _ in self.items:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc, _ in self.items:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for pid, started in descendants:
            if started is not None and _started(pid) == started:  # the same process, not reused
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.items = []


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SNAPSHOT, str(ROOT),
                                                      env.get("PYTHONPATH")]))
    return env


# -- waiting and timing ----------------------------------------------------------------


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               alive: Callable[[], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (0 < p <= 100)."""
    data = sorted(values)
    if not data:
        return float("nan")
    rank = max(1, min(len(data), int(-(-p * len(data) // 100))))
    return data[rank - 1]


@dataclass
class Run:
    """One end-to-end measurement."""

    n: int
    received: int
    elapsed: float
    publish_elapsed: float
    complete: bool
    cpu: float = float("nan")
    server_cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.received / self.elapsed if self.elapsed > 0 else float("nan")

    @property
    def publish_rate(self) -> float:
        return self.n / self.publish_elapsed if self.publish_elapsed > 0 else float("nan")


def measure(receiver: Any, publish: Callable[[int], None], n: int, timeout: float,
            cpu_pids: list[int] | None = None, expect: int | None = None,
            alive: Callable[[], None] | None = None) -> Run:
    """Publish ``n`` (``publish(n)``) and wait until ``expect`` (default n) requests arrived.

    The clock starts before the first publish and stops at the last receipt.
    """
    expect = expect or n
    receiver.reset()
    srv0 = {pid: own_cpu([pid]) for pids in server_pids().values() for pid in pids}
    cpu0 = cpu_seconds(cpu_pids) if cpu_pids else float("nan")
    t0 = time.monotonic()
    publish(n)
    t_pub = time.monotonic()
    deadline = t_pub + timeout
    complete = True
    while receiver.count < expect:
        if time.monotonic() > deadline:
            complete = False
            break
        if alive is not None:
            alive()
        time.sleep(0.005)
    end = receiver.last if complete else time.monotonic()
    cpu = cpu_seconds(cpu_pids) - cpu0 if cpu_pids else float("nan")
    # Processes that started during the run count whole; ones that ended are in
    # their parent's cutime/cstime.
    srv = {name: sum(own_cpu([pid]) - srv0.get(pid, 0.0) for pid in pids)
           for name, pids in server_pids().items()}
    return Run(n=n, received=min(receiver.count, expect), elapsed=end - t0,
               publish_elapsed=t_pub - t0, complete=complete, cpu=cpu, server_cpu=srv)


def warm_up(receiver: Any, publish: Callable[[int], None], n: int = 50,
            timeout: float = 120.0, alive: Callable[[], None] | None = None,
            expect: int | None = None) -> None:
    """Push a few messages through so connections and caches are hot."""
    receiver.reset()
    publish(n)
    wait_until(lambda: receiver.count >= (expect or n), timeout, "the warm-up messages",
               alive)
    receiver.wait_quiet(0.3)
