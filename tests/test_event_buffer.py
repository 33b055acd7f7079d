"""The event buffer's overflow policy, sans-I/O: bounded memory, nothing lost silently."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

from tradovate_async._event_buffer import EVENT_OVERFLOW, EVENT_RESYNCED, EventBuffer, Overflow
from tradovate_async._ws_codec import Event


def props(n: int) -> Event:
    return Event("props", {"entityType": "order", "eventType": "Updated", "entity": {"id": n}})


def quote(contract: int, n: int) -> Event:
    return Event("md", {"quotes": [{"contractId": contract, "n": n}]})


def dom(contract: int, n: int) -> Event:
    return Event("md", {"doms": [{"contractId": contract, "n": n}]})


def test_a_props_flood_without_consumer_stays_bounded_and_is_accounted_for() -> None:
    buffer = EventBuffer(1000)
    total = 200_000
    for n in range(total):
        buffer.put(props(n))
        assert len(buffer) <= 1000 + 1
    assert buffer.take_resync() == {"props"}
    assert buffer.take_resync() == frozenset()  # cleared
    delivered = list(buffer)
    kept = [e for e in delivered if e.kind == "props"]
    markers = [e.data for e in delivered if e.kind == EVENT_OVERFLOW]
    # Only the newest overflow marker is left, but the counter covers every drop.
    assert buffer.dropped + len(kept) == total
    assert markers and all(isinstance(m, Overflow) and m.resync == ("props",) for m in markers)
    # What is kept is the newest, in order, after the gap marker.
    ids = [e.data["entity"]["id"] for e in kept]
    assert ids == sorted(ids) and ids[-1] == total - 1


def test_every_dropped_props_event_is_reported_at_the_gap() -> None:
    buffer = EventBuffer(100)
    seen_props = 0
    reported = 0
    rng = random.Random(7)
    for n in range(20_000):
        buffer.put(props(n))
        if rng.random() < 0.3:  # a slow consumer
            event = buffer.get()
            if event.kind == "props":
                seen_props += 1
            else:
                reported += event.data.dropped["props"]
    for event in buffer:
        if event.kind == "props":
            seen_props += 1
        else:
            reported += event.data.dropped["props"]
    assert seen_props + reported == 20_000


def test_quotes_and_dom_keep_the_latest_per_contract() -> None:
    buffer = EventBuffer(100)
    for n in range(50_000):
        contract = n % 7
        buffer.put(quote(contract, n) if n % 2 else dom(contract, n))
    assert len(buffer) <= 100 + 25
    assert buffer.take_resync() == frozenset()  # nothing needs a snapshot
    latest: dict[tuple[str, int], int] = {}
    for event in buffer:
        assert event.kind == "md"
        for name, entries in event.data.items():
            for entry in entries:
                latest[(name, entry["contractId"])] = entry["n"]
    for contract in range(7):
        for name, parity in (("quotes", 1), ("doms", 0)):
            expected = max(
                n for n in range(50_000 - 14, 50_000) if n % 7 == contract and n % 2 == parity
            )
            assert latest[(name, contract)] == expected


def test_a_batch_of_quotes_keeps_only_its_current_entries() -> None:
    buffer = EventBuffer(4)
    buffer.put(Event("md", {"quotes": [{"contractId": 1, "n": 0}, {"contractId": 2, "n": 0}]}))
    for n in range(1, 5):
        buffer.put(quote(1, n))
    first = buffer.get()
    assert first.data == {"quotes": [{"contractId": 2, "n": 0}]}  # contract 1's part superseded
    assert [e.data["quotes"][0]["n"] for e in buffer][-1] == 4


def test_charts_and_histograms_follow_the_props_rule() -> None:
    buffer = EventBuffer(10)
    for n in range(30):
        buffer.put(Event("chart", {"charts": [{"id": 1, "bars": [{"n": n}]}]}))
        buffer.put(Event("md", {"histograms": [{"contractId": 1, "n": n}]}))
    assert buffer.take_resync() == {"chart", "histogram"}
    markers = [e.data for e in buffer if e.kind == EVENT_OVERFLOW]
    assert markers[-1].dropped.keys() <= {"chart", "histogram"}


def test_the_library_events_and_latest_quotes_are_never_dropped() -> None:
    buffer = EventBuffer(8)
    buffer.put(Event("disconnected", "gone"))
    buffer.put(quote(1, 0))
    buffer.put(Event("shutdown", {"reasonCode": "Maintenance"}))
    for n in range(100):
        buffer.put(props(n))
    kinds = [e.kind for e in buffer]
    assert kinds[:3] == ["disconnected", "md", "shutdown"]
    assert EVENT_OVERFLOW in kinds


def test_mixed_order_is_kept() -> None:
    buffer = EventBuffer(1000)
    for n in range(10):
        buffer.put(props(n))
        buffer.put(quote(n, n))
    kinds = [e.kind for e in buffer]
    assert kinds == ["props", "md"] * 10


def test_events_dropped_after_an_unread_snapshot_are_marked_after_it() -> None:
    """A ``resynced`` snapshot covers what was dropped before it (its answer came later), not
    what was dropped after it: the marker that tells a consumer it has a gap again must come
    after the snapshot, else the consumer rebuilds from it and believes itself whole."""
    snapshot = Event(EVENT_RESYNCED, ("snapshot",))
    buffer = EventBuffer(4)
    for event in (props(0), snapshot, props(1), props(2), props(3)):
        buffer.put(event)  # the fifth put makes room: 0, 1 and 2 are dropped
    assert buffer.take_resync() == {"props"}
    events = list(buffer)
    assert [e.kind for e in events] == [EVENT_RESYNCED, EVENT_OVERFLOW, "props"]
    assert events[1].data.dropped == {"props": 3}
    assert events[2].data["entity"]["id"] == 3


def test_events_dropped_only_before_the_snapshot_are_marked_before_it() -> None:
    buffer = EventBuffer(4)
    buffer.put(props(0))
    buffer.put(Event(EVENT_OVERFLOW, Overflow({"props": 5}, ("props",))))
    buffer.put(props(1))
    buffer.put(Event(EVENT_RESYNCED, ("snapshot",)))
    buffer.put(quote(1, 0))  # makes room: the props before the snapshot go
    events = list(buffer)
    assert [e.kind for e in events] == [EVENT_OVERFLOW, EVENT_RESYNCED, "md"]
    assert events[0].data.dropped == {"props": 7}


def test_get_on_empty_raises() -> None:
    buffer = EventBuffer(4)
    with pytest.raises(IndexError):
        buffer.get()
    with pytest.raises(ValueError):
        EventBuffer(0)


# -- wired into the socket, against the simulator ----------------------------------------------


async def test_props_flood_with_no_consumer_stays_bounded_and_resyncs() -> None:
    from tests.test_ws import FAST
    from tradovate_async import TradovateSession
    from tradovate_async.sim import SimulatedTradovate

    async with SimulatedTradovate() as sim:
        user = sim.users[0]
        async with (
            TradovateSession(sim.config()) as session,
            session.websocket("trading", event_buffer=50, **FAST) as ws,
        ):
            await ws.request("user/syncrequest", json={"users": [user.user_id]}, replay=True)
            entity = {"id": 1, "name": "flood"}
            largest = 0
            for _ in range(20):
                await sim.push_props(
                    user.username, [("userProperty", "Updated", entity)] * 250, per_frame=25
                )
                largest = max(largest, len(ws._core.events))
            await wait_for_syncs(sim, 2)
            kinds: list[str] = []
            with anyio.move_on_after(2):
                async for event in ws.events():
                    kinds.append(event.kind)
    assert largest <= 50 + 30  # the bound (plus one frame's worth between two looks)
    assert ws.stats.dropped_events > 0
    assert EVENT_OVERFLOW in kinds and EVENT_RESYNCED in kinds


async def wait_for_syncs(sim: Any, count: int) -> None:
    with anyio.fail_after(20):
        while sum(1 for r in sim.request_log if r.path == "user/syncrequest") < count:
            await anyio.sleep(0.01)
