"""Read retries: transport errors, 408, 5xx, Retry-After; never 429, never commands."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from tradovate_async import (
    APIError,
    OrderOutcomeUnknownError,
    RateLimitedError,
    RetryPolicy,
    TradovateSession,
    TransportError,
)
from tradovate_async._retry import is_read, parse_retry_after
from tradovate_async.sim import Fault, SimulatedTradovate

FAST = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.02, max_retry_after=2.0)
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def test_parse_retry_after() -> None:
    assert parse_retry_after("7", NOW) == 7.0
    assert parse_retry_after("Tue, 01 Dec 2026 12:00:30 GMT", NOW) == 30.0
    assert parse_retry_after("Tue, 01 Dec 2026 11:00:00 GMT", NOW) == 0.0  # in the past
    for junk in (None, "", "soon", "-3", "1e9x"):
        assert parse_retry_after(junk, NOW) is None


def test_delays_are_jittered_bounded_and_give_up() -> None:
    policy = RetryPolicy(attempts=4, backoff_initial=1.0, backoff_max=3.0, max_retry_after=10.0)
    rng = random.Random(1)
    delays = [policy.delay(n, None, rng) for n in (1, 2, 3)]
    assert all(
        d is not None and 0 <= d <= cap for d, cap in zip(delays, (1.0, 2.0, 3.0), strict=True)
    )
    assert len({round(d or 0, 6) for d in delays}) == 3  # jitter: not a fixed ladder
    assert policy.delay(4, None, rng) is None  # four tries in all
    assert policy.delay(1, 5.0, rng) == 5.0  # Retry-After is a floor
    assert policy.delay(1, 11.0, rng) is None  # too long a wait: give up
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


@pytest.mark.parametrize(
    ("endpoint", "read"),
    [
        ("account/list", True),
        ("/v1/position/LDEPS", True),
        ("contract/suggest", True),
        ("auth/me", True),
        ("cashBalance/getCashBalanceSnapshot", True),
        ("order/placeorder", False),
        ("orderStrategy/startOrderStrategy", False),
        ("user/addentitlementsubscription", False),
    ],
)
def test_what_counts_as_a_read(endpoint: str, read: bool) -> None:
    assert is_read(endpoint) is read


@pytest.mark.parametrize(
    "fault",
    [Fault.status(503), Fault.status(500), Fault.status(408), Fault.html(502), Fault.drop()],
    ids=["503", "500", "408", "502-html", "drop"],
)
async def test_reads_are_retried(sim: SimulatedTradovate, fault: Fault) -> None:
    async with TradovateSession(sim.config(), retry=FAST) as session:
        sim.reset_counters()
        sim.inject("account/list", fault, times=2)
        accounts = await session.get("account/list")
        assert accounts[0]["id"] == 70001
        assert sim.count("account/list") == 3
        assert session.stats.read_retries == 2


async def test_reads_give_up_after_the_bound(sim: SimulatedTradovate) -> None:
    async with TradovateSession(sim.config(), retry=FAST) as session:
        sim.reset_counters()
        sim.inject("account/list", Fault.status(503), times=5)
        with pytest.raises(APIError) as failed:
            await session.get("account/list")
        assert failed.value.status == 503
        assert sim.count("account/list") == 3
        sim.inject("account/list", Fault.drop(), times=3)
        with pytest.raises(TransportError):
            await session.get("account/list")


async def test_retry_after_is_honoured_and_bounded(sim: SimulatedTradovate) -> None:
    async with TradovateSession(sim.config(), retry=FAST) as session:
        sim.reset_counters()
        sim.inject("account/list", Fault.status(503, retry_after=0.05))
        assert await session.get("account/list")
        assert session.stats.read_retries == 1
        sim.inject("account/list", Fault.status(503, retry_after=60))  # over max_retry_after
        with pytest.raises(APIError):
            await session.get("account/list")
        assert session.stats.read_retries == 1


async def test_429_is_never_retried(sim: SimulatedTradovate) -> None:
    async with TradovateSession(sim.config(), retry=FAST) as session:
        sim.reset_counters()
        sim.inject("account/list", Fault.status(429))
        with pytest.raises(RateLimitedError):
            await session.get("account/list")
        assert sim.count("account/list") == 1


@pytest.mark.parametrize("fault", [Fault.status(503), Fault.drop()], ids=["503", "drop"])
async def test_commands_are_never_retried(sim: SimulatedTradovate, fault: Fault) -> None:
    async with TradovateSession(sim.config(), retry=FAST) as session:
        sim.reset_counters()
        sim.inject("user/addentitlementsubscription", fault)
        with pytest.raises((APIError, TransportError)):
            await session.post("user/addentitlementsubscription", json={"entitlementId": 1})
        assert sim.count("user/addentitlementsubscription") == 1
        sim.inject("order/placeorder", fault)
        order = {
            "accountId": 70001,
            "action": "Buy",
            "symbol": "ESZ6",
            "orderQty": 1,
            "orderType": "Market",
        }
        with pytest.raises(OrderOutcomeUnknownError):
            await session.post("order/placeorder", json=order)
        assert sim.count("order/placeorder") == 1
        assert session.stats.read_retries == 0
