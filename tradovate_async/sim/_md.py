"""The simulator's market data: quotes, DOM, histograms, charts and tick charts, all read from
one :class:`~tradovate_async.sim._prices.PricePath`, at a market time given per socket (the
market clock for ``md`` sockets, the user's replay clock for ``replay`` sockets).

Wire shapes follow Tradovate's market-data reference (``francis2/api`` ``MarketData.md``) and the
tick-chart tutorial (``tradovate/example-api-js`` EX-11). Choices where the reference is silent:

* Chart history holds completed bars only; the realtime subscription then sends the forming
  bar each interval, and when a bar completes its final version before the next one, so the
  server side never leaves a gap. History pages hold up to 100 bars, then ``{"id", "eoh"}``.
* ``Ticks(n)`` bars hold ``n`` trades (one trade per second of market time); ``Volume`` and
  ``Range`` bars start afresh each hour of market time.
* ``md/cancelChart`` accepts only the id named by ``cancel_chart_by`` (``"realtime"`` or
  ``"historical"``): the sources disagree, and a client must work with either server.
* Histograms cover the current hour; the first message is a refresh, later ones carry the
  offsets that changed (their new totals).

Everything here runs on the simulator's loop; nothing blocks on I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import zlib
from collections.abc import Callable
from typing import Any, Literal

from ._market import contract_id, iso_time, symbol_of
from ._prices import HOUR, PricePath, product_spec

__all__ = ["ChartSub", "MarketSim", "MdConnState"]

_PAGE = 100
_MAX_HISTORY = 10_000
_DAY = 86_400

CancelBy = Literal["realtime", "historical"]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _event(kind: str, data: Any) -> str:
    return "a" + _dumps([{"e": kind, "d": data}])


def parse_time(value: Any) -> float | None:
    """An ISO-8601 timestamp (``Z`` or offset; minutes precision allowed) as epoch seconds."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


@dataclasses.dataclass(slots=True)
class ChartSub:
    """One ``md/getChart`` subscription of one socket."""

    historical_id: int
    realtime_id: int
    cid: int
    kind: Literal["time", "event", "tick"]
    length: int  # seconds per bar (time bars), or the element size (event bars)
    unit: str
    last_start: int | None = None
    last_second: int | None = None


@dataclasses.dataclass(slots=True)
class MdConnState:
    """Market-data subscriptions of one socket."""

    quotes: set[int] = dataclasses.field(default_factory=set)
    doms: set[int] = dataclasses.field(default_factory=set)
    histograms: dict[int, dict[int, float]] = dataclasses.field(default_factory=dict)
    histogram_seconds: dict[int, int] = dataclasses.field(default_factory=dict)
    charts: dict[int, ChartSub] = dataclasses.field(default_factory=dict)


