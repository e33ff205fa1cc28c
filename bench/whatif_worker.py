"""Run ``asyncevents worker`` with bench-only patches, to size proposed changes to src/.

Never used for the headline figures (only by the ``whatif`` scenario). Each
patch is switched on by an environment variable:

- ``BENCH_DRAIN_TIMEOUT=0.002``: the worker's idle ``drain_events`` timeout.
- ``BENCH_BATCH=50``: the most messages in one of the engine's batches
  (``batch_size``; the prefetch window follows it).
- ``BENCH_POOL_SIZE=12``: SQLAlchemy ``pool_size`` (and ``max_overflow``) for
  the store's engine and the SQL transport's engines (default 5 + 10 overflow;
  an overflow connection is closed when it is returned, so more threads than
  5 means a new database connection every few operations).
- ``BENCH_NO_PRE_PING=1``: the store's engine without ``pool_pre_ping`` (a
  ``SELECT 1`` round trip before every transaction).

``python -m bench.whatif_worker worker --concurrency 8 ...``
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _patch() -> None:
    import asyncevents.core.worker.worker as worker

    drain = os.environ.get("BENCH_DRAIN_TIMEOUT")
    if drain:
        worker._DRAIN_TIMEOUT = float(drain)

    batch = os.environ.get("BENCH_BATCH")
    if batch:
        size = int(batch)
        setattr(worker, "batch_size", lambda _concurrency: size)  # noqa: B010

    pool = os.environ.get("BENCH_POOL_SIZE")
    no_ping = os.environ.get("BENCH_NO_PRE_PING") == "1"
    if pool or no_ping:
        import sqlalchemy

        import asyncevents.core.store.engine as store_engine
        import asyncevents.core.transport.sql.schema as qschema

        def sized(create: Any, is_store: bool) -> Any:
            def create_engine(url: Any, **kwargs: Any) -> Any:
                backend = sqlalchemy.engine.make_url(url).get_backend_name()
                if pool and backend != "sqlite":
                    kwargs.setdefault("pool_size", int(pool))
                    kwargs.setdefault("max_overflow", int(pool))
                if no_ping and is_store:
                    kwargs["pool_pre_ping"] = False
                return create(url, **kwargs)

            return create_engine

        store_engine.create_engine = sized(store_engine.create_engine, True)  # type: ignore
        qschema.create_engine = sized(qschema.create_engine, False)  # type: ignore


def main() -> None:
    _patch()
    from asyncevents.cli import main as cli

    sys.argv[0] = "asyncevents"
    cli()


if __name__ == "__main__":
    main()
