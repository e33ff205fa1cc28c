"""1. End to end on RabbitMQ: N events, one HTTP subscription each, until all arrived.

Contenders, interleaved in every repetition: asyncevents (one worker process,
publisher confirms on; ``publish_many`` when the App has it), asyncevents as
ONE ``asyncevents worker --processes 2`` command (a supervisor and two worker
processes, as many as Celery's pool; CPU summed over the supervisor and its
children), Celery (``-P prefork -c 2``, a task = one POST), and a bare kombu
consume + POST loop (publishing with confirms, batched when asyncevents
batches too). Targets (issue 14): each asyncevents contender against Celery,
and the one-process worker's CPU per event.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import harness as h
from bench import rigs

NAME = "e2e_rabbit"
ONE = "asyncevents"
TWO = "asyncevents --processes 2"
CELERY = "celery prefork -c 2"


def one(ctx: h.Context, receiver: Any, rig: rigs.Rig, contender: str, n: int,
        cap: float) -> None:
    with rig:
        spy = None
        if ctx.profile and isinstance(rig, rigs.AsyncEventsRig):
            spy = subprocess.Popen(
                [str(Path(h.PY).parent / "py-spy"), "record", "--pid", str(rig.pids[0]),
                 "-o", ctx.profile, "--format", "raw", "--rate", "100", "--threads"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        db = getattr(rig, "database_url", "")
        sessions0 = h.pg_sessions(db) if db.startswith("postgresql") else None
        run = h.measure(receiver, rig.publish, n, cap, cpu_pids=rig.pids, alive=rig.alive)
        if sessions0 is not None:
            opened = h.pg_sessions(db) - sessions0
            ctx.results.add(NAME, contender, "PG connections opened per 1k events",
                            opened / max(1, run.received) * 1000, "conn",
                            higher_is_better=False)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            ctx.profile = None  # one profile is enough
    note = None if run.complete else f"capped: {run.received} of {n} in {run.elapsed:.0f} s"
    ctx.results.add(NAME, contender, "events/s", run.rate, "ev/s", note=note)
    ctx.results.add(NAME, contender, "publish phase", run.publish_rate, "ev/s")
    ctx.results.add(NAME, contender, "consumer CPU per 1k events",
                    run.cpu / max(1, run.received) * 1000, "cpu-s", higher_is_better=False)
    for server, used in run.server_cpu.items():
        if server == "rabbitmq" or isinstance(rig, rigs.AsyncEventsRig):
            ctx.results.add(NAME, contender, f"{server} CPU per 1k events",
                            used / max(1, run.received) * 1000, "cpu-s", higher_is_better=False)


def run(ctx: h.Context, receiver: Any) -> None:
    n = ctx.n(20_000, 1_000)
    cap = ctx.n(180, 20)
    for rep in range(ctx.repeat):
        h.log(f"{NAME}: repetition {rep + 1}/{ctx.repeat}, {n} events")
        ae = rigs.AsyncEventsRig(receiver, "amqp")
        one(ctx, receiver, ae, ONE, n, cap)
        batched = ae.batch_api
        ctx.results.info["asyncevents publish"] = (
            "publish_many (batched confirms)" if batched
            else "publish() loop (a confirm per event)")
        rigs.settle()
        one(ctx, receiver, rigs.AsyncEventsRig(receiver, "amqp", processes=2), TWO, n, cap)
        rigs.settle()
        one(ctx, receiver, rigs.CeleryRig(receiver), CELERY, n, cap)
        rigs.settle()
        one(ctx, receiver, rigs.KombuLoopRig(receiver, "amqp", batch_confirms=batched),
            "kombu loop", n, cap)
        rigs.settle()
