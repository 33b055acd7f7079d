"""Typed market data: what Tradovate's market-data socket sends, as msgspec Structs.

The wire shapes come from Tradovate's market-data reference (``francis2/api`` ``MarketData.md``,
the OpenAPI "Market Data" tag) and the tick-chart tutorial (``tradovate/example-api-js``
``tutorial/WebSockets/EX-11-Tick-Charts/README.md``). Field names are the snake_case of the wire
names; every field the server may leave out has a default, and unknown fields are ignored, so a
server that adds fields never breaks decoding.

Prices are floats: Tradovate sends JSON numbers on multiples of the contract's tick size, and
market data is read far more often than it is summed (the account mirror does its P&L
arithmetic in floats too, rounded to cents at the end).

Bar specifications (:class:`Minute`, :class:`Daily`, :class:`Ticks`, :class:`Volume`,
:class:`Range`) say what ``md/getChart`` should build; each renders its ``chartDescription``.
"""

# No ``from __future__ import annotations`` here: msgspec resolves the annotations of these
# Structs, and the package re-exports them under its own name (``__module__``), where string
# annotations would no longer resolve.
import dataclasses
import datetime as dt
from typing import Any, Final, Literal

import msgspec

from ._exports import publish

__all__ = [
    "Bar",
    "BarSpec",
    "ChartUpdate",
    "Daily",
    "DomLevel",
    "DomSnapshot",
    "Histogram",
    "Minute",
    "PriceSize",
    "Quote",
    "QuoteEntries",
    "Range",
    "ReplayClock",
    "Tick",
    "Ticks",
    "Volume",
    "decode_bars",
    "decode_ticks",
]

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class PriceSize(msgspec.Struct, frozen=True, gc=False):
    """One quote entry; either field may be absent on the wire."""

    price: float | None = None
    size: float | None = None


class QuoteEntries(msgspec.Struct, frozen=True, gc=False, rename="pascal"):
    """The ``entries`` of a quote: any of them may be absent."""

    bid: PriceSize | None = None
    offer: PriceSize | None = None
    trade: PriceSize | None = None
    total_trade_volume: PriceSize | None = None
    open_interest: PriceSize | None = None
    opening_price: PriceSize | None = None
    high_price: PriceSize | None = None
    low_price: PriceSize | None = None
    settlement_price: PriceSize | None = None
    empty_book: PriceSize | None = None


_NO_ENTRIES: Final = QuoteEntries()


class Quote(msgspec.Struct, rename="camel", gc=False):
    """A quote: best bid and offer, last trade, volume, for one contract at ``timestamp``.

    ``symbol`` is the name the consumer asked for (filled in by the stream; ``None`` when the
    quote was decoded on its own). Quotes of one contract supersede each other.
    """

    contract_id: int
    timestamp: dt.datetime
    entries: QuoteEntries = _NO_ENTRIES
    symbol: str | None = None

    @property
    def bid(self) -> float | None:
        """The best bid price, if the quote has one."""
        entry = self.entries.bid
        return entry.price if entry is not None else None

    @property
    def bid_size(self) -> float | None:
        """The size at the best bid, if the quote has one."""
        entry = self.entries.bid
        return entry.size if entry is not None else None

    @property
    def offer(self) -> float | None:
        """The best offer price, if the quote has one."""
        entry = self.entries.offer
        return entry.price if entry is not None else None

    @property
    def offer_size(self) -> float | None:
        """The size at the best offer, if the quote has one."""
        entry = self.entries.offer
        return entry.size if entry is not None else None

    @property
    def trade(self) -> float | None:
        """The last trade price, if the quote has one."""
        entry = self.entries.trade
        return entry.price if entry is not None else None

    @property
    def trade_size(self) -> float | None:
        """The size of the last trade, if the quote has one."""
        entry = self.entries.trade
        return entry.size if entry is not None else None

    @property
    def volume(self) -> float | None:
        """Total traded volume of the session (``TotalTradeVolume``)."""
        entry = self.entries.total_trade_volume
        return entry.size if entry is not None else None


class DomLevel(msgspec.Struct, frozen=True, gc=False):
    """One price level of the depth of market: price and size."""

    price: float
    size: float = 0.0


class DomSnapshot(msgspec.Struct, rename="camel", gc=False):
    """Depth of market of one contract: bids best first, offers best first."""

    contract_id: int
    timestamp: dt.datetime
    bids: list[DomLevel] = msgspec.field(default_factory=list)
    offers: list[DomLevel] = msgspec.field(default_factory=list)
    symbol: str | None = None


class TradeDate(msgspec.Struct, frozen=True, gc=False):
    year: int
    month: int
    day: int


class Histogram(msgspec.Struct, rename="camel", gc=False):
    """Volume at price for one contract and trade date.

    ``items`` maps an offset in ticks from ``base`` to the volume traded there. On the wire an
    update carries only the offsets that changed unless ``refresh`` is true; the stream merges
    updates and always hands out the whole histogram (so an update can never be lost by
    coalescing).
    """

    contract_id: int
    timestamp: dt.datetime
    base: float = 0.0
    items: dict[int, float] = msgspec.field(default_factory=dict)
    trade_date: TradeDate | None = None
    refresh: bool = False
    symbol: str | None = None


