"""The shared request budget: the ledger's arithmetic, the three backends, the session's use."""

from __future__ import annotations

import json
import random
import secrets
from pathlib import Path

import pytest

from tests.conftest import RecordCollector
from tests.redis_server import RedisServer
from tradovate_async import (
    BudgetExhaustedError,
    FileTokenStore,
    MemoryTokenStore,
    RateLimit,
    RateLimitedError,
    RateLimits,
    RedisTokenStore,
    TradovateSession,
)
from tradovate_async._budget import BudgetLedger, FileBudget
from tradovate_async.sim import SimulatedTradovate

HOUR = 3600.0
ORDER = {
    "accountSpec": "demo-trader",
    "accountId": 70001,
    "action": "Buy",
    "symbol": "ESZ6",
    "orderQty": 1,
    "orderType": "Market",
}


# -- the ledger ----------------------------------------------------------------------------


def test_no_rolling_window_ever_sees_more_than_the_limit() -> None:
    """Brute force over random arrival times: whatever the ledger accepted, every window of
    the rule's length (at any start) holds at most ``limit`` requests."""
    rule = RateLimit(limit=50, window=60.0)
    rng = random.Random(7)
    for _ in range(5):
        ledger = BudgetLedger()
        now = 1_000_000.0 + rng.random() * 100
        accepted: list[float] = []
        for _ in range(2_000):
            now += rng.expovariate(3.0)  # about three requests a second: far over the limit
            if ledger.take((rule,), "account/list", now) == 0.0:
                accepted.append(now)
        assert len(accepted) > 100  # it does let requests through as room frees up
        for start in accepted:
            inside = [t for t in accepted if start - rule.window < t <= start]
            assert len(inside) <= rule.limit


def test_wait_is_when_room_comes_back() -> None:
    rule = RateLimit(limit=3, window=60.0)
    ledger = BudgetLedger()
    for t in (0.0, 10.0, 20.0):
        assert ledger.take((rule,), "x/list", 1000.0 + t) == 0.0
    wait = ledger.wait_for((rule,), "x/list", 1030.0)
    assert 0 < wait <= 31.0  # the first request's bucket leaves the window by then
    assert ledger.take((rule,), "x/list", 1030.0) == wait  # refused: nothing recorded
    assert ledger.used(rule, 1030.0) == 3
    assert ledger.take((rule,), "x/list", 1030.0 + wait) == 0.0


def test_endpoint_rules_count_only_their_endpoint() -> None:
    limits = RateLimits(per_hour=100, syncrequests_per_hour=2)
    rules = limits.rules()
    ledger = BudgetLedger()
    assert ledger.take(rules, "user/syncrequest", 0.0) == 0.0
    assert ledger.take(rules, "user/syncrequest", 1.0) == 0.0
    assert ledger.take(rules, "user/syncrequest", 2.0) > 0.0
    assert ledger.take(rules, "account/list", 2.0) == 0.0  # other requests still have room
    assert ledger.used(rules[0], 2.0) == 3


def test_forced_requests_are_counted_even_without_room() -> None:
    rule = RateLimit(limit=1, window=10.0)
    ledger = BudgetLedger()
    ledger.take((rule,), "a/list", 0.0)
    assert ledger.take((rule,), "authorize", 1.0, force=True) > 0
    assert ledger.used(rule, 1.0) == 2


def test_record_round_trip_and_garbage_counts_as_empty() -> None:
    rule = RateLimit(limit=5, window=10.0)
    ledger = BudgetLedger()
    ledger.take((rule,), "a/list", 100.0)
    copy = BudgetLedger.from_record(json.loads(json.dumps(ledger.to_record())))
    assert copy.used(rule, 100.0) == 1
    for junk in (None, [], {"x": 3}, {"x": {"a": 1, "2": -1, "3": True}}, "text"):
        assert BudgetLedger.from_record(junk).used(rule, 100.0) == 0


@pytest.mark.parametrize("bad", [0, -1])
def test_rate_limit_checks_its_arguments(bad: int) -> None:
    with pytest.raises(ValueError):
        RateLimit(limit=bad, window=1.0)
    with pytest.raises(ValueError):
        RateLimit(limit=1, window=float(bad))


# -- backends --------------------------------------------------------------------------------


async def test_two_file_budgets_on_one_file_share_the_ledger(tmp_path: Path) -> None:
    rules = (RateLimit(limit=4, window=HOUR),)
    first = FileTokenStore(tmp_path / "t.json").rate_budget()
    second = FileTokenStore(tmp_path / "t.json").rate_budget()
    results = [await b.take("k", rules, "a/list", 10.0, False) for b in (first, second) * 3]
    assert results.count(0.0) == 4
    assert (tmp_path / "t.json.budget").stat().st_mode & 0o777 == 0o600


async def test_unreadable_budget_file_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text("{not json")
    budget = FileBudget(path)
    rules = (RateLimit(limit=1, window=HOUR),)
    assert await budget.take("k", rules, "a/list", 5.0, False) == 0.0
    assert json.loads(path.read_text())["format"] == "tradovate-async/budget"
    assert await budget.take("k", rules, "a/list", 6.0, False) > 0


