"""The fixes the wire corpus exposed, tried on the simulator end to end.

Each test names the corpus sample that showed the problem.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Literal

import httpx
import pytest

from tradovate_async import (
    APIError,
    CaptchaRequiredError,
    OrderRejectedError,
    PenaltyLimitError,
    PenaltyPolicy,
    RequestFailedError,
)
from tradovate_async._clock import SystemClock
from tradovate_async._config import ENVIRONMENTS, TradovateConfig
from tradovate_async._session import TradovateSession
from tradovate_async.sim import Fault, SimulatedTradovate, SimUser

ORDER = {
    "accountId": 70001,
    "accountSpec": "DEMO70001",
    "action": "Buy",
    "symbol": "ESZ5",
    "orderQty": 1,
    "orderType": "Market",
    "isAutomated": True,
}
FOREIGN_ORDER = {**ORDER, "accountId": 99999, "accountSpec": "NOT-MINE"}
WS_FAST: dict[str, Any] = {"heartbeat_interval": 0.2, "timeout": 5.0}


class MovableClock(SystemClock):
    """The session's wall clock; a test moves it like a host clock that jumps."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def now(self) -> dt.datetime:
        return super().now() + self.offset


def penalised(sim: SimulatedTradovate, path: str) -> list[bool]:
    """For each REST request to ``path``: whether it carried a p-ticket."""
    return [r.has_p_ticket for r in sim.request_log if r.path == path and r.transport == "rest"]


# -- frame-order-rejected-over-socket, frame-error-text-over-socket --------------------------


async def test_socket_order_rejection_raises_what_rest_raises(sim: SimulatedTradovate) -> None:
    async with TradovateSession(sim.config()) as session:
        with pytest.raises(OrderRejectedError) as over_rest:
            await session.post("order/placeorder", json=FOREIGN_ORDER)
        async with session.websocket(**WS_FAST) as ws:
            with pytest.raises(OrderRejectedError) as over_socket:
                await ws.request("order/placeorder", json=FOREIGN_ORDER)
            placed = await ws.request("order/placeorder", json=ORDER)
    assert (over_socket.value.failure_reason, over_socket.value.failure_text) == (
        over_rest.value.failure_reason,
        over_rest.value.failure_text,
    )
    assert isinstance(placed, dict) and isinstance(placed["orderId"], int)


async def test_socket_error_text_raises_request_failed(sim: SimulatedTradovate) -> None:
    sim.inject("account/list", Fault.error_text("Access is denied"), transport="ws")
    async with TradovateSession(sim.config()) as session, session.websocket(**WS_FAST) as ws:
        with pytest.raises(RequestFailedError) as info:
            await ws.request("account/list")
    assert info.value.error_text == "Access is denied"


# -- rest-order-penalty, rest-order-penalty-captcha -------------------------------------------


async def test_order_penalty_is_waited_and_resent_with_ticket(sim: SimulatedTradovate) -> None:
    sim.inject("order/placeorder", Fault.penalty(0.05), transport="rest")
    async with TradovateSession(sim.config()) as session:
        result = await session.post("order/placeorder", json=ORDER)
    assert isinstance(result["orderId"], int)
    assert penalised(sim, "order/placeorder") == [False, True]
    assert len(sim.orders()) == 1  # the penalised request was not executed


async def test_get_penalty_is_resent_with_ticket(sim: SimulatedTradovate) -> None:
    sim.inject("account/list", Fault.penalty(0.0), transport="rest")
    async with TradovateSession(sim.config()) as session:
        accounts = await session.get("account/list")
    assert [a["id"] for a in accounts] == [70001]
    assert penalised(sim, "account/list") == [False, True]


async def test_order_captcha_penalty_raises_and_places_nothing(sim: SimulatedTradovate) -> None:
    sim.inject("order/placeorder", Fault.penalty(60.0, captcha=True), transport="rest")
    async with TradovateSession(sim.config()) as session:
        with pytest.raises(CaptchaRequiredError):
            await session.post("order/placeorder", json=ORDER)
    assert penalised(sim, "order/placeorder") == [False]
    assert sim.orders() == []


async def test_rest_penalties_are_bounded_like_logins(sim: SimulatedTradovate) -> None:
    sim.inject("order/placeorder", Fault.penalty(0.0), times=5, transport="rest")
    async with TradovateSession(sim.config(), penalties=PenaltyPolicy(max_rounds=2)) as session:
        with pytest.raises(PenaltyLimitError):
            await session.post("order/placeorder", json=ORDER)
    assert len(penalised(sim, "order/placeorder")) == 3
    sim.clear_faults()
    sim.inject("order/placeorder", Fault.penalty(600.0), transport="rest")
    async with TradovateSession(sim.config(), penalties=PenaltyPolicy(max_wait=30.0)) as session:
        with pytest.raises(PenaltyLimitError) as info:
            await session.post("order/placeorder", json=ORDER)
    assert info.value.retry_after == dt.timedelta(seconds=600)
    assert sim.orders() == []


