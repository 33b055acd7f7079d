"""The account mirror against the real simulator: snapshot + props, drops, resyncs, P&L."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from tests.conftest import SIM_USER
from tradovate_async import Backoff, TradovateSession
from tradovate_async._account_state import AccountState, open_pnl
from tradovate_async._entity_store import Change, EntityStore, typed_decoder
from tradovate_async._event_buffer import EVENT_OVERFLOW, EVENT_RESYNCED, Overflow
from tradovate_async._ws_types import ReplayResult
from tradovate_async.sim import Fault, SimulatedTradovate

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "silence_timeout": 3.0,
    "timeout": 10.0,
    "reconnect_backoff": Backoff(0.1, 0.3),
}
USER = SIM_USER.username
ACCOUNT = SIM_USER.accounts[0].id


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedTradovate]:
    async with SimulatedTradovate(server_heartbeat=0.25, quote_interval=0.02) as server:
        yield server


async def _fresh_snapshot(session: TradovateSession) -> dict[str, dict[int, Any]]:
    """What a brand-new mirror would hold: the server's snapshot, taken over REST."""
    snapshot = await session.post("user/syncrequest", json={"users": [session.token.user_id]})
    store = EntityStore(typed_decoder())
    store.load(snapshot)
    return store.dump()


class RandomAccount:
    """Random but well-formed props events over orders, versions, fills, positions, cash
    balances, order strategies and contracts."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ids = iter(range(10_000_000, 99_000_000))
        self.live: dict[str, dict[int, dict[str, Any]]] = {}

    def _new(self, entity_type: str) -> dict[str, Any]:
        rng = self.rng
        ident = next(self.ids)
        base: dict[str, Any] = {"id": ident, "accountId": ACCOUNT}
        if entity_type == "order":
            base |= {"action": rng.choice(["Buy", "Sell"]), "ordStatus": "Working"}
        elif entity_type == "orderVersion":
            base |= {"orderId": rng.randrange(10_000_000, 10_001_000), "orderQty": 1}
        elif entity_type == "fill":
            base |= {"orderId": rng.randrange(10_000_000, 10_001_000), "qty": 1}
        elif entity_type == "position":
            base |= {"contractId": rng.randrange(1, 50), "netPos": 0, "netPrice": 100.0}
        elif entity_type == "cashBalance":
            base |= {"amount": 50_000.0}
        elif entity_type == "orderStrategy":
            base |= {"status": "ActiveStrategy"}
        else:
            base = {"id": ident, "name": f"C{ident}"}
        return base

    def event(self) -> tuple[str, str, dict[str, Any]]:
        rng = self.rng
        entity_type = rng.choice(
            [
                "order",
                "order",
                "orderVersion",
                "fill",
                "position",
                "cashBalance",
                "orderStrategy",
                "contract",
            ]
        )
        table = self.live.setdefault(entity_type, {})
        roll = rng.random()
        if table and roll < 0.15:
            ident = rng.choice(list(table))
            return entity_type, "Deleted", table.pop(ident)
        if table and roll < 0.6:
            entity = dict(table[rng.choice(list(table))])
            entity["v"] = rng.randrange(1_000_000)
            if entity_type == "order":
                entity["ordStatus"] = rng.choice(["Working", "Filled", "Canceled"])
            if entity_type == "position":
                entity["netPos"] = rng.randrange(-5, 6)
            table[entity["id"]] = entity
            return entity_type, "Updated", entity
        entity = self._new(entity_type)
        table[entity["id"]] = entity
        return entity_type, "Created", entity


SENTINEL = 424_242


async def _push_and_settle(
    sim: SimulatedTradovate, state: AccountState, events: list[Any], mark: int
) -> None:
    """Push events, then a sentinel; the mirror has applied everything once it holds it."""
    await sim.push_props(USER, events)
    await sim.push_props(USER, [("userProperty", "Created", {"id": SENTINEL, "mark": mark})])
    await state.wait_for(
        lambda s: (s.store.get("userProperty", SENTINEL) or {}).get("mark") == mark, timeout=30
    )


async def test_mirror_after_10000_random_events_a_drop_and_a_resync_equals_a_fresh_snapshot(
    sim: SimulatedTradovate,
) -> None:
    account = RandomAccount(seed=13)
    async with (
        TradovateSession(sim.config()) as session,
        session.account_state(**FAST) as state,
        state.changes() as changes,
    ):
        # a consumer that rebuilds its own copy from the change stream only
        copy = EntityStore().dump() | state.store.dump()
        await _push_and_settle(sim, state, [account.event() for _ in range(4_000)], 1)
        assert state.store.dump() == await _fresh_snapshot(session)
        assert state.store.events_applied >= 4_000

        # the socket drops; events pushed while it is down are lost on the wire
        generation = state._ws.generation
        sim.authorize_delay = 0.5
        sim.drop_sockets("trading")
        lost = await sim.push_props(USER, [account.event() for _ in range(3_000)])
        assert lost == 0, "nothing reached the client while the socket was down"
        sim.authorize_delay = 0.0
        await state._ws.wait_connected(after=generation, timeout=30)
        await _push_and_settle(sim, state, [account.event() for _ in range(3_000)], 2)
        assert state.resyncs == 1, "rebuilt from the reconnect's snapshot"
        assert state.store.dump() == await _fresh_snapshot(session)

        # an explicit resync finds nothing to change
        assert await state.resync() == []
        assert state.store.dump() == await _fresh_snapshot(session)

        # the change stream led its consumer to the same state
        while True:
            with anyio.move_on_after(0.5) as scope:
                change = await changes.__anext__()
            if scope.cancelled_caught:
                break
            table = copy.setdefault(change.entity_type, {})
            if change.event == "Deleted":
                table.pop(change.id, None)
            else:
                table[change.id] = change.entity
        assert {t: v for t, v in copy.items() if v} == state.store.dump()
        assert changes.coalesced > 0, "the consumer slept: changes of one entity coalesced"


async def test_wait_for_an_order_to_fill_and_changes_coalesce(sim: SimulatedTradovate) -> None:
    order = {"id": 123, "accountId": ACCOUNT, "ordStatus": "Working", "action": "Buy"}
    async with (
        TradovateSession(sim.config()) as session,
        session.account_state(**FAST) as state,
    ):
        stream = state.changes()
        await sim.push_props(USER, [("order", "Created", order)])
        await state.wait_for(lambda s: s.order(123) is not None, timeout=10)
        assert [o["id"] for o in state.working_orders()] == [123]
        assert [o["id"] for o in state.working_orders("DEMO70001")] == [123]
        assert state.cash("DEMO70001").amount > 0  # a typed CashBalance from the snapshot
        filled = False

        async def wait() -> None:
            nonlocal filled
            await state.wait_for(lambda s: s.order(123)["ordStatus"] == "Filled", timeout=10)
            filled = True

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            updates = [("order", "Updated", order | {"v": i}) for i in range(500)]
            await sim.push_props(
                USER, [*updates, ("order", "Updated", order | {"ordStatus": "Filled"})]
            )
        assert filled and state.working_orders() == []
        # the consumer slept through 502 events about one order: one change, the newest
        change = await stream.__anext__()
        assert (change.event, change.entity["ordStatus"]) == ("Created", "Filled")
        assert stream.coalesced == 501
        # created then deleted before the consumer looked: nothing to see
        await sim.push_props(USER, [("fill", "Created", {"id": 7, "orderId": 123})])
        await sim.push_props(USER, [("fill", "Deleted", {"id": 7})])
        await state.wait_for(lambda s: s.store.events_applied >= 504, timeout=10)
        with anyio.move_on_after(0.3):
            assert await stream.__anext__() is None
        stream.aclose()


async def test_events_after_a_gap_wait_for_the_snapshot(sim: SimulatedTradovate) -> None:
    """Issue 13: props after a dropped backlog were applied over the gap, so the mirror showed
    a state that never existed (here: the fill of an order it still held as working, whose
    ``Filled`` update was dropped) and ``wait_for`` could see it before the fresh snapshot came.
    The mirror now holds its last whole state until the snapshot, which covers them."""
    order = {"id": 5, "accountId": ACCOUNT, "ordStatus": "Working", "action": "Buy"}
    fill = {"id": 9, "accountId": ACCOUNT, "orderId": 5, "qty": 1}
    async with (
        TradovateSession(sim.config()) as session,
        session.account_state(**FAST) as state,
    ):
        await sim.push_props(USER, [("order", "Created", order)])
        await state.wait_for(lambda s: s.order(5) is not None, timeout=10)
        whole = state.store.dump()
        # what the socket hands over when it dropped the order's update: the gap, then a newer
        # event, then the fresh snapshot (as the socket delivers them; no await in between,
        # so the dispatcher of the real socket adds nothing)
        state.handle_event(EVENT_OVERFLOW, Overflow({"props": 1}, ("props",)))
        state.handle_event("props", {"entityType": "fill", "eventType": "Created", "entity": fill})
        assert not state.live
        assert state.store.dump() == whole, "nothing applied over the gap"
        assert state.fills(5) == []
        snapshot = await session.post("user/syncrequest", json={"users": [session.token.user_id]})
        snapshot["orders"] = [o for o in snapshot["orders"] if o["id"] != 5]
        snapshot["orders"].append(order | {"ordStatus": "Filled"})
        snapshot["fills"] = [*snapshot.get("fills", []), fill]
        (sync,) = state._ws.subscriptions
        state.handle_event(EVENT_RESYNCED, (ReplayResult(sync, snapshot),))
        assert state.live and state.resyncs == 1
        assert state.order(5)["ordStatus"] == "Filled"
        assert [f["id"] for f in state.fills(5)] == [9]
        # and events apply again from here on
        state.handle_event("props", {"entityType": "fill", "eventType": "Deleted", "entity": fill})
        assert state.fills(5) == []


async def test_events_handled_while_a_resync_waits_are_kept(sim: SimulatedTradovate) -> None:
    """``resync()`` gets its snapshot some time after the dispatcher went past the answer:
    events handled meanwhile are applied again on top of it, not wiped by it."""
    async with (
        TradovateSession(sim.config()) as session,
        session.account_state(**FAST) as state,
    ):
        sim.inject("user/syncrequest", Fault.delay(1.0), transport="ws")
        newer = {"id": 77, "accountId": ACCOUNT, "ordStatus": "Working", "action": "Sell"}
        async with anyio.create_task_group() as tg:
            tg.start_soon(state.resync)
            await anyio.wait_all_tasks_blocked()  # the request is out, its answer delayed
            state.handle_event(
                "props", {"entityType": "order", "eventType": "Created", "entity": newer}
            )
        assert state.resyncs == 1
        assert state.order(77) is not None, "the event handled during the resync survived it"


# -- P&L ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "price", "value_per_point", "expected"),
    [
        # E-mini S&P 500 (index future, $50 a point, 0.25 ticks)
        ({"netPos": 2, "netPrice": 5800.25}, 5812.75, 50.0, 1250.00),  # 12.5 pt * 50 * 2
        ({"netPos": -1, "netPrice": 5812.50}, 5800.00, 50.0, 625.00),  # short gains
        ({"netPos": 3, "netPrice": 5801.00}, 5800.75, 50.0, -37.50),  # one tick * 50 * 3
        # Crude oil (energy future, 1,000 barrels: $1,000 a point, 0.01 ticks)
        ({"netPos": -3, "netPrice": 71.37}, 70.95, 1000.0, 1260.00),  # 0.42 * 1000 * 3
        ({"netPos": 1, "netPrice": 70.95}, 70.94, 1000.0, -10.00),  # one tick = $10
        ({"netPos": 4, "netPrice": None, "prevPrice": 69.50}, 70.00, 1000.0, 2000.00),
        ({"netPos": 0, "netPrice": 70.00}, 99.00, 1000.0, 0.0),  # flat
    ],
)
def test_open_pnl_hand_computed(
    position: dict[str, Any], price: float, value_per_point: float, expected: float
) -> None:
    assert open_pnl(position, price, value_per_point) == expected


async def test_open_pnl_follows_live_quotes(sim: SimulatedTradovate) -> None:
    async with (
        TradovateSession(sim.config()) as session,
        session.market_data(**FAST) as md,
        session.account_state(market_data=md, **FAST) as state,
    ):
        # the front-month index and energy contracts the simulator lists, typed
        by_product = {}
        for contract in state.store.table("contract").values():
            maturity = state.store.get("contractMaturity", contract.contract_maturity_id)
            product = state.store.get("product", maturity.product_id)
            by_product.setdefault(product.name, contract)
        es, cl = by_product["ES"], by_product["CL"]
        assert state.value_per_point(es.id) == 50.0
        assert state.value_per_point(cl.id) == 1000.0
        positions = [
            {"id": 1, "accountId": ACCOUNT, "contractId": es.id, "netPos": 2, "netPrice": 5800.25},
            {"id": 2, "accountId": ACCOUNT, "contractId": cl.id, "netPos": -3, "netPrice": 71.37},
        ]
        await sim.push_props(USER, [("position", "Created", p) for p in positions])
        await state.wait_for(
            lambda s: len(s.positions(ACCOUNT)) == 2 and s.account_pnl(ACCOUNT) is not None,
            timeout=10,
        )
        es_price, cl_price = state.prices[es.id], state.prices[cl.id]
        expected_es = round((es_price - 5800.25) * 50 * 2, 2)
        expected_cl = round((cl_price - 71.37) * 1000 * -3, 2)
        assert state.open_pnl(state.store.get("position", 1)) == expected_es
        assert state.open_pnl(state.store.get("position", 2)) == expected_cl
        assert state.account_pnl("DEMO70001") == round(expected_es + expected_cl, 2)
        # the prices are the simulator's trades of those contracts
        assert es_price % 0.25 == 0 and 5000 < es_price < 7000 and 40 < cl_price < 100
        # a fill closing the crude position: its P&L is 0 from the next event on
        await sim.push_props(USER, [("position", "Updated", positions[1] | {"netPos": 0})])
        await state.wait_for(lambda s: s.open_pnl(s.store.get("position", 2)) == 0.0, timeout=10)


def test_store_changes_and_snapshot_differences() -> None:
    store = EntityStore()
    first = store.load({"positions": [{"id": 1, "netPos": 1}], "users": "bad"})
    assert [(c.event, c.id) for c in first] == [("Created", 1)]
    changes = store.apply(
        {
            "entityType": "position",
            "eventType": "Updated",
            "entity": [{"id": 1, "netPos": 2}, {"id": 2}],
        }
    )
    assert [(c.event, c.id) for c in changes] == [("Updated", 1), ("Created", 2)]
    assert store.apply({"entityType": "position", "eventType": "Bogus", "entity": {"id": 3}}) == []
    assert store.apply({"entityType": "position", "eventType": "Created", "entity": {"x": 1}}) == []
    assert store.ignored == 2
    diff = store.load({"positions": [{"id": 1, "netPos": 2}], "cashBalances": [{"id": 9}]})
    assert sorted((c.entity_type, c.event, c.id, c.resync) for c in diff) == [
        ("cashBalance", "Created", 9, True),
        ("position", "Deleted", 2, True),
    ]
    assert isinstance(diff[0], Change)


async def test_props_dropped_by_the_socket_buffer_rebuild_the_mirror(
    sim: SimulatedTradovate,
) -> None:
    """A socket buffer of four events under a burst of props: the socket drops the backlog,
    asks for a fresh snapshot and hands it over (``overflow``, then ``resynced``); the mirror
    rebuilds from it and ends equal to a fresh snapshot."""
    account = RandomAccount(seed=7)
    async with (
        TradovateSession(sim.config()) as session,
        session.account_state(**FAST, event_buffer=4) as state,
    ):
        for _ in range(20):
            await sim.push_props(USER, [account.event() for _ in range(500)], per_frame=1)
            if state._ws.stats.dropped_events:
                break
        assert state._ws.stats.dropped_events > 0
        await state.wait_for(lambda s: s.resyncs >= 1, timeout=30)
        await _push_and_settle(sim, state, [account.event() for _ in range(10)], 3)
        assert state.store.dump() == await _fresh_snapshot(session)
