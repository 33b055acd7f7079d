"""The simulator's order engine: fills on the price path, positions, cash, props events."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from tradovate_async import TradovateSession
from tradovate_async.sim import SimulatedTradovate
from tradovate_async.sim._market import contract_id
from tradovate_async.sim._md import MarketSim
from tradovate_async.sim._orders import MarketPrices
from tradovate_async.sim._prices import PricePath

T0 = 1_796_000_000.0  # a fixed simulator clock; tests move it with advance_clock
ES = contract_id("ESZ6")
ACCOUNT = 70001
BASE: dict[str, Any] = {"accountId": ACCOUNT, "symbol": "ESZ6", "orderQty": 1}


def test_orders_and_market_data_share_one_deterministic_price_path() -> None:
    a = MarketPrices(MarketSim(PricePath(1)), T0)
    b = MarketPrices(MarketSim(PricePath(1)), T0)
    c = MarketPrices(MarketSim(PricePath(2)), T0)
    times = [T0 + i * 7.3 for i in range(500)]
    prices = [a.price(ES, t) for t in times]
    assert prices == [b.price(ES, t) for t in reversed(times)][::-1]
    assert prices != [c.price(ES, t) for t in times]
    assert all(abs(p / 0.25 - round(p / 0.25)) < 1e-9 for p in prices)
    assert len(set(prices)) > 20
    assert a.point_value(ES) == 50.0 and a.tick(contract_id("CLF7")) == 0.01
    fast = MarketPrices(MarketSim(PricePath(1)), T0, speed=60.0)
    assert fast.price(ES, T0 + 10) == a.price(ES, T0 + 600)  # market time runs 60x


@pytest.fixture
async def fixed() -> AsyncIterator[SimulatedTradovate]:
    """A simulator whose clock stands still until the test moves it."""
    async with SimulatedTradovate(clock=lambda: T0, price_seed=3) as server:
        yield server


@pytest.fixture
async def session(fixed: SimulatedTradovate) -> AsyncIterator[TradovateSession]:
    async with TradovateSession(fixed.config(), clock=_utc(fixed)) as opened:
        yield opened


class _SimClock:
    """The session reads the simulator's wall clock, so the tokens age as the test moves it."""

    def __init__(self, sim: SimulatedTradovate) -> None:
        self.sim = sim

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.sim.now(), dt.UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


def _utc(sim: SimulatedTradovate) -> _SimClock:
    return _SimClock(sim)


def price_now(sim: SimulatedTradovate) -> float:
    return sim.price("ESZ6")


def first_time(sim: SimulatedTradovate, test: Any, horizon: float = 6 * 3600) -> float:
    """Seconds from now until the price path first satisfies ``test`` (1 s steps)."""
    now = sim.now()
    for step in range(1, int(horizon)):
        if test(sim.price("ESZ6", now + step)):
            return float(step)
    raise AssertionError("the path never got there")  # pragma: no cover


def by_id(sim: SimulatedTradovate, kind: str, ident: int) -> dict[str, Any]:
    return next(e for e in sim.entities(kind) if e["id"] == ident)


async def test_a_market_order_fills_at_the_path_price(
    fixed: SimulatedTradovate, session: TradovateSession
) -> None:
    expected = price_now(fixed)
    placed = await session.post(
        "order/placeorder", json={**BASE, "action": "Buy", "orderType": "Market"}
    )
    order = by_id(fixed, "order", placed["orderId"])
    assert order["ordStatus"] == "Filled"
    [fill] = fixed.entities("fill")
    assert fill["price"] == expected and fill["qty"] == 1 and fill["orderId"] == order["id"]
    [position] = fixed.entities("position")
    assert position["netPos"] == 1 and position["netPrice"] == expected
    kinds = [r["execType"] for r in fixed.entities("executionReport")]
    assert kinds == ["New", "Trade"]
    assert await session.get("fill/deps", params={"masterid": order["id"]}) == [fill]
    assert await session.get("position/ldeps", params={"masterids": str(ACCOUNT)}) == [position]


async def test_a_limit_rests_until_the_price_crosses_then_fills_at_the_limit(
    fixed: SimulatedTradovate, session: TradovateSession
) -> None:
    now_price = price_now(fixed)
    limit = now_price - 2.0
    wait = first_time(fixed, lambda p: p <= limit)
    placed = await session.post(
        "order/placeorder",
        json={**BASE, "action": "Buy", "orderType": "Limit", "price": limit},
    )
    assert by_id(fixed, "order", placed["orderId"])["ordStatus"] == "Working"
    fixed.advance_clock(wait - 1)
    assert (await session.get("order/item", params={"id": placed["orderId"]}))[
        "ordStatus"
    ] == "Working"
    fixed.advance_clock(1)
    order = await session.get("order/item", params={"id": placed["orderId"]})
    assert order["ordStatus"] == "Filled"
    assert fixed.entities("fill")[0]["price"] == limit


