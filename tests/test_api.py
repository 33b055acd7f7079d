"""The typed API over REST and over a trading socket, against the simulator, for every entity
operation and every command of the catalogue."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tradovate_async import TradovateSession, TradovateWebSocket, api
from tradovate_async._catalogue import CommandSpec, EntitySpec, load_catalogue
from tradovate_async._errors import APIError, InvalidResponseError, RequestFailedError
from tradovate_async.api._base import add_command_preparer
from tradovate_async.sim import SimAccount, SimPosition, SimulatedTradovate, SimUser
from tradovate_async.sim._entities import TRADING_ENTITIES as TRADING

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = load_catalogue()
ENTITIES = [e for e in CATALOGUE.entities.values() if e.operations]
COMMANDS = [c for c in CATALOGUE.commands.values() if not c.session_only]
USER = SimUser(accounts=(SimAccount(positions=(SimPosition("ES", 2), SimPosition("CL", -1))),))
SOCKET: dict[str, Any] = {"heartbeat_interval": 0.5, "timeout": 5.0}


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[
    tuple[SimulatedTradovate, TradovateSession, TradovateWebSocket]
]:
    async with SimulatedTradovate(users=[USER], quote_interval=None) as sim:
        async with TradovateSession(sim.config()) as session:
            async with session.websocket(**SOCKET) as ws:
                yield sim, session, ws


def attribute(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


# -- the generated code is what the catalogue says --------------------------------------------


def test_generated_modules_match_the_catalogue() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/generate_api.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_catalogue_size_and_source() -> None:
    assert "arlenner/api-doc-20-dev" in CATALOGUE.source["document"]
    assert len([e for e in CATALOGUE.entities.values() if e.model]) >= 54
    assert len(CATALOGUE.operations) >= 261 and len(CATALOGUE.commands) >= 64
    for needed in ("order/placeorder", "order/placeoso", "order/liquidateposition"):
        assert needed in CATALOGUE.commands
    assert CATALOGUE.entities["position"].master == "account"
    assert CATALOGUE.entities["position"].master_field == "accountId"


@pytest.mark.parametrize("spec", ENTITIES, ids=lambda s: s.name)
def test_models_use_tradovate_field_names(spec: EntitySpec) -> None:
    assert spec.model is not None
    model = getattr(api, spec.model)
    encoded = {f.encode_name for f in msgspec.structs.fields(model)}
    assert encoded == {f.wire for f in CATALOGUE.types[spec.model]}
    assert {f.name for f in msgspec.structs.fields(model)} == {
        f.name for f in CATALOGUE.types[spec.model]
    }
    assert attribute(spec.name) in api.Api.__annotations__


# -- decoding -------------------------------------------------------------------------------

POSITION = {
    "id": 1,
    "accountId": 70001,
    "contractId": 2,
    "timestamp": "2026-12-01T14:30:00.123Z",
    "tradeDate": {"year": 2026, "month": 12, "day": 1},
    "netPos": 1,
    "netPrice": 5870.25,
    "bought": 1,
    "boughtValue": 5870.25,
    "sold": 0,
    "soldValue": 0.0,
    "prevPos": 0,
}


def test_unknown_fields_are_ignored() -> None:
    raw = msgspec.json.encode([{**POSITION, "brandNewField": {"x": [1, 2]}, "another": None}])
    [position] = api._base.decode_answer("position/list", raw, list[api.Position])
    assert position.net_price == 5870.25 and not hasattr(position, "brand_new_field")


def test_unknown_enum_values_are_kept_as_text() -> None:
    order = {
        "id": 5,
        "accountId": 70001,
        "timestamp": "2026-12-01T14:30:00Z",
        "action": "SellShort",  # not in the documented Buy/Sell
        "ordStatus": "SomethingNew",
        "admin": False,
    }
    for raw in (msgspec.json.encode(order), order):
        decoded = api._base.decode_answer("order/item", raw, api.Order)
        assert decoded.ord_status == "SomethingNew" and decoded.action == "SellShort"


def test_datetimes_are_aware_ids_are_ints_and_models_are_frozen() -> None:
    position = api._base.decode_answer("position/item", POSITION, api.Position)
    assert position.timestamp == dt.datetime(2026, 12, 1, 14, 30, 0, 123000, tzinfo=dt.UTC)
    assert isinstance(position.id, int) and isinstance(position.account_id, int)
    with pytest.raises(AttributeError):
        position.net_pos = 3  # type: ignore[misc]
    naive = {**POSITION, "timestamp": "2026-12-01T14:30:00"}
    with pytest.raises(InvalidResponseError, match="position/item"):
        api._base.decode_answer("position/item", naive, api.Position)
    with pytest.raises(InvalidResponseError, match="id"):
        api._base.decode_answer("position/item", {**POSITION, "id": "7"}, api.Position)


@pytest.mark.parametrize(
    "raw",
    [
        b'[{"id": 1, "unknown": ' + b"[" * 200_000 + b"]" * 200_000 + b"}]",
        b"[1, 2, 3]",
        b'{"id": 1}',
        b"[{]",
    ],
    ids=["deeply-nested-unknown-field", "not-objects", "not-a-list", "not-json"],
)
def test_hostile_answers_are_typed_errors(raw: bytes) -> None:
    with pytest.raises(InvalidResponseError, match="position/list"):
        api._base.decode_answer("position/list", raw, list[api.Position])


def test_secrets_stay_out_of_model_reprs() -> None:
    answer = api.AccessTokenResponse(access_token="eyJsecret-token-value", user_id=1)
    assert "eyJsecret" not in repr(answer) and "<redacted>" in repr(answer)
    assert answer.access_token == "eyJsecret-token-value"


# -- every entity operation over REST and over the socket -----------------------------------


@pytest.mark.parametrize("spec", ENTITIES, ids=lambda s: s.name)
async def test_every_entity_operation(spec: EntitySpec) -> None:
    async with connected() as (sim, session, ws):
        records = sim.entities(spec.name)
        for which in (session.api, ws.api):
            await exercise(getattr(which, attribute(spec.name)), spec, records)


async def exercise(endpoint: Any, spec: EntitySpec, records: list[dict[str, Any]]) -> None:
    model = getattr(api, spec.model or "")
    ids = [r["id"] for r in records]
    if "list" in spec.operations:
        listed = await endpoint.list()
        assert [m.id for m in listed] == ids and all(isinstance(m, model) for m in listed)
    if "item" in spec.operations:
        if ids:
            assert (await endpoint.item(ids[0])).id == ids[0]
        else:
            with pytest.raises(APIError) as caught:
                await endpoint.item(123456789)
            assert caught.value.status == 404 or "404" in str(caught.value)
    if "items" in spec.operations:
        assert [m.id for m in await endpoint.items(ids)] == ids
    named = [r for r in records if isinstance(r.get("name"), str)]
    if "find" in spec.operations and named:
        assert (await endpoint.find(named[0]["name"])).id == named[0]["id"]
    if "suggest" in spec.operations:
        found = await endpoint.suggest(named[0]["name"] if named else "zzz-none", 5)
        assert len(found) <= 5
        assert [m.id for m in found][:1] == ([named[0]["id"]] if named else [])
        assert not await endpoint.suggest("zzz-none", 5)
    if "deps" in spec.operations and records:
        field = spec.master_field or "id"
        master = records[0][field]
        expected = [r["id"] for r in records if r[field] == master]
        assert [m.id for m in await endpoint.deps(master)] == expected
        assert [m.id for m in await endpoint.ldeps([master, 999_999_999])] == expected


# -- every command over REST and over the socket --------------------------------------------


def front(sim: SimulatedTradovate, product: str) -> dict[str, Any]:
    product_id = next(p["id"] for p in sim.entities("product") if p["name"] == product)
    maturity = next(
        m["id"]
        for m in sim.entities("contractMaturity")
        if m["productId"] == product_id and m["isFront"]
    )
    return next(c for c in sim.entities("contract") if c["contractMaturityId"] == maturity)


def sample_value(sim: SimulatedTradovate, owner: str, field: Any) -> Any:
    kind = field.kind["kind"]
    if kind == "int" and field.wire.endswith("Id"):
        target = field.wire[:-2]
        records = sim.entities(target) if target in CATALOGUE.entities else []
        return records[0]["id"] if records else 1
    if kind == "enum":
        return field.kind["values"][0]
    if kind == "ref":
        return build_model(sim, field.kind["name"])
    return {
        "int": 1,
        "float": 1.0,
        "str": "sim",
        "bool": False,
        "datetime": dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        "list": [],
    }[kind]


def build_model(sim: SimulatedTradovate, name: str) -> Any:
    fields = CATALOGUE.types[name]
    return getattr(api, name)(**{f.name: sample_value(sim, name, f) for f in fields if f.required})


async def command_kwargs(
    sim: SimulatedTradovate, spec: CommandSpec, which: api.Api
) -> dict[str, Any]:
    es = front(sim, "ES")
    account = {"account_id": 70001, "account_spec": "DEMO70001"}
    order = {**account, "action": "Buy", "symbol": es["name"], "order_qty": 1}
    limit = {**order, "order_type": "Limit", "price": 100.25, "is_automated": True}
    bracket = api.RestrainedOrderVersion(action="Sell", order_type="Limit", price=110.0)
    match spec.endpoint:
        case "order/placeorder":
            return limit
        case "order/placeoso":
            return {**limit, "bracket1": bracket}
        case "order/placeoco":
            stop = api.RestrainedOrderVersion(action="Sell", order_type="Stop", stop_price=90.0)
            return {**limit, "action": "Sell", "price": 120.0, "other": stop}
        case "order/cancelorder" | "order/modifyorder":
            placed = await which.order.place_order(**limit)
            assert placed.order_id is not None
            if spec.endpoint == "order/cancelorder":
                return {"order_id": placed.order_id}
            return {
                "order_id": placed.order_id,
                "order_qty": 2,
                "order_type": "Limit",
                "price": 101.0,
            }
        case "order/liquidateposition":
            return {"account_id": 70001, "contract_id": es["id"], "admin": False}
        case "cashBalance/getcashbalancesnapshot":
            return {"account_id": 70001}
        case "contract/rollcontract":
            return {"name": es["name"], "forward": True}
    kwargs: dict[str, Any] = {}
    if spec.request is not None:
        for field in CATALOGUE.types[spec.request]:
            if field.required:
                kwargs[field.name] = sample_value(sim, spec.request, field)
        if spec.name == "update":
            kwargs["id"] = sim.entities(spec.entity)[0]["id"]
    return kwargs


@pytest.mark.parametrize("spec", COMMANDS, ids=lambda s: s.endpoint)
async def test_every_command(spec: CommandSpec) -> None:
    async with connected() as (sim, session, ws):
        for which in (session.api, ws.api):
            method = getattr(getattr(which, attribute(spec.entity)), spec.name)
            answer = await method(**await command_kwargs(sim, spec, which))
            assert isinstance(answer, getattr(api, spec.answer))


async def test_orders_through_the_api_change_the_simulator() -> None:
    async with connected() as (sim, session, ws):
        es = front(sim, "ES")
        placed = await session.api.order.place_order(
            account_id=70001,
            account_spec="DEMO70001",
            symbol=es["name"],
            action="Buy",
            order_type="Limit",
            price=sim.price(es["name"]) - 500.0,  # far below the market: it rests
            order_qty=1,
            is_automated=True,
        )
        [order] = await ws.api.order.deps(70001)
        assert order.id == placed.order_id and order.ord_status == "Working"
        assert order.contract_id == es["id"]
        await ws.api.order.cancel_order(order_id=order.id)
        assert (await session.api.order.item(order.id)).ord_status == "Canceled"
        positions = await session.api.position.ldeps([70001])
        assert sorted(p.net_pos for p in positions) == [-1, 2]
        snapshot = await session.api.cash_balance.get_cash_balance_snapshot(account_id=70001)
        assert snapshot.total_cash_value == 50_000.0
        contract = await session.api.contract.find(es["name"])
        assert contract.id == es["id"]


async def test_command_preparers_fill_in_or_refuse_before_sending() -> None:
    async with connected() as (sim, session, ws):
        es = front(sim, "ES")

        def automated(call: api.ApiCall) -> api.ApiCall:
            assert call.body is not None and not call.read_only
            return dataclasses.replace(call, body={**call.body, "text": "prepared"})

        def refuse(call: api.ApiCall) -> api.ApiCall:
            raise ValueError("refused before sending")

        remove = add_command_preparer("order/placeOrder", automated)
        try:
            placed = await ws.api.order.place_order(
                account_id=70001, symbol=es["name"], action="Sell", order_type="Market", order_qty=1
            )
        finally:
            remove()
        [version] = [v for v in sim.entities("orderVersion") if v["orderId"] == placed.order_id]
        assert version["text"] == "prepared"
        remove = add_command_preparer("order/placeorder", refuse)
        before = sim.count("order/placeorder")
        try:
            with pytest.raises(ValueError, match="refused"):
                await session.api.order.place_order(
                    account_id=70001,
                    symbol=es["name"],
                    action="Buy",
                    order_type="Market",
                    order_qty=1,
                )
        finally:
            remove()
        assert sim.count("order/placeorder") == before


# -- query parameters are checked like the real server -------------------------------------


async def test_query_parameters_are_validated() -> None:
    async with connected() as (sim, session, ws):
        token = session.token.access_token.reveal()
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=sim.api_url, headers=headers) as http:
            missing = await http.get("/position/item")
            assert missing.status_code == 400
            assert missing.text.startswith("No usable value for id")
            bad = await http.get("/position/items", params={"ids": "1,x"})
            assert bad.status_code == 400 and "ids" in bad.text
            ok = await http.get("/cashBalance/items", params={"ids": "70001,2,3"})
            assert [b["id"] for b in ok.json()] == [70001]
            no_text = await http.get("/contract/suggest", params={"l": "3"})
            assert no_text.status_code == 400 and "No usable value for t" in no_text.text
        with pytest.raises(RequestFailedError) as caught:
            await ws.request("position/deps", params={"masterid": "abc"})
        assert caught.value.status == 400
        with pytest.raises(TypeError):
            await session.api.position.items([1, "2"])  # type: ignore[list-item]


async def test_trading_entities_decode_after_orders_fill() -> None:
    """The order engine's records (orders, versions, commands, fills, positions...) decode into
    the generated models through both transports."""
    async with connected() as (sim, session, ws):
        es = front(sim, "ES")
        order = {"account_id": 70001, "symbol": es["name"], "order_qty": 1, "order_type": "Market"}
        await session.api.order.place_order(action="Buy", **order)
        await ws.api.order.place_order(action="Sell", **order)
        filled = [e for e in TRADING if sim.entities(e)]
        assert {"order", "fill"} <= set(filled)
        for name in filled:
            spec = CATALOGUE.entities[name]
            for which in (session.api, ws.api):
                await exercise(getattr(which, attribute(name)), spec, sim.entities(name))
