"""The simulator's order engine: orders rest, fill against the price path, move positions and cash.

Single-threaded: ``SimState`` calls it under its lock, with the simulator's clock. It keeps its
records in the simulator's :class:`~._entities.EntityStore` (so the catalogue routes list,
item and deps them like any entity) and answers the order commands through handlers it
registers with :class:`~._routes.Routes`, replacing the basic desk of ``_commands``. Every
change is published as a ``props`` event to the owner's trading sockets.

Behaviour (from Tradovate's OpenAPI description of the order endpoints and entities; where the
documents say nothing the engine picks something plausible and says so):

* ``Market`` fills at once at the path price; marketable ``Limit`` orders fill at once at the
  path price; resting ``Limit`` orders fill at their limit when the path reaches it;
  ``Stop`` fills at the path price once it trades through the stop; ``StopLimit`` turns into a
  limit at ``price`` once triggered; ``MIT`` fills at the path price once it touches ``price``.
  ``IOC``/``FOK`` orders that cannot fill at once are cancelled. Trailing and ``QTS`` orders
  are refused as ``Unsupported`` (the simulator's choice).
* Each command creates a ``command`` (with the request's ``clOrdId``, ``commandType``
  New/Modify/Cancel) and a ``commandReport``; each order change an ``executionReport``
  (New, Trade, Replaced, Canceled, Expired); each new or modified order an ``orderVersion``.
* OSO brackets wait as ``Suspended`` until their entry fills (the simulator's choice of
  status), then work for the filled quantity, one cancelling the other. OCO legs cancel each
  other. Cancelling an entry cancels its waiting brackets.
* A fill creates a ``fill``, updates the account's ``position`` for the contract (FIFO lots,
  ``fillPair`` for each closed lot) and books realized profit/loss into its ``cashBalance``
  (price difference × quantity × the product's point value). No commissions.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Iterator, Mapping
from typing import Any, Final, Protocol

from ._commands import props_event
from ._entities import EntityStore, position_entity, trade_date
from ._market import iso_time, symbol_of
from ._md import MarketSim
from ._prices import PricePath, product_spec
from ._reply import Reply
from ._routes import CommandContext, Routes
from ._types import SimAccount, SimUser

__all__ = ["MarketPrices", "OrderEngine", "PriceSource"]

logger = logging.getLogger(__name__)


class PriceSource(Protocol):
    """Prices as the order engine sees them: by contract id and simulator wall-clock time."""

    @property
    def step(self) -> float:
        """Wall-clock seconds between two prices (the path's resolution)."""
        ...

    def price(self, contract_id: int, t: float) -> float: ...

    def tick(self, contract_id: int) -> float: ...

    def point_value(self, contract_id: int) -> float: ...


class MarketPrices:
    """The market-data side's price path (``MarketSim``: one trade per market second), seen
    from the wall clock: market time runs ``speed`` times faster from ``epoch``."""

    def __init__(self, market: MarketSim, epoch: float, speed: float = 1.0) -> None:
        self.market = market
        self.epoch = epoch
        self.speed = speed

    @classmethod
    def default(cls, epoch: float) -> MarketPrices:
        return cls(MarketSim(PricePath(0)), epoch)

    @property
    def step(self) -> float:
        return 1.0 / self.speed

    def price(self, contract_id: int, t: float) -> float:
        return self.market.price(contract_id, self.epoch + (t - self.epoch) * self.speed)

    def tick(self, contract_id: int) -> float:
        return product_spec(symbol_of(contract_id)).tick_size

    def point_value(self, contract_id: int) -> float:
        return product_spec(symbol_of(contract_id)).value_per_point


def samples(
    prices: PriceSource, contract_id: int, start: float, end: float, limit: int = 20_000
) -> Iterator[tuple[float, float]]:
    """``(t, price)`` after ``start`` up to ``end``, one per price step (coarser when the span
    would need more than ``limit``), ``end`` included."""
    if end <= start:
        return
    step = max(prices.step, (end - start) / limit)
    t = start + step
    while t < end:
        yield t, prices.price(contract_id, t)
        t += step
    yield end, prices.price(contract_id, end)


def on_tick(price: float, tick: float) -> float:
    """``price`` rounded to the tick grid."""
    return round(round(price / tick) * tick, 9)


ORDER_TYPES: Final = frozenset(
    {"Limit", "MIT", "Market", "QTS", "Stop", "StopLimit", "TrailingStop", "TrailingStopLimit"}
)
SUPPORTED: Final = frozenset({"Limit", "MIT", "Market", "Stop", "StopLimit"})
TIME_IN_FORCE: Final = frozenset({"Day", "FOK", "GTC", "GTD", "IOC"})
_LIVE: Final = ("Working", "Suspended")
Event = tuple[str, dict[str, Any]]


@dataclasses.dataclass(slots=True, eq=False)
class _Order:
    """What the engine needs of a live order; its ``order``/``orderVersion`` records are in
    the store (``record`` is the stored ``order`` dict, updated in place)."""

    record: dict[str, Any]
    username: str
    action: str
    order_type: str
    qty: int
    price: float | None
    stop_price: float | None
    tif: str
    expire_at: float | None
    text: str | None
    since: float  # placed, activated or changed: the path is watched from then on
    triggered: bool = False

    @property
    def id(self) -> int:
        return int(self.record["id"])

    @property
    def buy(self) -> bool:
        return self.action == "Buy"

    @property
    def status(self) -> str:
        return str(self.record["ordStatus"])

    def version(self, order_id: int) -> dict[str, Any]:
        version: dict[str, Any] = {
            "orderId": order_id,
            "orderQty": self.qty,
            "orderType": self.order_type,
            "timeInForce": self.tif,
        }
        for key, value in (
            ("price", self.price),
            ("stopPrice", self.stop_price),
            ("expireTime", iso_time(self.expire_at) if self.expire_at is not None else None),
            ("text", self.text),
        ):
            if value is not None:
                version[key] = value
        return version


def _failure(reason: str, text: str) -> Reply:
    return Reply.json({"failureReason": reason, "failureText": text})


def _is_price(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _price_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and _is_price(value) else None


def _account_for(user: SimUser, body: Mapping[str, Any]) -> SimAccount | Reply:
    account_id = body.get("accountId")
    spec = body.get("accountSpec")
    if account_id is None and spec is None:
        violation = {
            "constraint": "NotNull",
            "value": None,
            "description": "accountId or accountSpec is required",
        }
        return Reply.json({"violations": [violation]})
    for account in user.accounts:
        if account_id is not None and account.id == account_id:
            return account
        if account_id is None and spec in (account.name, user.username):
            return account
    return _failure("UnknownReason", "Access is denied")


class _Desk:
    """Parsing and recording of orders and commands (the engine's bookkeeping half)."""

    def __init__(self, store: EntityStore) -> None:
        self.store = store
        self.live: dict[int, _Order] = {}
        self.events: list[Event] = []

    def publish(self, entity: str, record: dict[str, Any], event_type: str) -> None:
        self.events += props_event(self.store, entity, record, event_type)

    def add(self, entity: str, record: dict[str, Any]) -> dict[str, Any]:
        stored = self.store.add(entity, record)
        self.publish(entity, stored, "Created")
        return stored

    def reply(self, payload: dict[str, Any]) -> Reply:
        events, self.events = self.events, []
        return Reply(200, payload=payload, events=events)

    def parse(
        self, user: SimUser, body: Mapping[str, Any], now: float, *, leg: bool
    ) -> tuple[_Order, int, int] | Reply:
        """An order (not yet stored), its contract id and quantity, or the failure answer."""
        action, order_type = body.get("action"), body.get("orderType")
        if action not in ("Buy", "Sell"):
            return _failure("UnknownReason", "action must be Buy or Sell")
        if order_type not in ORDER_TYPES:
            return _failure("UnknownReason", "Unsupported orderType")
        if order_type not in SUPPORTED:
            return _failure("Unsupported", f"{order_type} orders are not simulated")
        contract_id = qty = 0
        if not leg:
            symbol = body.get("symbol")
            if isinstance(symbol, bool) or not isinstance(symbol, str | int) or not str(symbol):
                return _failure("InvalidContract", "Unknown contract")
            contract_id = int(self.store.contract(symbol)["id"])
            qty = body.get("orderQty")  # type: ignore[assignment]
            if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                return _failure("UnknownReason", "orderQty must be a positive integer")
        tif = body.get("timeInForce") or "Day"
        if tif not in TIME_IN_FORCE:
            return _failure("UnknownReason", "Unsupported timeInForce")
        needs = {"Limit": ("price",), "MIT": ("price",), "Stop": ("stopPrice",)}.get(
            order_type, ("price", "stopPrice") if order_type == "StopLimit" else ()
        )
        for field in needs:
            if not _is_price(body.get(field)):
                return _failure("InvalidPrice", f"{field} is required for {order_type} orders")
        expire_at: float | None = None
        if tif == "GTD":
            try:
                expiry = str(body.get("expireTime"))
                expire_at = dt.datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp()
            except ValueError:
                return _failure("UnknownReason", "expireTime is required for GTD orders")
        text = body.get("text")
        order = _Order(
            record={},
            username=user.username,
            action=str(action),
            order_type=str(order_type),
            qty=qty,
            price=_price_or_none(body.get("price")),
            stop_price=_price_or_none(body.get("stopPrice")),
            tif=str(tif),
            expire_at=expire_at,
            text=text if isinstance(text, str) else None,
            since=now,
        )
        return order, contract_id, qty

    def accept(
        self,
        order: _Order,
        account_id: int,
        contract_id: int,
        body: Mapping[str, Any],
        now: float,
        **links: int,
    ) -> None:
        """Store a new order (entity, version), its New command and report."""
        record: dict[str, Any] = {
            "accountId": account_id,
            "contractId": contract_id,
            "timestamp": iso_time(now),
            "action": order.action,
            "ordStatus": "Suspended" if "parentId" in links else "Working",
            "admin": False,
            **links,
        }
        order.record = self.add("order", record)
        self.live[order.id] = order
        self.add("orderVersion", order.version(order.id))
        command_id = self.command(order, "New", body, now)
        self.execution(order, "New", now, command_id)

    def command(self, order: _Order, kind: str, body: Mapping[str, Any], now: float) -> int:
        command: dict[str, Any] = {
            "orderId": order.id,
            "timestamp": iso_time(now),
            "commandType": kind,
            "commandStatus": "AtExecution",
            "isAutomated": body.get("isAutomated") is True,
        }
        cl_ord_id = body.get("clOrdId")
        if isinstance(cl_ord_id, str) and cl_ord_id:
            command["clOrdId"] = cl_ord_id
        stored = self.add("command", command)
        report = {
            "commandId": stored["id"],
            "timestamp": iso_time(now),
            "commandStatus": "AtExecution",
            "ordStatus": order.status,
        }
        self.add("commandReport", report)
        return int(stored["id"])

    def execution(
        self, order: _Order, exec_type: str, now: float, command_id: int = 0, **extra: Any
    ) -> None:
        record = order.record
        report: dict[str, Any] = {
            "commandId": command_id or order.id,
            "name": str(order.id),
            "accountId": record["accountId"],
            "contractId": record["contractId"],
            "timestamp": iso_time(now),
            "tradeDate": trade_date(now),
            "orderId": order.id,
            "execType": exec_type,
            "ordStatus": order.status,
            "action": order.action,
            "cumQty": order.qty if order.status == "Filled" else 0,
            **extra,
        }
        self.add("executionReport", report)

    def set_status(self, order: _Order, status: str, now: float) -> None:
        order.record.update(ordStatus=status, timestamp=iso_time(now))
        self.publish("order", order.record, "Updated")
        if status not in _LIVE:
            self.live.pop(order.id, None)


class OrderEngine(_Desk):
    """Orders that rest, trigger and fill against the price path; positions and cash."""

    def __init__(self, store: EntityStore, prices: PriceSource) -> None:
        super().__init__(store)
        self.prices = prices
        self._lots: dict[int, collections.deque[list[Any]]] = {}
        self._last: float | None = None

    def install(self, routes: Routes) -> None:
        """Answer the order commands (replacing the basic desk's handlers)."""
        for endpoint, handler in (
            ("order/placeorder", self.place),
            ("order/placeoso", self.place_oso),
            ("order/placeoco", self.place_oco),
            ("order/modifyorder", self.modify),
            ("order/cancelorder", self.cancel),
            ("order/liquidateposition", self.liquidate),
        ):
            routes.register(endpoint, handler)

    # ------------------------------------------------------------------ commands

    def place(self, ctx: CommandContext) -> Reply:
        """``order/placeorder`` -> ``PlaceOrderResult``."""
        self.advance(ctx.now)
        account = _account_for(ctx.user, ctx.body)
        if isinstance(account, Reply):
            return account
        parsed = self.parse(ctx.user, ctx.body, ctx.now, leg=False)
        if isinstance(parsed, Reply):
            return parsed
        order, contract_id, _ = parsed
        self.accept(order, account.id, contract_id, ctx.body, ctx.now)
        self._work(order, ctx.now)
        return self.reply({"orderId": order.id})

    def _legs(
        self, ctx: CommandContext, fields: tuple[str, ...]
    ) -> list[tuple[_Order, Mapping[str, Any]]] | Reply:
        legs: list[tuple[_Order, Mapping[str, Any]]] = []
        for field in fields:
            spec = ctx.body.get(field)
            if spec is None:
                continue
            if not isinstance(spec, Mapping):
                return _failure("UnknownReason", f"{field} must be an object")
            leg = self.parse(ctx.user, spec, ctx.now, leg=True)
            if isinstance(leg, Reply):
                return leg
            legs.append((leg[0], spec))
        return legs

    def place_oso(self, ctx: CommandContext) -> Reply:
        """``order/placeoso`` -> ``PlaceOsoResult``: brackets wait for the entry's fill."""
        self.advance(ctx.now)
        account = _account_for(ctx.user, ctx.body)
        if isinstance(account, Reply):
            return account
        parsed = self.parse(ctx.user, ctx.body, ctx.now, leg=False)
        if isinstance(parsed, Reply):
            return parsed
        legs = self._legs(ctx, ("bracket1", "bracket2"))
        if isinstance(legs, Reply):
            return legs
        if not legs:
            return _failure("UnknownReason", "bracket1 is required")
        entry, contract_id, qty = parsed
        self.accept(entry, account.id, contract_id, ctx.body, ctx.now)
        payload: dict[str, Any] = {"orderId": entry.id}
        for number, (leg, spec) in enumerate(legs, start=1):
            leg.qty = qty
            self.accept(leg, account.id, contract_id, spec, ctx.now, parentId=entry.id)
            payload[f"oso{number}Id"] = leg.id
        if len(legs) == 2:  # the two brackets cancel each other
            first, second = legs[0][0], legs[1][0]
            first.record["ocoId"], second.record["ocoId"] = second.id, first.id
        self._work(entry, ctx.now)
        return self.reply(payload)

    def place_oco(self, ctx: CommandContext) -> Reply:
        """``order/placeoco`` -> ``PlaceOcoResult``: ``ocoId`` is the other order's id."""
        self.advance(ctx.now)
        account = _account_for(ctx.user, ctx.body)
        if isinstance(account, Reply):
            return account
        parsed = self.parse(ctx.user, ctx.body, ctx.now, leg=False)
        if isinstance(parsed, Reply):
            return parsed
        legs = self._legs(ctx, ("other",))
        if isinstance(legs, Reply):
            return legs
        if not legs:
            return _failure("UnknownReason", "other is required")
        first, contract_id, qty = parsed
        other, spec = legs[0]
        other.qty = qty
        self.accept(first, account.id, contract_id, ctx.body, ctx.now)
        self.accept(other, account.id, contract_id, spec, ctx.now)
        first.record["ocoId"], other.record["ocoId"] = other.id, first.id
        self._work(first, ctx.now)
        if other.status == "Working":
            self._work(other, ctx.now)
        return self.reply({"orderId": first.id, "ocoId": other.id})

    def _own(self, ctx: CommandContext) -> _Order | None:
        order = self.live.get(ctx.body.get("orderId"))  # type: ignore[arg-type]
        return order if order is not None and order.username == ctx.user.username else None

    def modify(self, ctx: CommandContext) -> Reply:
        """``order/modifyorder`` -> ``CommandResult``: new quantity, type, prices."""
        self.advance(ctx.now)
        order = self._own(ctx)
        if order is None:
            return _failure("TooLate", "Order is not working")
        changed = self.parse(ctx.user, {"action": order.action, **ctx.body}, ctx.now, leg=True)
        if isinstance(changed, Reply):
            return changed
        new = changed[0]
        qty = ctx.body.get("orderQty")
        if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
            return _failure("UnknownReason", "orderQty must be a positive integer")
        order.qty, order.order_type, order.tif = qty, new.order_type, new.tif
        order.price, order.stop_price, order.expire_at = new.price, new.stop_price, new.expire_at
        order.triggered, order.since = False, ctx.now
        self.add("orderVersion", order.version(order.id))
        command_id = self.command(order, "Modify", ctx.body, ctx.now)
        self.execution(order, "Replaced", ctx.now, command_id)
        order.record["timestamp"] = iso_time(ctx.now)
        self.publish("order", order.record, "Updated")
        if order.status == "Working":
            self._work(order, ctx.now)
        return self.reply({"commandId": command_id})

    def cancel(self, ctx: CommandContext) -> Reply:
        """``order/cancelorder`` -> ``CommandResult``; waiting brackets go with their entry."""
        self.advance(ctx.now)
        order = self._own(ctx)
        if order is None:
            return _failure("TooLate", "Order not working")
        command_id = self.command(order, "Cancel", ctx.body, ctx.now)
        self._end(order, "Canceled", ctx.now, command_id)
        return self.reply({"commandId": command_id})

    def liquidate(self, ctx: CommandContext) -> Reply:
        """``order/liquidateposition``: cancel the contract's orders, flatten the position."""
        self.advance(ctx.now)
        account = _account_for(ctx.user, ctx.body)
        if isinstance(account, Reply):
            return account
        contract_id = ctx.body.get("contractId")
        for order in list(self.live.values()):
            record = order.record
            if (
                record["accountId"] == account.id
                and record["contractId"] == contract_id
                and "parentId" not in record
            ):
                self._end(order, "Canceled", ctx.now)
        position = self._position(account.id, contract_id)
        net = int(position.get("netPos", 0)) if position else 0
        if net == 0:
            return self.reply({})
        flatten = {
            "action": "Sell" if net > 0 else "Buy",
            "symbol": contract_id,
            "orderQty": abs(net),
            "orderType": "Market",
            "isAutomated": True,
        }
        parsed = self.parse(ctx.user, flatten, ctx.now, leg=False)
        assert not isinstance(parsed, Reply)
        self.accept(parsed[0], account.id, parsed[1], flatten, ctx.now)
        self._work(parsed[0], ctx.now)
        return self.reply({"orderId": parsed[0].id})

    def _end(self, order: _Order, status: str, now: float, command_id: int = 0) -> None:
        """Cancel or expire ``order`` and the brackets still waiting for it."""
        self.set_status(order, status, now)
        self.execution(order, status, now, command_id)
        for child in list(self.live.values()):
            if child.record.get("parentId") == order.id and child.status == "Suspended":
                self._end(child, status, now)

    # ------------------------------------------------------------------ the market

    def advance(self, now: float) -> list[Event]:
        """Walk the price path from the last look to ``now``: fill, trigger and expire resting
        orders on the way. Returns (and clears) the events produced so far."""
        start = self._last
        self._last = now if start is None else max(start, now)
        if start is not None and now > start:
            for order in sorted(self.live.values(), key=lambda o: o.id):
                if order.status != "Working":
                    continue
                if order.expire_at is not None and order.expire_at <= now:
                    self._end(order, "Expired", order.expire_at)
                    continue
                since = max(start, order.since)
                contract_id = int(order.record["contractId"])
                for t, price in samples(self.prices, contract_id, since, now):
                    if order.status != "Working" or self._try_fill(order, price, t, resting=True):
                        break
        events, self.events = self.events, []
        return events

    def _work(self, order: _Order, now: float) -> None:
        """A new, activated or modified order meets the market at ``now``."""
        price = self.prices.price(int(order.record["contractId"]), now)
        filled = self._try_fill(order, price, now, resting=False)
        if not filled and order.status == "Working" and order.tif in ("IOC", "FOK"):
            self._end(order, "Canceled", now)

    def _try_fill(self, order: _Order, price: float, t: float, *, resting: bool) -> bool:
        buy, kind = order.buy, order.order_type
        if kind in ("Stop", "StopLimit") and not order.triggered:
            stop = order.stop_price or 0.0
            if not ((buy and price >= stop) or (not buy and price <= stop)):
                return False
            order.triggered = True
        if kind in ("Market", "Stop", "MIT"):
            limit = order.price or 0.0
            if kind == "MIT" and not ((buy and price <= limit) or (not buy and price >= limit)):
                return False
            self._fill(order, price, t)
            return True
        limit = order.price or 0.0  # Limit, or a triggered StopLimit
        if (buy and price <= limit) or (not buy and price >= limit):
            self._fill(order, limit if resting else price, t)
            return True
        return False

    def _fill(self, order: _Order, price: float, t: float) -> None:
        contract_id = int(order.record["contractId"])
        price = on_tick(price, self.prices.tick(contract_id))
        self.set_status(order, "Filled", t)
        fill = self.add(
            "fill",
            {
                "orderId": order.id,
                "contractId": contract_id,
                "timestamp": iso_time(t),
                "tradeDate": trade_date(t),
                "action": order.action,
                "qty": order.qty,
                "price": price,
                "active": True,
                "finallyPaired": 0,
            },
        )
        self.execution(order, "Trade", t, 0, lastQty=order.qty, lastPx=price, avgPx=price)
        self._book(order, int(fill["id"]), price, t)
        logger.debug("order %d filled: %s %d @ %s", order.id, order.action, order.qty, price)
        oco = order.record.get("ocoId")
        for other in list(self.live.values()):
            if other.id == oco:
                self._end(other, "Canceled", t)
            elif other.record.get("parentId") == order.id and other.status == "Suspended":
                other.qty, other.since = order.qty, t
                self.set_status(other, "Working", t)
                self._work(other, t)

    # ------------------------------------------------------------------ positions and cash

    def _position(self, account_id: int, contract_id: object) -> dict[str, Any] | None:
        for record in self.store.values("position"):
            if record.get("accountId") == account_id and record.get("contractId") == contract_id:
                return record
        return None

    def _book(self, order: _Order, fill_id: int, price: float, t: float) -> None:
        """Move the position (FIFO lots, a ``fillPair`` per closed lot) and the cash."""
        account_id, contract_id = int(order.record["accountId"]), int(order.record["contractId"])
        position = self._position(account_id, contract_id)
        created = position is None
        if position is None:
            position = self._new_position(account_id, contract_id, price, t)
        lots = self._lots.setdefault(int(position["id"]), collections.deque())
        net = int(position.get("netPos", 0))
        if net and not lots:  # a seeded position: one lot at its net price
            lots.append(
                [0, abs(net), float(position.get("netPrice") or price), 1 if net > 0 else -1]
            )
        sign = 1 if order.buy else -1
        side = ("bought", "boughtValue") if order.buy else ("sold", "soldValue")
        position[side[0]] = int(position.get(side[0], 0)) + order.qty
        position[side[1]] = float(position.get(side[1], 0.0)) + order.qty * price
        realized, remaining = self._close_lots(order, position, lots, fill_id, price)
        if remaining:
            lots.append([fill_id, remaining, price, sign])
        position["netPos"] = net + sign * order.qty
        position["timestamp"] = iso_time(t)
        if lots:
            position["netPrice"] = sum(q * p for _, q, p, _ in lots) / sum(q for _, q, _, _ in lots)
        else:
            position.pop("netPrice", None)
        self.publish("position", position, "Created" if created else "Updated")
        self._book_realized(account_id, realized, t)

    def _new_position(
        self, account_id: int, contract_id: int, price: float, t: float
    ) -> dict[str, Any]:
        contract = self.store.contract(contract_id)
        position = self.store.add("position", position_entity(account_id, contract, 0, price, t))
        position.update(bought=0, boughtValue=0.0, sold=0, soldValue=0.0)
        return position

    def _close_lots(
        self,
        order: _Order,
        position: dict[str, Any],
        lots: collections.deque[list[Any]],
        fill_id: int,
        price: float,
    ) -> tuple[float, int]:
        """Close the opposite lots ``order`` meets, oldest first, each closed part a
        ``fillPair``: the realized P&L and the quantity left to open a new lot with."""
        sign = 1 if order.buy else -1
        realized, remaining = 0.0, order.qty
        point_value = self.prices.point_value(int(order.record["contractId"]))
        while remaining and lots and lots[0][3] != sign:
            lot = lots[0]
            closed = min(remaining, lot[1])
            buy_fill, sell_fill = (fill_id, lot[0]) if order.buy else (lot[0], fill_id)
            buy_px, sell_px = (price, lot[2]) if order.buy else (lot[2], price)
            realized += (sell_px - buy_px) * closed * point_value
            self.add(
                "fillPair",
                {
                    "positionId": position["id"],
                    "buyFillId": buy_fill,
                    "sellFillId": sell_fill,
                    "qty": closed,
                    "buyPrice": buy_px,
                    "sellPrice": sell_px,
                    "active": True,
                },
            )
            lot[1] -= closed
            remaining -= closed
            if lot[1] == 0:
                lots.popleft()
        return realized, remaining

    def _book_realized(self, account_id: int, realized: float, t: float) -> None:
        cash = self.store.get("cashBalance", account_id)
        if realized and cash is not None:
            cash["amount"] = round(float(cash.get("amount", 0.0)) + realized, 2)
            cash["realizedPnL"] = round(float(cash.get("realizedPnL", 0.0)) + realized, 2)
            cash["weekRealizedPnL"] = round(float(cash.get("weekRealizedPnL", 0.0)) + realized, 2)
            cash["timestamp"] = iso_time(t)
            self.publish("cashBalance", cash, "Updated")
