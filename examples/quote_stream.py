"""Typed quotes that survive drops: ``async for quote in md.quotes(...)``.

``session.market_data()`` opens the market-data socket (authorized with ``mdAccessToken``),
resolves each symbol to its contract id once (``contract/find``) and hands out typed
:class:`~tradovate_async.Quote`\\ s. A slow consumer never falls behind: the latest quote per
contract waits for it (``stream.superseded`` counts the ones it skipped). The subscriptions come
back by themselves after a reconnect.

    python examples/quote_stream.py ESZ6 CLF7          # forever
    EXAMPLE_QUOTES=5 python examples/quote_stream.py ESZ6
"""

from __future__ import annotations

import os
import sys

import anyio

from tradovate_async import TradovateConfig, TradovateSession


async def main(symbols: list[str]) -> None:
    wanted = int(os.environ.get("EXAMPLE_QUOTES", "0")) or None
    async with (
        TradovateSession(TradovateConfig.from_env()) as session,
        session.market_data() as md,
        md.quotes(*symbols) as quotes,
    ):
        count = 0
        async for quote in quotes:
            print(
                f"{quote.timestamp:%H:%M:%S} {quote.symbol} ({quote.contract_id}): "
                f"bid {quote.bid} x {quote.bid_size}  offer {quote.offer} x {quote.offer_size}  "
                f"last {quote.trade}  volume {quote.volume}"
            )
            count += 1
            if wanted is not None and count >= wanted:
                break
        print(f"{count} quote(s); superseded before the consumer saw them: {quotes.superseded}")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:] or ["ESZ6"])
