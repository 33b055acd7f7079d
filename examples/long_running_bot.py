"""A bot that runs for weeks: one session, a shared token file, renewal in the background.

It polls the account list every few seconds. The session renews the token at 85 of 90 minutes
without the bot noticing; a permanent failure (bad password, captcha, lockout) surfaces as a
typed error that the bot logs before it stops instead of hammering the token endpoint.

    python examples/long_running_bot.py            # forever
    EXAMPLE_SECONDS=10 python examples/long_running_bot.py
"""

from __future__ import annotations

import logging
import os

import anyio

from tradovate_async import (
    AuthenticationError,
    FileTokenStore,
    RateLimitedError,
    TradovateConfig,
    TradovateError,
    TradovateSession,
)

log = logging.getLogger("bot")


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    seconds = float(os.environ.get("EXAMPLE_SECONDS", "inf"))
    store = FileTokenStore.from_env()
    try:
        async with TradovateSession(TradovateConfig.from_env(), store=store) as session:
            session.add_token_listener(
                lambda t: log.info("new token, expires %s", t.expiration_time.isoformat())
            )
            with anyio.move_on_after(seconds):
                while True:
                    try:
                        accounts = await session.get("account/list")
                        log.info("%d account(s): %s", len(accounts), [a["name"] for a in accounts])
                    except (AuthenticationError, RateLimitedError):
                        log.exception("cannot authenticate; stopping")
                        raise
                    except TradovateError as exc:
                        log.warning("request failed (%s); will try again", exc)
                    await anyio.sleep(min(5.0, seconds / 3))
            log.info("done: %s", session.stats)
    finally:
        await store.aclose()


if __name__ == "__main__":
    anyio.run(main)
