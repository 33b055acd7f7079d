"""Safe orders (sans-I/O): check an order before it is sent, label it, and find it afterwards.

Three rules, applied by the session and the trading socket to every order command:

1. **Validate before sending.** A Limit without ``price``, a Stop without ``stopPrice``, a
   non-positive quantity, a GTD without ``expireTime`` or a bracket on the wrong side of its
   entry raises :class:`~tradovate_async.OrderValidationError` and nothing is sent. Tradovate
   would reject most of these too, but only after a round trip, a request from the user's
   hourly budget and, for some, an accepted order that does not do what was meant.
2. **``isAutomated: true`` by default.** Tradovate's API documentation marks the flag "must be
   true if this isn't an order made directly by a human" (OpenAPI description, ``placeorder``,
   ``placeoco`` and ``placeoso`` examples; copy at arlenner/api-doc-20-dev
   ``assets/files/swagger.yaml``), and its order tutorial says the exchange is "very serious"
   about it: "failing to do so could violate exchange policies" (tradovate/example-api-js,
   ``tutorial/Access/EX-4a-Place-An-Order/README.md``). The server's own default is ``false``.
   A program placing orders is automated, so the library sends ``true`` unless the body says
   otherwise; an app that relays a human's click sets ``isAutomated=False`` on that call, or
   ``OrderDefaults(is_automated=False)`` for the session.
3. **A client order id on every order command** that has the field (``placeorder``,
   ``placeoco``, ``placeoso``, ``modifyorder``, ``cancelorder``: their request schemas carry
   ``clOrdId``, a string of at most 64 characters). Tradovate keeps it on the ``Command``
   entity the request creates (``command/list``, ``command/item``, ``command/deps?masterid=
   <orderId>``; partner docs "Command Item"), not on the ``Order``. So when an answer is lost,
   :func:`find_order` looks for the command with that ``clOrdId`` and returns the order it
   names — or ``None``: the command never reached Tradovate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from ._errors import InvalidResponseError, OrderValidationError
from ._exports import publish

__all__ = [
    "ORDER_COMMANDS",
    "OrderDefaults",
    "find_order",
    "is_order_command",
    "order_problems",
    "prepare_order_command",
]

#: Order commands whose request schema has ``clOrdId`` and ``isAutomated``.
_LABELLED: Final = frozenset(
    {
        "order/placeorder",
        "order/placeoco",
        "order/placeoso",
        "order/modifyorder",
        "order/cancelorder",
    }
)
#: Every endpoint that places, changes or cancels orders: answers lost -> outcome unknown.
ORDER_COMMANDS: Final = _LABELLED | {
    "order/liquidateposition",
    "orderstrategy/startorderstrategy",
    "orderstrategy/modifyorderstrategy",
    "orderstrategy/interruptorderstrategy",
}

ORDER_TYPES: Final = frozenset(
    {"Limit", "MIT", "Market", "QTS", "Stop", "StopLimit", "TrailingStop", "TrailingStopLimit"}
)
TIME_IN_FORCE: Final = frozenset({"Day", "FOK", "GTC", "GTD", "IOC"})
ACTIONS: Final = frozenset({"Buy", "Sell"})
#: Which price fields an order type needs.
_NEEDS: Final[Mapping[str, tuple[str, ...]]] = {
    "Limit": ("price",),
    "MIT": ("price",),
    "Stop": ("stopPrice",),
    "StopLimit": ("price", "stopPrice"),
    "TrailingStopLimit": ("price",),
}
_MAX_CL_ORD_ID: Final = 64


def normalize(endpoint: str) -> str:
    path = endpoint.strip().lstrip("/").lower()
    return path[3:] if path.startswith("v1/") else path


def is_order_command(endpoint: str) -> bool:
    return normalize(endpoint) in ORDER_COMMANDS


@dataclasses.dataclass(frozen=True, slots=True)
class OrderDefaults:
    """What the library adds to order commands.

    ``is_automated``: the ``isAutomated`` value sent when a body has none (see the module
    notes for why it is ``True``). ``cl_ord_id_prefix``: start of the client order ids the
    library makes (a UUID follows). ``validate``: check orders before sending them.
    """

    is_automated: bool = True
    cl_ord_id_prefix: str = "ta-"
    validate: bool = True

    def __post_init__(self) -> None:
        if len(self.cl_ord_id_prefix) > _MAX_CL_ORD_ID - 32:
            raise ValueError("cl_ord_id_prefix is too long for a 64-character clOrdId")

    def new_cl_ord_id(self) -> str:
        """A fresh client order id (``clOrdId``) for one order."""
        return f"{self.cl_ord_id_prefix}{uuid.uuid4().hex}"


# --------------------------------------------------------------------------------------------
# Validation


def _present(body: Mapping[str, Any], field: str) -> bool:
    return body.get(field) is not None


def _is_price(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_prices(body: Mapping[str, Any], where: str, problems: dict[str, str]) -> None:
    """Type, prices per type, time in force, expiry of one order (or bracket)."""
    order_type = body.get("orderType")
    if order_type not in ORDER_TYPES:
        problems[f"{where}orderType"] = f"must be one of {', '.join(sorted(ORDER_TYPES))}"
        return
    for field in _NEEDS.get(order_type, ()):
        if not _present(body, field):
            problems[f"{where}{field}"] = f"required for a {order_type} order"
    for field in ("price", "stopPrice"):
        if _present(body, field) and not _is_price(body[field]):
            problems[f"{where}{field}"] = "must be a positive, finite number"
    if order_type == "Market" and _present(body, "price"):
        problems[f"{where}price"] = "a Market order takes no price"
    tif = body.get("timeInForce")
    if tif is not None and tif not in TIME_IN_FORCE:
        problems[f"{where}timeInForce"] = f"must be one of {', '.join(sorted(TIME_IN_FORCE))}"
    if tif == "GTD":
        expiry = body.get("expireTime")
        if expiry is None:
            problems[f"{where}expireTime"] = "required for a GTD (good-till-date) order"
        elif not _is_timestamp(expiry):
            problems[f"{where}expireTime"] = "must be an ISO 8601 date-time"
    if _present(body, "maxShow") and not _is_count(body["maxShow"]):
        problems[f"{where}maxShow"] = "must be a positive integer"


def _is_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _check_new_order(body: Mapping[str, Any], problems: dict[str, str]) -> None:
    if not _present(body, "accountId") and not _present(body, "accountSpec"):
        problems["accountId"] = "accountId or accountSpec is required"
    if _present(body, "accountId") and not _is_count(body["accountId"]):
        problems["accountId"] = "must be a positive integer id"
    if body.get("action") not in ACTIONS:
        problems["action"] = "must be Buy or Sell"
    symbol = body.get("symbol")
    if isinstance(symbol, bool) or not (
        (isinstance(symbol, str) and symbol.strip()) or _is_count(symbol)
    ):
        problems["symbol"] = "must be a contract name or id"
    if not _is_count(body.get("orderQty")):
        problems["orderQty"] = "must be a positive integer"
    _check_prices(body, "", problems)


def _entry_price(body: Mapping[str, Any]) -> float | None:
    """The price an entry fills at or near, when its type says (None for Market)."""
    order_type = body.get("orderType")
    field = "stopPrice" if order_type in ("Stop", "TrailingStop") else "price"
    value = body.get(field)
    return float(value) if isinstance(value, int | float) and _is_price(value) else None


def _check_brackets(
    body: Mapping[str, Any], fields: tuple[str, ...], problems: dict[str, str]
) -> None:
    """OSO/OCO legs: each a valid order on the exit side; targets beyond the entry and stops
    behind it; a take-profit beyond the stop."""
    action = body.get("action")
    exit_action = {"Buy": "Sell", "Sell": "Buy"}.get(action) if isinstance(action, str) else None
    sign = 1.0 if action == "Buy" else -1.0
    entry = _entry_price(body)
    legs: dict[str, Mapping[str, Any]] = {}
    for field in fields:
        leg = body.get(field)
        if leg is None:
            continue
        if not isinstance(leg, Mapping):
            problems[field] = "must be an object (action, orderType, price/stopPrice...)"
            continue
        legs[field] = leg
        if leg.get("action") not in ACTIONS:
            problems[f"{field}.action"] = "must be Buy or Sell"
        elif exit_action and leg.get("action") != exit_action:
            problems[f"{field}.action"] = f"a bracket of a {action} must be a {exit_action}"
        _check_prices(leg, f"{field}.", problems)
    if exit_action is None:
        return
    targets = [
        (name, float(leg["price"]))
        for name, leg in legs.items()
        if leg.get("orderType") in ("Limit", "MIT") and _is_price(leg.get("price"))
    ]
    stops = [
        (name, float(leg["stopPrice"]))
        for name, leg in legs.items()
        if leg.get("orderType") in ("Stop", "StopLimit") and _is_price(leg.get("stopPrice"))
    ]
    side = "above" if sign > 0 else "below"
    other = "below" if sign > 0 else "above"
    if entry is not None:
        for name, price in targets:
            if (price - entry) * sign <= 0:
                problems[f"{name}.price"] = f"a take-profit of a {action} must be {side} {entry:g}"
        for name, price in stops:
            if (price - entry) * sign >= 0:
                problems[f"{name}.stopPrice"] = f"a stop of a {action} must be {other} {entry:g}"
    for t_name, t_price in targets:
        for s_name, s_price in stops:
            if (t_price - s_price) * sign <= 0:
                problems[f"{t_name}.price"] = (
                    f"take-profit {t_price:g} must be {side} the stop {s_price:g} ({s_name})"
                )


def order_problems(endpoint: str, body: object) -> dict[str, str]:
    """What is wrong with an order command's body (empty: nothing we can see)."""
    path = normalize(endpoint)
    if not isinstance(body, Mapping):
        return {"body": "must be a JSON object"}
    problems: dict[str, str] = {}
    if path in ("order/placeorder", "order/placeoso", "order/placeoco"):
        _check_new_order(body, problems)
    if path == "order/placeoso":
        if body.get("bracket1") is None:
            problems["bracket1"] = "an OSO order needs bracket1"
        _check_brackets(body, ("bracket1", "bracket2"), problems)
    elif path == "order/placeoco":
        if body.get("other") is None:
            problems["other"] = "an OCO order needs the other order"
        elif not isinstance(body["other"], Mapping):
            problems["other"] = "must be an object (action, orderType, price/stopPrice...)"
        else:
            # The two legs of an OCO may be exits of one side or a breakout pair: no side rule.
            if body["other"].get("action") not in ACTIONS:
                problems["other.action"] = "must be Buy or Sell"
            _check_prices(body["other"], "other.", problems)
    elif path == "order/modifyorder":
        if not _is_count(body.get("orderId")):
            problems["orderId"] = "must be a positive integer id"
        if not _is_count(body.get("orderQty")):
            problems["orderQty"] = "must be a positive integer"
        _check_prices(body, "", problems)
    elif path == "order/cancelorder":
        if not _is_count(body.get("orderId")):
            problems["orderId"] = "must be a positive integer id"
    elif path == "order/liquidateposition":
        for field in ("accountId", "contractId"):
            if not _is_count(body.get(field)):
                problems[field] = "must be a positive integer id"
    return problems


