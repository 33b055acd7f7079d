"""Chart stitching without I/O: history, then live bars, as one series with no gap and no
duplicate, across any number of ``md/getChart`` requests.

Tradovate answers ``md/getChart`` with two subscription ids (``historicalId``, ``realtimeId``)
and then sends ``chart`` events: packets of bars under the historical id ending with
``{"id": historicalId, "eoh": true}``, and packets under the realtime id carrying the forming bar
again and again until the next one starts (``francis2/api`` ``MarketData.md``;
``tradovate/example-api-js`` EX-10/EX-11). The two kinds may interleave.

:class:`BarSeries` takes those packets and produces :class:`ChartUpdate`\\ s:

* history is held until its end marker, sorted, then merged, so the consumer sees bars in
  time order whatever order the pages came in;
* live packets that arrive before the end of history wait for it;
* a bar is keyed by its timestamp: a timestamp seen before is an update (``new=False``), and
  only if the bar changed; an identical bar is not delivered twice;
* after a reconnect (or lost events) the caller asks for history again from the last bar held
  and calls :meth:`BarSeries.begin` with the new ids and ``resync=True``: packets of the old
  ids are ignored from then on, and the refetched bars merge in by timestamp;
* the server caps one answer, so after a long outage the refetch takes pages: ``begin(...,
  hold=True)`` keeps the history at its end marker, :meth:`BarSeries.add_page` adds the ids
  of each further ``md/getChart`` (older bars, up to the oldest held so far), and
  :meth:`BarSeries.release` merges everything at once, sorted, then the live bars that
  waited. The consumer sees the outage filled in time order, never a gap that closes later.

Undelivered updates coalesce per timestamp (a newer version of a bar supersedes the older
one), so a slow consumer costs at most one pending entry per bar held and nothing is dropped.
:class:`TickSeries` does the same for tick charts, keyed by tick id (ticks never change, so a
tick id seen before is skipped).
"""

from __future__ import annotations

import bisect
import collections
import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from ._md_models import Bar, ChartUpdate, Tick, decode_bars, decode_ticks

__all__ = ["BarSeries", "TickSeries"]

logger = logging.getLogger(__name__)


class _Request:
    """The ids of the current ``md/getChart`` and what arrived for it before its history
    ended (``history``: decoded bars or ticks, of every page; ``live``: raw packets)."""

    __slots__ = (
        "ended",
        "historical_id",
        "history",
        "hold",
        "live",
        "loading",
        "pages",
        "realtime_id",
        "resync",
        "silenced",
    )

    def __init__(
        self, historical_id: int | None, realtime_id: int | None, resync: bool, hold: bool = False
    ) -> None:
        self.historical_id = historical_id
        self.realtime_id = realtime_id
        self.resync = resync
        self.loading = historical_id is not None
        self.history: list[Any] = []
        self.live: list[Any] = []
        #: history is kept at its end marker until ``release`` (a refetch taking pages)
        self.hold = hold
        #: the end marker of the main request came
        self.ended = False
        #: historical ids of further pages whose end marker has not come yet
        self.pages: set[int] = set()
        #: realtime ids of further pages: their live bars are the main request's again
        self.silenced: set[int] = set()

    def owns(self, chart_id: Any) -> bool:
        return (
            chart_id == self.historical_id
            or chart_id == self.realtime_id
            or chart_id in self.pages
            or chart_id in self.silenced
        )

    def history_ready(self) -> bool:
        return self.ended and not self.pages

    def add_page(self, historical_id: int | None, realtime_id: int | None) -> None:
        if historical_id is not None:
            self.pages.add(historical_id)
        if realtime_id is not None:
            self.silenced.add(realtime_id)

    def page_packet(self, packet: Mapping[str, Any], chart_id: Any) -> bool:
        """Handle a packet of a further page or of its realtime id; False if not one."""
        if chart_id in self.silenced:
            return True
        if chart_id not in self.pages:
            return False
        if packet.get("eoh"):
            self.pages.discard(chart_id)
        return True