class Bar(msgspec.Struct, frozen=True, rename="camel", gc=False):
    """One chart bar. ``timestamp`` is the bar's start; the newest bar may still be forming."""

    timestamp: dt.datetime
    open: float
    high: float
    low: float
    close: float
    up_volume: float = 0.0
    down_volume: float = 0.0
    up_ticks: float = 0.0
    down_ticks: float = 0.0
    bid_volume: float = 0.0
    offer_volume: float = 0.0

    @property
    def volume(self) -> float:
        """Up plus down volume."""
        return self.up_volume + self.down_volume


class Tick(msgspec.Struct, frozen=True, gc=False):
    """One trade of a tick chart, with the bid/ask at that moment when the server sent them."""

    id: int
    timestamp: dt.datetime
    price: float
    size: float
    bid: float | None = None
    ask: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None


class ChartUpdate(msgspec.Struct, frozen=True, gc=False):
    """One step of a chart stream.

    ``new`` is True the first time a bar's timestamp appears and False when a bar the consumer
    has already seen changed (the forming bar, or a bar corrected by a refetch). ``historical``
    marks bars from ``md/getChart`` history. ``resynced`` marks updates delivered after the
    stream had to fetch history again (a reconnect, or events lost to an overflow): the series
    stays continuous, and the flag says that it happened.
    """

    bar: Bar
    new: bool
    historical: bool = False
    resynced: bool = False


class ReplayClock(msgspec.Struct, frozen=True, gc=False):
    """A replay ``clock`` event: the replayed market time and the speed in percent (0 = paused)."""

    time: dt.datetime
    speed: float


# -- bar specifications --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class BarSpec:
    """What ``md/getChart`` builds: ``underlyingType``, ``elementSize``, ``elementSizeUnit``."""

    underlying_type: Literal["Tick", "DailyBar", "MinuteBar", "Custom", "DOM"]
    size: int
    unit: Literal["Volume", "Range", "UnderlyingUnits", "Renko", "MomentumRange"]
    with_histogram: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError("a bar size must be a positive integer")

    def chart_description(self) -> dict[str, Any]:
        """The ``chartDescription`` of an ``md/getChart`` request for this spec."""
        return {
            "underlyingType": self.underlying_type,
            "elementSize": self.size,
            "elementSizeUnit": self.unit,
            "withHistogram": self.with_histogram,
        }

    @property
    def is_tick_stream(self) -> bool:
        """One element per trade: the server sends tick packets, not bars."""
        return self.underlying_type == "Tick" and self.unit == "UnderlyingUnits" and self.size == 1


def Minute(size: int = 1) -> BarSpec:
    """Time bars of ``size`` minutes."""
    return BarSpec("MinuteBar", size, "UnderlyingUnits")


def Daily(size: int = 1) -> BarSpec:
    """Daily bars."""
    return BarSpec("DailyBar", size, "UnderlyingUnits")


def Ticks(size: int = 1) -> BarSpec:
    """``Ticks(1)``: every trade (a tick chart); ``Ticks(n)``: bars of ``n`` trades."""
    return BarSpec("Tick", size, "UnderlyingUnits")


def Volume(size: int) -> BarSpec:
    """Bars of ``size`` contracts traded."""
    return BarSpec("Tick", size, "Volume")


def Range(size: int) -> BarSpec:
    """Bars spanning ``size`` ticks of price range."""
    return BarSpec("Tick", size, "Range")


# -- decoding of chart packets ---------------------------------------------------------------


def decode_bars(raw: Any) -> list[Bar]:
    """The ``bars`` of one chart packet, as :class:`Bar` (raises ``msgspec.ValidationError``)."""
    return msgspec.convert(raw, list[Bar], strict=False)


def decode_ticks(packet: dict[str, Any]) -> list[Tick]:
    """The ticks of a tick-chart packet: prices are ``(bp + p) * ts``, times ``bt + t`` ms.

    Raises ``ValueError`` for a packet without its base fields.
    """
    try:
        base_price = packet["bp"]
        base_time = packet["bt"]
        tick_size = packet["ts"]
        ticks = packet.get("tks") or []
    except (KeyError, TypeError) as exc:
        raise ValueError(f"tick packet without {exc}") from None
    out: list[Tick] = []
    for tk in ticks:
        # round away the float noise of ticks * tick size (0.01 * 6946 = 69.46000000000001)
        price = round((base_price + tk["p"]) * tick_size, 9)
        bid = tk.get("b")
        ask = tk.get("a")
        out.append(
            Tick(
                id=int(tk["id"]),
                timestamp=_EPOCH + dt.timedelta(milliseconds=base_time + tk["t"]),
                price=price,
                size=float(tk.get("s", 0)),
                bid=round((base_price + bid) * tick_size, 9) if bid is not None else None,
                ask=round((base_price + ask) * tick_size, 9) if ask is not None else None,
                bid_size=tk.get("bs"),
                ask_size=tk.get("as"),
            )
        )
    return out


publish(globals())  # its public classes show tradovate_async.X (see _exports)
