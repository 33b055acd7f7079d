"""Soak: 30 days of 90-minute tokens in a few minutes, with socket drops every few hours.

A session, a trading socket (with its ``user/syncrequest``) and a market-data socket (one quote
subscription) run against the simulator on a shared :class:`WarpClock`. Compressing *time*
rather than the token lifetime keeps every server rule at its real value: 90-minute tokens,
15 renewals an hour, 2 sessions per user. Requests flow all the time; every few simulated
hours the server drops every socket.

Prints: requests that met an expired token (target 0), logins after the first (target 0),
the most renewals in any simulated hour (must stay <= 15), reconnects, subscriptions lost
(target 0), resident memory at start and end (growth target < 5 MB), tasks alive at the end
beyond the baseline (target 0).

Then the same soak, shorter, on a host whose wall clock is right (the control), 2 h fast and
2 h slow (``--host-offsets-hours``), and one that jumps 2 h ahead a third of the way in
(``--jump-hours``); the simulator's clock stays right. Each prints token requests, logins,
expired-token requests and failed requests (targets: 1, 1, 0, 0).

Run: ``python bench/soak.py [--days 30] [--minutes 3] [--drop-every-hours 4]
[--clock-days 1] [--clock-minutes 1] [--host-offsets-hours 0,2,-2] [--jump-hours 2]``
(``--days 0`` runs only the wrong-clock soaks).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import dataclasses
import gc
import time
from collections.abc import Awaitable, Callable

import anyio
import psutil

from tradovate_async import Backoff, TradovateSession, TradovateWebSocket
from tradovate_async.sim import SimulatedTradovate, SkewedClock, WarpClock

HOUR = 3600.0
WS_OPTIONS = {
    # Compressed time: reconnect quickly and count a connection as stable sooner than the
    # real-time defaults would, or the backoff would outgrow the simulated hours.
    "reconnect_backoff": Backoff(0.01, 0.2),
    "stable_after": 0.3,
    "timeout": 5.0,
}


def max_per_rolling_hour(times: list[float]) -> int:
    times = sorted(times)
    return max((bisect.bisect_right(times, t + HOUR) - i for i, t in enumerate(times)), default=0)


@dataclasses.dataclass
class _Load:
    """The traffic of one soak, until ``end_at`` on the simulator's clock: REST and socket
    requests, quotes drained, every socket dropped every few hours, and with ``jump_hours``
    the host's wall clock jumping a third of the way in."""

    clock: WarpClock
    host: SkewedClock
    sim: SimulatedTradovate
    session: TradovateSession
    trading: TradovateWebSocket
    md: TradovateWebSocket
    end_at: float
    drop_every_hours: float
    jump_hours: float
    requests: int = 0
    failures: int = 0
    #: the longest the event loop was late for a 1 ms sleep, in real seconds
    longest_stall: float = 0.0

    async def run(self) -> None:
        jobs = [
            self.rest_traffic,
            self.socket_traffic,
            self.drops,
            self.drain_quotes,
            self.drain_trading,
            self.watch_stalls,
        ]
        if self.jump_hours:
            jobs.append(self.host_clock_jump)
        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(job)
            while self.clock.time() < self.end_at:
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()

    async def _requests(self, request: Callable[[], Awaitable[object]], pause: float) -> None:
        while self.clock.time() < self.end_at:
            try:
                await request()
                self.requests += 1
            except Exception:
                self.failures += 1
            await anyio.sleep(pause)

    async def rest_traffic(self) -> None:
        await self._requests(lambda: self.session.get("account/list"), 0.005)

    async def socket_traffic(self) -> None:
        await self._requests(lambda: self.trading.request("account/list"), 0.02)

    async def drain_quotes(self) -> None:
        async for _event in self.md.events():
            pass

    async def drain_trading(self) -> None:
        async for _event in self.trading.events():
            pass

    async def watch_stalls(self) -> None:
        """The host's own pauses (a full garbage collection, the machine): the warped clock
        turns each into ``speed`` times as much simulated time."""
        while True:
            start = time.perf_counter()
            await anyio.sleep(0.001)
            self.longest_stall = max(self.longest_stall, time.perf_counter() - start - 0.001)

    async def drops(self) -> None:
        next_drop = self.clock.time() + self.drop_every_hours * HOUR
        while self.clock.time() < self.end_at:
            if self.clock.time() >= next_drop:
                self.sim.drop_sockets()
                next_drop += self.drop_every_hours * HOUR
            await anyio.sleep(0.01)

    async def host_clock_jump(self) -> None:
        jump_at = self.clock.time() + (self.end_at - self.clock.time()) / 3
        while self.clock.time() < jump_at:
            await anyio.sleep(0.01)
        self.host.skew += self.jump_hours * HOUR  # the server's and the elapsed clock stay


