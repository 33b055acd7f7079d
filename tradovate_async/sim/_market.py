"""Made-up contracts and prices, so market-data clients have something plausible to parse.

Nothing here is real market data: prices are a random walk seeded by the symbol, so two runs
with the same symbol start at the same price and a test can rely on stable contract ids.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import zlib
from typing import Any

__all__ = [
    "QuoteFeed",
    "contract_entity",
    "contract_id",
    "iso_time",
    "product_entity",
    "symbol_of",
]

logger = logging.getLogger(__name__)

TICK = 0.25


def iso_time(epoch: float) -> str:
    """Tradovate's timestamp format: UTC, milliseconds, ``Z`` (``2021-06-15T15:40:30.056Z``)."""
    stamp = dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


_NAMES: dict[int, str] = {}


def contract_id(symbol: str | int) -> int:
    """A stable id for a symbol; an integer (or digit string) is already a contract id.

    Names seen here are remembered, so that market data for an id knows its product."""
    if isinstance(symbol, int):
        return symbol
    text = symbol.strip()
    if text.isdigit():
        return int(text)
    name = text.upper()
    cid = 2_000_000 + zlib.crc32(name.encode()) % 1_000_000
    _NAMES.setdefault(cid, name)
    return cid


def symbol_of(cid: int) -> str:
    """The name behind a contract id (``SIM<id>`` for ids never seen as a name)."""
    return _NAMES.get(cid, f"SIM{cid}")


def contract_entity(symbol: str | int) -> dict[str, Any]:
    """A ``contract/item``-shaped entity for a symbol name."""
    from ._prices import product_spec

    cid = contract_id(symbol)
    name = symbol_of(cid)
    spec = product_spec(name)
    return {
        "id": cid,
        "name": name,
        "contractMaturityId": cid % 100_000,
        "productId": spec.product_id,
        "productName": spec.name,
        "status": "DefinitionChecked",
        "providerTickSize": spec.tick_size,
    }


def product_entity(name: str) -> dict[str, Any]:
    """A ``product/item``-shaped entity (``valuePerPoint`` is what open P&L needs)."""
    from ._prices import root_spec

    spec = root_spec(name)
    return {
        "id": spec.product_id,
        "name": spec.name,
        "description": spec.description,
        "currencyId": 1,
        "productType": "Futures",
        "status": "Verified",
        "tickSize": spec.tick_size,
        "valuePerPoint": spec.value_per_point,
        "priceFormatType": "Decimal",
        "priceFormat": -2,
    }


class _Book:
    """Price state of one contract."""

    __slots__ = ("last", "rng", "volume")

    def __init__(self, cid: int) -> None:
        self.rng = random.Random(cid)
        self.last = 1000.0 + (cid % 4000) * TICK
        self.volume = 0


class QuoteFeed:
    """Random-walk quotes and order books per contract. Used only from the server's loop."""

    def __init__(self) -> None:
        self._books: dict[int, _Book] = {}

    def _book(self, cid: int) -> _Book:
        book = self._books.get(cid)
        if book is None:
            book = self._books[cid] = _Book(cid)
        return book

    def quote(self, symbol: str | int, now: float) -> dict[str, Any]:
        """The next quote of ``symbol``: Bid, Offer, Trade and TotalTradeVolume entries."""
        cid = contract_id(symbol)
        book = self._book(cid)
        book.last = max(TICK, book.last + book.rng.choice((-TICK, 0.0, 0.0, TICK)))
        size = book.rng.randint(1, 20)
        book.volume += size
        return {
            "timestamp": iso_time(now),
            "contractId": cid,
            "entries": {
                "Bid": {"price": book.last - TICK, "size": book.rng.randint(1, 50)},
                "Offer": {"price": book.last, "size": book.rng.randint(1, 50)},
                "Trade": {"price": book.last, "size": size},
                "TotalTradeVolume": {"size": book.volume},
            },
        }

    def dom(self, symbol: str | int, now: float, depth: int = 5) -> dict[str, Any]:
        """An order book around the current price of ``symbol``."""
        cid = contract_id(symbol)
        book = self._book(cid)
        return {
            "contractId": cid,
            "timestamp": iso_time(now),
            "bids": [
                {"price": book.last - TICK * (i + 1), "size": book.rng.randint(1, 80)}
                for i in range(depth)
            ],
            "offers": [
                {"price": book.last + TICK * i, "size": book.rng.randint(1, 80)}
                for i in range(depth)
            ],
        }
