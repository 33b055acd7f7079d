"""The injectable clock: a fake one that moves only when told, and the rule that the I/O layer
reads time only through a clock."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import anyio
import pytest

from tradovate_async import Backoff, FakeClock, RequestTimeoutError, TradovateSession
from tradovate_async._clock import SYSTEM_CLOCK, Clock
from tradovate_async.sim import Fault, SimulatedTradovate, WarpClock

PACKAGE = Path(__file__).resolve().parents[1] / "tradovate_async"

#: The modules that do I/O (and so might be tempted to read the time themselves).
IO_LAYER = [
    "_auth.py",
    "_cli.py",
    "_demo.py",
    "_file_store.py",
    "_http.py",
    "_market_data.py",
    "_redis_store.py",
    "_session.py",
    "_store.py",
    "_tasks.py",
    "_ws.py",
    "_ws_io.py",
]
DIRECT_READS = re.compile(
    r"time\.(monotonic|time|time_ns|monotonic_ns|perf_counter)\(|datetime\.now\(|clock_gettime\("
)


@pytest.mark.parametrize("name", IO_LAYER)
def test_the_io_layer_reads_time_only_through_a_clock(name: str) -> None:
    path = PACKAGE / name
    if not path.exists():
        pytest.skip(f"{name} does not exist in this version")
    hits = [
        f"{name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if DIRECT_READS.search(line)
    ]
    assert hits == []


def test_clocks_satisfy_the_protocol() -> None:
    for clock in (SYSTEM_CLOCK, FakeClock(), WarpClock(10.0)):
        assert isinstance(clock, Clock)
        assert clock.now().tzinfo is dt.UTC


async def test_fake_clock_wakes_sleepers_at_their_deadlines_in_order() -> None:
    clock = FakeClock(start=100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "late", 5.0)
        tg.start_soon(sleeper, "early", 2.0)
        await anyio.wait_all_tasks_blocked()
        assert clock.sleepers == 2 and clock.next_wakeup() == 102.0
        await clock.advance(1.0)
        assert woke == []
        await clock.advance(10.0)
    assert woke == [("early", 102.0), ("late", 105.0)]
    assert clock.monotonic() == 111.0


async def test_fake_clock_jump_moves_only_the_wall_clock() -> None:
    clock = FakeClock()
    before_wall, before_mono = clock.now(), clock.monotonic()
    clock.jump(3600.0)
    assert clock.now() - before_wall == dt.timedelta(hours=1)
    assert clock.monotonic() == before_mono
    with pytest.raises(ValueError):
        await clock.advance(-1.0)


FAR = 10_000.0  # silence and backoff far away: only what the test moves happens


async def test_the_socket_runs_on_the_clock_it_is_given() -> None:
    """Heartbeats and request deadlines follow the injected clock, not the wall clock: a
    request the server never answers times out when the fake clock says so, in no real time."""
    clock = FakeClock()
    async with SimulatedTradovate(server_heartbeat=0.25) as sim:
        async with TradovateSession(sim.config()) as session:
            options = {"silence_timeout": FAR, "reconnect_backoff": Backoff(FAR, FAR)}
            async with session.websocket(clock=clock, timeout=5.0, **options) as ws:  # type: ignore[arg-type]
                for beat in range(1, 5):
                    await clock.advance(2.5)
                    with anyio.fail_after(5):
                        while len(sim.ws_connections("trading")[0].heartbeats) < beat:
                            await anyio.sleep(0.005)
                assert ws.stats.heartbeats_sent == 4
                assert len(sim.ws_connections("trading")[0].heartbeats) == 4

                sim.inject("account/list", Fault.delay(60.0), transport="ws")
                async with anyio.create_task_group() as tg:
                    outcome: list[BaseException] = []

                    async def ask() -> None:
                        try:
                            await ws.request("account/list")
                        except RequestTimeoutError as exc:
                            outcome.append(exc)

                    tg.start_soon(ask)
                    with anyio.fail_after(5):
                        while ws.stats.requests_sent < 1:
                            await anyio.sleep(0.005)
                    await clock.advance(4.9)
                    assert outcome == []
                    await clock.advance(0.1)
                assert "no answer within 5 s" in str(outcome[0])