async def _sockets_under_load(
    sim: SimulatedTradovate,
    session: TradovateSession,
    clock: WarpClock,
    host: SkewedClock,
    end_at: float,
    drop_every_hours: float,
    jump_hours: float,
) -> dict[str, float]:
    """A trading and a market-data socket through the load; what the sockets went through."""
    async with (
        session.websocket(**WS_OPTIONS) as trading,
        session.websocket(kind="md", **WS_OPTIONS) as md,
    ):
        await trading.subscribe("user/syncrequest", {"users": [session.token.user_id]})
        await md.subscribe("md/subscribeQuote", {"symbol": "ESZ6"})
        subscriptions = (trading.subscriptions, md.subscriptions)
        load = _Load(clock, host, sim, session, trading, md, end_at, drop_every_hours, jump_hours)
        await load.run()
        await trading.wait_connected(timeout=10)
        await md.wait_connected(timeout=10)
        lost = len(subscriptions[0] - trading.subscriptions) + len(
            subscriptions[1] - md.subscriptions
        )
        return {
            "requests": load.requests,
            "failed requests": load.failures,
            "reconnects": trading.stats.reconnects + md.stats.reconnects,
            "subscriptions lost (client)": lost,
            "md subscriptions on the server at the end": sum(
                len(c.subscriptions) for c in sim.ws_connections("md")
            ),
            "md events dropped by the buffer": md.stats.dropped_events,
            "longest event-loop stall ms": load.longest_stall * 1000,
        }


def _freeze_start_up() -> None:
    """Keep what is alive now (modules, both catalogues, the simulator's state) out of the
    garbage collector's full collections, as a service does after start-up: walking it took up
    to 108 ms here, which the warped clock made 26 simulated minutes, longer than the 5 minutes
    before expiry at which tokens are renewed (``soak`` unfreezes it at the end)."""
    gc.collect()
    gc.freeze()


