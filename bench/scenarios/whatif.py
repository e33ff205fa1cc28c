"""What-if: the RabbitMQ and PostgreSQL end-to-end runs again with bench-only patches.

Not a product figure: it sizes the changes proposed for src/ (see
``bench/whatif_worker.py`` for each patch), cumulatively, against the
unpatched worker in the same run. Runs once (no repetitions).
"""

from __future__ import annotations

from typing import Any

from bench import harness as h
from bench import rigs

NAME = "whatif"

VARIANTS: list[tuple[str, dict[str, str]]] = [
    ("as shipped", {}),
    ("batches of 50", {"BENCH_BATCH": "50"}),
    ("+ pools sized 12, no pre-ping", {"BENCH_BATCH": "50", "BENCH_POOL_SIZE": "12",
                                       "BENCH_NO_PRE_PING": "1"}),
]


def run(ctx: h.Context, receiver: Any) -> None:
    cap = ctx.n(60, 20)
    for transport, n in (("amqp", ctx.n(5_000, 500)), ("pg", ctx.n(2_000, 300))):
        for label, env in VARIANTS:
            h.log(f"{NAME}: {transport}, {label}, {n} events")
            rig = rigs.AsyncEventsRig(receiver, transport, whatif=bool(env), extra_env=env)
            with rig:
                sessions0 = h.pg_sessions(rig.database_url)
                run_ = h.measure(receiver, rig.publish, n, cap, cpu_pids=rig.pids,
                                 alive=rig.alive)
                opened = h.pg_sessions(rig.database_url) - sessions0
            contender = f"asyncevents {transport}, {label}"
            ctx.results.add(NAME, contender, "PG connections opened per 1k events",
                            opened / max(1, run_.received) * 1000, "conn",
                            higher_is_better=False)
            pg_cpu = run_.server_cpu.get("postgres", 0.0)
            ctx.results.add(NAME, contender, "postgres CPU per 1k events",
                            pg_cpu / max(1, run_.received) * 1000, "cpu-s",
                            higher_is_better=False)
            note = None if run_.complete else f"capped: {run_.received} of {n}"
            ctx.results.add(NAME, contender, "events/s", run_.rate, "ev/s", note=note)
            ctx.results.add(NAME, contender, "consumer CPU per 1k events",
                            run_.cpu / max(1, run_.received) * 1000, "cpu-s",
                            higher_is_better=False)
            rigs.settle()
