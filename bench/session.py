"""Session benchmark: single-flight at expiry, and the cost of the session per request.

Prints, from one run against the simulator on loopback:

- token requests made by 1,000 concurrent ``session.get`` calls on a session whose token has
  just expired (target: 1);
- the median time of a sequential ``session.get`` on each HTTP backend (aiohttp, the default,
  and httpx) divided by that of the same transport used plainly with a fixed
  ``Authorization`` header doing ``get`` + JSON decode against the same server: in every round
  the two take turns call by call, and the ratio printed is the median of the per-round ratios
  of median call times (target: <= 1.05).

Then, against ``bench/_fast_http.py`` (a pre-encoded keep-alive HTTP server in its own process,
faster than any client: a raw-socket "null client" round proves it), 50 concurrent workers in
interleaved rounds with: plain httpx (its default pool), plain httpx with a keep-alive pool as
large as the concurrency, plain aiohttp, httpx over the ``httpx-aiohttp`` transport, and the
library's ``session.get`` with its default transport. Prints requests per second and, last, the
library divided by plain aiohttp: the median of per-round ratios (target >= 0.8), over those
rounds and 20 more of the two alone, with a 90 % bootstrap interval of the median.

Run: ``python bench/session.py [--requests N] [--rounds R] [--concurrent-requests N]
[--concurrent-rounds R] [--paired-rounds R]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

import aiohttp
import anyio
import httpx
from httpx_aiohttp import AiohttpTransport

sys.path.insert(0, str(Path(__file__).parent))
from _child import ChildServer
from _rounds import median_interval, round_order

from tradovate_async import Secret, TradovateConfig, TradovateSession
from tradovate_async.sim import SimulatedTradovate, WarpClock


async def single_flight(concurrency: int) -> int:
    clock = WarpClock()
    async with SimulatedTradovate(clock=clock.time) as sim:
        async with TradovateSession(
            sim.config(), clock=clock, check_interval=3600.0, rate_limits=None
        ) as session:
            clock.jump(95 * 60)  # past the 90-minute expiry
            sim.reset_counters()
            async with anyio.create_task_group() as tg:
                for _ in range(concurrency):
                    tg.start_soon(session.get, "account/list")
            return sim.token_requests


class Sequential(NamedTuple):
    """Median seconds of one sequential call per client, and per backend the median over rounds
    of the library's median call time / the plain transport's in the same round."""

    seconds: dict[str, float]
    ratio: dict[str, float]


BACKENDS = ("aiohttp", "httpx")


async def alternating(
    calls: dict[str, Callable[[], Awaitable[object]]], pair: tuple[str, str], requests: int
) -> dict[str, list[float]]:
    """Seconds of ``requests`` calls of each of ``pair``, made in turns (which goes first
    alternates): both sample the same moments of the machine, call by call."""
    taken: dict[str, list[float]] = {name: [] for name in pair}
    for n in range(requests):
        for name in pair if n % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            await calls[name]()
            taken[name].append(time.perf_counter() - start)
    return taken


async def per_request(requests: int, rounds: int) -> Sequential:
    """One sequential call at a time: the library on each HTTP backend, and that same
    transport used plainly (fixed bearer header, ``get`` and JSON decode). In every round each
    backend's library client and plain client take turns call by call (:func:`alternating`),
    so that a ratio compares calls made a millisecond apart."""
    async with SimulatedTradovate() as sim:
        async with (
            TradovateSession(sim.config(), rate_limits=None) as on_aiohttp,
            TradovateSession(sim.config(), rate_limits=None, http_backend="httpx") as on_httpx,
        ):
            header = {
                "Accept": "application/json",
                "Authorization": f"Bearer {on_aiohttp.token.access_token.reveal()}",
            }
            async with (
                httpx.AsyncClient(base_url=sim.api_url + "/", headers=header) as plain_httpx,
                aiohttp.ClientSession(base_url=sim.api_url + "/", headers=header) as plain_aio,
            ):

                async def httpx_call() -> None:
                    response = await plain_httpx.get("account/list")
                    response.raise_for_status()
                    response.json()

                async def aiohttp_call() -> None:
                    async with plain_aio.get("account/list") as response:
                        response.raise_for_status()
                        await response.json()

                calls: dict[str, Callable[[], Awaitable[object]]] = {
                    "library (aiohttp)": lambda: on_aiohttp.get("account/list"),
                    "plain aiohttp": aiohttp_call,
                    "library (httpx)": lambda: on_httpx.get("account/list"),
                    "plain httpx": httpx_call,
                }
                times: dict[str, list[float]] = {name: [] for name in calls}
                ratios: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
                for name in calls:  # warm every connection pool
                    for _ in range(20):
                        await calls[name]()
                for round_no in range(rounds):
                    backends = BACKENDS if round_no % 2 == 0 else BACKENDS[::-1]
                    for backend in backends:
                        pair = (f"library ({backend})", f"plain {backend}")
                        taken = await alternating(calls, pair, requests)
                        for name in pair:
                            times[name].extend(taken[name])
                        ratios[backend].append(
                            statistics.median(taken[pair[0]]) / statistics.median(taken[pair[1]])
                        )
    return Sequential(
        {name: statistics.median(ts) for name, ts in times.items()},
        {backend: statistics.median(values) for backend, values in ratios.items()},
    )


async def fan_out(
    workers: int, total: int, call: Callable[[], Awaitable[object]]
) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds for ``workers`` concurrent loops to make
    ``total`` calls (the server runs in another process, so the CPU time is the client's)."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for n in range(workers):
            tg.start_soon(worker, total // workers + (n < total % workers))
    return time.perf_counter() - start, time.process_time() - cpu


async def null_client(url: str, workers: int, total: int) -> float:
    """Raw keep-alive connections that only count answers: how fast the server alone is."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    head = f"GET /v1/account/list HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    conns = [await asyncio.open_connection(host, int(port)) for _ in range(workers)]

    async def worker(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], count: int) -> None:
        reader, writer = conn
        for _ in range(count):
            writer.write(head)
            await reader.readuntil(b"\r\n\r\n")
            await reader.readuntil(b"]")  # the body is one JSON array

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for n, conn in enumerate(conns):
            tg.start_soon(worker, conn, total // workers + (n < total % workers))
    elapsed = time.perf_counter() - start
    for _, writer in conns:
        writer.close()
    return elapsed


class RoundRatios(NamedTuple):
    """The library's rate over plain aiohttp's, one per round: from the wall clock, and from
    the client process's CPU time (which the rest of a shared machine disturbs less)."""

    wall: list[float]
    cpu: list[float]


#: The library and the baseline it is compared with: back to back in every round.
PAIR = ("aiohttp", "library session.get")


def _per_round(baseline: list[float], library: list[float]) -> list[float]:
    return [base / lib for base, lib in zip(baseline, library, strict=True)]


async def concurrent(
    total: int, rounds: int, paired_rounds: int, workers: int = 50
) -> tuple[dict[str, float], RoundRatios, dict[str, float]]:
    """Requests per second of each client (median of interleaved rounds), per round the
    library's rate divided by plain aiohttp's, and then the median seconds of one sequential
    call of each of the two against the same server (taking turns). The order of the clients
    rotates every round, but the library and plain aiohttp always run one right after the
    other (which of them first alternates), so a ratio is not moved by what the machine did
    between them. ``paired_rounds`` more rounds of those two alone add to the ratios (the
    httpx clients take most of a full round's time and no ratio needs them)."""
    server = ChildServer("_fast_http.py")
    url = server.url
    headers = {"Accept": "application/json", "Authorization": "Bearer fast-server-token"}
    config = TradovateConfig(
        username="bench",
        password=Secret("bench-password"),
        app_id="bench",
        sec=Secret("bench-secret"),
        device_id="bench",
        api_url=url,
    )
    big_pool = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    try:
        async with (
            httpx.AsyncClient(base_url=url + "/", headers=headers) as default_httpx,
            httpx.AsyncClient(base_url=url + "/", headers=headers, limits=big_pool) as tuned,
            httpx.AsyncClient(
                base_url=url + "/", headers=headers, transport=AiohttpTransport()
            ) as over_aiohttp,
            aiohttp.ClientSession(base_url=url + "/", headers=headers) as plain_aiohttp,
            TradovateSession(config, rate_limits=None) as session,
        ):

            async def via_httpx(client: httpx.AsyncClient) -> None:
                response = await client.get("account/list")
                response.raise_for_status()
                response.json()

            async def via_aiohttp() -> None:
                async with plain_aiohttp.get("account/list") as response:
                    response.raise_for_status()
                    await response.json()

            clients: dict[str, Callable[[], Awaitable[object]]] = {
                "httpx (default pool)": lambda: via_httpx(default_httpx),
                "httpx (keep-alive 100)": lambda: via_httpx(tuned),
                "httpx + aiohttp transport": lambda: via_httpx(over_aiohttp),
                "aiohttp": via_aiohttp,
                "library session.get": lambda: session.get("account/list"),
            }
            rates, ratios = await _rounds(clients, url, total, rounds, workers)
            await _paired_rounds(clients, total, paired_rounds, workers, ratios)
            taken = await alternating(clients, ("library session.get", "aiohttp"), 2_000)
            return rates, ratios, {name: statistics.median(ts) for name, ts in taken.items()}
    finally:
        server.close()


async def _paired_rounds(
    clients: dict[str, Callable[[], Awaitable[object]]],
    total: int,
    rounds: int,
    workers: int,
    ratios: RoundRatios,
) -> None:
    """Rounds of the library and plain aiohttp alone, back to back: their ratios join
    ``ratios``."""
    baseline, library = PAIR
    for round_no in range(rounds):
        wall: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for name in round_order(PAIR, PAIR, round_no):
            wall[name], cpu[name] = await fan_out(workers, total, clients[name])
        ratios.wall.append(wall[baseline] / wall[library])
        ratios.cpu.append(cpu[baseline] / cpu[library])


async def _rounds(
    clients: dict[str, Callable[[], Awaitable[object]]],
    url: str,
    total: int,
    rounds: int,
    workers: int,
) -> tuple[dict[str, float], RoundRatios]:
    """Interleaved rounds of every client and of the null client (see :func:`concurrent`)."""
    times: dict[str, list[float]] = {name: [] for name in clients}
    cpu: dict[str, list[float]] = {name: [] for name in clients}
    times["server (null client)"] = []
    for call in clients.values():
        await fan_out(workers, workers * 4, call)  # warm the pools
    for round_no in range(rounds):
        for name in round_order(list(times), PAIR, round_no):
            if name == "server (null client)":
                times[name].append(await null_client(url, workers, total))
                continue
            wall, used = await fan_out(workers, total, clients[name])
            times[name].append(wall)
            cpu[name].append(used)
    rates = {name: total / statistics.median(ts) for name, ts in times.items()}
    return rates, RoundRatios(
        _per_round(times["aiohttp"], times["library session.get"]),
        _per_round(cpu["aiohttp"], cpu["library session.get"]),
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrent-requests", type=int, default=5000)
    parser.add_argument("--concurrent-rounds", type=int, default=5)
    parser.add_argument(
        "--paired-rounds",
        type=int,
        default=20,
        help="more 50-way rounds of the library and plain aiohttp alone, for their ratio",
    )
    args = parser.parse_args()

    token_requests = await single_flight(args.concurrency)
    print(
        f"token requests for {args.concurrency} concurrent calls at expiry: {token_requests} (target 1)"
    )
    sequential = await per_request(args.requests, args.rounds)
    print("sequential, median per call against the simulator:")
    for name, seconds in sequential.seconds.items():
        print(f"  {name:>18}: {seconds * 1e6:,.0f} us")
    for backend in BACKENDS:
        scope = (
            "target <= 1.05 for the default transport"
            if backend == "aiohttp"
            else "http_backend='httpx', used only when asked: reported beside the target"
        )
        print(
            f"session.get / plain {backend}, sequential: {sequential.ratio[backend]:.3f} "
            f"({scope}; median of per-round ratios)"
        )
    rates, round_ratios, fast = await concurrent(
        args.concurrent_requests, args.concurrent_rounds, args.paired_rounds
    )
    library, plain = fast["library session.get"], fast["aiohttp"]
    print(
        f"sequential against the fast server, median per call: library {library * 1e6:,.0f} us, "
        f"plain aiohttp {plain * 1e6:,.0f} us: the library adds {(library - plain) * 1e6:+,.0f} us"
    )
    print("\n50 concurrent workers, requests/s, median of interleaved rounds:")
    for name, rate in sorted(rates.items(), key=lambda kv: -kv[1]):
        print(f"  {name:>26}: {rate:>9,.0f}")
    fastest = max(v for k, v in rates.items() if not k.startswith("server"))
    print(f"  server / fastest client: {rates['server (null client)'] / fastest:.1f}x")
    print("  library / aiohttp per round: " + ", ".join(f"{r:.2f}" for r in round_ratios.wall))
    print("  the same from client CPU: " + ", ".join(f"{r:.2f}" for r in round_ratios.cpu))
    low, high = median_interval(round_ratios.wall)
    print(
        f"ratio library session.get / plain aiohttp, 50 concurrent: "
        f"{statistics.median(round_ratios.wall):.2f} (target >= 0.8; median of "
        f"{len(round_ratios.wall)} per-round ratios, wall clock, 90% interval "
        f"{low:.2f}-{high:.2f}; client CPU: {statistics.median(round_ratios.cpu):.2f})"
    )


if __name__ == "__main__":
    anyio.run(main)
