"""Run the fault suite and print one table: fault x transport -> figures.

``python -m faults.run`` (``make faults``) runs every fault on every
transport it applies to; ``--short`` runs fewer events on fewer transports
(what ``make test`` runs through ``tests/test_faults.py``). ``--only`` picks
faults by name. The exit code is 1 when a row fails (anything lost, a
duplicate the receiver cannot identify, or a failed check).

The run restarts the RabbitMQ and PostgreSQL servers on 127.0.0.1 for a few
seconds each; they always come back, even if the run is killed. The
``quorum-*`` faults start a three-node RabbitMQ cluster beside them (ports
5681-5683, :mod:`faults.cluster`) once, and stop it at the end, also on an
error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from faults import (
    badlogin,
    broker,
    database,
    deadline,
    diskfull,
    hostile,
    idlekill,
    kill,
    quorum,
    receivers,
    sigterm,
    sinkgone,
    wildcard,
    wrongkey,
)
from faults.cluster import Cluster, running
from faults.figures import Row, format_table

__all__ = ["FAULTS", "Fault", "main", "run_fault", "run_faults"]

Scenario = Callable[..., Row]


@dataclass(frozen=True)
class Fault:
    """A fault, the transports it runs on, and those of the short form."""

    name: str
    scenario: Scenario
    transports: tuple[str, ...]
    short_transports: tuple[str, ...]
    cluster: bool = False
    """It runs on the three-node RabbitMQ cluster (passed as ``cluster=``)."""


_ALL = ("amqp", "sqla+postgresql", "sqla+sqlite")

FAULTS: tuple[Fault, ...] = (
    Fault("kill", kill.run, _ALL, _ALL),
    Fault("idlekill", idlekill.run, ("sqla+postgresql",), ("sqla+postgresql",)),
    Fault("rabbitmq", broker.run, ("amqp",), ("amqp",)),
    Fault("postgresql", database.run, ("sqla+postgresql", "amqp"), ("sqla+postgresql", "amqp")),
    Fault("receivers", receivers.run, _ALL, ("sqla+sqlite",)),
    Fault("sigterm", sigterm.run, _ALL, ("amqp", "sqla+sqlite")),
    Fault("diskfull", diskfull.run, ("sqla+sqlite",), ("sqla+sqlite",)),
    Fault("hostile", hostile.run, ("amqp", "sqla+sqlite"), ("sqla+sqlite",)),
    Fault("deadline", deadline.run, ("amqp", "sqla+sqlite"), ("sqla+sqlite",)),
    Fault("sinkgone", sinkgone.run, _ALL, _ALL),
    Fault("badlogin", badlogin.run, ("amqp",), ("amqp",)),
    Fault("wrongkey", wrongkey.run, _ALL, ("sqla+sqlite",)),
    Fault("wildcard", wildcard.run, ("amqp", "sqla+sqlite"), ("sqla+sqlite",)),
    Fault("quorum-node", quorum.run_node, ("amqp-cluster",), ("amqp-cluster",), cluster=True),
    # The short form (make test) runs one cluster row: the cluster's start costs ~20 s.
    Fault("quorum-leader", quorum.run_leader, ("amqp-cluster",), (), cluster=True),
    Fault("quorum-rolling", quorum.run_rolling, ("amqp-cluster",), (), cluster=True),
    Fault("quorum-retry", quorum.run_retry, ("amqp-cluster",), (), cluster=True),
)


def run_fault(fault: Fault, transport: str, base: Path, *, short: bool,
              keep: bool = False, cluster: Cluster | None = None) -> Row:
    """One row; a scenario that crashes is a failed row, not a crashed run.

    A ``cluster`` fault uses ``cluster`` (started and healthy), or else starts
    and stops a cluster of its own.
    """
    directory = Path(tempfile.mkdtemp(prefix=f"{fault.name}-{transport.replace('+', '-')}-",
                                      dir=base))
    began = time.monotonic()
    try:
        if fault.cluster:
            row = fault.scenario(transport, directory, short=short, cluster=cluster)
        else:
            row = fault.scenario(transport, directory, short=short)
    except Exception as exc:
        row = Row(fault.name, transport)
        row.problems.append(f"the scenario crashed: {type(exc).__name__}: {exc}")
        (directory / "crash.txt").write_text(traceback.format_exc())
    row.notes.append(f"took {time.monotonic() - began:.0f} s")
    if (row.ok or row.skipped) and not keep:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        row.notes.append(f"logs kept in {directory}")
    return row


def run_faults(names: Sequence[str] = (), *, short: bool = False, keep: bool = False,
               progress: Callable[[Row], None] | None = None) -> list[Row]:
    """Every selected fault on its transports; the rows in order."""
    base = Path(tempfile.mkdtemp(prefix="asyncevents-faults-"))
    rows = []
    with ExitStack() as resources:
        cluster: Cluster | None = None
        for fault in FAULTS:
            if names and fault.name not in names:
                continue
            if fault.cluster and cluster is None:
                began = time.monotonic()
                cluster = resources.enter_context(running())
                print(f"RabbitMQ cluster started in {time.monotonic() - began:.0f} s "
                      f"({cluster.url})", file=sys.stderr, flush=True)
            for transport in fault.short_transports if short else fault.transports:
                row = run_fault(fault, transport, base, short=short, keep=keep,
                                cluster=cluster if fault.cluster else None)
                rows.append(row)
                if progress is not None:
                    progress(row)
    if not any(base.iterdir()):
        base.rmdir()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; exit code 0 when every row is ok."""
    parser = argparse.ArgumentParser(prog="python -m faults.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true",
                        help="fewer events, fewer transports (what make test runs)")
    parser.add_argument("--only", action="append", default=[],
                        choices=[f.name for f in FAULTS], help="run only this fault (repeatable)")
    parser.add_argument("--keep", action="store_true",
                        help="keep every run's logs, not only those of failed rows")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    def progress(row: Row) -> None:
        print(f"{row.verdict():>4}  {row.fault} / {row.transport}", file=sys.stderr, flush=True)

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds: the cluster is stopped, services restored

    signal.signal(signal.SIGTERM, terminate)
    rows = run_faults(args.only, short=args.short, keep=args.keep, progress=progress)
    print(format_table(rows))
    return 0 if all(r.ok or r.skipped for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
