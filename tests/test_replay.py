"""Market replay against the simulator, on a clock the test moves by hand (no wall-clock
thresholds): the replay clock runs at its speed, market data follows replay time, the same
MarketData and mirror objects run on the replay socket."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import anyio
import pytest

from tests.conftest import SIM_USER
from tradovate_async import Backoff, Minute, ReplayClock, TradovateSession
from tradovate_async._replay import ReplayUnavailableError
from tradovate_async.sim import SimulatedTradovate

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "silence_timeout": 3.0,
    "timeout": 5.0,
    "reconnect_backoff": Backoff(0.1, 0.3),
}


class ManualClock:
    """The simulator's wall clock, moved only by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _utc(second: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(second, dt.UTC)


async def _clock_after(replay: Any, seen: dt.datetime, speed: float) -> ReplayClock:
    return await replay.wait_until(lambda c: c.time > seen and c.speed == speed, timeout=10)  # type: ignore[no-any-return]


@pytest.mark.parametrize("speeds", [(100, 400), (400, 50)])
async def test_replay_clock_runs_at_each_speed(speeds: tuple[float, float]) -> None:
    clock = ManualClock()
    async with SimulatedTradovate(clock=clock, quote_interval=0.02, server_heartbeat=0.25) as sim:
        start = _utc(clock.now - 86_400 - clock.now % 60)
        async with (
            TradovateSession(sim.config()) as session,
            session.replay(start=start, speed=speeds[0], **FAST) as replay,
        ):
            assert replay.check_status == "OK"
            first = await replay.wait_until(lambda c: c.speed == speeds[0], timeout=10)
            assert first.time == start
            clock.now += 10  # ten seconds of the simulator's clock
            second = await _clock_after(replay, first.time, speeds[0])
            assert second.time - first.time == dt.timedelta(seconds=10 * speeds[0] / 100)
            await replay.change_speed(speeds[1])
            clock.now += 10
            third = await _clock_after(replay, second.time, speeds[1])
            assert third.time - second.time == dt.timedelta(seconds=10 * speeds[1] / 100)


async def test_replay_serves_market_data_and_the_mirror_on_replay_time() -> None:
    clock = ManualClock()
    async with SimulatedTradovate(clock=clock, quote_interval=0.02, server_heartbeat=0.25) as sim:
        start = _utc(clock.now - 3 * 86_400 - clock.now % 60)
        async with (
            TradovateSession(sim.config()) as session,
            session.replay(start=start, speed=400, **FAST) as replay,
        ):
            with anyio.fail_after(10):
                async with replay.md.quotes("ESZ6") as quotes:
                    quote = await quotes.__anext__()
            # market data of three days ago, at replay time: the simulator's price then
            assert abs((quote.timestamp - start).total_seconds()) < 2
            assert quote.trade == sim.price("ESZ6", quote.timestamp.timestamp())
            with anyio.fail_after(10):
                async with replay.md.chart("ESZ6", bars=Minute(1), history=5) as chart:
                    update = await chart.__anext__()
            assert update.historical and update.bar.timestamp < start
            async with replay.account_state() as state:
                assert [a.name for a in state.accounts()] == [SIM_USER.accounts[0].name]
            # the typed API runs over the replay socket too
            (account,) = await replay.api.account.list()
            assert account.name == SIM_USER.accounts[0].name


async def test_a_start_in_the_future_is_refused_and_an_odd_start_adjusted() -> None:
    clock = ManualClock()
    async with SimulatedTradovate(clock=clock, server_heartbeat=0.25) as sim:
        async with TradovateSession(sim.config()) as session:
            with pytest.raises(ReplayUnavailableError):
                async with session.replay(start=_utc(clock.now + 3600), **FAST):
                    pass
            odd = clock.now - 7200 - clock.now % 60 + 17
            async with session.replay(start=_utc(odd), **FAST) as replay:
                assert replay.check_status == "StartTimestampAdjusted"
                first = await replay.wait_until(lambda c: True, timeout=10)
                assert first.time == _utc(odd - 17)


async def test_after_a_shutdown_the_replay_resumes_where_its_clock_was() -> None:
    clock = ManualClock()
    async with SimulatedTradovate(clock=clock, quote_interval=0.02, server_heartbeat=0.25) as sim:
        start = _utc(clock.now - 86_400 - clock.now % 60)
        async with (
            TradovateSession(sim.config()) as session,
            session.replay(start=start, speed=200, **FAST) as replay,
        ):
            await replay.wait_until(start, timeout=10)
            clock.now += 30
            moved = await replay.wait_until(start + dt.timedelta(seconds=60), timeout=10)
            generation = replay.ws.generation
            assert sim.send_shutdown("Maintenance", kind="replay") == 1
            await replay.ws.wait_connected(after=generation, timeout=10)
            with anyio.fail_after(10):
                while sim.count("replay/initializeclock") < 2:
                    await anyio.sleep(0.01)
            record = [r for r in sim.request_log if r.path == "replay/initializeclock"]
            assert len(record) == 2 and record[-1].status == 200
            # the clock carries on from where it was, at the same speed
            clock.now += 5
            after = await replay.wait_until(lambda c: c.time > moved.time, timeout=10)
            assert after.speed == 200 and after.time >= moved.time
