"""A strategy run against market replay: the same MarketData and account mirror as live.

``session.replay(start=..., speed=...)`` opens the replay socket, checks the start
(``replay/checkReplaySession``), starts the clock (``replay/initializeClock``) and gives
``replay.md`` and ``replay.account_state()``. The strategy below is written against those
objects only, so it runs unchanged on live data: a five-bar moving average on one-minute bars,
printing a signal when the close crosses it.

    python examples/replay_strategy.py ESZ6                  # replay yesterday, 4x speed
    EXAMPLE_UPDATES=5 python examples/replay_strategy.py ESZ6   # stop after 5 live updates
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections import deque

import anyio

from tradovate_async import MarketData, Minute, TradovateConfig, TradovateSession


async def strategy(md: MarketData, symbol: str, wanted: int | None) -> None:
    closes: deque[float] = deque(maxlen=5)
    live = 0
    async with md.chart(symbol, bars=Minute(1), history=20) as chart:
        async for update in chart:
            bar = update.bar
            if update.new:
                closes.append(bar.close)
            average = sum(closes) / len(closes)
            side = "above" if bar.close > average else "below"
            what = "history" if update.historical else ("new" if update.new else "update")
            print(
                f"{bar.timestamp:%Y-%m-%d %H:%M} {what:7} close {bar.close} {side} MA5 {average:.2f}"
            )
            if not update.historical:
                live += 1
                if wanted is not None and live >= wanted:
                    return


async def main(symbol: str) -> None:
    wanted = int(os.environ.get("EXAMPLE_UPDATES", "0")) or None
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(days=1)
    async with (
        TradovateSession(TradovateConfig.from_env()) as session,
        session.replay(start=start, speed=400) as replay,
        replay.account_state() as state,
    ):
        print(f"replaying from {replay.start} ({replay.check_status}), speed {replay.speed:g}%")
        print(f"replay accounts: {[a.name for a in state.accounts()]}")
        await strategy(replay.md, symbol, wanted)
        if replay.clock is not None:
            print(f"replay clock at {replay.clock.time:%Y-%m-%d %H:%M:%S}")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "ESZ6")
