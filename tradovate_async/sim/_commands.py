"""Default answers for every command of the catalogue, and a basic order desk.

:func:`install` registers a handler for each command endpoint. Most commands get the generic
handler: it answers with the command's answer type, stores any entity the answer carries and
publishes it as a ``props`` event. A few get plausible specific answers
(``cashBalance/getcashbalancesnapshot``, ``contract/rollcontract``, the ``create``/``update``
commands of entities, ``user/getaccounttradingpermissions``).

The order commands get a basic desk: orders are validated like the server's
``PlaceOrderResult`` and stored as ``Working``; cancel, modify, OSO/OCO and liquidation update
the store. It does not fill anything: the order engine (``sim/_orders.py``) replaces these
handlers with :meth:`Routes.register` to make orders fill, move positions and cash.
"""

from __future__ import annotations

import logging
from typing import Any

from ._entities import EntityStore
from ._instruments import PRODUCTS, maturities
from ._market import iso_time
from ._reply import Reply
from ._routes import CommandContext, Routes
from ._types import SimAccount, SimUser

__all__ = ["install", "props_event"]

logger = logging.getLogger(__name__)

_ORDER_TYPES = frozenset(
    {"Limit", "MIT", "Market", "QTS", "Stop", "StopLimit", "TrailingStop", "TrailingStopLimit"}
)
_TIME_IN_FORCE = frozenset({"Day", "FOK", "GTC", "GTD", "IOC"})
_FAILURE_FIELDS = frozenset({"errorText", "failureReason", "failureText", "errorCode", "error"})
_GOOD_ENUMS = ("OK", "Success", "Active", "Completed")


def props_event(
    store: EntityStore, entity: str, record: dict[str, Any], event_type: str
) -> list[tuple[str, dict[str, Any]]]:
    """The ``props`` event for a changed record, addressed to its owner (or everyone)."""
    owner = store.owner(entity, record)
    names = [owner] if owner is not None else list(store.users)
    event = {"entityType": entity, "eventType": event_type, "entity": dict(record)}
    return [(name, event) for name in names if name in store.users]


def install(routes: Routes) -> None:
    """Register the default handler of every (non-token) catalogue command."""
    specific = {
        "cashbalance/getcashbalancesnapshot": cash_snapshot,
        "contract/rollcontract": roll_contract,
        "user/getaccounttradingpermissions": trading_permissions,
        "order/placeorder": place_order,
        "order/cancelorder": cancel_order,
        "order/modifyorder": modify_order,
        "order/liquidateposition": liquidate_position,
        "order/placeoso": place_oso,
        "order/placeoco": place_oco,
    }
    for key, spec in routes.catalogue.commands.items():
        if spec.session_only or key in ("auth/me", "user/syncrequest"):
            continue
        if key in specific:
            routes.register(key, specific[key])
        elif spec.name in ("create", "update"):
            routes.register(key, create_or_update)
        else:
            routes.register(key, generic)


def _model_entity(ctx: CommandContext, model: str) -> str | None:
    for spec in ctx.catalogue.entities.values():
        if spec.model == model:
            return spec.name
    return None


def _context(ctx: CommandContext) -> dict[str, int]:
    account = ctx.body.get("accountId")
    if not isinstance(account, int) and ctx.user.accounts:
        account = ctx.user.accounts[0].id
    out = {"user": ctx.user.user_id}
    if isinstance(account, int):
        out["account"] = account
    return out