class _HeldRequest:
    """What bar and tick series share about their current ``md/getChart`` request: whether an
    answer is theirs, and a refetch held back until all its pages came (see ``_md_charts``)."""

    _request: _Request
    requests: int
    resyncs: int
    #: a gap was seen and its refetch has not begun yet (see :meth:`suspend`)
    _suspended = False
    #: gaps seen so far (:meth:`suspend` calls): a request sent before the latest one may
    #: have lost packets to it, so its beginning does not end the suspension
    gaps = 0

    def _end_history(self, request: _Request) -> None:
        raise NotImplementedError

    def begin(
        self,
        historical_id: int | None,
        realtime_id: int | None,
        *,
        resync: bool,
        hold: bool = False,
        gaps: int | None = None,
    ) -> object:
        """A new ``md/getChart`` answer: packets of earlier ids are ignored from now on. With
        ``hold``, its history waits for :meth:`release` (pages may follow). ``gaps`` is
        :attr:`gaps` when the request was sent: a suspension ends only with a request sent
        after the last gap. Returns a token for :meth:`current`."""
        self._request = _Request(historical_id, realtime_id, resync, hold)
        if gaps is None or gaps == self.gaps:
            self._suspended = False
        self.requests += 1
        if resync:
            self.resyncs += 1
        return self._request

    def current(self, token: object) -> bool:
        """Whether ``token`` (from :meth:`begin`) is still the current request."""
        return token is self._request

    def token(self) -> object:
        """The current request's token (see :meth:`current`)."""
        return self._request

    def suspend(self) -> None:
        """Events of this series were lost (a dropped backlog, a lost connection) and a
        refetch will follow: until a request begins after this call, nothing is merged (live
        packets and any history still coming wait). A bar after the gap merged now would move
        the refetch's start past the bars the gap took, and those would be missing, or come
        back late and out of order. :meth:`resume` undoes it when the refetch fails."""
        self._suspended = True
        self.gaps += 1
        request = self._request
        if request.historical_id is not None:
            request.loading = True

    def resume(self) -> None:
        """The refetch failed: merge what waited rather than hold it without end."""
        self._suspended = False
        self._merge_when_due()

    def _history_ended(self, request: _Request) -> None:
        """The end marker of the current request's history came."""
        request.ended = True
        self._merge_when_due()

    def _merge_when_due(self) -> None:
        """Merge the current request's history and the live packets that waited for it, once
        its history ended and neither a held refetch nor a suspension keeps them back."""
        request = self._request
        if request.ended and request.loading and not request.hold and not self._suspended:
            self._end_history(request)

    def owns(self, chart_id: int) -> bool:
        return self._request.owns(chart_id)

    def add_page(self, historical_id: int | None, realtime_id: int | None) -> None:
        """A further ``md/getChart`` answer of the current (held) refetch: its history joins
        the held one; its live bars are ignored (the main request's carry them)."""
        self._request.add_page(historical_id, realtime_id)

    @property
    def history_ready(self) -> bool:
        """The held history ended, for the main request and every page asked for."""
        return self._request.history_ready()

    @property
    def oldest_held(self) -> dt.datetime | None:
        """The oldest bar or tick of the held history (None if it has none)."""
        history = self._request.history
        return min((item.timestamp for item in history), default=None)

    def release(self) -> None:
        """Merge the held history (all pages) and the live data that waited for it."""
        self._request.hold = False
        self._merge_when_due()


