"""Run the asyncevents benchmark: every scenario beside its baselines, in one run.

    python -m bench.run                 # everything, 3 repetitions (15-40 minutes)
    python -m bench.run --quick         # a smoke run with small numbers (~5 minutes)
    python -m bench.run --only e2e_rabbit --only publish --repeat 5
    python -m bench.run --only e2e_rabbit --profile /tmp/worker.txt   # py-spy the worker

Needs RabbitMQ (127.0.0.1:5672, guest/guest) and PostgreSQL (127.0.0.1:5432,
user postgres, trust); starts everything else itself. Prints a table of medians
with ratios to each scenario's baseline and the targets (PASS/MISS), and writes
``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # ``python bench/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness as h
from bench import report
from bench.receiver import Receiver

SCENARIOS = ["e2e_rabbit", "e2e_sql", "latency", "publish", "fanout", "soak", "scaleout",
             "search", "whatif"]
#: Long scenarios run once whatever --repeat says (they take medians inside).
ONCE = {"soak", "search", "scaleout", "whatif"}


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "cpus": str(os.cpu_count())}
    for dist in ("asyncevents", "kombu", "amqp", "celery", "httpx", "SQLAlchemy", "psycopg"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "-"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small numbers, a smoke run")
    parser.add_argument("--only", action="append", choices=SCENARIOS, metavar="SCENARIO",
                        help=f"run only these ({', '.join(SCENARIOS)}); repeatable")
    parser.add_argument("--skip", action="append", choices=SCENARIOS, default=[],
                        metavar="SCENARIO", help="leave these out; repeatable")
    parser.add_argument("--repeat", type=int, default=None,
                        help="repetitions per scenario (default 3, 1 with --quick)")
    parser.add_argument("--profile", metavar="FILE",
                        help="py-spy (raw format) the asyncevents worker of the first "
                             "RabbitMQ end-to-end run into FILE")
    parser.add_argument("--out", default=str(h.ROOT / "bench" / "results" / "latest.json"))
    parser.add_argument("--no-snapshot", action="store_true",
                        help="import src/ live instead of a copy taken at the start")
    args = parser.parse_args(argv)
    source = "live src/" if args.no_snapshot else f"snapshot {h.snapshot_source()}"

    for key in [k for k in os.environ if k.startswith("ASYNCEVENTS_")]:
        del os.environ[key]  # the rigs say everything explicitly
    repeat = args.repeat or (1 if args.quick else 3)
    chosen = [s for s in (args.only or SCENARIOS) if s not in args.skip]
    results = h.Results()
    results.info.update(_versions())
    results.info.update({"quick": args.quick, "repeat": repeat, "scenarios": chosen,
                         "source": source,
                         "worker concurrency": h.WORKER_CONCURRENCY,
                         "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    ctx = h.Context(results=results, quick=args.quick, repeat=repeat, profile=args.profile)
    t0 = time.monotonic()
    with Receiver(capacity=110_000) as receiver:
        for name in chosen:
            module = importlib.import_module(f"bench.scenarios.{name}")
            ctx.repeat = 1 if name in ONCE else repeat
            load = h.loadavg()
            h.log(f"=== {name} === (load average {load:.2f})")
            results.info.setdefault("load average at scenario start", {})[name] = load
            started = time.monotonic()
            try:
                module.run(ctx, receiver)
            except Exception as exc:
                traceback.print_exc()
                results.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            h.log(f"=== {name} done in {time.monotonic() - started:.0f} s ===")
        if receiver.errors:
            results.errors.append(f"receiver: {receiver.errors} malformed requests")
    results.info["duration_s"] = round(time.monotonic() - t0)

    text = report.table(results)
    verdicts_text, verdicts = report.targets(results)
    print()
    print(f"asyncevents benchmark ({'quick' if args.quick else 'full'}, repeat {repeat}, "
          f"{results.info['duration_s']} s; {results.info['cpus']} CPUs; "
          f"asyncevents worker --concurrency {h.WORKER_CONCURRENCY}; {source})")
    print()
    print(text)
    print()
    print(verdicts_text)
    if results.errors:
        print("\nerrors:")
        for err in results.errors:
            print(f"  {err}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = results.to_json()
    data["targets"] = verdicts
    out.write_text(json.dumps(data, indent=2, default=str))
    print(f"\nwritten: {out}")
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
