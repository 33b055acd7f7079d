"""The simulator's instruments: exchanges, products, maturities and contracts.

Front-month equity index futures (ES, NQ, YM, RTY and the micros), energy futures (CL, MCL,
NG) and gold (GC) with their next maturity, computed from the simulator's clock: the front month is the
first listed month whose last trading day has not passed. Expiry rules are simplified (equity
index: third Friday of the quarter month; crude: the 20th of the month before; natural gas and
gold: the 26th of the month before), which is close enough for a simulator and says so.

Contract ids come from :func:`~tradovate_async.sim._market.contract_id`, the same ids the quote
feed and the order handlers use for a symbol.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from ._market import contract_id, iso_time
from ._prices import ProductSpec, root_spec

__all__ = ["EXCHANGES", "PRODUCTS", "ProductInfo", "contract_symbol", "maturities", "month_code"]

logger = logging.getLogger(__name__)

MONTH_CODES = "FGHJKMNQUVXZ"
EXCHANGES = {"CME": 1, "CBOT": 2, "NYMEX": 3, "COMEX": 4}
_QUARTERS = (3, 6, 9, 12)
_ALL_MONTHS = tuple(range(1, 13))


@dataclasses.dataclass(frozen=True, slots=True)
class ProductInfo:
    """One futures product as the simulator lists it: the price path's specification
    (:mod:`._prices`: id, tick size, value per point, base price) plus where and when it
    trades."""

    spec: ProductSpec
    exchange: str
    months: tuple[int, ...]
    expiry: str  # "third-friday", "crude" or "natgas"
    group: int  # contractGroup id: 1 equity index, 2 energy, 3 metals

    @property
    def id(self) -> int:
        return self.spec.product_id

    @property
    def name(self) -> str:
        return self.spec.name

    def entity(self) -> dict[str, Any]:
        """The ``product`` entity."""
        return {
            "id": self.id,
            "name": self.name,
            "currencyId": 1,
            "productType": "Futures",
            "description": self.spec.description,
            "exchangeId": EXCHANGES[self.exchange],
            "contractGroupId": self.group,
            "status": "ReadyToTrade",
            "months": "".join(MONTH_CODES[m - 1] for m in self.months),
            "isSecured": False,
            "valuePerPoint": self.spec.value_per_point,
            "priceFormatType": "Decimal",
            "priceFormat": -2,
            "tickSize": self.spec.tick_size,
        }


def _product(
    root: str, exchange: str, months: tuple[int, ...], expiry: str, group: int
) -> ProductInfo:
    return ProductInfo(root_spec(root), exchange, months, expiry, group)


PRODUCTS = (
    _product("ES", "CME", _QUARTERS, "third-friday", 1),
    _product("NQ", "CME", _QUARTERS, "third-friday", 1),
    _product("YM", "CBOT", _QUARTERS, "third-friday", 1),
    _product("RTY", "CME", _QUARTERS, "third-friday", 1),
    _product("MES", "CME", _QUARTERS, "third-friday", 1),
    _product("MNQ", "CME", _QUARTERS, "third-friday", 1),
    _product("CL", "NYMEX", _ALL_MONTHS, "crude", 2),
    _product("MCL", "NYMEX", _ALL_MONTHS, "crude", 2),
    _product("NG", "NYMEX", _ALL_MONTHS, "natgas", 2),
    _product("GC", "COMEX", (2, 4, 6, 8, 10, 12), "natgas", 3),
)


def month_code(month: int) -> str:
    return MONTH_CODES[month - 1]


def contract_symbol(product: ProductInfo, year: int, month: int) -> str:
    """``ES``, 2026, 12 -> ``ESZ6`` (Tradovate's one-digit year)."""
    return f"{product.name}{month_code(month)}{year % 10}"


def _expiration(product: ProductInfo, year: int, month: int) -> dt.datetime:
    if product.expiry == "third-friday":
        first = dt.date(year, month, 1)
        friday = first + dt.timedelta(days=(4 - first.weekday()) % 7 + 14)
        return dt.datetime(friday.year, friday.month, friday.day, 13, 30, tzinfo=dt.UTC)
    before = dt.date(year, month, 1) - dt.timedelta(days=1)  # last day of the prior month
    day = 20 if product.expiry == "crude" else 26
    return dt.datetime(before.year, before.month, day, 19, 30, tzinfo=dt.UTC)


def maturities(product: ProductInfo, now: float, count: int = 2) -> list[dict[str, Any]]:
    """The next ``count`` maturities of ``product`` at ``now``, front month first, as
    ``{"maturity": contractMaturity entity, "contract": contract entity}`` pairs."""
    today = dt.datetime.fromtimestamp(now, dt.UTC)
    found: list[dict[str, Any]] = []
    year, month = today.year, today.month
    while len(found) < count:
        if month in product.months:
            expires = _expiration(product, year, month)
            if expires > today:
                symbol = contract_symbol(product, year, month)
                maturity_id = product.id * 10_000 + (year % 100) * 100 + month
                found.append(
                    {
                        "maturity": {
                            "id": maturity_id,
                            "productId": product.id,
                            "expirationMonth": year * 100 + month,
                            "expirationDate": iso_time(expires.timestamp()),
                            "isFront": not found,
                        },
                        "contract": {
                            "id": contract_id(symbol),
                            "name": symbol,
                            "contractMaturityId": maturity_id,
                            "productId": product.id,
                            "productName": product.name,
                            "status": "DefinitionChecked",
                            "providerTickSize": product.spec.tick_size,
                        },
                    }
                )
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return found
