"""Safe orders: validation before sending, isAutomated, client order ids, lost answers."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tradovate_async import (
    ConnectFailedError,
    OrderDefaults,
    OrderOutcomeUnknownError,
    OrderValidationError,
    TradovateSession,
)
from tradovate_async._orders import order_problems, prepare_order_command
from tradovate_async.api import Order, RestrainedOrderVersion
from tradovate_async.sim import Fault, SimulatedTradovate

ACCOUNT = 70001
BUY_LIMIT: dict[str, Any] = {
    "accountSpec": "demo-trader",
    "accountId": ACCOUNT,
    "action": "Buy",
    "symbol": "ESZ6",
    "orderQty": 1,
    "orderType": "Limit",
    "price": 5000.0,
}


def order(**changes: Any) -> dict[str, Any]:
    body = {**BUY_LIMIT, **changes}
    return {k: v for k, v in body.items() if v is not None}


INVALID = [
    ("limit-without-price", "order/placeorder", order(price=None), "price"),
    ("stop-without-stop", "order/placeorder", order(orderType="Stop", price=None), "stopPrice"),
    (
        "stoplimit-without-price",
        "order/placeorder",
        order(orderType="StopLimit", stopPrice=5001, price=None),
        "price",
    ),
    ("stoplimit-without-stop", "order/placeorder", order(orderType="StopLimit"), "stopPrice"),
    ("zero-qty", "order/placeorder", order(orderQty=0), "orderQty"),
    ("negative-qty", "order/placeorder", order(orderQty=-2), "orderQty"),
    ("float-qty", "order/placeorder", order(orderQty=1.5), "orderQty"),
    ("bool-qty", "order/placeorder", order(orderQty=True), "orderQty"),
    ("nan-price", "order/placeorder", order(price=float("nan")), "price"),
    ("negative-price", "order/placeorder", order(price=-1), "price"),
    ("gtd-without-expiry", "order/placeorder", order(timeInForce="GTD"), "expireTime"),
    (
        "gtd-bad-expiry",
        "order/placeorder",
        order(timeInForce="GTD", expireTime="soon"),
        "expireTime",
    ),
    ("bad-tif", "order/placeorder", order(timeInForce="Forever"), "timeInForce"),
    ("bad-action", "order/placeorder", order(action="Hold"), "action"),
    ("bad-type", "order/placeorder", order(orderType="Iceberg"), "orderType"),
    ("no-symbol", "order/placeorder", order(symbol=" "), "symbol"),
    ("no-account", "order/placeorder", order(accountId=None, accountSpec=None), "accountId"),
    ("market-with-price", "order/placeorder", order(orderType="Market"), "price"),
    ("oso-without-bracket", "order/placeoso", order(), "bracket1"),
    (
        "oso-bracket-same-side",
        "order/placeoso",
        order(bracket1={"action": "Buy", "orderType": "Limit", "price": 5010}),
        "bracket1.action",
    ),
    (
        "oso-target-below-long-entry",
        "order/placeoso",
        order(bracket1={"action": "Sell", "orderType": "Limit", "price": 4990}),
        "bracket1.price",
    ),
    (
        "oso-stop-above-long-entry",
        "order/placeoso",
        order(
            bracket2={"action": "Sell", "orderType": "Stop", "stopPrice": 5010},
            bracket1={"action": "Sell", "orderType": "Limit", "price": 5020},
        ),
        "bracket2.stopPrice",
    ),
    (
        "oso-short-target-above-stop",
        "order/placeoso",
        order(
            action="Sell",
            orderType="Market",
            price=None,
            bracket1={"action": "Buy", "orderType": "Limit", "price": 5030},
            bracket2={"action": "Buy", "orderType": "Stop", "stopPrice": 5020},
        ),
        "bracket1.price",
    ),
    (
        "oso-bracket-without-price",
        "order/placeoso",
        order(bracket1={"action": "Sell", "orderType": "Limit"}),
        "bracket1.price",
    ),
    ("oco-without-other", "order/placeoco", order(), "other"),
    (
        "modify-without-order",
        "order/modifyorder",
        {"orderQty": 1, "orderType": "Market"},
        "orderId",
    ),
    (
        "modify-zero-qty",
        "order/modifyorder",
        {"orderId": 5, "orderQty": 0, "orderType": "Market"},
        "orderQty",
    ),
    (
        "modify-limit-no-price",
        "order/modifyorder",
        {"orderId": 5, "orderQty": 1, "orderType": "Limit"},
        "price",
    ),
    ("cancel-without-order", "order/cancelorder", {"orderId": "7"}, "orderId"),
    ("liquidate-without-contract", "order/liquidateposition", {"accountId": ACCOUNT}, "contractId"),
]


@pytest.mark.parametrize(
    ("endpoint", "body", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_orders_name_the_field(endpoint: str, body: dict[str, Any], field: str) -> None:
    assert field in order_problems(endpoint, body)


VALID = [
    ("order/placeorder", order()),
    ("order/placeorder", order(orderType="Market", price=None, symbol=3_000_123)),
    ("order/placeorder", order(orderType="StopLimit", stopPrice=4999.0)),
    ("order/placeorder", order(timeInForce="GTD", expireTime="2026-12-31T21:00:00Z")),
    (
        "order/placeoso",
        order(
            bracket1={"action": "Sell", "orderType": "Limit", "price": 5010},
            bracket2={"action": "Sell", "orderType": "Stop", "stopPrice": 4990},
        ),
    ),
    (
        "order/placeoco",
        order(
            orderType="Stop",
            price=None,
            stopPrice=5010,
            other={"action": "Sell", "orderType": "Stop", "stopPrice": 4990},
        ),
    ),
    ("order/modifyorder", {"orderId": 5, "orderQty": 2, "orderType": "Limit", "price": 1.25}),
    ("order/cancelorder", {"orderId": 5}),
]


@pytest.mark.parametrize(("endpoint", "body"), VALID)
def test_valid_orders_pass(endpoint: str, body: dict[str, Any]) -> None:
    assert order_problems(endpoint, body) == {}


def test_prepare_labels_without_touching_the_caller_body() -> None:
    body = order()
    prepared, cl_ord_id = prepare_order_command("order/placeorder", body, OrderDefaults())
    assert "clOrdId" not in body and "isAutomated" not in body
    assert prepared["isAutomated"] is True
    assert prepared["clOrdId"] == cl_ord_id and cl_ord_id.startswith("ta-")
    assert len(cl_ord_id) <= 64
    mine, kept = prepare_order_command(
        "order/placeorder", order(clOrdId="mine-1", isAutomated=False), OrderDefaults()
    )
    assert kept == "mine-1" and mine["isAutomated"] is False
    manual, _ = prepare_order_command(
        "order/placeorder", body, OrderDefaults(is_automated=False, cl_ord_id_prefix="bot7-")
    )
    assert manual["isAutomated"] is False and manual["clOrdId"].startswith("bot7-")
    with pytest.raises(OrderValidationError):
        prepare_order_command("order/placeorder", order(clOrdId="x" * 65), OrderDefaults())
    _, none = prepare_order_command(
        "order/liquidateposition", {"accountId": 1, "contractId": 2}, OrderDefaults()
    )
    assert none is None


async def test_an_invalid_order_is_never_sent(sim: SimulatedTradovate) -> None:
    async with TradovateSession(sim.config()) as session:
        with pytest.raises(OrderValidationError) as invalid:
            await session.post("order/placeorder", json=order(price=None))
        assert invalid.value.problems == {"price": "required for a Limit order"}
        assert "price" in str(invalid.value)
        async with session.websocket() as ws:
            with pytest.raises(OrderValidationError):
                await ws.request("order/placeorder", json=order(orderQty=0))
    assert sim.count("order/placeorder") == 0
    assert sim.orders() == []


async def test_orders_are_automated_and_labelled(sim: SimulatedTradovate) -> None:
    async with TradovateSession(sim.config()) as session:
        placed = await session.post("order/placeorder", json=order())
        async with session.websocket() as ws:
            await ws.request("order/placeorder", json=order(isAutomated=False, clOrdId="human-1"))
    commands = sim.entities("command")
    assert [c["isAutomated"] for c in commands] == [True, False]
    assert commands[0]["orderId"] == placed["orderId"]
    assert commands[0]["clOrdId"].startswith("ta-") and commands[1]["clOrdId"] == "human-1"


async def test_a_lost_answer_raises_outcome_unknown_and_reconciles(
    sim: SimulatedTradovate,
) -> None:
    async with TradovateSession(sim.config()) as session:
        # executed, answer cut off
        sim.inject("order/placeorder", Fault.drop())
        with pytest.raises(OrderOutcomeUnknownError) as lost:
            await session.post("order/placeorder", json=order())
        assert sim.count("order/placeorder") == 1  # never resent
        error = lost.value
        assert error.body is not None and error.body["clOrdId"] == error.cl_ord_id
        assert error.sent_at is not None and error.endpoint == "order/placeorder"
        found = await session.reconcile_order(error)
        assert isinstance(found, Order)
        assert found.id == sim.orders()[0]["id"] and found.account_id == ACCOUNT
        # refused before execution (500): reconcile says it does not exist
        sim.inject("order/placeorder", Fault.status(500))
        with pytest.raises(OrderOutcomeUnknownError) as failed:
            await session.post("order/placeorder", json=order())
        assert failed.value.reason == "HTTP 500"
        assert await session.reconcile_order(failed.value) is None
        # a truncated 200 is a lost answer too
        sim.inject("order/placeorder", Fault.truncated_json())
        with pytest.raises(OrderOutcomeUnknownError) as cut:
            await session.post("order/placeorder", json=order())
        again = await session.reconcile_order(cut.value.cl_ord_id or "?")
        assert again is not None and again.id == max(o["id"] for o in sim.orders())
        assert session.stats.outcome_unknown == 3
        with pytest.raises(ValueError):
            await session.reconcile_order(
                OrderOutcomeUnknownError("order/liquidateposition", cl_ord_id=None, reason="x")
            )


async def test_a_lost_socket_answer_reconciles_too(sim: SimulatedTradovate) -> None:
    async with TradovateSession(sim.config()) as session:
        async with session.websocket(timeout=0.5) as ws:
            sim.inject("order/placeorder", Fault.delay(2.0), transport="ws")
            with pytest.raises(OrderOutcomeUnknownError) as lost:
                await ws.request("order/placeorder", json=order())
            # Asked too early, the command is still in flight: not there (yet).
            assert await session.reconcile_order(lost.value) is None
            with anyio.fail_after(10):
                while not sim.orders():
                    await anyio.sleep(0.02)
        found = await session.reconcile_order(lost.value)
        assert found is not None and found.id == sim.orders()[0]["id"]


async def test_the_typed_api_gets_the_same_safeguards(sim: SimulatedTradovate) -> None:
    async with TradovateSession(sim.config()) as session:
        with pytest.raises(OrderValidationError):
            await session.api.order.place_order(
                account_id=ACCOUNT, symbol="ESZ6", action="Buy", order_qty=1, order_type="Limit"
            )
        assert sim.count("order/placeorder") == 0
        sim.inject("order/placeoso", Fault.drop())
        bracket = RestrainedOrderVersion(action="Sell", order_type="Limit", price=9000.0)
        with pytest.raises(OrderOutcomeUnknownError) as lost:
            await session.api.order.place_oso(
                account_id=ACCOUNT,
                symbol="ESZ6",
                action="Buy",
                order_qty=1,
                order_type="Limit",
                price=100.0,
                bracket1=bracket,
            )
        entry = await session.reconcile_order(lost.value)
        assert entry is not None and entry.ord_status == "Working"
        [command] = await session.api.command.deps(entry.id)
        assert command.is_automated is True and command.cl_ord_id == lost.value.cl_ord_id
        async with session.websocket() as ws:
            placed = await ws.api.order.place_order(
                account_id=ACCOUNT, symbol="ESZ6", action="Buy", order_qty=1, order_type="Market"
            )
        assert placed.order_id is not None
        commands = await session.api.command.deps(placed.order_id)
        assert commands[0].is_automated is True and commands[0].cl_ord_id


async def test_no_connection_means_not_sent(sim: SimulatedTradovate) -> None:
    async with TradovateSession(sim.config()) as session:
        session.http.base_url = "http://127.0.0.1:1/v1/"  # nothing listens there
        with pytest.raises(ConnectFailedError):
            await session.post("order/placeorder", json=order())
        assert session.stats.outcome_unknown == 0
