"""Several processes, one store: one login between them (file store and Redis)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from tests.redis_server import RedisServer
from tradovate_async.sim import SimulatedTradovate, SimUser, WarpClock

CHILD = Path(__file__).with_name("fleet_child.py")


def fleet_env(sim: SimulatedTradovate, store: str, **extra: str) -> dict[str, str]:
    user = SimUser()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADOVATE_")}
    env.update(
        TRADOVATE_API_URL=sim.api_url,
        TRADOVATE_WS_URL=sim.ws_url,
        TRADOVATE_MD_URL=sim.md_url,
        TRADOVATE_USERNAME=user.username,
        TRADOVATE_PASSWORD=user.password,
        TRADOVATE_APP_ID=user.app_id,
        TRADOVATE_SEC=user.sec,
        TRADOVATE_DEVICE_ID="fleet-device",
        FLEET_STORE=store,
        PYTHONPATH=str(Path(__file__).parent.parent),
    )
    env.update(extra)
    return env


async def run_fleet(count: int, env: dict[str, str]) -> list[dict[str, object]]:
    env = {**env, "FLEET_START_AT": str(time.time() + 1.5)}

    def run_all() -> list[subprocess.CompletedProcess[str]]:
        procs = [
            subprocess.Popen(
                [sys.executable, str(CHILD)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=90)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        return results

    results = await anyio.to_thread.run_sync(run_all)
    for result in results:
        assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(r.stdout.strip().splitlines()[-1]) for r in results]


async def test_eight_processes_on_one_file_store_make_one_login(
    sim: SimulatedTradovate, tmp_path: Path
) -> None:
    reports = await run_fleet(8, fleet_env(sim, f"file:{tmp_path / 'tokens.json'}"))
    assert sim.token_requests == 1
    assert len({tuple(r["tokens"]) for r in reports}) == 1  # type: ignore[arg-type]
    assert sum(r["logins"] for r in reports) == 1  # type: ignore[misc]


async def test_eight_processes_through_redis_make_one_login(
    sim: SimulatedTradovate, redis_server: RedisServer
) -> None:
    reports = await run_fleet(8, fleet_env(sim, f"redis:{redis_server.url}"))
    assert sim.token_requests == 1
    assert len({tuple(r["tokens"]) for r in reports}) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("store_kind", ["file", "redis"])
async def test_fleet_renews_once_per_lifetime(
    tmp_path: Path, redis_server: RedisServer, store_kind: str
) -> None:
    clock = WarpClock(speed=1500.0)  # 90 simulated minutes in 3.6 real seconds
    async with SimulatedTradovate(clock=clock.time) as sim:
        store = (
            f"file:{tmp_path / 'tokens.json'}"
            if store_kind == "file"
            else f"redis:{redis_server.url}"
        )
        if store_kind == "redis":
            import redis

            redis.Redis.from_url(redis_server.url).flushall()
        env = fleet_env(
            sim,
            store,
            FLEET_SECONDS="9",
            FLEET_CLOCK_SPEED=str(clock.speed),
            FLEET_CLOCK_EPOCH=repr(clock.epoch),
        )
        reports = await run_fleet(4, env)
        assert sim.logins == 1
        lifetimes = 9 * clock.speed / 5400
        assert 1 <= sim.renewals <= int(lifetimes) + 1, reports
        assert sim.expired_token_rejections == 0
