"""A bot that runs for weeks: one session, a shared token file, renewal in the background.

At start it places a bracket order through the typed API (an entry with a take-profit and a
stop-loss: ``order/placeoso``), moves the entry, and cancels it, which takes the waiting
brackets with it. Then it watches its positions every few seconds. The session renews the token
at 85 of 90 minutes without the bot noticing; a permanent failure (bad password, captcha,
lockout) surfaces as a typed error that the bot logs before it stops instead of hammering the
token endpoint. An order whose answer is lost is never sent twice: the bot asks what became of
it.

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
    OrderOutcomeUnknownError,
    RateLimitedError,
    TradovateConfig,
    TradovateError,
    TradovateSession,
)
from tradovate_async.api import Account, Contract, RestrainedOrderVersion

log = logging.getLogger("bot")

ENTRY = 4000.0  # an E-mini S&P 500 limit far below the market: it rests, nothing fills


async def bracket_round_trip(
    session: TradovateSession, account: Account, contract: Contract
) -> None:
    """Place a bracket order, move its entry, cancel it (the brackets go with it)."""
    entry = ENTRY
    try:
        placed = await session.api.order.place_oso(
            account_id=account.id,
            account_spec=account.name,
            symbol=contract.name,
            action="Buy",
            order_qty=1,
            order_type="Limit",
            price=entry,
            bracket1=RestrainedOrderVersion(action="Sell", order_type="Limit", price=entry + 20),
            bracket2=RestrainedOrderVersion(
                action="Sell", order_type="Stop", stop_price=entry - 10
            ),
        )  # isAutomated: true and a clOrdId are added by the library
    except OrderOutcomeUnknownError as lost:
        order = await session.reconcile_order(lost)  # never placed twice
        log.warning("placing the bracket: answer lost; the server has %s", order)
        if order is None:
            return
        order_id = order.id
    else:
        assert placed.order_id is not None
        order_id = placed.order_id
        log.info(
            "bracket placed: entry %d, target %s, stop %s", order_id, placed.oso1_id, placed.oso2_id
        )
    await session.api.order.modify_order(
        order_id=order_id, order_qty=1, order_type="Limit", price=entry - 5
    )
    log.info("entry %d moved to %.2f", order_id, entry - 5)
    await session.api.order.cancel_order(order_id=order_id)
    statuses = [(o.id, o.ord_status) for o in await session.api.order.deps(account.id)]
    log.info("after the cancel: %s", statuses)


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    seconds = float(os.environ.get("EXAMPLE_SECONDS", "inf"))
    store = FileTokenStore.from_env()
    try:
        async with TradovateSession(TradovateConfig.from_env(), store=store) as session:
            session.add_token_listener(
                lambda t: log.info("new token, expires %s", t.expiration_time.isoformat())
            )
            traded = False
            with anyio.move_on_after(seconds):
                while True:
                    try:
                        [account, *_] = await session.api.account.list()
                        if not traded:
                            front = await session.api.contract.suggest("ES", 1)
                            contract = (
                                front[0] if front else await session.api.contract.find("ESZ6")
                            )
                            await bracket_round_trip(session, account, contract)
                            traded = True
                        positions = await session.api.position.deps(account.id)
                        log.info("positions: %s", [(p.contract_id, p.net_pos) for p in positions])
                    except (AuthenticationError, RateLimitedError):
                        log.exception("cannot go on; stopping")
                        raise
                    except TradovateError as exc:
                        log.warning("request failed (%s); will try again", exc)
                    await anyio.sleep(min(5.0, seconds / 3))
            log.info("done: %s", session.stats)
    finally:
        await store.aclose()


if __name__ == "__main__":
    anyio.run(main)