def prepare_order_command(
    endpoint: str, body: Any, defaults: OrderDefaults
) -> tuple[Any, str | None]:
    """The body to send (a copy with ``isAutomated`` and ``clOrdId`` filled in where the
    schema has them and the caller left them out) and its client order id.

    Raises :class:`~tradovate_async.OrderValidationError` for an invalid order.
    """
    path = normalize(endpoint)
    if defaults.validate:
        problems = order_problems(path, body)
        if problems:
            raise OrderValidationError(path, problems)
    if path not in _LABELLED or not isinstance(body, Mapping):
        return body, None
    prepared = {k: v for k, v in body.items() if v is not None}
    prepared.setdefault("isAutomated", defaults.is_automated)
    cl_ord_id = prepared.get("clOrdId")
    if not isinstance(cl_ord_id, str) or not cl_ord_id:
        cl_ord_id = prepared["clOrdId"] = defaults.new_cl_ord_id()
    elif len(cl_ord_id) > _MAX_CL_ORD_ID:
        raise OrderValidationError(path, {"clOrdId": "at most 64 characters"})
    return prepared, cl_ord_id


# --------------------------------------------------------------------------------------------
# Reconciliation

Getter = Callable[[str, Mapping[str, Any] | None], Awaitable[Any]]


async def find_order(get: Getter, cl_ord_id: str) -> dict[str, Any] | None:
    """The order that the command labelled ``cl_ord_id`` created or changed, or ``None`` when
    no such command exists (it never reached Tradovate).

    ``get(endpoint, params)`` performs a read (REST or socket). Two reads: ``command/list``
    (the user's commands, where ``clOrdId`` is kept) and ``order/item`` for the order the
    oldest matching command names.
    """
    commands = await get("command/list", None)
    if not isinstance(commands, list):
        raise InvalidResponseError("command/list answer is not a list")
    matches = [
        c
        for c in commands
        if isinstance(c, dict) and c.get("clOrdId") == cl_ord_id and _is_count(c.get("orderId"))
    ]
    if not matches:
        return None
    first = min(matches, key=lambda c: (str(c.get("timestamp", "")), c.get("id") or 0))
    order = await get("order/item", {"id": first["orderId"]})
    if not isinstance(order, dict):
        raise InvalidResponseError("order/item answer is not an object")
    return order


publish(globals())  # its public classes show tradovate_async.X (see _exports)
