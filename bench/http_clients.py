"""HTTP clients for many concurrent deliveries, measured side by side in one run.

    python -m bench.http_clients [--requests 4000] [--in-flight 50]

Every client POSTs the same small JSON body to the same local receiver
(``bench/receiver.py``, its own process) with ``--in-flight`` requests
outstanding, and the table gives requests per second and this process's
CPU milliseconds per request, with each ratio against the reused synchronous
httpx client that the HTTP sink uses today (threads). aiohttp is measured
only when it is installed (``pip install aiohttp``); it is not a dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench.receiver import Receiver

BODY = b'{"specversion":"1.0","type":"bench.event","data":{"n":1}}'
HEADERS = {"content-type": "application/json"}


def _sync_threads(url: str, requests: int, in_flight: int) -> None:
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    with httpx.Client(limits=limits) as client, ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(lambda _: client.post(url, content=BODY, headers=HEADERS).status_code,
                      range(requests)))


async def _async_pools(url: str, requests: int, in_flight: int, pools: int) -> None:
    per_pool = max(1, in_flight // pools)
    limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
    clients = [httpx.AsyncClient(limits=limits) for _ in range(pools)]
    semaphore = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with semaphore:
            await clients[i % pools].post(url, content=BODY, headers=HEADERS)

    try:
        await asyncio.gather(*(one(i) for i in range(requests)))
    finally:
        for client in clients:
            await client.aclose()


async def _aiohttp(url: str, requests: int, in_flight: int) -> None:
    import aiohttp

    semaphore = asyncio.Semaphore(in_flight)
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with semaphore, session.post(url, data=BODY, headers=HEADERS) as response:
                await response.read()

        await asyncio.gather(*(one() for _ in range(requests)))


def _measure(run: Callable[[], Any], requests: int) -> tuple[float, float]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return requests / wall, cpu / requests * 1000


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--in-flight", type=int, default=50)
    args = parser.parse_args()
    n, k = args.requests, args.in_flight
    candidates: list[tuple[str, Callable[[str], Any]]] = [
        ("httpx Client, threads (today)", lambda u: _sync_threads(u, n, k)),
        ("httpx AsyncClient, 1 pool", lambda u: asyncio.run(_async_pools(u, n, k, 1))),
        ("httpx AsyncClient, 5 pools", lambda u: asyncio.run(_async_pools(u, n, k, 5))),
        ("httpx AsyncClient, 10 pools", lambda u: asyncio.run(_async_pools(u, n, k, 10))),
    ]
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        print("aiohttp is not installed: not measured")
    else:
        candidates.append(("aiohttp ClientSession", lambda u: asyncio.run(_aiohttp(u, n, k))))
    with Receiver() as receiver:
        url = receiver.url
        _sync_threads(url, 200, k)  # warm the receiver
        rows = [(name, *_measure(lambda run=run: run(url), n)) for name, run in candidates]
    base_rate, base_cpu = rows[0][1], rows[0][2]
    print(f"{n} POSTs, {k} in flight, to a local receiver")
    print(f"{'client':34} {'req/s':>8} {'ratio':>6} {'CPU ms/req':>11} {'ratio':>6}")
    for name, rate, cpu in rows:
        print(f"{name:34} {rate:8,.0f} {rate / base_rate:6.2f} {cpu:11.3f} {cpu / base_cpu:6.2f}")


if __name__ == "__main__":
    main()