async def test_a_round_trip_books_profit_in_the_cash_balance(
    fixed: SimulatedTradovate, session: TradovateSession
) -> None:
    start = fixed.cash_balance(ACCOUNT)["amount"]
    buy_price = price_now(fixed)
    await session.post("order/placeorder", json={**BASE, "action": "Buy", "orderType": "Market"})
    fixed.advance_clock(600)
    sell_price = price_now(fixed)
    await session.post(
        "order/placeorder", json={**BASE, "action": "Sell", "orderType": "Market", "orderQty": 1}
    )
    cash = fixed.cash_balance(ACCOUNT)
    expected = (sell_price - buy_price) * 50.0  # ES: $50 a point
    assert cash["realizedPnL"] == pytest.approx(expected)
    assert cash["amount"] == pytest.approx(start + expected)
    [position] = fixed.entities("position")
    assert position["netPos"] == 0 and "netPrice" not in position
    [pair] = fixed.entities("fillPair")
    assert (pair["buyPrice"], pair["sellPrice"], pair["qty"]) == (buy_price, sell_price, 1)
    balances = await session.get("cashBalance/list")
    assert balances[0]["amount"] == cash["amount"]


async def test_an_oso_bracket_works_after_its_entry_and_one_leg_cancels_the_other(
    fixed: SimulatedTradovate, session: TradovateSession
) -> None:
    entry = price_now(fixed)
    placed = await session.post(
        "order/placeoso",
        json={
            **BASE,
            "action": "Buy",
            "orderType": "Market",
            "bracket1": {"action": "Sell", "orderType": "Limit", "price": entry + 3.0},
            "bracket2": {"action": "Sell", "orderType": "Stop", "stopPrice": entry - 3.0},
        },
    )
    assert set(placed) == {"orderId", "oso1Id", "oso2Id"}
    target, stop = by_id(fixed, "order", placed["oso1Id"]), by_id(fixed, "order", placed["oso2Id"])
    assert target["ordStatus"] == stop["ordStatus"] == "Working"  # the entry filled at once
    assert target["parentId"] == placed["orderId"] == stop["parentId"]
    assert (target["ocoId"], stop["ocoId"]) == (stop["id"], target["id"])  # each names the other
    wait = first_time(fixed, lambda p: p >= entry + 3.0 or p <= entry - 3.0)
    fixed.advance_clock(wait)
    await session.get("order/list")
    statuses = {by_id(fixed, "order", placed[k])["ordStatus"] for k in ("oso1Id", "oso2Id")}
    assert statuses == {"Filled", "Canceled"}
    assert fixed.entities("position")[0]["netPos"] == 0


async def test_brackets_wait_for_the_entry_and_go_with_it(
    fixed: SimulatedTradovate, session: TradovateSession
) -> None:
    far = price_now(fixed) - 500.0
    placed = await session.post(
        "order/placeoso",
        json={
            **BASE,
            "action": "Buy",
            "orderType": "Limit",
            "price": far,
            "bracket1": {"action": "Sell", "orderType": "Limit", "price": far + 10},
        },
    )
    assert by_id(fixed, "order", placed["oso1Id"])["ordStatus"] == "Suspended"
    await session.post("order/cancelorder", json={"orderId": placed["orderId"]})
    assert by_id(fixed, "order", placed["oso1Id"])["ordStatus"] == "Canceled"


async def test_modify_and_cancel_leave_their_trail(
    fixed: SimulatedTradovate, session: TradovateSession
) -> None:
    far = price_now(fixed) - 500.0
    placed = await session.post(
        "order/placeorder",
        json={**BASE, "action": "Buy", "orderType": "Limit", "price": far, "clOrdId": "c-1"},
    )
    order_id = placed["orderId"]
    modified = await session.post(
        "order/modifyorder",
        json={"orderId": order_id, "orderQty": 3, "orderType": "Limit", "price": far + 1},
    )
    assert isinstance(modified["commandId"], int)
    versions = await session.get("orderVersion/deps", params={"masterid": order_id})
    assert [(v["orderQty"], v["price"]) for v in versions][-1] == (3, far + 1)
    await session.post("order/cancelorder", json={"orderId": order_id})
    assert by_id(fixed, "order", order_id)["ordStatus"] == "Canceled"
    commands = await session.get("command/deps", params={"masterid": order_id})
    assert [c["commandType"] for c in commands] == ["New", "Modify", "Cancel"]
    assert commands[0]["clOrdId"] == "c-1"
    reports = [r["execType"] for r in fixed.entities("executionReport")]
    assert reports == ["New", "Replaced", "Canceled"]
    with pytest.raises(Exception, match="TooLate"):
        await session.post("order/cancelorder", json={"orderId": order_id})


