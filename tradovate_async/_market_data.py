"""Typed market data over a Tradovate market-data (or replay) socket.

``async with session.market_data() as md:`` opens a market-data socket and a dispatcher task
that reads its events and routes them, decoded into msgspec Structs, to the streams the
consumer opened::

    async for quote in md.quotes("ESZ6", "CLF7"): ...
    async for dom in md.dom("ESZ6"): ...
    async for hist in md.histogram("ESZ6"): ...
    async with md.chart("ESZ6", bars=Minute(5), history=500) as chart:
        async for update in chart: ...

Why it is built this way:

* **Symbols are resolved once.** Market data arrives keyed by ``contractId``, not by the name
  asked for; ``contract/find`` answers are cached for the life of the object.
* **The dispatcher never waits for a consumer.** Each stream has its own buffer with its own
  overflow policy (see :mod:`._md_streams`), so a slow chart consumer cannot delay quotes, and
  the socket's own buffer stays nearly empty.
* **Nothing is lost silently.** Quote, DOM and histogram subscriptions are replayed by the
  socket after a reconnect. Charts are not: after a reconnect, or when the socket reports
  events dropped by its buffer (``stats.dropped_events`` grew), every chart fetches its history
  again from the last bar it holds and merges it in (``ChartUpdate.resynced`` and a WARNING say
  so), in as many pages as the server's cap on one answer makes it take (bounded:
  :mod:`._md_charts`), and every histogram is subscribed again so that the server sends a full
  refresh.
* **Cancelling a chart** sends ``md/cancelChart`` with the ``realtimeId`` (the reference's
  prose, the partner docs) and then with the ``historicalId`` (the reference's parameter
  comment, the official JS tutorial EX-10 and the strategy example): sources disagree, the
  server refuses the wrong one, and either way the subscription ends.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc
import msgspec

from ._errors import SessionClosedError, TradovateError
from ._event_buffer import EVENT_OVERFLOW, Overflow
from ._exports import publish
from ._md_charts import ChartRequests
from ._md_models import BarSpec, DomSnapshot, Histogram, Minute, Quote, ReplayClock, Ticks
from ._md_routes import MdRoutes
from ._md_streams import ChartStream, LatestStream, TickStream
from ._ws import EVENT_DISCONNECTED, EVENT_RECONNECTED, TradovateWebSocket

if TYPE_CHECKING:
    from ._session import TradovateSession

__all__ = ["MarketData"]

logger = logging.getLogger(__name__)

Resolver = Callable[[str], Awaitable[int]]
ClockListener = Callable[[ReplayClock], None]
_SUBSCRIBE = {
    "quote": "md/subscribeQuote",
    "dom": "md/subscribeDOM",
    "histogram": "md/subscribeHistogram",
}


def session_resolver(session: TradovateSession) -> Resolver:
    """``contract/find?name=`` over the session's REST client."""

    async def resolve(name: str) -> int:
        data = await session.get("contract/find", params={"name": name})
        ident = data.get("id") if isinstance(data, Mapping) else None
        if isinstance(ident, bool) or not isinstance(ident, int):
            raise TradovateError(f"contract/find gave no contract id for {name!r}")
        return ident

    return resolve


