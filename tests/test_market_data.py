"""Typed market data against the real simulator: quotes, DOM, histograms, charts, tick charts.

The simulator's market clock runs fast (``market_speed``), so minute bars complete in a tenth
of a second of real time; waits are bounded (``fail_after``) and no assertion depends on how
long anything took.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from tradovate_async import Backoff, TradovateSession
from tradovate_async._charts import BarSeries, TickSeries
from tradovate_async._market_data import MarketData
from tradovate_async._md_models import (
    Bar,
    ChartUpdate,
    Daily,
    Minute,
    Quote,
    Range,
    Ticks,
    Volume,
    decode_ticks,
)
from tradovate_async.sim import SimulatedTradovate
from tradovate_async.sim._market import contract_id

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "silence_timeout": 3.0,
    "timeout": 5.0,
    "reconnect_backoff": Backoff(0.1, 0.3),
}


@pytest.fixture
async def fast_sim() -> AsyncIterator[SimulatedTradovate]:
    """One market minute every 0.1 s of real time."""
    async with SimulatedTradovate(
        market_speed=600, quote_interval=0.02, server_heartbeat=0.25
    ) as server:
        yield server


async def _open(sim: SimulatedTradovate) -> tuple[TradovateSession, MarketData]:
    session = TradovateSession(sim.config())
    await session.__aenter__()
    md = session.market_data(**FAST)
    await md.__aenter__()
    return session, md


async def _close(session: TradovateSession, md: MarketData) -> None:
    await md.aclose()
    await session.aclose()


def _stamp(second: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(second, dt.UTC)


# -- quotes, DOM, histograms ------------------------------------------------------------------


async def test_quotes_are_typed_and_symbols_resolve_once(fast_sim: SimulatedTradovate) -> None:
    session, md = await _open(fast_sim)
    try:
        seen: dict[str, Quote] = {}
        with anyio.fail_after(10):
            async for quote in md.quotes("ESZ6", "CLF7"):
                assert isinstance(quote, Quote)
                seen[quote.symbol or ""] = quote
                if len(seen) == 2:
                    break
        es, cl = seen["ESZ6"], seen["CLF7"]
        assert es.contract_id == contract_id("ESZ6") and cl.contract_id == contract_id("CLF7")
        for quote in (es, cl):
            assert quote.bid is not None and quote.offer is not None and quote.bid < quote.offer
            assert quote.trade == quote.offer and quote.volume and quote.volume > 0
            assert quote.timestamp.tzinfo is not None
        # ES trades in quarters, crude in cents: the price path uses each product's tick
        assert (es.trade or 0) * 4 == int((es.trade or 0) * 4)
        assert 40 < (cl.trade or 0) < 100 < (es.trade or 0)
        # a second stream on the same symbols resolves nothing again
        with anyio.fail_after(10):
            async with md.quotes("ESZ6") as again:
                quote = await again.__anext__()
        assert quote.symbol == "ESZ6"
        assert fast_sim.count("contract/find") == 2
    finally:
        await _close(session, md)


async def test_quotes_skip_the_socket_buffer_so_a_tiny_one_drops_nothing() -> None:
    """Typed quotes are decoded and routed as the socket reads them (its event tap): a socket
    buffer of 4 events under 300 unread quotes drops none of them; the stream keeps the latest
    per contract and counts the rest as superseded."""
    async with SimulatedTradovate(quote_interval=None) as sim:
        async with TradovateSession(sim.config()) as session:
            async with session.market_data(**FAST, event_buffer=4) as md:
                es = contract_id("ESZ6")
                async with md.quotes("ESZ6") as stream:
                    with anyio.fail_after(10):
                        await stream.__anext__()  # the snapshot sent on subscribe
                    for i in range(300):
                        quote = {
                            "timestamp": _iso(1_800_000_000 + i),
                            "contractId": es,
                            "entries": {"Trade": {"price": 100.0 + i, "size": 1}},
                        }
                        sim.send_raw(
                            "a" + json.dumps([{"e": "md", "d": {"quotes": [quote]}}]), "md"
                        )
                    with anyio.fail_after(10):
                        while stream.superseded < 299:
                            await anyio.sleep(0.01)
                    latest = await stream.__anext__()
                assert latest.trade == 399.0
                assert md.websocket.stats.dropped_events == 0
                assert md.websocket.stats.malformed_frames == 0


async def test_md_events_in_mixed_frames_and_misfits_take_their_own_routes() -> None:
    """An ``md`` event beside another kind in one frame is decoded from its own JSON (the
    event tap); one that does not fit the models is counted and logged by the generic route,
    and the next quote still arrives."""
    async with SimulatedTradovate(quote_interval=None) as sim:
        async with TradovateSession(sim.config()) as session:
            async with session.market_data(**FAST) as md:
                es = contract_id("ESZ6")
                async with md.quotes("ESZ6") as stream:
                    with anyio.fail_after(10):
                        await stream.__anext__()  # the snapshot sent on subscribe

                    def quote(price: float, contract: object = es) -> dict[str, object]:
                        return {
                            "timestamp": _iso(1_800_000_000),
                            "contractId": contract,
                            "entries": {"Trade": {"price": price, "size": 1}},
                        }

                    mixed = [
                        {"e": "props", "d": {"entityType": "order", "eventType": "Updated"}},
                        {"e": "md", "d": {"quotes": [quote(101.0)]}},
                    ]
                    sim.send_raw("a" + json.dumps(mixed), "md")
                    with anyio.fail_after(10):
                        assert (await stream.__anext__()).trade == 101.0
                    misfit = [{"e": "md", "d": {"quotes": [quote(102.0, contract="ES")]}}]
                    sim.send_raw("a" + json.dumps(misfit), "md")
                    sim.send_raw(
                        "a" + json.dumps([{"e": "md", "d": {"quotes": [quote(103.0)]}}]), "md"
                    )
                    with anyio.fail_after(10):
                        assert (await stream.__anext__()).trade == 103.0
                assert md.malformed == 1


async def test_quotes_coalesce_per_contract_under_a_sleeping_consumer() -> None:
    """The consumer sleeps while 200 quotes of two contracts arrive: it then gets exactly the
    latest quote of each contract, in the order the contracts first appeared."""
    async with SimulatedTradovate(quote_interval=None, server_heartbeat=0.25) as sim:
        session, md = await _open(sim)
        try:
            es, cl = contract_id("ESZ6"), contract_id("CLF7")
            stream = md.quotes("ESZ6", "CLF7")
            await stream.__aenter__()
            # drop the snapshots sent on subscribe
            with anyio.fail_after(10):
                for _ in range(2):
                    await stream.__anext__()
            base = 1_800_000_000
            for i in range(100):
                quotes = [
                    {
                        "timestamp": _iso(base + i),
                        "contractId": cid,
                        "entries": {"Trade": {"price": 100.0 + i, "size": 1}},
                    }
                    for cid in (es, cl)
                ]
                sim.send_raw("a" + json.dumps([{"e": "md", "d": {"quotes": quotes}}]), "md")
            with anyio.fail_after(10):
                while stream.superseded < 198:
                    await anyio.sleep(0.01)
            first = await stream.__anext__()
            second = await stream.__anext__()
            assert [first.contract_id, second.contract_id] == [es, cl]
            assert first.trade == second.trade == 199.0
            assert first.timestamp == _stamp(base + 99)
            assert stream.superseded == 198 and stream.delivered == 4
            await stream.aclose()
            with anyio.fail_after(5):
                assert [q async for q in stream] == []
        finally:
            await _close(session, md)


async def test_dom_and_histogram_are_typed_and_histograms_merge(
    fast_sim: SimulatedTradovate,
) -> None:
    session, md = await _open(fast_sim)
    try:
        with anyio.fail_after(10):
            async with md.dom("ESZ6") as doms:
                dom = await doms.__anext__()
        assert dom.symbol == "ESZ6" and len(dom.bids) == len(dom.offers) == 5
        assert dom.bids[0].price < dom.offers[0].price
        assert [level.price for level in dom.bids] == sorted(
            (level.price for level in dom.bids), reverse=True
        )
        with anyio.fail_after(10):
            async with md.histogram("ESZ6") as hists:
                first = await hists.__anext__()
                # The subscription's answer is a refresh; a slow consumer may get it already
                # merged with the next update (coalesced per contract): whole either way.
                assert first.items and first.trade_date is not None
                later = first
                while later.refresh or later.timestamp <= first.timestamp:
                    later = await hists.__anext__()
        # an update carries only changed offsets on the wire: the stream hands out the merge,
        # which holds every price level traded since the refresh
        assert set(first.items) <= set(later.items)
        assert sum(later.items.values()) > sum(first.items.values())
        assert later.trade_date is not None and later.base == first.base
    finally:
        await _close(session, md)


# -- charts -----------------------------------------------------------------------------------


def _check_continuous(bars: list[Bar], step: float) -> None:
    stamps = [b.timestamp.timestamp() for b in bars]
    assert stamps == sorted(set(stamps)), "bars out of order or duplicated"
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False) if b - a != step]
    assert not gaps, f"gaps in the series: {gaps}"


async def test_chart_history_then_live_without_gap_or_duplicate(
    fast_sim: SimulatedTradovate,
) -> None:
    session, md = await _open(fast_sim)
    try:
        new_times: list[float] = []
        updates: list[ChartUpdate] = []
        with anyio.fail_after(20):
            async with md.chart("ESZ6", bars=Minute(1), history=30) as chart:
                async for update in chart:
                    updates.append(update)
                    if update.new:
                        new_times.append(update.bar.timestamp.timestamp())
                    if len(new_times) >= 40:
                        break
                bars = list(chart.series.bars)
        history = [u for u in updates if u.historical]
        assert len(history) == 30 and all(u.new for u in history)
        assert updates[:30] == history, "history comes first"
        assert any(not u.new for u in updates), "the forming bar is updated in place"
        assert new_times == sorted(set(new_times))
        _check_continuous(bars, 60.0)
        # completed bars equal the simulator's own bars from its price path
        for bar in bars[:-1]:
            assert bar == _sim_bar(fast_sim, "ESZ6", bar.timestamp.timestamp(), 60)
    finally:
        await _close(session, md)


async def test_chart_stitches_across_two_reconnects(fast_sim: SimulatedTradovate) -> None:
    session, md = await _open(fast_sim)
    try:
        with anyio.fail_after(30):
            async with md.chart("CLF7", bars=Minute(1), history=10) as chart:
                new = 0
                drops = 0
                resynced: list[ChartUpdate] = []
                async for update in chart:
                    new += update.new
                    if update.resynced:
                        resynced.append(update)
                    if new in (15, 30) and drops < (1 if new == 15 else 2):
                        drops += 1
                        generation = md.websocket.generation
                        # a slow authorize keeps the socket down for ~5 market minutes
                        fast_sim.authorize_delay = 0.5
                        fast_sim.drop_sockets("md")
                        await md.websocket.wait_connected(after=generation)
                        fast_sim.authorize_delay = 0.0
                    if new >= 45 and chart.resyncs == 2 and not chart.loading:
                        break
                bars = list(chart.series.bars)
        assert md.websocket.stats.reconnects == 2
        assert chart.resyncs == 2
        # the bars of each outage came from the refetched history, flagged as such
        assert sum(u.new and u.historical for u in resynced) >= 6
        _check_continuous(bars, 60.0)
        for bar in bars[:-1]:
            assert bar == _sim_bar(fast_sim, "CLF7", bar.timestamp.timestamp(), 60)
    finally:
        await _close(session, md)


async def test_chart_refetch_after_a_long_outage_takes_pages(fast_sim: SimulatedTradovate) -> None:
    """The server caps one getChart answer (here at 20 bars): an outage of about 60 market
    minutes takes several pages (``closestTimestamp`` = the oldest bar so far), and the
    consumer sees one series, in time order, with no gap and no bar twice."""
    fast_sim._market.max_history = 20
    session, md = await _open(fast_sim)
    try:
        new_times: list[float] = []
        with anyio.fail_after(30):
            async with md.chart("ESZ6", bars=Minute(1), history=10) as chart:
                async for update in chart:
                    if update.new:
                        new_times.append(update.bar.timestamp.timestamp())
                    if len(new_times) == 15 and chart.resyncs == 0:
                        requests = fast_sim.count("md/getChart")
                        generation = md.websocket.generation
                        fast_sim.authorize_delay = 0.5  # the socket stays down meanwhile
                        fast_sim.drop_sockets("md")
                        fast_sim.advance_clock(6)  # 60 market minutes pass while it is down
                        await md.websocket.wait_connected(after=generation)
                        fast_sim.authorize_delay = 0.0
                    if chart.resyncs == 1 and not chart.loading and len(new_times) >= 90:
                        break
                bars = list(chart.series.bars)
        assert new_times == sorted(set(new_times)), "each bar new once, in time order"
        steps = {b - a for a, b in zip(new_times, new_times[1:], strict=False)}
        assert steps == {60.0}, f"gaps in what the consumer saw: {sorted(steps)}"
        _check_continuous(bars, 60.0)
        for bar in bars[:-1]:
            assert bar == _sim_bar(fast_sim, "ESZ6", bar.timestamp.timestamp(), 60)
        assert fast_sim.count("md/getChart") - requests >= 3, "the refetch took several pages"
        # every page's own subscription was cancelled once its history had come
        (conn,) = fast_sim.ws_connections("md")
        assert len([s for s in conn.subscriptions if s[0] == "md/getChart"]) == 0
    finally:
        await _close(session, md)


@pytest.mark.parametrize("cancel_by", ["realtime", "historical"])
async def test_closing_a_chart_cancels_it_whichever_id_the_server_wants(cancel_by: str) -> None:
    async with SimulatedTradovate(
        market_speed=600, quote_interval=0.02, server_heartbeat=0.25, cancel_chart_by=cancel_by
    ) as sim:
        session, md = await _open(sim)
        try:
            with anyio.fail_after(10):
                async with md.chart("ESZ6", history=5) as chart:
                    await chart.__anext__()
                    historical_id, realtime_id = chart.ids
                    (conn,) = sim.ws_connections("md")
                    assert ("md/getChart", str(realtime_id)) in conn.subscriptions
            assert sim.cancelled_charts == [realtime_id]
            (conn,) = sim.ws_connections("md")
            assert not [s for s in conn.subscriptions if s[0] == "md/getChart"]
            assert historical_id != realtime_id
        finally:
            await _close(session, md)


async def test_tick_chart_history_then_live_across_a_reconnect(
    fast_sim: SimulatedTradovate,
) -> None:
    session, md = await _open(fast_sim)
    try:
        ids: list[int] = []
        with anyio.fail_after(20):
            async with md.ticks("ESZ6", history=50) as ticks:
                async for tick in ticks:
                    ids.append(tick.id)
                    if len(ids) == 100:
                        generation = md.websocket.generation
                        fast_sim.drop_sockets("md")
                        await md.websocket.wait_connected(after=generation)
                    if len(ids) >= 400 and ticks.resyncs == 1 and not ticks.series.loading:
                        break
        # one trade per market second: consecutive ids, none twice, none missing
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        second = ids[-1]
        assert fast_sim.price("ESZ6", second) > 0
    finally:
        await _close(session, md)


async def test_tick_chart_refetch_after_a_long_outage_takes_pages(
    fast_sim: SimulatedTradovate,
) -> None:
    """Ticks too: an outage of about 3,600 trades against answers of at most 500 (the
    simulator's cap without ``asMuchAsElements``) is filled page by page, every id once."""
    session, md = await _open(fast_sim)
    try:
        ids: list[int] = []
        with anyio.fail_after(30):
            async with md.ticks("ESZ6", history=50) as ticks:
                async for tick in ticks:
                    ids.append(tick.id)
                    if len(ids) == 100:
                        requests = fast_sim.count("md/getChart")
                        generation = md.websocket.generation
                        fast_sim.authorize_delay = 0.5  # the socket stays down meanwhile
                        fast_sim.drop_sockets("md")
                        fast_sim.advance_clock(6)  # an hour of one trade a second
                        await md.websocket.wait_connected(after=generation)
                        fast_sim.authorize_delay = 0.0
                    if ticks.resyncs == 1 and not ticks.series.loading and len(ids) >= 4_000:
                        break
        assert ids == list(range(ids[0], ids[0] + len(ids))), "consecutive ids, none twice"
        assert fast_sim.count("md/getChart") - requests >= 8, "the refetch took several pages"
    finally:
        await _close(session, md)


@pytest.mark.parametrize(
    ("spec", "check"),
    [
        (Volume(200), "volume"),
        (Range(8), "range"),
        (Ticks(30), "ticks"),
        (Daily(1), "daily"),
        (Minute(5), "minute5"),
    ],
)
async def test_other_bar_types_and_time_range_parameters(
    fast_sim: SimulatedTradovate, spec: Any, check: str
) -> None:
    session, md = await _open(fast_sim)
    try:
        with anyio.fail_after(20):
            async with md.chart("ESZ6", bars=spec, history=12) as chart:
                async for _ in chart:
                    if not chart.loading and chart.series.pending() == 0:
                        break
                bars = list(chart.series.bars)
        assert len(bars) >= 12
        stamps = [b.timestamp for b in bars]
        assert stamps == sorted(set(stamps))
        completed = bars[:12]
        if check == "volume":
            # a volume bar closes once its volume reaches the size (or its hour ends)
            assert sum(b.volume >= 200 for b in completed) >= 10
        elif check == "range":
            assert sum(b.high - b.low >= 8 * 0.25 for b in completed) >= 10
        elif check == "ticks":
            _check_continuous(completed, 30.0)
            assert all(b.up_ticks + b.down_ticks == 30 for b in completed)
        elif check == "daily":
            _check_continuous(completed, 86_400.0)
        else:
            _check_continuous(completed, 300.0)
    finally:
        await _close(session, md)


async def test_as_far_as_and_closest_timestamp_bound_the_history(
    fast_sim: SimulatedTradovate,
) -> None:
    session, md = await _open(fast_sim)
    try:
        now = fast_sim.market_time()
        closest = now - now % 60 - 3600
        far = closest - 20 * 60
        with anyio.fail_after(20):
            async with md.chart(
                "ESZ6", bars=Minute(1), history=None, closest=_iso(closest), as_far_as=_iso(far)
            ) as chart:
                history = []
                async for update in chart:
                    if not update.historical:
                        break
                    history.append(update.bar)
        stamps = [b.timestamp.timestamp() for b in history]
        assert stamps[0] == far and stamps[-1] == closest - 60
        _check_continuous(history, 60.0)
    finally:
        await _close(session, md)


# -- the stitcher on its own (sans I/O) -----------------------------------------------------------


def _wire_bar(second: int, close: float) -> dict[str, Any]:
    return {
        "timestamp": _iso(second),
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "upVolume": 1,
    }


def test_series_orders_history_pages_and_holds_live_bars_until_the_end_of_history() -> None:
    series = BarSeries()
    series.begin(1, 2, resync=False)
    t = 1_800_000_000
    # live update before history ended; pages newest first
    assert series.feed({"id": 2, "bars": [_wire_bar(t + 180, 4.5)]})
    assert series.feed({"id": 1, "bars": [_wire_bar(t + 120, 3), _wire_bar(t + 180, 4)]})
    assert series.feed({"id": 1, "bars": [_wire_bar(t, 1), _wire_bar(t + 60, 2)]})
    assert not series.feed({"id": 99, "bars": [_wire_bar(t + 240, 9)]})
    assert series.take() is None, "nothing before the end of history"
    series.feed({"id": 1, "eoh": True})
    out = list(series.take_all())
    assert [u.bar.close for u in out] == [1, 2, 3, 4.5]
    assert [u.historical for u in out] == [True, True, True, False]
    # the same bar again is not an update; a changed one is; a new one is new
    series.feed({"id": 2, "bars": [_wire_bar(t + 180, 4.5)]})
    assert series.take() is None
    series.feed({"id": 2, "bars": [_wire_bar(t + 180, 5), _wire_bar(t + 240, 6)]})
    out = list(series.take_all())
    assert [(u.bar.close, u.new) for u in out] == [(5, False), (6, True)]
    # a refetch after a reconnect: the old ids are ignored, overlapping bars merge
    series.begin(3, 4, resync=True)
    assert not series.feed({"id": 2, "bars": [_wire_bar(t + 300, 7)]})
    series.feed({"id": 3, "bars": [_wire_bar(t + 240, 6.25), _wire_bar(t + 300, 7)]})
    series.feed({"id": 3, "eoh": True})
    out = list(series.take_all())
    assert [(u.bar.close, u.new, u.resynced) for u in out] == [(6.25, False, True), (7, True, True)]
    assert [b.close for b in series.bars] == [1, 2, 3, 5, 6.25, 7]


def test_a_held_refetch_merges_its_pages_in_time_order_once_released() -> None:
    series = BarSeries()
    series.begin(1, 2, resync=False)
    t = 1_800_000_000
    series.feed({"id": 1, "bars": [_wire_bar(t, 1)]})
    series.feed({"id": 1, "eoh": True})
    assert [u.bar.close for u in series.take_all()] == [1]
    # the refetch: its first answer is capped (the newest bars only), live bars keep coming
    token = series.begin(3, 4, resync=True, hold=True)
    series.feed({"id": 3, "bars": [_wire_bar(t + 180, 4), _wire_bar(t + 240, 5)]})
    series.feed({"id": 4, "bars": [_wire_bar(t + 300, 6)]})
    series.feed({"id": 3, "eoh": True})
    assert series.history_ready and series.loading
    assert series.oldest_held == _stamp(t + 180)
    # a page of older bars (up to the oldest so far), its live bars ignored
    series.add_page(5, 6)
    assert not series.history_ready
    series.feed({"id": 5, "bars": [_wire_bar(t, 1), _wire_bar(t + 60, 2), _wire_bar(t + 120, 3)]})
    series.feed({"id": 6, "bars": [_wire_bar(t + 300, 99)]})
    assert series.take() is None, "nothing until released"
    series.feed({"id": 5, "eoh": True})
    assert series.history_ready and series.oldest_held == _stamp(t)
    assert series.current(token)
    series.release()
    out = list(series.take_all())
    assert [(u.bar.close, u.new) for u in out] == [
        (2, True),
        (3, True),
        (4, True),
        (5, True),
        (6, True),
    ]
    assert not series.loading
    series.begin(7, 8, resync=True)  # a newer refetch: the older one's token is outdated
    assert not series.current(token)


T0 = 1_800_000_000


def _series_at_t0() -> BarSeries:
    """A series whose first request delivered bar T0 and ended its history."""
    series = BarSeries()
    series.begin(1, 2, resync=False)
    series.feed({"id": 1, "bars": [_wire_bar(T0, 1)]})
    series.feed({"id": 1, "eoh": True})
    assert [u.bar.close for u in series.take_all()] == [1]
    return series


def test_bars_after_a_gap_wait_for_the_refetch_that_fills_it() -> None:
    """The socket dropped the packet of bar T0+60; the packet of T0+120 came after the gap was
    seen and before the refetch's request began. It waits (``suspend``), so the refetch still
    starts from T0 and the consumer gets T0+60 before T0+120, each new once."""
    series = _series_at_t0()
    series.suspend()  # the overflow marker was read
    series.feed({"id": 2, "bars": [_wire_bar(T0 + 120, 3)]})
    assert series.take() is None and series.loading
    assert series.last_time == _stamp(T0), "the refetch starts before the gap"
    series.begin(3, 4, resync=True)
    bars = [_wire_bar(T0, 1), _wire_bar(T0 + 60, 2), _wire_bar(T0 + 120, 3)]
    series.feed({"id": 3, "bars": bars})
    series.feed({"id": 3, "eoh": True})
    out = list(series.take_all())
    assert [(u.bar.close, u.new) for u in out] == [(2, True), (3, True)]


def test_a_failed_refetch_merges_what_waited_after_the_gap() -> None:
    failed = _series_at_t0()
    failed.suspend()
    token = failed.token()
    failed.feed({"id": 2, "bars": [_wire_bar(T0 + 120, 3)]})
    assert failed.take() is None
    assert failed.current(token)
    failed.release()  # a held refetch's release does not end a suspension
    assert failed.take() is None
    failed.resume()  # the refetch failed
    assert [(u.bar.close, u.new) for u in failed.take_all()] == [(3, True)]
    assert not failed.loading


def test_a_second_gap_while_a_refetch_loads_holds_its_history_back() -> None:
    """That history is not merged when it ends (it may lack what the second gap took); the
    next refetch's is."""
    again = _series_at_t0()
    again.suspend()
    again.begin(3, 4, resync=True)
    again.suspend()
    again.feed({"id": 3, "bars": [_wire_bar(T0 + 120, 3)]})  # T0+60 lost in the second gap
    again.feed({"id": 3, "eoh": True})
    assert again.take() is None and again.last_time == _stamp(T0)
    again.begin(5, 6, resync=True)
    again.feed({"id": 5, "bars": [_wire_bar(T0 + 60, 2), _wire_bar(T0 + 120, 3)]})
    again.feed({"id": 5, "eoh": True})
    assert [(u.bar.close, u.new) for u in again.take_all()] == [(2, True), (3, True)]


def test_only_a_request_sent_after_the_gap_ends_the_suspension() -> None:
    """A request sent before a gap was seen may have lost its own packets to it."""
    late = _series_at_t0()
    sent_at = late.gaps
    late.suspend()
    late.begin(3, 4, resync=True, gaps=sent_at)
    late.feed({"id": 3, "bars": [_wire_bar(T0 + 120, 3)]})
    late.feed({"id": 3, "eoh": True})
    assert late.take() is None
    late.begin(5, 6, resync=True, gaps=late.gaps)
    late.feed({"id": 5, "bars": [_wire_bar(T0 + 60, 2), _wire_bar(T0 + 120, 3)]})
    late.feed({"id": 5, "eoh": True})
    assert [(u.bar.close, u.new) for u in late.take_all()] == [(2, True), (3, True)]


def test_ticks_after_a_gap_wait_for_the_refetch_too() -> None:
    def packet(chart_id: int, *tick_ids: int) -> dict[str, Any]:
        ticks = [{"t": i, "p": 0, "s": 1, "b": -1, "a": 0, "id": i} for i in tick_ids]
        return {"id": chart_id, "bp": 6946, "bt": 1_563_421_179_735, "ts": 0.01, "tks": ticks}

    series = TickSeries()
    series.begin(1, 2, resync=False)
    series.feed(packet(1, 10))
    series.feed({"id": 1, "eoh": True})
    assert series.take() is not None and series.take() is None
    series.suspend()
    series.feed(packet(2, 12))  # tick 11 was in the dropped backlog
    assert series.take() is None
    series.begin(3, 4, resync=True, gaps=series.gaps)
    series.feed(packet(3, 10, 11, 12))
    series.feed({"id": 3, "eoh": True})
    taken = [series.take(), series.take(), series.take()]
    assert [t.id for t in taken if t is not None] == [11, 12]


def test_undelivered_updates_of_one_bar_coalesce() -> None:
    series = BarSeries()
    series.begin(None, 2, resync=False)
    t = 1_800_000_000
    for i in range(100):
        series.feed({"id": 2, "bars": [_wire_bar(t, float(i))]})
    series.feed({"id": 2, "bars": [_wire_bar(t + 60, 1.0)]})
    out = list(series.take_all())
    assert [(u.bar.close, u.new) for u in out] == [(99.0, True), (1.0, True)]


def test_tick_packets_decode_relative_prices_and_times() -> None:
    packet = {
        "id": 1,
        "bp": 6946,
        "bt": 1_563_421_179_735,
        "ts": 0.01,
        "tks": [{"t": 0, "p": 0, "s": 3, "b": -1, "a": 0, "bs": 122, "as": 28, "id": 11768401}],
    }
    (tick,) = decode_ticks(packet)
    assert tick.price == 69.46 and tick.bid == 69.45 and tick.ask == 69.46
    assert tick.timestamp == _stamp(1_563_421_179.735)
    assert (tick.size, tick.bid_size, tick.ask_size, tick.id) == (3, 122, 28, 11768401)
    with pytest.raises(ValueError):
        decode_ticks({"tks": []})


# -- helpers ---------------------------------------------------------------------------------------


def _iso(second: float) -> str:
    return _stamp(second).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sim_bar(sim: SimulatedTradovate, symbol: str, start: float, length: int) -> Bar:
    """The simulator's own bar for ``[start, start + length)``, decoded like the client's."""
    from tradovate_async._md_models import decode_bars
    from tradovate_async.sim._md import ChartSub

    market = sim._market  # the simulator's market, read only
    sub = ChartSub(0, 0, contract_id(symbol), "time", length, "UnderlyingUnits")
    raw = market.bar(sub, int(start), int(start) + length, int(start) + length)
    return decode_bars([raw])[0]


async def test_events_dropped_by_the_socket_resync_the_chart_and_say_so(
    fast_sim: SimulatedTradovate, caplog: pytest.LogCaptureFixture
) -> None:
    """A socket buffer of four events under a burst of chart packets: the socket drops the
    backlog and says so (an ``overflow`` event); the chart refetches from its last bar, logs a
    WARNING, and its series stays whole. Bars after the gap wait for the refetch: the consumer
    is handed each bar new once, in time order (a live bar after the gap merged before the
    refetch ran made the dropped bar come back late, out of order)."""
    session = TradovateSession(fast_sim.config())
    await session.__aenter__()
    md = session.market_data(**FAST, event_buffer=4)
    await md.__aenter__()
    try:
        with anyio.fail_after(30):
            async with md.chart("ESZ6", bars=Minute(1), history=10) as chart:
                first = await chart.__anext__()
                new_times = [first.bar.timestamp] if first.new else []
                # chart packets of another subscription: never superseded, so a backlog of
                # them makes the socket drop chart events (ours among them, maybe)
                stray = "a" + json.dumps([{"e": "chart", "d": {"charts": [{"id": 1, "bars": []}]}}])
                while chart.resyncs == 0:
                    for _ in range(50):
                        fast_sim.send_raw(stray, "md")
                    await anyio.sleep(0.01)
                new_after = 0
                async for update in chart:
                    new_after += update.new and not update.historical
                    if update.new:
                        new_times.append(update.bar.timestamp)
                    if chart.resyncs >= 1 and not chart.loading and new_after >= 5:
                        break
                bars = list(chart.series.bars)
        assert new_times == sorted(set(new_times)), "each bar new once, in time order"
        assert md.websocket.stats.dropped_events > 0
        assert any("chart events dropped" in r.getMessage() for r in caplog.records)
        _check_continuous(bars, 60.0)
        for bar in bars[:-1]:
            assert bar == _sim_bar(fast_sim, "ESZ6", bar.timestamp.timestamp(), 60)
    finally:
        await _close(session, md)
