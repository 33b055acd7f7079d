"""The consumer side of typed market data: one stream object per ``md.quotes()``,
``md.dom()``, ``md.histogram()``, ``md.chart()`` or ``md.ticks()`` call.

A stream is filled by :class:`~tradovate_async.MarketData`'s dispatcher (which never waits
for a consumer) and drained by ``async for``. Its buffer is its overflow policy:

* quotes, DOM and histograms keep **the latest per contract** (a newer quote supersedes an
  older one; histograms are merged into a whole histogram first, so the latest one holds
  every earlier update and nothing is lost by superseding);
* chart bars coalesce per bar timestamp in :class:`~tradovate_async._charts.BarSeries` (a newer
  version of the same bar supersedes the older one; every bar is delivered);
* tick charts queue every tick up to a bound, and say so (WARNING, ``skipped``) beyond it.

A stream ends when it is closed (``async with`` exit or :meth:`aclose`) or when its
``MarketData`` closes; it raises the socket's error if the socket gave up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Self, TypeVar

import anyio

from ._charts import BarSeries, TickSeries
from ._exports import publish
from ._md_models import BarSpec, ChartUpdate, DomSnapshot, Histogram, Quote, Tick

if TYPE_CHECKING:
    from ._market_data import MarketData

__all__ = ["ChartStream", "LatestStream", "TickStream"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Item = TypeVar("Item", Quote, DomSnapshot, Histogram)


class _Stream(Generic[T]):
    """Wake-up and end-of-stream plumbing shared by every stream."""

    def __init__(self, md: MarketData) -> None:
        self._md = md
        self._wake = anyio.Event()
        self._closed = False
        self._started = False

    async def __aenter__(self) -> Self:
        await self._ensure_started()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def _ensure_started(self) -> None:
        if not self._started:
            self._started = True
            try:
                await self._start()
            except BaseException:
                self._started = False
                raise

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop the subscription (if this was its last stream) and end the iteration."""
        if self._closed:
            return
        self._closed = True
        self.wake()
        if self._started:
            await self._stop()

    def wake(self) -> None:
        self._wake.set()

    def _take(self) -> T | None:
        raise NotImplementedError

    async def __anext__(self) -> T:
        await self._ensure_started()
        while True:
            item = self._take()
            if item is not None:
                return item
            if self._closed or self._md.finished:
                self._md.raise_failure()
                raise StopAsyncIteration
            self._wake = anyio.Event()
            await self._wake.wait()


class LatestStream(_Stream[Item]):
    """Quotes, DOMs or histograms of some contracts; the latest per contract waits for the
    consumer (``superseded`` counts the ones it never saw)."""

    def __init__(
        self,
        md: MarketData,
        kind: str,
        symbols: tuple[str | int, ...],
    ) -> None:
        super().__init__(md)
        if not symbols:
            raise ValueError("name at least one symbol")
        self.kind = kind
        self.symbols = symbols
        self.contract_ids: dict[int, str] = {}
        self._latest: dict[int, Item] = {}
        self.superseded = 0
        self.delivered = 0

    async def _start(self) -> None:
        for symbol in self.symbols:
            cid = await self._md.contract_id(symbol)
            self.contract_ids[cid] = str(symbol)
        await self._md.attach(self)

    async def _stop(self) -> None:
        await self._md.detach(self)

    def put(self, cid: int, item: Item) -> None:
        """Keep ``item`` as the latest of contract ``cid`` and wake the reader."""
        if cid in self._latest:
            self.superseded += 1
        self._latest[cid] = item
        self._wake.set()

    def _take(self) -> Item | None:
        latest = self._latest
        if not latest:
            return None
        cid = next(iter(latest))
        item = latest.pop(cid)
        self.delivered += 1
        return item


class ChartStream(_Stream[ChartUpdate]):
    """History then live bars of one chart, as :class:`ChartUpdate`\\ s (see
    :class:`~tradovate_async._charts.BarSeries`). ``bars`` is the whole series held."""

    def __init__(
        self,
        md: MarketData,
        symbol: str | int,
        spec: BarSpec,
        time_range: dict[str, object],
    ) -> None:
        super().__init__(md)
        self.symbol = symbol
        self.spec = spec
        self.time_range = time_range
        self.series = BarSeries()
        self.contract_id: int | None = None
        self.ids: tuple[int | None, int | None] = (None, None)

    @property
    def bars(self) -> list[object]:
        """The bars received so far, oldest first."""
        return list(self.series.bars)

    @property
    def resyncs(self) -> int:
        """How many times the chart was fetched again after a reconnect."""
        return self.series.resyncs

    @property
    def loading(self) -> bool:
        """Whether the history is still arriving."""
        return self.series.loading

    async def _start(self) -> None:
        self.contract_id = await self._md.contract_id(self.symbol)
        await self._md.open_chart(self)

    async def _stop(self) -> None:
        await self._md.close_chart(self)

    def resync_range(self) -> dict[str, object]:
        """The ``timeRange`` of a refetch: from the last bar held (inclusive) to now."""
        last = self.series.last_time
        if last is None:
            return dict(self.time_range)
        return {"asFarAsTimestamp": _iso(last)}

    def _take(self) -> ChartUpdate | None:
        return self.series.take()


class TickStream(_Stream[Tick]):
    """Every trade of one contract (a tick chart): history, then live ticks, by tick id."""

    def __init__(
        self,
        md: MarketData,
        symbol: str | int,
        spec: BarSpec,
        time_range: dict[str, object],
        max_pending: int,
    ) -> None:
        super().__init__(md)
        self.symbol = symbol
        self.spec = spec
        self.time_range = time_range
        self.series = TickSeries(max_pending=max_pending)
        self.contract_id: int | None = None
        self.ids: tuple[int | None, int | None] = (None, None)

    @property
    def resyncs(self) -> int:
        """How many times the ticks were fetched again after a reconnect."""
        return self.series.resyncs

    @property
    def skipped(self) -> int:
        """Ticks dropped as duplicates of ones already delivered."""
        return self.series.skipped

    async def _start(self) -> None:
        self.contract_id = await self._md.contract_id(self.symbol)
        await self._md.open_chart(self)

    async def _stop(self) -> None:
        await self._md.close_chart(self)

    def resync_range(self) -> dict[str, object]:
        """The time range to fetch after a reconnect: from the last tick on."""
        last = self.series.last_time
        if last is None:
            return dict(self.time_range)
        return {"asFarAsTimestamp": _iso(last)}

    def _take(self) -> Tick | None:
        return self.series.take()


def _iso(stamp: object) -> str:
    text = stamp.isoformat(timespec="milliseconds")  # type: ignore[attr-defined]
    return str(text).replace("+00:00", "Z")


Resolver = Callable[[str], Awaitable[int]]


publish(globals())  # its public classes show tradovate_async.X (see _exports)
