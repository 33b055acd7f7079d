"""A market-data quote stream that survives drops: subscribe once, quotes forever.

The market-data socket authorizes with ``mdAccessToken`` (falling back to the access token),
and replays ``md/subscribeQuote`` after every reconnect. Quotes are keyed by ``contractId``.

    python examples/quote_stream.py ESZ6             # forever
    EXAMPLE_QUOTES=5 python examples/quote_stream.py ESZ6
"""

from __future__ import annotations

import os
import sys

import anyio

from tradovate_async import TradovateConfig, TradovateSession


async def main(symbol: str) -> None:
    wanted = int(os.environ.get("EXAMPLE_QUOTES", "0")) or None
    async with (
        TradovateSession(TradovateConfig.from_env()) as session,
        session.websocket(kind="md") as md,
    ):
        await md.subscribe("md/subscribeQuote", {"symbol": symbol})
        count = 0
        async for event in md.events():
            if event.kind != "md":
                print(f"{event.kind}: {event.data}")
                continue
            for quote in event.data.get("quotes", []):
                entries = quote.get("entries", {})
                bid = entries.get("Bid", {}).get("price")
                offer = entries.get("Offer", {}).get("price")
                print(f"{symbol} ({quote.get('contractId')}): bid {bid} offer {offer}")
                count += 1
            if wanted is not None and count >= wanted:
                break
        print(f"{count} quote(s); dropped by the buffer: {md.stats.dropped_events}")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "ESZ6")
