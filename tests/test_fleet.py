"""Several processes, one store: one login between them (file store and Redis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.fleet_child import child_env, run_children
from tests.redis_server import RedisServer
from tradovate_async.sim import SimulatedTradovate, WarpClock


async def run_fleet(count: int, env: dict[str, str]) -> list[dict[str, Any]]:
    return await anyio.to_thread.run_sync(lambda: run_children(count, env))


async def test_eight_processes_on_one_file_store_make_one_login(
    sim: SimulatedTradovate, tmp_path: Path
) -> None:
    reports = await run_fleet(8, child_env(sim, f"file:{tmp_path / 'tokens.json'}"))
    assert sim.token_requests == 1
    assert len({tuple(r["tokens"]) for r in reports}) == 1  # type: ignore[arg-type]
    assert sum(r["logins"] for r in reports) == 1  # type: ignore[misc]


async def test_eight_processes_through_redis_make_one_login(
    sim: SimulatedTradovate, redis_server: RedisServer
) -> None:
    reports = await run_fleet(8, child_env(sim, f"redis:{redis_server.url}"))
    assert sim.token_requests == 1
    assert len({tuple(r["tokens"]) for r in reports}) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("store_kind", ["file", "redis"])
async def test_fleet_renews_once_per_lifetime(
    tmp_path: Path, redis_server: RedisServer, store_kind: str
) -> None:
    # 90 simulated minutes in 3.6 real seconds; renewing 45 minutes before expiry leaves 1.8 real
    # seconds of margin, so a loaded machine's stalls cannot make a renewal late.
    clock = WarpClock(speed=1500.0)
    renew_before = 2700.0
    async with SimulatedTradovate(clock=clock.time) as sim:
        store = (
            f"file:{tmp_path / 'tokens.json'}"
            if store_kind == "file"
            else f"redis:{redis_server.url}"
        )
        if store_kind == "redis":
            import redis

            redis.Redis.from_url(redis_server.url).flushall()
        env = child_env(
            sim,
            store,
            FLEET_SECONDS="4",
            FLEET_RENEW_BEFORE=str(renew_before),
            FLEET_CLOCK_SPEED=str(clock.speed),
            FLEET_CLOCK_EPOCH=repr(clock.epoch),
        )
        reports = await run_fleet(4, env)
        assert sim.logins == 1
        renewal_points = 4 * clock.speed / (5400 - renew_before)  # one per token, fleet-wide
        assert 1 <= sim.renewals <= int(renewal_points) + 1, reports
        assert sim.expired_token_rejections == 0


@pytest.mark.parametrize("store_kind", ["file", "redis"])
async def test_a_fleet_flat_out_stays_within_one_shared_budget(
    tmp_path: Path, redis_server: RedisServer, store_kind: str
) -> None:
    """Three processes of one user send as fast as they can for 1.2 simulated hours; the server
    locks the user out past 100 requests an hour. The shared budget (80 of them) keeps every
    process under it together: requests are refused locally, the server never says 429. The
    20 left over are 15 simulated minutes, 1.5 real seconds at this speed: a loaded machine's
    stalls cannot bunch requests past the server's limit."""
    clock = WarpClock(speed=600.0)  # a simulated hour in 6 real seconds
    async with SimulatedTradovate(
        clock=clock.time, max_requests_per_hour=100, max_syncrequests_per_hour=6
    ) as sim:
        store = (
            f"file:{tmp_path / 'tokens.json'}"
            if store_kind == "file"
            else f"redis:{redis_server.url}"
        )
        env = child_env(
            sim,
            store,
            FLEET_MODE="budget",
            FLEET_PER_HOUR="80",
            # 20 ms between tries: still 600 tries a real second against a budget of about
            # 13, without burning a core per process on refusals
            FLEET_PAUSE="0.02",
            FLEET_SYNC_PER_HOUR="5",
            FLEET_SECONDS=str(1.2 * 3600 / clock.speed),
            FLEET_CLOCK_SPEED=str(clock.speed),
            FLEET_CLOCK_EPOCH=repr(clock.epoch),
        )
        reports = await run_fleet(3, env)
        sent = sum(r["budget"]["counted"] for r in reports)  # type: ignore[index]
        refused = sum(r["budget"]["refused"] for r in reports)  # type: ignore[index]
        assert sim.rate_limited == 0
        assert sum(r["counts"]["429"] for r in reports) == 0  # type: ignore[index]
        assert refused > 0  # they did try to go past it
        assert 80 <= sent <= 2 * 80  # one full hour's budget, plus what the next 0.2 h freed