async def test_two_redis_stores_share_one_budget(redis_server: RedisServer) -> None:
    prefix = f"budget-{secrets.token_hex(4)}"
    stores = [RedisTokenStore(redis_server.url, prefix=prefix) for _ in range(2)]
    try:
        rules = (RateLimit(limit=5, window=HOUR), RateLimit(limit=2, window=HOUR, endpoint="s"))
        waits = [
            await stores[i % 2].rate_budget().take("k", rules, "a/list", 100.0 + i, False)
            for i in range(8)
        ]
        assert waits[:5] == [0.0] * 5
        assert all(w > 0 for w in waits[5:])
        # the first request's bucket leaves the hour: the Lua script's wait agrees with Python's
        python = BudgetLedger()
        for i in range(5):
            python.take(rules, "a/list", 100.0 + i)
        assert waits[5] == pytest.approx(python.wait_for(rules, "a/list", 105.0))
        # endpoint rule counted separately
        assert await stores[0].rate_budget().take("k2", rules, "s", 1.0, False) == 0.0
        assert await stores[1].rate_budget().take("k2", rules, "s", 1.0, False) == 0.0
        assert await stores[0].rate_budget().take("k2", rules, "s", 1.0, False) > 0
    finally:
        for store in stores:
            await store.aclose()


# -- the session -----------------------------------------------------------------------------


async def test_sessions_on_one_store_share_one_budget(sim: SimulatedTradovate) -> None:
    store = MemoryTokenStore()
    limits = RateLimits(per_hour=5, max_read_wait=0.0)
    async with (
        TradovateSession(sim.config(), store=store, rate_limits=limits) as a,
        TradovateSession(sim.config(), store=store, rate_limits=limits) as b,
    ):
        sim.reset_counters()
        for session in (a, b, a, b, a):
            await session.get("account/list")
        with pytest.raises(BudgetExhaustedError) as refused:
            await b.get("account/list")
        assert isinstance(refused.value, RateLimitedError)
        assert refused.value.retry_after.total_seconds() > 0
        assert sim.count("account/list") == 5
        assert a.stats.budget.counted + b.stats.budget.counted == 5
        assert b.stats.budget.refused == 1


async def test_commands_are_refused_before_sending(sim: SimulatedTradovate) -> None:
    limits = RateLimits(per_hour=2, max_read_wait=60.0)
    async with TradovateSession(sim.config(), rate_limits=limits) as session:
        await session.get("account/list")
        await session.get("account/list")
        with pytest.raises(BudgetExhaustedError):
            await session.post("order/placeorder", json=ORDER)
        assert sim.count("order/placeorder") == 0
        assert session.stats.budget.waits == 0  # a command does not wait


async def test_reads_wait_for_room_and_it_shows_at_debug(
    sim: SimulatedTradovate, debug_logs: RecordCollector
) -> None:
    # 2 requests per 0.3 s on top of the hourly rule: the third read waits, then goes.
    limits = RateLimits(extra=(RateLimit(limit=2, window=0.3),))
    async with TradovateSession(sim.config(), rate_limits=limits, check_interval=0.05) as session:
        for _ in range(3):
            await session.get("account/list")
        assert session.stats.budget.waits == 1
        assert session.stats.budget.wait_seconds > 0
        assert session.stats.budget.counted == 3
    assert debug_logs.find("budget: read account/list waits")


async def test_socket_requests_take_from_the_same_budget(sim: SimulatedTradovate) -> None:
    limits = RateLimits(per_hour=3, max_read_wait=0.0)
    async with TradovateSession(sim.config(), rate_limits=limits) as session:
        async with session.websocket() as ws:
            await session.get("account/list")
            await ws.request("account/list")
            await ws.request("account/list")
            with pytest.raises(BudgetExhaustedError):
                await ws.request("account/list")
            with pytest.raises(BudgetExhaustedError):
                await ws.request("order/placeorder", json=ORDER)
        assert session.stats.budget.counted == 3
        assert session.stats.budget.refused == 2
    assert sim.orders() == []


async def test_a_store_outage_falls_back_to_a_local_budget(sim: SimulatedTradovate) -> None:
    # A Redis that is not there: token store and budget both fail; requests still go, counted.
    store = RedisTokenStore("redis://127.0.0.1:1/0", lock_wait=0.5)
    limits = RateLimits(per_hour=2, max_read_wait=0.0)
    try:
        async with TradovateSession(sim.config(), store=store, rate_limits=limits) as session:
            await session.get("account/list")
            await session.get("account/list")
            with pytest.raises(BudgetExhaustedError):
                await session.get("account/list")
            assert session.stats.budget.store_errors == 3
    finally:
        await store.aclose()


async def test_the_simulator_locks_out_past_the_hourly_limit() -> None:
    async with SimulatedTradovate(max_requests_per_hour=3) as sim:
        async with TradovateSession(sim.config(), rate_limits=None) as session:
            for _ in range(3):
                await session.get("account/list")
            for _ in range(2):
                with pytest.raises(RateLimitedError) as locked:
                    await session.get("account/list")
                assert locked.value.status == 429
            async with session.websocket() as ws:
                with pytest.raises(RateLimitedError):
                    await ws.request("account/list")
            assert sim.rate_limited == 3
            sim.advance_clock(HOUR + 1)  # the lockout ran a full hour from the last request
            assert await session.get("account/list")


async def test_with_the_budget_the_simulator_never_says_429() -> None:
    async with SimulatedTradovate(max_requests_per_hour=5, max_syncrequests_per_hour=2) as sim:
        limits = RateLimits(per_hour=4, syncrequests_per_hour=1, max_read_wait=0.0)
        async with TradovateSession(sim.config(), rate_limits=limits) as session:
            refused = 0
            for endpoint in ["user/syncrequest"] * 3 + ["account/list"] * 6:
                try:
                    if endpoint == "user/syncrequest":
                        await session.post(endpoint, json={})
                    else:
                        await session.get(endpoint)
                except BudgetExhaustedError:
                    refused += 1
            assert refused == 5  # 2 syncrequests over 1, then 3 reads over 4 in all
            assert sim.rate_limited == 0
