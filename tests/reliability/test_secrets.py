"""No password, API secret or token in any log record, repr, str or error, with everything on.

One run drives a whole bot's life at DEBUG with the ``httpx``, ``httpcore``, ``websockets``,
``uvicorn`` and ``tradovate_async`` loggers on (the ``debug_logs`` fixture keeps every record):
a failed login with a wrong password, a login served a penalty ticket, ``/auth/me``, a trading
and a market-data socket with subscriptions, orders over REST and WebSocket, a renewal (wall
clock jump), a request that fails, a socket dropped under a pending order, reconnects with the
renewed tokens. Then every record, and the ``repr``/``str`` of the session, config, tokens,
sockets, stores and every exception met on the way, is searched for the secrets.

Secrets are distinctive values; tokens are the simulator's random 64-character strings, all of
them collected as the session receives them. Tokens may show their first 8 characters (the
documented display prefix), so no 9-character piece of a token may appear anywhere; passwords
and API secrets keep nothing, so no 8-character piece of them may appear.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable

import anyio
import pytest

from tests.conftest import RecordCollector
from tests.test_session import LOGIN, MINUTE, wait_until
from tests.test_ws import FAST, ORDER, SIM_DEFAULTS, next_event
from tradovate_async import (
    AccessToken,
    Backoff,
    InvalidCredentialsError,
    MemoryTokenStore,
    OrderOutcomeUnknownError,
    RequestFailedError,
    TradovateError,
    TradovateSession,
)
from tradovate_async.sim import Fault, SimulatedTradovate, SimUser, WarpClock

PASSWORD = "pw-Sup3rSecret!"
WRONG_PASSWORD = "pw-Wr0ngSecret!"
API_SECRET = "sec-Sup3rSecret-API-7Q2x"
USER = SimUser(username="secret-scan-user", password=PASSWORD, sec=API_SECRET)

LOGGERS = ("httpx", "httpcore", "websockets", "uvicorn", "tradovate_async")


def pieces(secret: str, size: int) -> set[str]:
    """Every ``size``-character piece of ``secret``."""
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


class Scanner:
    """The forbidden pieces of every secret seen so far."""

    def __init__(self) -> None:
        self.forbidden: set[str] = set()
        for secret in (PASSWORD, WRONG_PASSWORD, API_SECRET):
            self.forbidden |= pieces(secret, 8)

    def add_token(self, token: AccessToken) -> None:
        for secret in (token.access_token, token.market_data_token):
            self.forbidden |= pieces(secret.reveal(), 9)

    def leaks(self, texts: Iterable[str]) -> list[str]:
        return [text for text in texts for piece in self.forbidden if piece in text]


def exception_texts(error: BaseException) -> list[str]:
    texts = []
    seen: BaseException | None = error
    while seen is not None:
        texts += [repr(seen), str(seen), *traceback.format_exception_only(seen)]
        seen = seen.__cause__ or seen.__context__
    return texts


async def test_no_secret_in_any_record_repr_or_error(debug_logs: RecordCollector) -> None:
    for name in LOGGERS:  # the fixture turns them on; make sure, as this test depends on it
        assert logging.getLogger(name).getEffectiveLevel() == logging.DEBUG
    scanner = Scanner()
    errors: list[BaseException] = []
    shown: list[object] = []
    clock = WarpClock()
    async with SimulatedTradovate(users=[USER], clock=clock.time, **SIM_DEFAULTS) as sim:
        # 1. A login with a wrong password: refused, never retried.
        await _wrong_password(sim, clock, errors, shown)

        # 2. A login served a penalty ticket: waited out, resent with the ticket.
        sim.inject(LOGIN, Fault.penalty(0.1))
        store = MemoryTokenStore()
        config = sim.config(USER)
        async with TradovateSession(
            config,
            store=store,
            clock=clock,
            check_interval=0.02,
            renewal_backoff=Backoff(0.02, 60.0),
        ) as session:
            tokens = [session.token]
            session.add_token_listener(tokens.append)
            assert [r.has_p_ticket for r in sim.request_log if r.path == LOGIN] == [
                False,
                False,
                True,
            ]
            me = await session.me()
            assert me.name == USER.username
            account = (await session.get("account/list"))[0]
            order = {**ORDER, "accountId": account["id"], "accountSpec": account["name"]}
            assert (await session.post("order/placeorder", json=order))["orderId"]

            await _sockets(sim, session, clock, order, errors, shown)
            shown += [session, config, session.stats, store, *tokens, me]
        shown += [sim, USER]

    assert [type(e) for e in errors] == [
        InvalidCredentialsError,
        RequestFailedError,
        OrderOutcomeUnknownError,
    ]
    assert all(isinstance(e, TradovateError) for e in errors)
    assert len({t.access_token for t in tokens}) == 2  # the login's and the renewal's
    for token in tokens:
        scanner.add_token(token)

    texts = _records_that_can_fail_the_scan(debug_logs, scanner, tokens[0])
    texts += [text for obj in shown for text in (repr(obj), str(obj))]
    texts += [text for error in errors for text in exception_texts(error)]
    assert scanner.leaks(texts) == []


async def _wrong_password(
    sim: SimulatedTradovate, clock: WarpClock, errors: list[BaseException], shown: list[object]
) -> None:
    """A login with a wrong password: refused, never retried."""
    wrong = sim.config(USER, password=WRONG_PASSWORD)
    with pytest.raises(InvalidCredentialsError) as refused:
        async with TradovateSession(wrong, clock=clock):
            pass  # pragma: no cover
    errors.append(refused.value)
    shown.append(wrong)


async def _sockets(
    sim: SimulatedTradovate,
    session: TradovateSession,
    clock: WarpClock,
    order: dict[str, object],
    errors: list[BaseException],
    shown: list[object],
) -> None:
    """A trading and a market-data socket through orders, a failed request, a renewal (3.)
    and a drop under a pending order (4.)."""
    async with (
        session.websocket("trading", **FAST) as trading,
        session.websocket("md", **FAST) as md,
    ):
        await trading.request("user/syncrequest", json={"users": [USER.user_id]}, replay=True)
        await md.subscribe("md/subscribeQuote", {"symbol": "ESZ5"})
        await next_event(md, "md")
        assert (await trading.request("order/placeorder", json=order))["orderId"]
        with pytest.raises(RequestFailedError) as failed:
            await trading.request("nope/list")
        errors.append(failed.value)

        # 3. A renewal: the wall clock jumps to 86 of 90 minutes.
        first = session.token
        clock.jump(86 * MINUTE)
        await wait_until(lambda: session.token is not first)
        assert sim.renewals == 1

        # 4. Both sockets dropped under a pending order; they come back and
        #    authorize with the renewed tokens.
        sim.inject("order/placeorder", Fault.delay(3.0), transport="ws")
        async with anyio.create_task_group() as tg:

            async def place() -> None:
                try:
                    await trading.request("order/placeorder", json=order)
                except OrderOutcomeUnknownError as exc:
                    errors.append(exc)

            tg.start_soon(place)
            await wait_until(
                lambda: "order/placeorder" in sim.ws_connections("trading")[0].requests
            )
            assert sim.drop_sockets() == 2
        await trading.wait_connected(after=1, timeout=10)
        await md.wait_connected(after=1, timeout=10)
        await next_event(md, "md")
        await trading.request("account/list")
        prefixes = {c.kind: c.token_prefix for c in sim.ws_connections()}
        assert prefixes["trading"] == session.token.access_token.prefix()
        assert prefixes["md"] == session.token.market_data_token.prefix()
        shown += [trading, md, trading.stats, md.stats, trading.subscriptions]


def _records_that_can_fail_the_scan(
    debug_logs: RecordCollector, scanner: Scanner, token: AccessToken
) -> list[str]:
    """The texts of every record so far, once the scan is shown able to fail."""
    # The scan must be able to fail: it sees many records of every library involved, including
    # the websockets frame log that carried the authorize frames and the httpcore request log,
    # and it catches a planted secret.
    names = {record.name for record in debug_logs.records}
    assert len(debug_logs.records) > 150
    for prefix in ("websockets.client", "httpcore.", "httpx", "uvicorn", "tradovate_async."):
        assert any(name.startswith(prefix) for name in names), (prefix, sorted(names))
    assert any("authorize" in t for t in debug_logs.texts if t.startswith("websockets.client"))
    texts = list(debug_logs.texts)
    logging.getLogger("httpcore.canary").debug("planted %s", token.access_token.reveal())
    assert scanner.leaks(debug_logs.texts[len(texts) :]) != []  # the scanner catches a leak
    return texts
