"""The fault suite's short form: every fault, fewer events, fewer transports.

``make faults`` runs the full form and prints the table; this runs the short
rows one test each, so ``make test`` proves the same things: nothing lost,
duplicates only with one ``webhook-id``, and each fault's own checks. These
tests restart RabbitMQ and PostgreSQL for a few seconds (they always come
back) and fail, never skip, when a service is down. The cluster row starts a
three-node RabbitMQ cluster beside the machine's RabbitMQ (ports 5681-5683)
once for the module and removes it afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from faults.cluster import Cluster, running
from faults.figures import format_table
from faults.run import FAULTS, Fault, run_fault

SHORT = [(fault, transport) for fault in FAULTS for transport in fault.short_transports]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """The three-node cluster, started once for the rows that need it."""
    with running(wait=300) as started:  # another make test may hold it for a minute
        yield started


@pytest.mark.slow
@pytest.mark.serial  # restarts RabbitMQ and PostgreSQL: nothing else may run meanwhile
@pytest.mark.timeout(600)
@pytest.mark.parametrize(("fault", "transport"), SHORT,
                         ids=[f"{f.name}-{t}" for f, t in SHORT])
def test_fault(fault: Fault, transport: str, tmp_path: Path,
               request: pytest.FixtureRequest) -> None:
    nodes = request.getfixturevalue("cluster") if fault.cluster else None
    row = run_fault(fault, transport, tmp_path, short=True, cluster=nodes)
    table = format_table([row])
    print(table)
    if row.skipped:
        # Only the disk-full fault can skip (it needs root for a tmpfs); CI runs
        # as root, so there a skip would hide a missing fault: fail instead.
        if os.environ.get("CI"):
            pytest.fail(f"fault not run under CI: {row.skipped}")
        pytest.skip(row.skipped)
    assert row.lost == 0, table
    assert row.ok, table
