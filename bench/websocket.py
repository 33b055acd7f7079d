"""WebSocket benchmark: market-data throughput and recovery after a drop.

The simulator runs in a child process (its own interpreter lock) and streams bursts of ``md``
frames, unthrottled, to the authorized market-data sockets. Three consumers take the same
bursts in interleaved rounds:

- ``ws.events()`` of the library (decoded, typed events);
- the obvious hand-written loop: ``websockets.connect`` with its defaults, ``recv()``, and
  ``json.loads`` of each ``a[...]`` frame;
- bare ``recv()`` of ``websockets`` without any decoding.

Prints events per second of each, the library divided by the hand-written loop (target >= 1.1)
and by bare recv (target >= 0.8), and the median time from a server-side drop to the socket
being re-authorized and resubscribed (target <= 50 ms on loopback, first attempt).

Run: ``python bench/websocket.py [--frames 20000] [--rounds 5] [--drops 20]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import websockets

from tradovate_async import TradovateConfig, TradovateSession, TradovateWebSocket
from tradovate_async.sim import SimUser


class SimProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_sim_process.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.urls = json.loads(self.proc.stdout.readline())

    async def command(self, line: str) -> str:
        def run() -> str:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
            return self.proc.stdout.readline().strip()

        return await anyio.to_thread.run_sync(run)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        self.proc.wait(timeout=10)


async def timed_burst(
    sim: SimProcess, frames: int, consume: Callable[[int], Awaitable[None]]
) -> float:
    """Seconds for ``consume`` to take ``frames`` md events of one burst."""
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sim.command, f"burst {frames} 1")
        await consume(frames)
    return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--drops", type=int, default=20)
    args = parser.parse_args()

    sim = SimProcess()
    try:
        user = SimUser()
        config = TradovateConfig(
            username=user.username,
            password=user.password,
            app_id=user.app_id,
            sec=user.sec,
            device_id="bench",
            api_url=sim.urls["api_url"],
            ws_url=sim.urls["ws_url"],
            md_url=sim.urls["md_url"],
        )
        async with TradovateSession(config) as session:
            token = session.token.market_data_token.reveal()
            times: dict[str, list[float]] = {"library": [], "hand-written": [], "bare recv": []}

            async def library_round() -> float:
                ws: TradovateWebSocket
                async with session.websocket(kind="md") as ws:
                    events = ws.events()

                    async def consume(n: int) -> None:
                        seen = 0
                        async for event in events:
                            if event.kind == "md":
                                seen += 1
                                if seen == n:
                                    return

                    return await timed_burst(sim, args.frames, consume)

            async def raw_round(decode: bool) -> float:
                async with websockets.connect(config.md_url) as raw:
                    assert await raw.recv() == "o"
                    await raw.send(f"authorize\n1\n\n{token}")
                    answer = await raw.recv()
                    assert '"s":200' in str(answer), answer

                    async def consume(n: int) -> None:
                        seen = 0
                        while seen < n:
                            message = await raw.recv()
                            if not isinstance(message, str) or not message.startswith("a"):
                                continue
                            if decode:
                                for item in json.loads(message[1:]):
                                    if item.get("e") == "md":
                                        seen += 1
                            else:
                                seen += 1

                    return await timed_burst(sim, args.frames, consume)

            for round_no in range(args.rounds):
                order = [
                    ("library", library_round),
                    ("hand-written", lambda: raw_round(True)),
                    ("bare recv", lambda: raw_round(False)),
                ]
                if round_no % 2:
                    order.reverse()
                for name, run in order:
                    times[name].append(await run())

            rate = {name: args.frames / statistics.median(ts) for name, ts in times.items()}
            for name, value in rate.items():
                print(f"{name:>13}: {value:,.0f} md events/s (median of {args.rounds} rounds)")
            print(
                f"library / hand-written websockets+json.loads: "
                f"{rate['library'] / rate['hand-written']:.2f} (target >= 1.1)"
            )
            print(
                f"library / bare websockets recv: {rate['library'] / rate['bare recv']:.2f} "
                "(target >= 0.8)"
            )

            recoveries: list[float] = []
            end_to_end: list[float] = []
            # stable_after below the spacing of the drops, so that every drop meets a reset
            # backoff and measures a first attempt, as the target asks.
            async with session.websocket(kind="md", stable_after=0.2) as md:
                await md.subscribe("md/subscribeQuote", {"symbol": "ESZ6"})
                events = md.events()
                for _ in range(args.drops):
                    await anyio.sleep(0.3)  # let the connection count as stable again
                    start = time.perf_counter()
                    await sim.command("drop md")
                    async for event in events:
                        if event.kind == "reconnected":
                            end_to_end.append(time.perf_counter() - start)
                            recoveries.append(event.data.recovery_seconds)
                            assert event.data.attempts == 1, event.data
                            break
            print(
                f"drop -> re-authorized and resubscribed: median "
                f"{statistics.median(recoveries) * 1000:.1f} ms after the client saw the drop, "
                f"{statistics.median(end_to_end) * 1000:.1f} ms from the server's drop command "
                f"({args.drops} drops; target <= 50 ms)"
            )
    finally:
        sim.close()


if __name__ == "__main__":
    anyio.run(main)