class BarSeries(_HeldRequest):
    """The bars of one chart and the updates not yet handed to the consumer."""

    def __init__(self) -> None:
        self._times: list[dt.datetime] = []
        self._bars: dict[dt.datetime, Bar] = {}
        self._pending: collections.OrderedDict[dt.datetime, ChartUpdate] = collections.OrderedDict()
        self._request = _Request(None, None, False)
        self.requests = 0
        self.resyncs = 0
        self.malformed = 0

    # -- state ------------------------------------------------------------------------------

    @property
    def bars(self) -> list[Bar]:
        """Every bar held, oldest first."""
        return [self._bars[t] for t in self._times]

    @property
    def last_time(self) -> dt.datetime | None:
        return self._times[-1] if self._times else None

    @property
    def loading(self) -> bool:
        """History of the current request has not ended yet."""
        return self._request.loading

    def __len__(self) -> int:
        return len(self._times)

    # -- input ------------------------------------------------------------------------------

    def feed(self, packet: Mapping[str, Any]) -> bool:
        """One element of a ``chart`` event's ``charts``; returns whether it was ours."""
        request = self._request
        chart_id = packet.get("id")
        if chart_id is None or not request.owns(chart_id):
            return False
        if request.page_packet(packet, chart_id):
            if not packet.get("eoh"):
                request.history += self._decode(packet.get("bars"))
            return True
        if chart_id == request.historical_id and request.loading:
            if not packet.get("eoh"):
                request.history += self._decode(packet.get("bars"))
            else:
                self._history_ended(request)
            return True
        if packet.get("eoh"):
            return True
        if request.loading:
            request.live.append(packet.get("bars"))
            return True
        for bar in self._decode(packet.get("bars")):
            self._merge(bar, historical=False, resynced=False)
        return True

    def _decode(self, raw: Any) -> list[Bar]:
        if not raw:
            return []
        try:
            return decode_bars(raw)
        except (msgspec.ValidationError, TypeError, ValueError) as exc:
            self.malformed += 1
            logger.warning("ignoring a malformed chart packet: %s", exc)
            return []

    def _end_history(self, request: _Request) -> None:
        request.loading = False
        request.ended = True
        bars: list[Bar] = request.history
        bars.sort(key=lambda b: b.timestamp)
        for bar in bars:
            self._merge(bar, historical=True, resynced=request.resync)
        for raw in request.live:
            for bar in self._decode(raw):
                self._merge(bar, historical=False, resynced=request.resync)
        request.history.clear()
        request.live.clear()

    def _merge(self, bar: Bar, *, historical: bool, resynced: bool) -> None:
        stamp = bar.timestamp
        held = self._bars.get(stamp)
        if held is not None:
            if held == bar:
                return
            self._bars[stamp] = bar
            self._push(ChartUpdate(bar, False, historical, resynced))
            return
        times = self._times
        if times and stamp < times[-1]:
            bisect.insort(times, stamp)
        else:
            times.append(stamp)
        self._bars[stamp] = bar
        self._push(ChartUpdate(bar, True, historical, resynced))

    def _push(self, update: ChartUpdate) -> None:
        pending = self._pending
        stamp = update.bar.timestamp
        earlier = pending.get(stamp)
        if earlier is not None:
            update = ChartUpdate(
                update.bar,
                earlier.new or update.new,
                earlier.historical and update.historical,
                earlier.resynced or update.resynced,
            )
        pending[stamp] = update

    # -- output -----------------------------------------------------------------------------

    def pending(self) -> int:
        return len(self._pending)

    def take(self) -> ChartUpdate | None:
        """The oldest undelivered update, or None."""
        if not self._pending:
            return None
        return self._pending.popitem(last=False)[1]

    def take_all(self) -> Iterable[ChartUpdate]:
        while self._pending:
            yield self._pending.popitem(last=False)[1]


class TickSeries(_HeldRequest):
    """The ticks of one tick chart, deduplicated by tick id, in id order per packet batch."""

    def __init__(self, *, max_pending: int = 100_000) -> None:
        self._request = _Request(None, None, False)
        self._pending: collections.deque[Tick] = collections.deque()
        self._max_pending = max_pending
        self.last_id: int | None = None
        self.last_time: dt.datetime | None = None
        self.count = 0
        self.requests = 0
        self.resyncs = 0
        self.skipped = 0
        self.malformed = 0

    @property
    def loading(self) -> bool:
        return self._request.loading

    def _end_history(self, request: _Request) -> None:
        request.loading = False
        request.ended = True
        ticks: list[Tick] = request.history
        ticks += [t for p in request.live for t in self._decode(p)]
        request.history = []
        request.live.clear()
        self._accept(ticks)

    def feed(self, packet: Mapping[str, Any]) -> bool:
        request = self._request
        chart_id = packet.get("id")
        if chart_id is None or not request.owns(chart_id):
            return False
        if request.page_packet(packet, chart_id):
            if not packet.get("eoh"):
                request.history += self._decode(packet)
            return True
        if chart_id == request.historical_id and request.loading:
            if not packet.get("eoh"):
                request.history += self._decode(packet)
            else:
                self._history_ended(request)
            return True
        if packet.get("eoh"):
            return True
        if request.loading:
            request.live.append(packet)
            return True
        self._accept(self._decode(packet))
        return True

    def _decode(self, packet: Any) -> list[Tick]:
        if not isinstance(packet, Mapping) or not packet.get("tks"):
            return []
        try:
            return decode_ticks(dict(packet))
        except (KeyError, TypeError, ValueError) as exc:
            self.malformed += 1
            logger.warning("ignoring a malformed tick packet: %s", exc)
            return []

    def _accept(self, ticks: list[Tick]) -> None:
        ticks.sort(key=lambda t: t.id)
        for tick in ticks:
            if self.last_id is not None and tick.id <= self.last_id:
                continue
            self.last_id = tick.id
            self.last_time = tick.timestamp
            self.count += 1
            if len(self._pending) >= self._max_pending:
                self._pending.popleft()
                self.skipped += 1
                if self.skipped == 1 or self.skipped % 10_000 == 0:
                    logger.warning(
                        "tick stream consumer lags: %d tick(s) skipped so far", self.skipped
                    )
            self._pending.append(tick)

    def pending(self) -> int:
        return len(self._pending)

    def take(self) -> Tick | None:
        return self._pending.popleft() if self._pending else None