def generic(ctx: CommandContext) -> Reply:
    """A successful answer of the command's answer type; entities it carries are stored."""
    answer: dict[str, Any] = {}
    events: list[tuple[str, dict[str, Any]]] = []
    stamp = iso_time(ctx.now)
    for field in ctx.catalogue.types[ctx.spec.answer]:
        kind = field.kind["kind"]
        if field.wire in _FAILURE_FIELDS and not (field.required and kind == "enum"):
            continue
        if kind == "ref":
            entity = _model_entity(ctx, field.kind["name"])
            if entity is not None:
                record = ctx.store.add(entity, ctx.store.sample(entity, _context(ctx), stamp))
                answer[field.wire] = record
                events += props_event(ctx.store, entity, record, "Created")
        elif kind == "list" and field.kind["of"]["kind"] == "ref":
            entity = _model_entity(ctx, field.kind["of"]["name"])
            answer[field.wire] = ctx.store.visible(ctx.user, entity) if entity else []
        elif kind == "int" and field.wire.endswith("Id"):
            target = field.wire[:-2]
            known = target in ctx.catalogue.entities
            answer[field.wire] = (
                ctx.store.next_id(target) if known else ctx.store.next_id("command")
            )
        elif kind == "bool":
            answer[field.wire] = True
        elif kind == "float":
            answer[field.wire] = 0.0
        elif kind == "datetime":
            answer[field.wire] = stamp
        elif kind == "enum":
            values = field.kind["values"]
            answer[field.wire] = next((v for v in _GOOD_ENUMS if v in values), values[0])
    return Reply(200, payload=answer, events=events)


def create_or_update(ctx: CommandContext) -> Reply:
    """``<entity>/create`` stores the body as a new entity; ``update`` changes an existing one."""
    entity = ctx.spec.entity
    if ctx.spec.name == "update":
        ident = ctx.body.get("id")
        record = ctx.store.get(entity, ident)
        if record is None or ctx.store.owner(entity, record) not in (None, ctx.user.username):
            return Reply.json({"errorText": f"{entity} {ident} not found"})
        record = ctx.store.update(entity, record["id"], dict(ctx.body)) or record
        return Reply(200, payload=record, events=props_event(ctx.store, entity, record, "Updated"))
    record = ctx.store.sample(entity, _context(ctx), iso_time(ctx.now))
    record.update({k: v for k, v in ctx.body.items() if k != "id"})
    record = ctx.store.add(entity, record)
    return Reply(200, payload=record, events=props_event(ctx.store, entity, record, "Created"))


def cash_snapshot(ctx: CommandContext) -> Reply:
    account_id = ctx.body.get("accountId")
    balance = ctx.store.get("cashBalance", account_id)
    owner = ctx.store.owner("cashBalance", balance) if balance else None
    if balance is None or owner != ctx.user.username:
        return Reply.json({"errorText": "Access is denied"})
    amount = float(balance.get("amount", 0.0))
    realized = float(balance.get("realizedPnL", 0.0))
    return Reply.json(
        {
            "totalCashValue": amount,
            "totalPnL": realized,
            "initialMargin": 0.0,
            "maintenanceMargin": 0.0,
            "netLiq": amount,
            "openPnL": 0.0,
            "realizedPnL": realized,
            "weekRealizedPnL": float(balance.get("weekRealizedPnL", 0.0)),
        }
    )


def roll_contract(ctx: CommandContext) -> Reply:
    """The front month (or, with ``forward``, the next one) of a symbol's product."""
    name = str(ctx.body.get("name", ""))
    for product in sorted(PRODUCTS, key=lambda p: -len(p.name)):
        if name.startswith(product.name):
            pairs = maturities(product, ctx.now, 2)
            pick = (
                pairs[1]
                if ctx.body.get("forward") and pairs[0]["contract"]["name"] == name
                else pairs[0]
            )
            return Reply.json({"contract": ctx.store.contract(pick["contract"]["name"])})
    return Reply.json({"errorText": f"Unknown contract {name}"})


def trading_permissions(ctx: CommandContext) -> Reply:
    return Reply.json({"tradingPermissions": ctx.store.visible(ctx.user, "tradingPermission")})


# -- the basic order desk -------------------------------------------------------------------


def _failure(reason: str, text: str) -> Reply:
    return Reply.json({"failureReason": reason, "failureText": text})


def _account_for(user: SimUser, body: dict[str, Any]) -> SimAccount | str | None:
    account_id = body.get("accountId")
    spec = body.get("accountSpec")
    if account_id is None and spec is None:
        return None
    for account in user.accounts:
        if account_id is not None and account.id == account_id:
            return account
        if account_id is None and spec in (account.name, user.username):
            return account
    return "Access is denied"


