"""Session benchmark: single-flight at expiry, and the cost of the session per request.

Prints, from one run against the simulator on loopback:

- token requests made by 1,000 concurrent ``session.get`` calls on a session whose token has
  just expired (target: 1);
- the median time of ``session.get`` divided by the median time of a plain
  ``httpx.AsyncClient`` with a fixed ``Authorization`` header doing ``get`` + ``.json()``
  against the same server, measured in interleaved rounds (target: <= 1.05).

Run: ``python bench/session.py [--requests N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import anyio
import httpx

from tradovate_async import TradovateSession
from tradovate_async.sim import SimulatedTradovate, WarpClock


async def single_flight(concurrency: int) -> int:
    clock = WarpClock()
    async with SimulatedTradovate(clock=clock.time) as sim:
        async with TradovateSession(sim.config(), clock=clock.now, check_interval=60) as session:
            clock.jump(95 * 60)  # past the 90-minute expiry
            sim.reset_counters()
            async with anyio.create_task_group() as tg:
                for _ in range(concurrency):
                    tg.start_soon(session.get, "account/list")
            return sim.token_requests


async def per_request(requests: int, rounds: int) -> tuple[float, float]:
    async with SimulatedTradovate() as sim:
        async with TradovateSession(sim.config()) as session:
            header = {"Authorization": f"Bearer {session.token.access_token.reveal()}"}
            async with httpx.AsyncClient(
                base_url=sim.api_url + "/", headers={"Accept": "application/json", **header}
            ) as plain:

                async def lib_call() -> None:
                    await session.get("account/list")

                async def plain_call() -> None:
                    response = await plain.get("account/list")
                    response.raise_for_status()
                    response.json()

                lib_times: list[float] = []
                plain_times: list[float] = []
                for _ in range(20):  # warm both connection pools
                    await lib_call()
                    await plain_call()
                for round_no in range(rounds):
                    order = [(lib_call, lib_times), (plain_call, plain_times)]
                    if round_no % 2:
                        order.reverse()
                    for call, sink in order:
                        for _ in range(requests):
                            start = time.perf_counter()
                            await call()
                            sink.append(time.perf_counter() - start)
    return statistics.median(lib_times), statistics.median(plain_times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    token_requests = await single_flight(args.concurrency)
    print(
        f"token requests for {args.concurrency} concurrent calls at expiry: {token_requests} (target 1)"
    )
    lib, plain = await per_request(args.requests, args.rounds)
    print(f"median session.get: {lib * 1e6:.0f} us; plain httpx: {plain * 1e6:.0f} us")
    print(f"session.get / plain httpx median ratio: {lib / plain:.3f} (target <= 1.05)")


if __name__ == "__main__":
    anyio.run(main)
