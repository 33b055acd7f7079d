"""A WebSocket consumer of ``props`` events: the account's orders, fills and positions live.

It authorizes the trading socket with the session's token, takes the ``user/syncrequest``
snapshot (replayed after every reconnect), then prints every ``props`` event. The socket keeps
its heartbeat and reconnects on its own; ``disconnected``/``reconnected`` events say when.

    python examples/props_consumer.py                  # forever
    EXAMPLE_SECONDS=10 python examples/props_consumer.py

Against the simulator only (a loopback URL), ``EXAMPLE_DEMO_ORDER=1`` places a one-lot order
so that a ``props`` event arrives; the script refuses to do that against a real server.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import anyio

from tradovate_async import TradovateConfig, TradovateSession


async def main() -> None:
    config = TradovateConfig.from_env()
    seconds = float(os.environ.get("EXAMPLE_SECONDS", "inf"))
    async with TradovateSession(config) as session, session.websocket() as ws:
        snapshot = await ws.subscribe("user/syncrequest", {"users": [session.token.user_id]})
        accounts = snapshot.get("accounts", [])
        print(f"snapshot: {len(accounts)} account(s), {len(snapshot.get('orders', []))} order(s)")
        if os.environ.get("EXAMPLE_DEMO_ORDER") == "1":
            if urlsplit(config.api_url).hostname not in ("127.0.0.1", "localhost", "::1"):
                raise SystemExit("EXAMPLE_DEMO_ORDER places orders only on the simulator")
            await session.post(
                "order/placeorder",
                json={
                    "accountSpec": accounts[0]["name"],
                    "accountId": accounts[0]["id"],
                    "action": "Buy",
                    "symbol": "ESZ6",
                    "orderQty": 1,
                    "orderType": "Market",
                    "isAutomated": True,
                },
            )
        seen = 0
        with anyio.move_on_after(seconds):
            async for event in ws.events():
                if event.kind == "props":
                    seen += 1
                    data = event.data
                    print(f"props: {data['entityType']} {data['eventType']}: {data['entity']}")
                elif event.kind in ("disconnected", "reconnected", "shutdown"):
                    print(f"{event.kind}: {event.data}")
        print(f"{seen} props event(s) received")


if __name__ == "__main__":
    anyio.run(main)
