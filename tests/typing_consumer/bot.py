"""A user's bot, as far as types go: what ``from tradovate_async import ...`` promises."""

from __future__ import annotations

import datetime as dt

import anyio

from tradovate_async import (
    MemoryTokenStore,
    TokenStore,
    TradovateConfig,
    TradovateError,
    TradovateSession,
    TradovateWebSocket,
    __version__,
)
from tradovate_async.sim import SimulatedTradovate


async def whoami(config: TradovateConfig) -> str:
    store: TokenStore = MemoryTokenStore()
    try:
        async with TradovateSession(config, store=store) as session:
            expires: dt.datetime = session.token.expiration_time
            me = await session.me()
            name: str = me.name
            socket: TradovateWebSocket = session.websocket("trading")
            async with socket:
                answer = await socket.request("account/list")
            return f"{name} until {expires.isoformat()} ({type(answer).__name__})"
    except TradovateError as exc:
        return f"failed: {exc}"
    finally:
        await store.aclose()


async def main() -> None:
    async with SimulatedTradovate() as sim:
        print(__version__, await whoami(sim.config()))


if __name__ == "__main__":
    anyio.run(main)
