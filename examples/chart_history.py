"""A chart with history and live bars as one series: ``md.chart(symbol, bars=..., history=N)``.

The history arrives first (oldest first), then the forming bar is updated in place
(``update.new`` is False) until the next bar starts. After a reconnect the library fetches the
history again from the last bar it holds and merges it, so the series has no gap and no
duplicate (``update.resynced`` marks those bars).

    python examples/chart_history.py ESZ6                   # forever
    EXAMPLE_LIVE=3 python examples/chart_history.py ESZ6    # stop after 3 live updates
"""

from __future__ import annotations

import os
import sys

import anyio

from tradovate_async import Minute, TradovateConfig, TradovateSession


async def main(symbol: str) -> None:
    wanted = int(os.environ.get("EXAMPLE_LIVE", "0")) or None
    async with (
        TradovateSession(TradovateConfig.from_env()) as session,
        session.market_data() as md,
        md.chart(symbol, bars=Minute(1), history=20) as chart,
    ):
        live = 0
        async for update in chart:
            bar = update.bar
            what = "history" if update.historical else ("new bar" if update.new else "update")
            print(
                f"{bar.timestamp:%Y-%m-%d %H:%M} {what:8} O {bar.open} H {bar.high} "
                f"L {bar.low} C {bar.close} V {bar.volume:g}"
                + ("  (refetched after a gap)" if update.resynced else "")
            )
            if not update.historical:
                live += 1
                if wanted is not None and live >= wanted:
                    break
        print(f"{len(chart.bars)} bar(s) held; history refetched {chart.resyncs} time(s)")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "ESZ6")
