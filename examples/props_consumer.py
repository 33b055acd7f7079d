"""A live mirror of the account: positions, working orders, cash and open P&L, always true.

``session.account_state()`` takes the ``user/syncrequest`` snapshot on a trading socket and
applies every ``props`` event to it; after a reconnect it rebuilds from a fresh snapshot and
reports the differences as changes. ``state.changes()`` is a typed stream of what changed
(at most one pending change per entity, so a slow consumer still ends up with the truth).
With market data, open P&L follows live quotes.

    python examples/props_consumer.py                  # forever
    EXAMPLE_SECONDS=10 python examples/props_consumer.py

Against the simulator only (a loopback URL), ``EXAMPLE_DEMO_ORDER=1`` places a one-lot order
and waits for the mirror to show it; the script refuses to do that against a real server.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import anyio

from tradovate_async import TradovateConfig, TradovateSession


async def main() -> None:
    config = TradovateConfig.from_env()
    seconds = float(os.environ.get("EXAMPLE_SECONDS", "inf"))
    async with (
        TradovateSession(config) as session,
        session.market_data() as md,
        session.account_state(market_data=md) as state,
    ):
        accounts = state.accounts()
        for account in accounts:  # typed models: Account, CashBalance, Position, Order ...
            cash = state.cash(account.id)
            print(
                f"{account.name}: cash {cash.amount if cash else '?'}, "
                f"{len(state.positions(account.id))} position(s), "
                f"{len(state.working_orders(account.id))} working order(s), "
                f"open P&L {state.account_pnl(account.id)}"
            )
        changes = state.changes()
        if os.environ.get("EXAMPLE_DEMO_ORDER") == "1":
            if urlsplit(config.api_url).hostname not in ("127.0.0.1", "localhost", "::1"):
                raise SystemExit("EXAMPLE_DEMO_ORDER places orders only on the simulator")
            answer = await session.post(
                "order/placeorder",
                json={
                    "accountSpec": accounts[0].name,
                    "accountId": accounts[0].id,
                    "action": "Buy",
                    "symbol": "ESZ6",
                    "orderQty": 1,
                    "orderType": "Market",
                    "isAutomated": True,
                },
            )
            order_id = answer["orderId"]
            await state.wait_for(lambda s: s.order(order_id) is not None, timeout=10)
            print(f"order {order_id} is in the mirror: {state.order(order_id).ord_status}")
        seen = 0
        with anyio.move_on_after(seconds):
            async for change in changes:
                seen += 1
                origin = "resync" if change.resync else "event"
                print(f"{change.event} {change.entity_type} {change.id} ({origin})")
        print(f"{seen} change(s); {state.store.events_applied} props event(s) applied")


if __name__ == "__main__":
    anyio.run(main)