def order_problem(order: dict[str, Any]) -> Reply | None:
    """Why the server would refuse an order's fields (a ``PlaceOrderResult``), or None."""
    action = order.get("action")
    symbol = order.get("symbol")
    qty = order.get("orderQty")
    order_type = order.get("orderType")
    if action not in ("Buy", "Sell"):
        return _failure("UnknownReason", "action must be Buy or Sell")
    if isinstance(symbol, bool) or not isinstance(symbol, str | int) or not str(symbol).strip():
        return _failure("InvalidContract", "Unknown contract")
    if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
        return _failure("UnknownReason", "orderQty must be a positive integer")
    if order_type not in _ORDER_TYPES:
        return _failure("UnknownReason", "Unsupported orderType")
    tif = order.get("timeInForce")
    if tif is not None and tif not in _TIME_IN_FORCE:
        return _failure("UnknownReason", "Unsupported timeInForce")
    for field, types in (("price", ("Limit", "StopLimit")), ("stopPrice", ("Stop", "StopLimit"))):
        value = order.get(field)
        if order_type in types and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            return _failure("InvalidPrice", f"{field} is required for {order_type} orders")
    return None


_VERSION_FIELDS = (
    "orderQty",
    "orderType",
    "price",
    "stopPrice",
    "maxShow",
    "pegDifference",
    "timeInForce",
    "expireTime",
    "text",
)


def _new_order(ctx: CommandContext, account: SimAccount, fields: dict[str, Any]) -> dict[str, Any]:
    """Store an order (only the ``Order`` entity's fields, as the real server sends them) and
    its first ``orderVersion`` (quantity, type, prices)."""
    contract = ctx.store.contract(fields["symbol"])
    order = ctx.store.add(
        "order",
        {
            "accountId": account.id,
            "contractId": contract["id"],
            "timestamp": iso_time(ctx.now),
            "action": fields["action"],
            "ordStatus": "Working",
            "admin": False,
        },
    )
    version = {"orderId": order["id"], **{k: fields[k] for k in _VERSION_FIELDS if k in fields}}
    ctx.store.add("orderVersion", version)
    return order


def _version(ctx: CommandContext, order_id: int) -> dict[str, Any]:
    """The latest ``orderVersion`` of an order."""
    versions = [v for v in ctx.store.values("orderVersion") if v.get("orderId") == order_id]
    return max(versions, key=lambda v: int(v["id"])) if versions else {"orderId": order_id}


def _resolve(ctx: CommandContext) -> SimAccount | Reply:
    account = _account_for(ctx.user, ctx.body)
    if account is None:
        violation = {
            "constraint": "NotNull",
            "value": None,
            "description": "accountId or accountSpec is required",
        }
        return Reply.json({"violations": [violation]})
    if isinstance(account, str):
        return _failure("UnknownReason", account)
    return account


def place_order(ctx: CommandContext) -> Reply:
    """``order/placeorder``: validate, store as ``Working``, publish ``Created``."""
    account = _resolve(ctx)
    if isinstance(account, Reply):
        return account
    problem = order_problem(ctx.body)
    if problem is not None:
        return problem
    order = _new_order(ctx, account, ctx.body)
    logger.debug("order %d placed for %s", order["id"], ctx.user.username)
    return Reply(
        200,
        payload={"orderId": order["id"]},
        events=props_event(ctx.store, "order", order, "Created"),
    )


def _working(ctx: CommandContext, ident: object) -> dict[str, Any] | None:
    order = ctx.store.get("order", ident)
    if order is None or ctx.store.owner("order", order) != ctx.user.username:
        return None
    return order if order.get("ordStatus") == "Working" else None


def cancel_order(ctx: CommandContext) -> Reply:
    """``order/cancelorder``: a ``CommandResult`` and an ``order`` ``Updated`` event."""
    order = _working(ctx, ctx.body.get("orderId"))
    if order is None:
        return _failure("TooLate", "Order not working")
    order.update(ordStatus="Canceled", timestamp=iso_time(ctx.now))
    return Reply(
        200,
        payload={"commandId": ctx.store.next_id("command")},
        events=props_event(ctx.store, "order", order, "Updated"),
    )


