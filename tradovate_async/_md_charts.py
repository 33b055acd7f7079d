"""The chart and tick-chart requests of one :class:`~tradovate_async.MarketData`.

:class:`ChartRequests` sends ``md/getChart``, routes ``chart`` packets to the stream that owns
their id (packets may arrive before the answer reaches the requesting task: they wait as
orphans), cancels charts, and refetches history after a reconnect or lost events.

**A refetch takes pages.** The server caps one ``md/getChart`` answer (``asMuchAsElements``
is an upper bound, and the server has its own: protocol reference, "Response size is
capped"), so after a long outage the first answer, from the last bar held
(``asFarAsTimestamp``) to now, may start well after that bar. The refetch then asks again
with ``closestTimestamp`` = the oldest bar received so far and the same ``asFarAsTimestamp``,
until the history reaches the last bar held, a page brings nothing older, or
:data:`MAX_REFETCH_PAGES` further pages were taken (then a WARNING says a gap remains). The
series holds every page (and the live bars meanwhile) and merges them at once, sorted, so the
consumer sees the outage filled in time order. Each further page's own subscription is
cancelled once its history has come.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, Final

import anyio

from ._errors import ConnectionLostError, TradovateError
from ._md_streams import ChartStream, TickStream, _iso
from ._ws import TradovateWebSocket

__all__ = ["MAX_REFETCH_PAGES", "ChartRequests"]

logger = logging.getLogger(__name__)

#: Further ``md/getChart`` pages one refetch may take to reach the last bar held.
MAX_REFETCH_PAGES: Final = 20
_ORPHANS: Final = 10_000

Chart = ChartStream | TickStream


class ChartRequests:
    """Chart and tick streams over one market-data socket (see the module docstring)."""

    def __init__(self, ws: TradovateWebSocket) -> None:
        self._ws = ws
        self.charts: list[Chart] = []
        # chart packets nobody owns yet: ``md/getChart``'s answer and the first packets for its
        # ids arrive back to back, and the packets may reach the dispatcher before the answer
        # reaches the requesting task
        self._orphans: collections.deque[Mapping[str, Any]] = collections.deque(maxlen=_ORPHANS)
        # refetches waiting for the end of a held history, by chart
        self._waits: dict[Chart, anyio.Event] = {}

    def wake_all(self) -> None:
        """Wake every consumer (the feed ended)."""
        for chart in self.charts:
            chart.wake()

    # -- requests -------------------------------------------------------------------------------

    async def open(self, chart: Chart) -> None:
        """Request a chart or tick stream and deliver its bars or ticks."""
        self.charts.append(chart)
        try:
            await self.request(chart, chart.time_range, resync=False)
        except BaseException:
            self.charts.remove(chart)
            raise

    async def request(
        self, chart: Chart, time_range: dict[str, object], *, resync: bool, hold: bool = False
    ) -> object:
        """``md/getChart`` for ``chart``, which takes the answer's ids from now on; returns the
        series' token of this request."""
        while True:
            gaps = chart.series.gaps  # a gap seen after this may have taken its packets
            try:
                data = await self._ws.request(
                    "md/getChart", json=_body(chart, time_range), idempotent=True
                )
                break
            except ConnectionLostError:
                await self._ws.wait_connected()
        ids = _chart_ids(data)
        chart.ids = ids
        token = chart.series.begin(ids[0], ids[1], resync=resync, hold=hold, gaps=gaps)
        self._wake_refetch(chart)  # a refetch still waiting is outdated now
        self._adopt_orphans(chart)
        chart.wake()
        return token

    def _adopt_orphans(self, chart: Chart) -> None:
        orphans = self._orphans
        if orphans:
            kept = [p for p in orphans if not chart.series.feed(p)]
            orphans.clear()
            orphans.extend(kept)

    async def close(self, chart: Chart, *, connected: bool) -> None:
        """Stop a chart or tick stream and cancel it on the server (when ``connected``)."""
        if chart not in self.charts:
            return
        self.charts.remove(chart)
        self._wake_refetch(chart)
        if connected:
            await self.cancel(*chart.ids)

    async def cancel(self, historical_id: int | None, realtime_id: int | None) -> bool:
        """``md/cancelChart`` with the realtime id, then the historical id; True if the server
        accepted either (see :mod:`._market_data` for why both)."""
        accepted = False
        for ident in (realtime_id, historical_id):
            if ident is None:
                continue
            try:
                await self._ws.request(
                    "md/cancelChart", json={"subscriptionId": ident}, idempotent=True
                )
                accepted = True
            except TradovateError as exc:
                logger.debug("md/cancelChart %d refused: %s", ident, exc)
        if not accepted:
            logger.warning("md/cancelChart refused both ids %s/%s", realtime_id, historical_id)
        return accepted

    # -- packets --------------------------------------------------------------------------------

    def on_chart(self, data: Any) -> None:
        """One ``chart`` event: each packet to the stream owning its id (else an orphan)."""
        packets = data.get("charts") if isinstance(data, Mapping) else None
        if not isinstance(packets, list):
            return
        for packet in packets:
            if not isinstance(packet, Mapping):
                continue
            for chart in self.charts:
                if chart.series.feed(packet):
                    chart.wake()
                    if chart.series.history_ready:
                        self._wake_refetch(chart)
                    break
            else:
                self._orphans.append(packet)

    def _wake_refetch(self, chart: Chart) -> None:
        waiter = self._waits.pop(chart, None)
        if waiter is not None:
            waiter.set()

    # -- refetch --------------------------------------------------------------------------------

    async def refetch(self, chart: Chart, cancel_old: bool) -> None:
        """History again from the last bar held, in as many pages as it takes (bounded)."""
        suspended = chart.series.token()
        try:
            if cancel_old:
                await self.cancel(*chart.ids)
            if chart not in self.charts:
                return
            last = chart.series.last_time
            token = await self.request(
                chart, chart.resync_range(), resync=True, hold=last is not None
            )
            if last is None:
                return
            try:
                await self._fill_gap(chart, token, last)
            finally:
                if chart.series.current(token):
                    chart.series.release()
                    chart.wake()
        except TradovateError as exc:
            logger.warning("chart %s: refetch failed: %s", chart.symbol, exc)
            if chart.series.current(suspended):
                chart.series.resume()  # what waited since the gap, rather than nothing

    async def _fill_gap(self, chart: Chart, token: object, last: dt.datetime) -> None:
        """Take pages until the held history reaches ``last`` (see the module docstring)."""
        series = chart.series
        previous: dt.datetime | None = None
        for page in range(MAX_REFETCH_PAGES + 1):
            if not await self._history_ready(chart, token):
                return  # a newer request (or closing the chart) took over
            oldest = series.oldest_held
            if oldest is None or oldest <= last:
                return
            if previous is not None and oldest >= previous:
                logger.warning(
                    "chart %s: the server has nothing older than %s; a gap back to %s remains",
                    chart.symbol,
                    oldest,
                    last,
                )
                return
            if page == MAX_REFETCH_PAGES:
                logger.warning(
                    "chart %s: history still starts at %s after %d more pages; a gap back to "
                    "%s remains",
                    chart.symbol,
                    oldest,
                    page,
                    last,
                )
                return
            previous = oldest
            await self._page(
                chart, token, {"closestTimestamp": _iso(oldest), "asFarAsTimestamp": _iso(last)}
            )

    async def _page(self, chart: Chart, token: object, time_range: dict[str, object]) -> None:
        """One further page of a held refetch; its subscription is cancelled after its history."""
        data = await self._ws.request("md/getChart", json=_body(chart, time_range), idempotent=True)
        ids = _chart_ids(data)
        if chart.series.current(token):
            chart.series.add_page(*ids)
            self._adopt_orphans(chart)
            await self._history_ready(chart, token)
        await self.cancel(*ids)

    async def _history_ready(self, chart: Chart, token: object) -> bool:
        """Wait until the held history of request ``token`` ended (False: it was replaced)."""
        series = chart.series
        while series.current(token) and chart in self.charts:
            if series.history_ready:
                return True
            waiter = self._waits.get(chart)
            if waiter is None:
                waiter = self._waits[chart] = anyio.Event()
            await waiter.wait()
        return False


def _body(chart: Chart, time_range: dict[str, object]) -> dict[str, Any]:
    return {
        "symbol": chart.contract_id,
        "chartDescription": chart.spec.chart_description(),
        "timeRange": time_range,
    }


def _chart_ids(data: Any) -> tuple[int | None, int | None]:
    if not isinstance(data, Mapping):
        raise TradovateError(f"md/getChart answer is not an object: {data!r}"[:200])
    hist = data.get("historicalId")
    real = data.get("realtimeId")
    return (
        hist if isinstance(hist, int) else None,
        real if isinstance(real, int) else None,
    )