async def test_stops_trigger_and_ioc_does_not_rest(
    fixed: SimulatedTradovate, session: TradovateSession
) -> None:
    level = price_now(fixed) + 2.0
    wait = first_time(fixed, lambda p: p >= level)
    stop = await session.post(
        "order/placeorder",
        json={**BASE, "action": "Buy", "orderType": "Stop", "stopPrice": level},
    )
    ioc = await session.post(
        "order/placeorder",
        json={
            **BASE,
            "action": "Buy",
            "orderType": "Limit",
            "price": price_now(fixed) - 100,
            "timeInForce": "IOC",
        },
    )
    assert by_id(fixed, "order", ioc["orderId"])["ordStatus"] == "Canceled"
    fixed.advance_clock(wait)
    await session.get("order/list")
    assert by_id(fixed, "order", stop["orderId"])["ordStatus"] == "Filled"
    assert fixed.entities("fill")[0]["price"] >= level


async def test_liquidate_cancels_and_flattens(
    fixed: SimulatedTradovate, session: TradovateSession
) -> None:
    await session.post(
        "order/placeorder", json={**BASE, "action": "Sell", "orderType": "Market", "orderQty": 2}
    )
    resting = await session.post(
        "order/placeorder",
        json={**BASE, "action": "Buy", "orderType": "Limit", "price": price_now(fixed) - 400},
    )
    await session.post(
        "order/liquidateposition", json={"accountId": ACCOUNT, "contractId": ES, "admin": False}
    )
    assert by_id(fixed, "order", resting["orderId"])["ordStatus"] == "Canceled"
    assert fixed.entities("position")[0]["netPos"] == 0


async def test_every_change_reaches_a_synced_socket_as_props(
    fixed: SimulatedTradovate, session: TradovateSession
) -> None:
    async with session.websocket() as ws:
        snapshot = await ws.request("user/syncrequest", json={"accounts": [ACCOUNT]}, replay=True)
        assert snapshot["positions"] == []
        await session.post(
            "order/placeorder", json={**BASE, "action": "Buy", "orderType": "Market"}
        )
        fixed.advance_clock(300)
        await ws.request("order/placeorder", json={**BASE, "action": "Sell", "orderType": "Market"})
        seen: list[tuple[str, str]] = []
        with anyio.fail_after(10):
            async for event in ws.events():
                if event.kind == "props":
                    seen.append((event.data["entityType"], event.data["eventType"]))
                if ("cashBalance", "Updated") in seen:
                    break
        for expected in [
            ("order", "Created"),
            ("orderVersion", "Created"),
            ("command", "Created"),
            ("commandReport", "Created"),
            ("executionReport", "Created"),
            ("fill", "Created"),
            ("order", "Updated"),
            ("position", "Created"),
            ("position", "Updated"),
            ("fillPair", "Created"),
            ("cashBalance", "Updated"),
        ]:
            assert expected in seen
        again = await ws.request("user/syncrequest", json={"accounts": [ACCOUNT]})
        assert len(again["fills"]) == 2 and len(again["orders"]) == 2
        assert again["positions"][0]["netPos"] == 0


async def test_resting_orders_fill_without_any_request() -> None:
    """The simulator's market timer fills resting orders and pushes the events by itself."""
    clock = {"now": T0}
    async with SimulatedTradovate(clock=lambda: clock["now"], market_interval=0.02) as sim:
        async with TradovateSession(sim.config(), clock=_utc(sim)) as session:
            limit = sim.price("ESZ6") - 1.0
            placed = await session.post(
                "order/placeorder",
                json={**BASE, "action": "Buy", "orderType": "Limit", "price": limit},
            )
            wait = first_time(sim, lambda p: p <= limit)
            clock["now"] += wait
            with anyio.fail_after(10):
                while by_id(sim, "order", placed["orderId"])["ordStatus"] != "Filled":
                    await anyio.sleep(0.02)