def modify_order(ctx: CommandContext) -> Reply:
    order = _working(ctx, ctx.body.get("orderId"))
    if order is None:
        return _failure("TooLate", "Order not working")
    current = _version(ctx, order["id"])
    changes = {k: ctx.body[k] for k in _VERSION_FIELDS if k in ctx.body}
    changed = {**order, **current, **changes, "symbol": order["contractId"]}
    problem = order_problem(changed)
    if problem is not None:
        return problem
    version = {k: v for k, v in {**current, **changes}.items() if k != "id"}
    ctx.store.add("orderVersion", version)
    order["timestamp"] = iso_time(ctx.now)
    return Reply(
        200,
        payload={"commandId": ctx.store.next_id("command")},
        events=props_event(ctx.store, "order", order, "Updated"),
    )


def _bracket(ctx: CommandContext, parent: dict[str, Any], key: str) -> dict[str, Any] | Reply:
    bracket = ctx.body[key]
    if not isinstance(bracket, dict):
        return _failure("UnknownReason", f"{key} must be an object")
    fields = {"orderQty": parent["orderQty"], **bracket, "symbol": parent["symbol"]}
    fields.pop("clOrdId", None)
    problem = order_problem(fields)
    return problem if problem is not None else fields


def place_oso(ctx: CommandContext) -> Reply:
    """``order/placeoso``: the entry order and its one or two brackets, all ``Working``."""
    account = _resolve(ctx)
    if isinstance(account, Reply):
        return account
    problem = order_problem(ctx.body)
    if problem is not None:
        return problem
    brackets = []
    for key in ("bracket1", "bracket2"):
        if ctx.body.get(key) is not None:
            fields = _bracket(ctx, ctx.body, key)
            if isinstance(fields, Reply):
                return fields
            brackets.append(fields)
    parent = _new_order(ctx, account, ctx.body)
    payload: dict[str, Any] = {"orderId": parent["id"]}
    events = props_event(ctx.store, "order", parent, "Created")
    for number, fields in enumerate(brackets, 1):
        child = _new_order(ctx, account, fields)
        child["parentId"] = parent["id"]
        payload[f"oso{number}Id"] = child["id"]
        events += props_event(ctx.store, "order", child, "Created")
    return Reply(200, payload=payload, events=events)


def place_oco(ctx: CommandContext) -> Reply:
    """``order/placeoco``: two linked orders (``ocoId`` is the other one's id)."""
    account = _resolve(ctx)
    if isinstance(account, Reply):
        return account
    problem = order_problem(ctx.body)
    if problem is not None:
        return problem
    other = _bracket(ctx, ctx.body, "other")
    if isinstance(other, Reply):
        return other
    first = _new_order(ctx, account, ctx.body)
    second = _new_order(ctx, account, other)
    first["ocoId"], second["ocoId"] = second["id"], first["id"]
    events = props_event(ctx.store, "order", first, "Created")
    events += props_event(ctx.store, "order", second, "Created")
    return Reply(200, payload={"orderId": first["id"], "ocoId": second["id"]}, events=events)


def liquidate_position(ctx: CommandContext) -> Reply:
    """``order/liquidateposition``: a market order that flattens the position."""
    account = _resolve(ctx)
    if isinstance(account, Reply):
        return account
    contract_id = ctx.body.get("contractId")
    net = sum(
        int(p.get("netPos", 0))
        for p in ctx.store.visible(ctx.user, "position")
        if p.get("accountId") == account.id and p.get("contractId") == contract_id
    )
    if net == 0:
        return _failure("UnknownReason", "No position to liquidate")
    fields = {
        "action": "Sell" if net > 0 else "Buy",
        "symbol": contract_id,
        "orderQty": abs(net),
        "orderType": "Market",
        "isAutomated": True,
    }
    order = _new_order(ctx, account, fields)
    return Reply(
        200,
        payload={"orderId": order["id"]},
        events=props_event(ctx.store, "order", order, "Created"),
    )