class MarketData:
    """Typed quotes, DOM, histograms, charts and tick charts over one market-data socket.

    Args:
        ws: a market-data or replay :class:`TradovateWebSocket` (opened by ``async with`` of
            this object when ``own_socket``; else the caller keeps it open).
        resolve: ``name -> contract id`` (``contract/find``); called once per name.
        own_socket: open and close ``ws`` with this object.
    """

    def __init__(
        self,
        ws: TradovateWebSocket,
        *,
        resolve: Resolver,
        own_socket: bool = False,
        dispatch: bool = True,
    ) -> None:
        self._ws = ws
        self._own_dispatch = dispatch
        self._resolve = resolve
        self._own_socket = own_socket
        self._contracts: dict[str, int] = {}
        self._resolve_lock = anyio.Lock()
        self._routes = MdRoutes(_SUBSCRIBE)
        self._latest = self._routes.latest
        self._refs: dict[tuple[str, int], int] = {}
        self._histograms = self._routes.histograms
        self._chart_requests = ChartRequests(ws)
        self._clock_listeners: list[ClockListener] = []
        self._task_group: anyio.abc.TaskGroup | None = None
        self._scopes: set[anyio.CancelScope] = set()
        self._failure: BaseException | None = None
        self.finished = False
        #: the last replay ``clock`` event seen (replay sockets only)
        self.clock: ReplayClock | None = None

    def __repr__(self) -> str:
        return f"MarketData(ws={self._ws!r}, charts={len(self._chart_requests.charts)})"

    @property
    def malformed(self) -> int:
        """Market-data events ignored because they did not fit (each logged)."""
        return self._routes.malformed

    @property
    def websocket(self) -> TradovateWebSocket:
        """The market-data socket underneath."""
        return self._ws

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._own_socket:
            await self._ws.__aenter__()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        if self._own_dispatch:
            self._ws.set_taps(self._routes.typed_event, self._routes.typed_frame)
            task_group.start_soon(self._guarded, self._dispatch)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End every stream, stop the dispatcher, close the socket if this object owns it."""
        self._finish()
        if self._own_dispatch:
            self._ws.set_taps(None, None)
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            # Cancel only the tasks this object started (their own scope): cancelling the task
            # group's scope would also cancel the task that entered it, i.e. the caller.
            for scope in list(self._scopes):
                scope.cancel()
            await task_group.__aexit__(None, None, None)
        if self._own_socket:
            await self._ws.aclose()

    def _finish(self, failure: BaseException | None = None) -> None:
        if failure is not None and self._failure is None:
            self._failure = failure
        self.finished = True
        for streams in self._latest.values():
            for stream in streams:
                stream.wake()
        self._chart_requests.wake_all()

    def finish(self, failure: BaseException | None = None) -> None:
        """End every stream (with ``failure`` if given): for a dispatcher run by someone else."""
        self._finish(failure)

    def raise_failure(self) -> None:
        """Raise the error that ended the market-data feed, if any."""
        if self._failure is not None:
            raise self._failure

    def _check_open(self) -> None:
        if self.finished or self._task_group is None:
            self.raise_failure()
            raise SessionClosedError("MarketData is closed (or not opened with 'async with')")

    # -- contracts ------------------------------------------------------------------------------

    async def contract_id(self, symbol: str | int) -> int:
        """The contract id of ``symbol`` (an int is taken as an id), resolved once."""
        if isinstance(symbol, int) and not isinstance(symbol, bool):
            return symbol
        name = str(symbol).strip()
        if name.isdigit():
            return int(name)
        key = name.upper()
        cached = self._contracts.get(key)
        if cached is not None:
            return cached
        async with self._resolve_lock:
            cached = self._contracts.get(key)
            if cached is None:
                cached = self._contracts[key] = await self._resolve(name)
        return cached

    # -- streams --------------------------------------------------------------------------------

    def quotes(self, *symbols: str | int) -> LatestStream[Quote]:
        """Typed quotes of ``symbols``; the latest per contract waits for the consumer."""
        return LatestStream(self, "quote", symbols)

    def dom(self, *symbols: str | int) -> LatestStream[DomSnapshot]:
        """Depth of market of ``symbols``; the latest per contract waits for the consumer."""
        return LatestStream(self, "dom", symbols)

    def histogram(self, *symbols: str | int) -> LatestStream[Histogram]:
        """Whole (merged) volume-at-price histograms of ``symbols``, latest per contract."""
        return LatestStream(self, "histogram", symbols)

    def chart(
        self,
        symbol: str | int,
        *,
        bars: BarSpec | None = None,
        history: int | None = 500,
        closest: str | None = None,
        as_far_as: str | None = None,
    ) -> ChartStream:
        """History then live bars of ``symbol`` (default one-minute bars).

        ``history`` is ``asMuchAsElements``; ``closest`` and ``as_far_as`` are
        ``closestTimestamp`` and ``asFarAsTimestamp`` (ISO-8601). Tick charts: :meth:`ticks`.
        """
        spec = bars or Minute(1)
        if spec.is_tick_stream:
            raise ValueError("Ticks(1) is a tick chart: use md.ticks(symbol)")
        return ChartStream(self, symbol, spec, _time_range(history, closest, as_far_as))

    def ticks(
        self,
        symbol: str | int,
        *,
        history: int | None = 500,
        closest: str | None = None,
        as_far_as: str | None = None,
        max_pending: int = 100_000,
    ) -> TickStream:
        """Every trade of ``symbol`` (a tick chart): history, then live, deduplicated by id."""
        return TickStream(
            self, symbol, Ticks(1), _time_range(history, closest, as_far_as), max_pending
        )

    def on_clock(self, listener: ClockListener) -> Callable[[], None]:
        """Call ``listener`` with every replay ``clock`` event; returns a remover."""
        self._clock_listeners.append(listener)
        return lambda: self._clock_listeners.remove(listener)

    # -- subscriptions (called by the streams) --------------------------------------------------

    async def attach(self, stream: LatestStream[Any]) -> None:
        """Start delivering ``stream``'s contracts to it (subscribing where needed)."""
        self._check_open()
        self._latest[stream.kind].append(stream)
        try:
            for cid in stream.contract_ids:
                key = (stream.kind, cid)
                if self._refs.get(key, 0) == 0:
                    await self._ws.subscribe(_SUBSCRIBE[stream.kind], {"symbol": cid})
                self._refs[key] = self._refs.get(key, 0) + 1
        except BaseException:
            await self.detach(stream)
            raise

    async def detach(self, stream: LatestStream[Any]) -> None:
        """Stop delivering to ``stream`` (unsubscribing contracts nobody reads)."""
        streams = self._latest[stream.kind]
        if stream not in streams:
            return
        streams.remove(stream)
        for cid in stream.contract_ids:
            key = (stream.kind, cid)
            count = self._refs.get(key, 0) - 1
            if count > 0:
                self._refs[key] = count
                continue
            self._refs.pop(key, None)
            if stream.kind == "histogram":
                self._histograms.pop(cid, None)
            if not self.finished and self._ws.connected:
                try:
                    await self._ws.unsubscribe(_SUBSCRIBE[stream.kind], {"symbol": cid})
                except TradovateError as exc:
                    logger.warning("unsubscribing %s %d failed: %s", stream.kind, cid, exc)

    async def open_chart(self, chart: ChartStream | TickStream) -> None:
        """Request a chart or tick stream and deliver its bars or ticks."""
        self._check_open()
        await self._chart_requests.open(chart)

    async def close_chart(self, chart: ChartStream | TickStream) -> None:
        """Stop a chart or tick stream and cancel it on the server."""
        connected = not self.finished and self._ws.connected
        await self._chart_requests.close(chart, connected=connected)

    async def cancel_chart(self, historical_id: int | None, realtime_id: int | None) -> bool:
        """``md/cancelChart`` with the realtime id, then the historical id; True if the server
        accepted either (see the module docstring for why both)."""
        return await self._chart_requests.cancel(historical_id, realtime_id)

    # -- the dispatcher -------------------------------------------------------------------------

    async def _guarded(self, func: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run a background task of this object under the scope :meth:`aclose` cancels."""
        if self._task_group is None:  # closed before this task got to run
            return
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                await func(*args)
        finally:
            self._scopes.discard(scope)

    async def _dispatch(self) -> None:
        try:
            async for event in self._ws.events():
                self.handle_event(event.kind, event.data)
        except TradovateError as exc:
            self._finish(exc)
            return
        self._finish()

    def handle_event(self, kind: str, data: Any) -> None:
        """Route one socket event (the dispatcher calls this; so does a replay session, which
        reads the socket's events for market data and the mirror alike)."""
        try:
            self._on_event(kind, data)
        except Exception:
            # one event the code did not expect must not end market data
            self._routes.malformed += 1
            logger.exception("market data: handling a %s event failed", kind)

    def _on_event(self, kind: str, data: Any) -> None:
        if kind == "md":
            self._routes.generic(data)
        elif kind == "chart":
            self._chart_requests.on_chart(data)
        elif kind == EVENT_RECONNECTED:
            self._resync("reconnected", refetch_histograms=False)
        elif kind == EVENT_DISCONNECTED:
            logger.info("market data interrupted: %s", getattr(data, "reason", ""))
        elif kind == "clock":
            self._on_clock(data)
        elif kind == EVENT_OVERFLOW and isinstance(data, Overflow):
            # The socket dropped a backlog it may not supersede (its overflow policy): it asks
            # again for its own subscriptions (histograms get a refresh); charts are ours.
            if data.dropped.get("chart"):
                self._resync("chart events dropped by the socket buffer", refetch_histograms=False)

    def _on_clock(self, data: Any) -> None:
        try:
            if isinstance(data, str):
                clock = msgspec.json.decode(data, type=_WireClock)
            else:
                clock = msgspec.convert(data, _WireClock, strict=False)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self._routes.malformed += 1
            logger.warning("ignoring a malformed clock event: %s", exc)
            return
        self.clock = ReplayClock(clock.t, clock.s)
        for listener in list(self._clock_listeners):
            try:
                listener(self.clock)
            except Exception:
                logger.exception("clock listener failed")

    def _resync(self, why: str, *, refetch_histograms: bool) -> None:
        """Charts fetch history again from their last bar; histograms resubscribe."""
        task_group = self._task_group
        if task_group is None:
            return
        for chart in list(self._chart_requests.charts):
            chart.series.suspend()  # now, not when the refetch task runs: see suspend()
            logger.warning(
                "chart %s: %s; fetching history again from %s",
                chart.symbol,
                why,
                chart.series.last_time,
            )
            task_group.start_soon(
                self._guarded,
                self._chart_requests.refetch,
                chart,
                not why.startswith("reconnected"),
            )
        if refetch_histograms:
            for cid in [c for (kind, c) in self._refs if kind == "histogram"]:
                logger.warning("histogram %d: %s; subscribing again for a refresh", cid, why)
                task_group.start_soon(self._guarded, self._resubscribe_histogram, cid)

    async def _resubscribe_histogram(self, cid: int) -> None:
        try:
            await self._ws.unsubscribe("md/subscribeHistogram", {"symbol": cid})
            await self._ws.subscribe("md/subscribeHistogram", {"symbol": cid})
        except TradovateError as exc:
            logger.warning("histogram %d: resubscribe failed: %s", cid, exc)


class _WireClock(msgspec.Struct):
    t: dt.datetime
    s: float = 0.0


def _time_range(history: int | None, closest: str | None, as_far_as: str | None) -> dict[str, Any]:
    time_range: dict[str, Any] = {}
    if history is not None:
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError("history must be a positive number of elements")
        time_range["asMuchAsElements"] = history
    if closest is not None:
        time_range["closestTimestamp"] = closest
    if as_far_as is not None:
        time_range["asFarAsTimestamp"] = as_far_as
    if not time_range:
        raise ValueError("md/getChart needs at least one of history, closest, as_far_as")
    return time_range


publish(globals())  # its public classes show tradovate_async.X (see _exports)