async def soak(
    days: float,
    minutes: float,
    drop_every_hours: float,
    *,
    host_offset_hours: float = 0.0,
    jump_hours: float = 0.0,
) -> dict[str, float]:
    """One soak. The host's wall clock (``clock``) runs ``host_offset_hours`` ahead of the
    server's and, with ``jump_hours``, jumps by that much a third of the way in (the server's
    clock and the host's elapsed clock do not move)."""
    speed = days * 24 * HOUR / (minutes * 60)
    clock = WarpClock(speed=speed)
    host = SkewedClock(clock)  # the session's host: its wall clock may jump, the server's not
    process = psutil.Process()
    renewal_times: list[float] = []
    async with SimulatedTradovate(
        clock=clock.time,
        quote_interval=0.05,
        request_log_limit=1_000,
        server_clock_offset=-host_offset_hours * HOUR,
    ) as sim:
        _freeze_start_up()
        baseline_tasks = len(asyncio.all_tasks())
        rss_start = process.memory_info().rss
        end_at = clock.time() + days * 24 * HOUR
        async with TradovateSession(
            sim.config(),
            clock=host,
            check_interval=0.002 * speed,
            renewal_backoff=Backoff(0.005 * speed, 0.05 * speed),
        ) as session:
            session.add_token_listener(lambda _t: renewal_times.append(sim.now()))
            sockets = await _sockets_under_load(
                sim, session, clock, host, end_at, drop_every_hours, jump_hours
            )
        gc.collect()
        gc.unfreeze()
        await anyio.sleep(0.1)
        rss_end = process.memory_info().rss
        tasks_left = len(asyncio.all_tasks()) - baseline_tasks
        return {
            "speed": speed,
            "requests": sockets["requests"],
            "failed requests": sockets["failed requests"],
            "expired-token requests": sim.expired_token_rejections,
            "token requests": sim.token_requests,
            "logins": sim.logins,
            "logins after the first": sim.logins - 1,
            "renewals": sim.renewals,
            "max renewals in a simulated hour": max_per_rolling_hour(renewal_times),
            **{k: v for k, v in sockets.items() if k not in ("requests", "failed requests")},
            "the same in simulated minutes": sockets["longest event-loop stall ms"] * speed / 6e4,
            "rss start MB": rss_start / 2**20,
            "rss end MB": rss_end / 2**20,
            "tasks beyond baseline": tasks_left,
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--drop-every-hours", type=float, default=4.0)
    parser.add_argument("--clock-days", type=float, default=1.0, help="wrong-clock runs")
    parser.add_argument("--clock-minutes", type=float, default=1.0, help="wrong-clock runs")
    parser.add_argument("--host-offsets-hours", default="0,2,-2", help="'' for none")
    parser.add_argument("--jump-hours", type=float, default=2.0, help="0 for none")
    args = parser.parse_args()
    if args.days > 0:
        await main_soak(args)
    await wrong_clock_runs(args)


async def main_soak(args: argparse.Namespace) -> None:
    started = time.monotonic()
    result = await soak(args.days, args.minutes, args.drop_every_hours)
    print(
        f"soak: {args.days:g} simulated days in {time.monotonic() - started:.0f} s "
        f"(clock x{result['speed']:.0f})"
    )
    for key, value in result.items():
        if key != "speed":
            print(f"  {key}: {value:.1f}" if isinstance(value, float) else f"  {key}: {value}")
    growth = result["rss end MB"] - result["rss start MB"]
    print(f"  rss growth MB: {growth:.1f} (target < 5)")
    verdicts = {
        "expired-token requests == 0": result["expired-token requests"] == 0,
        "logins after the first == 0": result["logins after the first"] == 0,
        "renewals per simulated hour <= 15": result["max renewals in a simulated hour"] <= 15,
        "subscriptions lost == 0": result["subscriptions lost (client)"] == 0
        and result["md subscriptions on the server at the end"] == 1,
        "rss growth < 5 MB": growth < 5,
        "tasks beyond baseline == 0": result["tasks beyond baseline"] == 0,
    }
    for name, ok in verdicts.items():
        print(f"  {'PASS' if ok else 'FAIL'} {name}")


async def wrong_clock_runs(args: argparse.Namespace) -> None:
    """The soak on a host whose wall clock is off the server's, or jumps (issue 9)."""
    offsets = [float(h) for h in args.host_offsets_hours.split(",") if h.strip()]
    runs = [(f"host clock {hours:+g} h", hours, 0.0) for hours in offsets]
    if args.jump_hours:
        runs.append((f"host clock jumps {args.jump_hours:+g} h mid-run", 0.0, args.jump_hours))
    for name, offset, jump in runs:
        started = time.monotonic()
        result = await soak(
            args.clock_days,
            args.clock_minutes,
            args.drop_every_hours,
            host_offset_hours=offset,
            jump_hours=jump,
        )
        print(
            f"soak, {name}: {args.clock_days:g} simulated days in "
            f"{time.monotonic() - started:.0f} s (clock x{result['speed']:.0f})"
        )
        for key in ("requests", "token requests", "logins", "renewals"):
            print(f"  {key}: {result[key]}")
        for key in ("expired-token requests", "failed requests"):
            print(f"  {key}: {result[key]}")
        ok = (
            result["token requests"] == result["logins"] == 1
            and result["expired-token requests"] == 0
            and result["failed requests"] == 0
        )
        print(f"  {'PASS' if ok else 'FAIL'} one login, no expired-token or failed request")


if __name__ == "__main__":
    anyio.run(main)