# -- token-captcha-without-ticket -------------------------------------------------------------


async def test_login_captcha_without_ticket(sim: SimulatedTradovate) -> None:
    body = b'{"p-time": 3600, "p-captcha": true}'
    sim.inject("auth/accesstokenrequest", Fault.status(200, body, "application/json"))
    with pytest.raises(CaptchaRequiredError):
        async with TradovateSession(sim.config()):
            pass
    assert sim.token_requests == 1


# -- token-success-oas-access-tag (outdatedTaC) -----------------------------------------------


async def test_outdated_terms_get_a_warning_that_says_what_to_do(
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = SimUser(outdated_tac=True)
    async with SimulatedTradovate(users=[user]) as sim:
        with caplog.at_level(logging.WARNING, logger="tradovate_async"):
            async with TradovateSession(sim.config(user)) as session:
                assert session.token.outdated_tac is True
                assert session.token.has_market_data is True
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Terms and Conditions" in m and "accept" in m for m in warnings), warnings


async def test_current_terms_get_no_warning(
    sim: SimulatedTradovate, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tradovate_async"):
        async with TradovateSession(sim.config()) as session:
            assert session.token.outdated_tac is False
    assert not [r for r in caplog.records if "Terms and Conditions" in r.getMessage()]


# -- list parameters --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
async def test_list_parameters_are_comma_separated(
    sim: SimulatedTradovate, backend: Literal["aiohttp", "httpx"]
) -> None:
    async with TradovateSession(sim.config(), http_backend=backend) as session:
        await session.get("account/list", params={"ids": [1, 2, 3], "masterids": (814, 799)})
    [sent] = [r for r in sim.request_log if r.path == "account/list"]
    assert sent.query == "ids=1,2,3&masterids=814,799"


# -- replay and market-data hosts -------------------------------------------------------------


def test_every_environment_has_replay_and_md_urls() -> None:
    assert ENVIRONMENTS["live"].replay_url == "wss://replay.tradovateapi.com/v1/websocket"
    assert ENVIRONMENTS["demo"].replay_url == "wss://replay.tradovateapi.com/v1/websocket"
    assert ENVIRONMENTS["live"].md_url == "wss://md.tradovateapi.com/v1/websocket"
    assert ENVIRONMENTS["demo"].md_url == "wss://md-demo.tradovateapi.com/v1/websocket"
    for env in ENVIRONMENTS.values():
        assert env.replay_url.startswith("wss://") and env.replay_url.endswith("/v1/websocket")


async def test_replay_socket_needs_no_url(sim: SimulatedTradovate) -> None:
    config: TradovateConfig = sim.config()
    async with TradovateSession(config) as session:
        ws = session.websocket(kind="replay")
        # The simulator names its own replay socket; a custom server without one defaults to
        # its market-data socket: replay sockets authorize with the market-data token (the
        # official strategy example's ReplaySocket extends its MarketDataSocket).
        assert ws.url == config.replay_url == sim.replay_url
        assert sim.config(replay_url="").replay_url == config.md_url
        async with ws:
            assert ws.connected


def test_replay_url_from_the_environment() -> None:
    config = TradovateConfig(
        username="u", password="p", app_id="a", sec="s", device_id="d", environment="demo"
    )
    assert config.replay_url == "wss://replay.tradovateapi.com/v1/websocket"
    assert config.md_url == "wss://md-demo.tradovateapi.com/v1/websocket"


# -- expired tokens answered with 400 ---------------------------------------------------------


async def test_400_for_a_spent_token_renews_and_resends(sim: SimulatedTradovate) -> None:
    """The token expires while the request is in flight (an httpx request hook moves the clock,
    so this runs on the httpx backend; both backends decide with ``TradovateSession.refuses``)."""
    clock = MovableClock()
    async with TradovateSession(
        sim.config(), clock=clock, check_interval=60.0, http_backend="httpx"
    ) as session:
        first = session.token

        async def expire_in_flight(request: httpx.Request) -> None:
            if request.url.path.endswith("/account/list") and clock.offset == dt.timedelta(0):
                clock.offset = first.expires_in(dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=1)

        session.http.event_hooks["request"].append(expire_in_flight)
        sim.inject("account/list", Fault.status(400, "Bad Request"), transport="rest")
        accounts = await session.get("account/list")
        assert [a["id"] for a in accounts] == [70001]
        assert session.token is not first
    assert sim.logins + sim.renewals == 2


async def test_400_for_a_fresh_token_is_the_requests_own_fault(sim: SimulatedTradovate) -> None:
    sim.inject("account/list", Fault.status(400, "Invalid or missed parameters"), transport="rest")
    async with TradovateSession(sim.config()) as session:
        with pytest.raises(APIError) as info:
            await session.get("account/list")
    assert info.value.status == 400
    assert (sim.logins, sim.renewals) == (1, 0)
