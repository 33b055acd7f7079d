"""``tradovate-async demo``: the whole flow, offline, against a built-in simulator.

It needs no credentials and no network: the simulator runs on a free loopback port with
20-second tokens, so a renewal happens while you watch. Steps: a login that meets a penalty
ticket and waits it out, ``/auth/me``, a trading socket with a sync snapshot and an order's
``props`` event, a market-data socket streaming quotes, a renewal, a dropped connection that
comes back re-authorized and resubscribed, typed market data (a chart with history and live
bars), a bracket order, the account mirror and its open P&L following the quotes, and a clean
shutdown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from ._account_state import AccountState
from ._clock import SYSTEM_CLOCK
from ._entity_store import field
from ._md_models import Minute
from ._session import TradovateSession
from ._ws import TradovateWebSocket

if TYPE_CHECKING:
    from ._market_data import MarketData
    from .sim import SimulatedTradovate

__all__ = ["run_demo"]


def _quote_text(event_data: Any) -> str:
    quotes = event_data.get("quotes", []) if isinstance(event_data, dict) else []
    if not quotes:
        return "(empty)"
    entries = quotes[0].get("entries", {})
    bid = entries.get("Bid", {}).get("price")
    offer = entries.get("Offer", {}).get("price")
    return f"contract {quotes[0].get('contractId')}: bid {bid} / offer {offer}"


async def _next_event(ws: TradovateWebSocket, kind: str, within: float = 10.0) -> Any:
    with anyio.fail_after(within):
        async for event in ws.events():
            if event.kind == kind:
                return event.data
    raise RuntimeError(f"the socket closed before a {kind!r} event")


async def _market_and_mirror(session: TradovateSession, say: Callable[[str], None]) -> None:
    """Typed market data, a bracket order, and the account mirror with open P&L."""
    async with session.market_data() as md, session.account_state(market_data=md) as state:
        await _chart(md, say)
        async with md.quotes("ESZ6") as quotes:
            quote = await quotes.__anext__()
        account = state.accounts()[0]
        price = quote.trade or 0.0
        say(f"9. a bracket order: buy 1 ESZ6 at market (last {price}), target +4, stop -4")
        answer = await session.post(
            "order/placeoso",
            json={
                "accountSpec": account.name,
                "accountId": account.id,
                "action": "Buy",
                "symbol": "ESZ6",
                "orderQty": 1,
                "orderType": "Market",
                "isAutomated": True,
                "bracket1": {"action": "Sell", "orderType": "Limit", "price": price + 4.0},
                "bracket2": {"action": "Sell", "orderType": "Stop", "stopPrice": price - 4.0},
            },
        )
        say(f"   placeoso -> {dict(answer) if isinstance(answer, dict) else answer}")
        await state.wait_for(lambda s: bool(s.working_orders()) or bool(s.fills()), timeout=10)

        def held(s: AccountState) -> bool:
            return any(field(p, "netPos") for p in s.positions(account.id))

        try:
            await state.wait_for(held, timeout=5)
        except TimeoutError:
            say(f"   the mirror shows {len(state.working_orders())} working order(s); no fill")
            return
        await _show_mirror(state, account.id, say)


async def _chart(md: MarketData, say: Callable[[str], None]) -> None:
    say("8. typed market data: a one-minute ESZ6 chart, history first, then live bars")
    async with md.chart("ESZ6", bars=Minute(1), history=5) as chart:
        live = 0
        async for update in chart:
            bar = update.bar
            what = "history" if update.historical else ("new bar" if update.new else "update")
            say(
                f"   {bar.timestamp:%H:%M} {what:8} O {bar.open} H {bar.high} "
                f"L {bar.low} C {bar.close} V {bar.volume:g}"
            )
            live += not update.historical
            if live >= 3:
                break


async def _show_mirror(state: AccountState, account_id: int, say: Callable[[str], None]) -> None:
    """The position and working orders the mirror holds, then its open P&L moving."""
    for position in state.positions(account_id):
        say(
            f"   mirror: position {field(position, 'netPos')} @ "
            f"{field(position, 'netPrice')}, open P&L {state.open_pnl(position)}"
        )
    for order in state.working_orders(account_id):
        versions = state.order_versions(field(order, "id"))
        last = versions[-1] if versions else None
        say(
            f"   working: order {field(order, 'id')} {field(order, 'action')} "
            f"{field(last, 'orderType')} {field(last, 'price') or field(last, 'stopPrice')}"
        )
    for _ in range(3):
        before = state.account_pnl(account_id)

        def moved(s: AccountState, before: float | None = before) -> bool:
            return s.account_pnl(account_id) != before

        with anyio.move_on_after(3):
            await state.wait_for(moved)
        say(f"   account open P&L follows the quotes: {state.account_pnl(account_id)}")


async def run_demo() -> None:
    from .sim import Fault, SimulatedTradovate

    started = SYSTEM_CLOCK.monotonic()

    def _say(text: str) -> None:
        print(f"[{SYSTEM_CLOCK.monotonic() - started:5.1f}s] {text}", flush=True)

    async with SimulatedTradovate(
        token_lifetime=20.0, quote_interval=0.25, market_speed=60.0
    ) as sim:
        _say(f"simulator listening on {sim.api_url}")
        sim.inject("auth/accesstokenrequest", Fault.penalty(1.0))
        _say("1. login: the server answers with a penalty ticket (p-time 1 s) first")
        renewed = anyio.Event()
        async with TradovateSession(sim.config(), renew_before=8.0) as session:
            token = session.token
            _say(
                f"   token {token.access_token.prefix()}... for user {token.user_id}, expires "
                f"{token.expiration_time:%H:%M:%S} UTC ({sim.token_requests} token requests: "
                "the penalised one and its retry with the ticket)"
            )
            session.add_token_listener(lambda _t: renewed.set())

            me = await session.me()
            _say(f"2. /auth/me: {me.name} <{me.email}> (id {me.user_id})")

            async with session.websocket() as trading, session.websocket(kind="md") as md:
                await _sockets(session, sim, trading, md, renewed, _say)
            _say("7. sockets closed cleanly (code 1000)")
            await _market_and_mirror(session, _say)
        _say(
            f"10. session closed. The server saw {sim.token_requests} token requests, "
            f"{sim.logins} login, {sim.renewals} renewal(s), "
            f"{sim.expired_token_rejections} request(s) with an expired token."
        )
    _say("demo finished")


async def _sockets(
    session: TradovateSession,
    sim: SimulatedTradovate,
    trading: TradovateWebSocket,
    md: TradovateWebSocket,
    renewed: anyio.Event,
    say: Callable[[str], None],
) -> None:
    """Steps 3 to 6: sync and an order's props event, quotes, a renewal, a dropped connection."""
    user_id = session.token.user_id
    say("3. trading socket authorized; user/syncrequest snapshot:")
    snapshot = await trading.subscribe("user/syncrequest", {"users": [user_id]})
    accounts = snapshot.get("accounts", []) if isinstance(snapshot, dict) else []
    say(f"   {len(accounts)} account(s): {[a.get('name') for a in accounts]}")
    account = accounts[0]
    order = await session.post(
        "order/placeorder",
        json={
            "accountSpec": account["name"],
            "accountId": account["id"],
            "action": "Buy",
            "symbol": "ESZ6",
            "orderQty": 1,
            "orderType": "Market",
            "isAutomated": True,
        },
    )
    props = await _next_event(trading, "props")
    say(
        f"   order {order.get('orderId')} placed over REST; props event: "
        f"{props.get('entityType')} {props.get('eventType')}"
    )

    say("4. market-data socket: subscribing to ESZ6 quotes")
    await md.subscribe("md/subscribeQuote", {"symbol": "ESZ6"})
    for _ in range(3):
        say(f"   quote {_quote_text(await _next_event(md, 'md'))}")

    say("5. waiting for the background renewal (token lifetime 20 s)...")
    with anyio.fail_after(30):
        await renewed.wait()
    say(
        f"   renewed: new token {session.token.access_token.prefix()}..., expires "
        f"{session.token.expiration_time:%H:%M:%S} UTC; "
        f"logins {sim.logins}, renewals {sim.renewals}"
    )

    say("6. the server drops every socket")
    dropped = sim.drop_sockets()
    await _next_event(md, "reconnected")
    say(
        f"   {dropped} sockets dropped; md socket back, re-authorized and "
        f"resubscribed ({len(md.subscriptions)} subscription(s))"
    )
    say(f"   quote {_quote_text(await _next_event(md, 'md'))}")
    await trading.wait_connected(timeout=10)
    accounts_again = await trading.request("account/list")
    say(f"   trading socket back too: account/list -> {len(accounts_again)} account(s)")