class MarketSim:
    """Answers market-data requests and produces live frames."""

    def __init__(self, path: PricePath | None = None, *, cancel_chart_by: CancelBy = "realtime"):
        if cancel_chart_by not in ("realtime", "historical"):
            raise ValueError("cancel_chart_by must be 'realtime' or 'historical'")
        self.path = path or PricePath()
        self.cancel_chart_by: CancelBy = cancel_chart_by
        self._ids = itertools.count(101)
        self.cancelled: list[int] = []
        #: the most bars (or ticks) one ``md/getChart`` answer holds, whatever
        #: ``asMuchAsElements`` asks: the real server caps an answer too, so a long history
        #: takes several requests (``closestTimestamp`` = the oldest bar received)
        self.max_history = _MAX_HISTORY

    # -- prices ---------------------------------------------------------------------------------

    def _spec(self, cid: int) -> tuple[float, float]:
        spec = product_spec(symbol_of(cid))
        return spec.base_price, spec.tick_size

    def trade(self, cid: int, second: int) -> tuple[float, int]:
        base, tick = self._spec(cid)
        return self.path.at(cid, second, base, tick)

    def price(self, cid: int, when: float) -> float:
        """The last trade price of ``cid`` at market time ``when``."""
        return self.trade(cid, int(when))[0]

    # -- requests -------------------------------------------------------------------------------

    def request(
        self, state: MdConnState, endpoint: str, body: Any, now: float
    ) -> tuple[int, Any, list[str]]:
        """``(status, payload, frames to send after the answer)`` for an ``md/*`` request."""
        if endpoint == "md/getchart":
            return self._get_chart(state, body, now)
        if endpoint == "md/cancelchart":
            return self._cancel_chart(state, body)
        kinds = {
            "md/subscribequote": "quote",
            "md/unsubscribequote": "quote",
            "md/subscribedom": "dom",
            "md/unsubscribedom": "dom",
            "md/subscribehistogram": "histogram",
            "md/unsubscribehistogram": "histogram",
        }
        kind = kinds.get(endpoint)
        if kind is None:
            return 404, f"Not found: {endpoint}", []
        symbol = body.get("symbol") if isinstance(body, dict) else None
        if isinstance(symbol, bool) or not isinstance(symbol, str | int) or not str(symbol):
            return 400, "symbol is required", []
        cid = contract_id(symbol)
        second = int(now)
        if endpoint.startswith("md/unsubscribe"):
            state.quotes.discard(cid) if kind == "quote" else None
            state.doms.discard(cid) if kind == "dom" else None
            state.histograms.pop(cid, None) if kind == "histogram" else None
            return 200, None, []
        if kind == "quote":
            state.quotes.add(cid)
            return 200, None, [_event("md", {"quotes": [self.quote(cid, second)]})]
        if kind == "dom":
            state.doms.add(cid)
            return 200, None, [_event("md", {"doms": [self.dom(cid, second)]})]
        state.histograms[cid] = {}
        return 200, None, [_event("md", {"histograms": [self._histogram(state, cid, second)]})]

    def quote(self, cid: int, second: int) -> dict[str, Any]:
        base, tick = self._spec(cid)
        prices, sizes = self.path.hour(cid, second // HOUR, base, tick)
        index = second % HOUR
        price = prices[index]
        noise = zlib.crc32(f"{cid}:{second}".encode())
        return {
            "timestamp": iso_time(second),
            "contractId": cid,
            "entries": {
                "Bid": {"price": round(price - tick, 8), "size": 1 + noise % 50},
                "Offer": {"price": price, "size": 1 + (noise >> 8) % 50},
                "Trade": {"price": price, "size": sizes[index]},
                "TotalTradeVolume": {"size": sum(sizes[: index + 1])},
                "OpeningPrice": {"price": prices[0]},
                "HighPrice": {"price": max(prices[: index + 1])},
                "LowPrice": {"price": min(prices[: index + 1])},
            },
        }

    def dom(self, cid: int, second: int, depth: int = 5) -> dict[str, Any]:
        price, _ = self.trade(cid, second)
        _, tick = self._spec(cid)
        noise = zlib.crc32(f"dom:{cid}:{second}".encode())
        return {
            "contractId": cid,
            "timestamp": iso_time(second),
            "bids": [
                {"price": round(price - tick * (i + 1), 8), "size": 1 + (noise >> i) % 80}
                for i in range(depth)
            ],
            "offers": [
                {"price": round(price + tick * i, 8), "size": 1 + (noise >> (i + 5)) % 80}
                for i in range(depth)
            ],
        }

    def _histogram(self, state: MdConnState, cid: int, second: int) -> dict[str, Any]:
        """A full histogram of the hour so far (refresh) or the offsets changed since the
        last one sent on this socket."""
        base, tick = self._spec(cid)
        hour_start = second - second % HOUR
        prices, sizes = self.path.hour(cid, second // HOUR, base, tick)
        anchor = prices[0]
        held = state.histograms.setdefault(cid, {})
        last = state.histogram_seconds.get(cid)
        refresh = not held or last is None or last < hour_start
        if refresh:
            held.clear()
            first = hour_start
        else:
            assert last is not None
            first = last + 1
        changed: dict[int, float] = {}
        for s in range(first, second + 1):
            offset = round((prices[s % HOUR] - anchor) / tick)
            held[offset] = held.get(offset, 0.0) + sizes[s % HOUR]
            changed[offset] = held[offset]
        state.histogram_seconds[cid] = second
        day = dt.datetime.fromtimestamp(second, dt.UTC)
        return {
            "contractId": cid,
            "timestamp": iso_time(second),
            "tradeDate": {"year": day.year, "month": day.month, "day": day.day},
            "base": anchor,
            "items": {str(k): v for k, v in (held if refresh else changed).items()},
            "refresh": refresh,
        }

    # -- charts ---------------------------------------------------------------------------------

    def _get_chart(self, state: MdConnState, body: Any, now: float) -> tuple[int, Any, list[str]]:
        if not isinstance(body, dict):
            return 400, "Request body must be a JSON object", []
        symbol = body.get("symbol")
        desc = body.get("chartDescription")
        time_range = body.get("timeRange")
        if isinstance(symbol, bool) or not isinstance(symbol, str | int) or not str(symbol):
            return 400, "symbol is required", []
        if not isinstance(desc, dict) or not isinstance(time_range, dict) or not time_range:
            return 400, "chartDescription and a non-empty timeRange are required", []
        kind, length, unit = _describe(desc)
        if kind is None:
            return 400, "unsupported chartDescription", []
        sub = ChartSub(next(self._ids), next(self._ids), contract_id(symbol), kind, length, unit)
        second = int(now)
        closest = parse_time(time_range.get("closestTimestamp"))
        far = parse_time(time_range.get("asFarAsTimestamp"))
        count = time_range.get("asMuchAsElements")
        limit = count if isinstance(count, int) and count > 0 else None
        end = min(second, int(closest)) if closest is not None else second
        if kind == "tick":
            frames = self._tick_history(sub, end, far, limit)
            sub.last_second = second
        else:
            frames = self._bar_history(sub, end, far, limit)
            sub.last_start = self._segment(sub, second)[0]
        state.charts[sub.realtime_id] = sub
        frames.append(_event("chart", {"charts": [{"id": sub.historical_id, "eoh": True}]}))
        return 200, {"historicalId": sub.historical_id, "realtimeId": sub.realtime_id}, frames

    def _cancel_chart(self, state: MdConnState, body: Any) -> tuple[int, Any, list[str]]:
        ident = body.get("subscriptionId") if isinstance(body, dict) else None
        for sub in state.charts.values():
            wanted = sub.realtime_id if self.cancel_chart_by == "realtime" else sub.historical_id
            if ident == wanted:
                del state.charts[sub.realtime_id]
                self.cancelled.append(sub.realtime_id)
                return 200, None, []
        return 404, f"Chart subscription not found: {ident}", []

    def _segment(self, sub: ChartSub, second: int) -> tuple[int, int]:
        """The bar ``[start, end)`` that contains ``second``."""
        if sub.kind == "time":
            start = second - second % sub.length
            return start, start + sub.length
        for start, end in self._event_segments(sub, second // HOUR):
            if start <= second < end:
                return start, end
        raise AssertionError("event segments cover the hour")  # pragma: no cover

    def _event_segments(self, sub: ChartSub, hour: int) -> list[tuple[int, int]]:
        base, tick = self._spec(sub.cid)
        prices, sizes = self.path.hour(sub.cid, hour, base, tick)
        first = hour * HOUR
        out: list[tuple[int, int]] = []
        start = 0
        volume = 0
        high = low = prices[0]
        for i in range(HOUR):
            volume += sizes[i]
            high, low = max(high, prices[i]), min(low, prices[i])
            done = (
                volume >= sub.length
                if sub.unit == "Volume"
                else round((high - low) / tick) >= sub.length
            )
            if done or i == HOUR - 1:
                out.append((first + start, first + i + 1))
                start = i + 1
                volume = 0
                if start < HOUR:
                    high = low = prices[start]
        return out

    def _segments_before(
        self, sub: ChartSub, end: int, far: float | None, limit: int | None
    ) -> list[tuple[int, int]]:
        """Completed segments ending at or before ``end``, newest last, at most ``limit``."""
        cap = min(limit or self.max_history, self.max_history)
        out: list[tuple[int, int]] = []
        if sub.kind == "time":
            stop = end - end % sub.length
            start = stop - sub.length
            while len(out) < cap and (far is None or start + sub.length > far) and start >= 0:
                out.append((start, start + sub.length))
                start -= sub.length
        else:
            hour = end // HOUR
            while len(out) < cap and hour >= 0 and end - hour * HOUR <= 30 * _DAY:
                segs = [s for s in self._event_segments(sub, hour) if s[1] <= end]
                for seg in reversed(segs):
                    if len(out) >= cap or (far is not None and seg[1] <= far):
                        break
                    out.append(seg)
                if far is not None and hour * HOUR <= far:
                    break
                hour -= 1
        out.reverse()
        return out

    def bar(self, sub: ChartSub, start: int, end: int, upto: int) -> dict[str, Any]:
        base, tick = self._spec(sub.cid)
        length = end - start
        stride = max(1, length // 600)
        samples = self.path.span(sub.cid, start, min(end, upto + 1), base, tick, stride)
        if not samples:
            samples = [(start, *self.path.at(sub.cid, start, base, tick))]
        opening = samples[0][1]
        prev = opening
        up_volume = down_volume = 0
        up_ticks = down_ticks = 0
        for _, price, size in samples:
            if price >= prev:
                up_volume += size
                up_ticks += 1
            else:
                down_volume += size
                down_ticks += 1
            prev = price
        prices = [p for _, p, _ in samples]
        return {
            "timestamp": iso_time(start),
            "open": opening,
            "high": max(prices),
            "low": min(prices),
            "close": prices[-1],
            "upVolume": up_volume,
            "downVolume": down_volume,
            "upTicks": up_ticks,
            "downTicks": down_ticks,
            "bidVolume": down_volume,
            "offerVolume": up_volume,
        }

    def _bar_history(
        self, sub: ChartSub, end: int, far: float | None, limit: int | None
    ) -> list[str]:
        segments = self._segments_before(sub, end, far, limit)
        frames = []
        trade_date = _trade_date(end)
        for i in range(0, len(segments), _PAGE):
            bars = [self.bar(sub, s, e, e) for s, e in segments[i : i + _PAGE]]
            packet = {"id": sub.historical_id, "td": trade_date, "bars": bars}
            frames.append(_event("chart", {"charts": [packet]}))
        return frames

    def _tick_packet(self, sub: ChartSub, chart_id: int, first: int, last: int) -> dict[str, Any]:
        base, tick = self._spec(sub.cid)
        samples = self.path.span(sub.cid, first, last, base, tick)
        base_ticks = round(samples[0][1] / tick)
        return {
            "id": chart_id,
            "s": "db" if chart_id == sub.historical_id else "rt",
            "td": _trade_date(first),
            "bp": base_ticks,
            "bt": first * 1000,
            "ts": tick,
            "tks": [
                {
                    "t": (s - first) * 1000,
                    "p": round(p / tick) - base_ticks,
                    "s": size,
                    "b": round(p / tick) - base_ticks - 1,
                    "a": round(p / tick) - base_ticks,
                    "id": s,
                }
                for s, p, size in samples
            ],
        }

    def _tick_history(
        self, sub: ChartSub, end: int, far: float | None, limit: int | None
    ) -> list[str]:
        count = min(limit or 500, self.max_history)
        first = end - count + 1
        if far is not None:
            first = max(first, int(far))
        frames = []
        for start in range(first, end + 1, _PAGE):
            stop = min(end + 1, start + _PAGE)
            packet = self._tick_packet(sub, sub.historical_id, start, stop)
            frames.append(_event("chart", {"charts": [packet]}))
        return frames

    # -- live frames ----------------------------------------------------------------------------

    def live(self, state: MdConnState, now: float) -> list[str]:
        """What a socket gets on one interval: quotes, DOMs, histogram changes, chart bars."""
        second = int(now)
        frames: list[str] = []
        if state.quotes:
            quotes = [self.quote(cid, second) for cid in sorted(state.quotes)]
            frames.append(_event("md", {"quotes": quotes}))
        if state.doms:
            frames.append(_event("md", {"doms": [self.dom(c, second) for c in sorted(state.doms)]}))
        if state.histograms:
            hists = [
                self._histogram(state, cid, second)
                for cid in sorted(state.histograms)
                if state.histogram_seconds.get(cid) != second
            ]
            if hists:
                frames.append(_event("md", {"histograms": hists}))
        packets = []
        for sub in list(state.charts.values()):
            packet = self._live_chart(sub, second)
            if packet is not None:
                packets.append(packet)
        if packets:
            frames.append(_event("chart", {"charts": packets}))
        return frames

    def _live_chart(self, sub: ChartSub, second: int) -> dict[str, Any] | None:
        if sub.kind == "tick":
            last = sub.last_second if sub.last_second is not None else second - 1
            if second <= last:
                return None
            sub.last_second = second
            return self._tick_packet(sub, sub.realtime_id, last + 1, second + 1)
        start, end = self._segment(sub, second)
        bars = []
        previous = sub.last_start
        if previous is not None and previous < start:
            seg = self._segment(sub, previous)
            while seg[0] < start:
                bars.append(self.bar(sub, seg[0], seg[1], seg[1]))
                seg = self._segment(sub, seg[1])
        bars.append(self.bar(sub, start, end, second))
        sub.last_start = start
        return {"id": sub.realtime_id, "td": _trade_date(second), "bars": bars}


def _describe(desc: dict[str, Any]) -> tuple[Any, int, str]:
    """``(kind, length, unit)`` of a chartDescription, or ``(None, 0, "")``."""
    underlying = desc.get("underlyingType")
    size = desc.get("elementSize", 1)
    unit = desc.get("elementSizeUnit", "UnderlyingUnits")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        return None, 0, ""
    if underlying == "MinuteBar" and unit == "UnderlyingUnits":
        return "time", 60 * size, unit
    if underlying == "DailyBar" and unit == "UnderlyingUnits":
        return "time", _DAY * size, unit
    if underlying == "Tick" and unit == "UnderlyingUnits":
        return ("tick", 1, unit) if size == 1 else ("time", size, unit)
    if underlying == "Tick" and unit in ("Volume", "Range"):
        return "event", size, unit
    return None, 0, ""


def _trade_date(second: int) -> int:
    day = dt.datetime.fromtimestamp(second, dt.UTC)
    return day.year * 10_000 + day.month * 100 + day.day


ClockFn = Callable[[], float]
