"""TradovateWebSocket against the real simulator on loopback (no mocks).

Intervals are scaled down (heartbeat 0.2 s, silence 2 s, quota backoff 0.6 s); timing
assertions use generous bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme

from tests.conftest import RecordCollector
from tradovate_async._clock import SYSTEM_CLOCK, Clock, SystemClock
from tradovate_async._errors import (
    CaptchaRequiredError,
    ConnectFailedError,
    ConnectionLostError,
    InvalidCredentialsError,
    OrderOutcomeUnknownError,
    PenaltyLimitError,
    RateLimitedError,
    RequestFailedError,
    RequestTimeoutError,
    SessionClosedError,
    TokenRejectedError,
)
from tradovate_async._models import AccessToken
from tradovate_async._options import Backoff, Timeouts
from tradovate_async._penalty import PenaltyPolicy
from tradovate_async._session import TradovateSession
from tradovate_async._ws import (
    EVENT_DISCONNECTED,
    EVENT_RECONNECTED,
    Disconnected,
    Reconnected,
    TokenSource,
    TradovateWebSocket,
)
from tradovate_async._ws_codec import Event
from tradovate_async.sim import Fault, SimulatedTradovate

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "silence_timeout": 2.0,
    "timeout": 5.0,
    "reconnect_backoff": Backoff(0.1, 0.5),
}
SIM_DEFAULTS: dict[str, Any] = {"server_heartbeat": 0.25, "quote_interval": 0.05}
ORDER = {
    "accountId": 70001,
    "accountSpec": "DEMO70001",
    "action": "Buy",
    "symbol": "ESZ5",
    "orderQty": 1,
    "orderType": "Market",
    "isAutomated": True,
}


class ShiftedClock(SystemClock):
    """The session's wall clock, movable: the session refuses to renew a token it got
    moments ago (that points to permissions, not expiry), so tests that need a renewal after a
    refusal age the token first."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def now(self) -> dt.datetime:
        return super().now() + self.offset


@contextlib.asynccontextmanager
async def environment(
    clock: Clock = SYSTEM_CLOCK, **sim_options: Any
) -> AsyncIterator[tuple[SimulatedTradovate, TradovateSession]]:
    async with SimulatedTradovate(**{**SIM_DEFAULTS, **sim_options}) as sim:
        # Tests here revoke tokens moments after a login: no pause between logins (the pacing
        # floor has its own tests in test_server_time.py).
        async with TradovateSession(sim.config(), clock=clock, login_pause=0.0) as session:
            yield sim, session


async def next_event(ws: TradovateWebSocket, kind: str, timeout: float = 5.0) -> Event:
    with anyio.fail_after(timeout):
        async for event in ws.events():
            if event.kind == kind:
                return event
    raise AssertionError(f"events() ended before a {kind!r} event")


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- connect and authorize -----------------------------------------------------------------


@pytest.mark.parametrize("auth_frame", ["authorize", "json"])
@pytest.mark.parametrize("kind", ["trading", "md"])
async def test_authorize_in_both_frame_styles(kind: str, auth_frame: str) -> None:
    async with environment() as (sim, session):
        async with session.websocket(kind=kind, auth_frame=auth_frame, **FAST) as ws:  # type: ignore[arg-type]
            assert ws.connected and ws.generation == 1
            [conn] = sim.ws_connections(kind)
            assert conn.authorized and conn.requests[0] == "authorize"
            token = session.token
            secret = token.access_token if kind == "trading" else token.market_data_token
            assert conn.token_prefix == secret.reveal()[:8]
            if kind == "trading":
                assert (await ws.request("auth/me"))["userId"] == 4242
            else:
                await ws.subscribe("md/subscribeQuote", {"symbol": "ESZ5"})
                assert (await next_event(ws, "md")).data["quotes"]


@pytest.mark.parametrize("auth_frame", ["authorize", "json"])
async def test_refused_token_is_renewed_once_then_accepted(auth_frame: str) -> None:
    clock = ShiftedClock()
    async with environment(clock=clock) as (sim, session):
        clock.offset = dt.timedelta(minutes=5)
        first = session.token
        sim.revoke_tokens()
        async with session.websocket(auth_frame=auth_frame, **FAST) as ws:
            assert ws.connected
            assert session.token is not first
            assert session.stats.rejected_tokens == 1
            [conn] = sim.ws_connections("trading")
            assert conn.token_prefix == session.token.access_token.reveal()[:8]
        assert sim.logins == 2


@pytest.mark.parametrize("auth_frame", ["authorize", "json"])
async def test_first_connect_refused_after_renewal_raises(auth_frame: str) -> None:
    class StaleSource:
        """A token source that keeps handing out a revoked token."""

        def __init__(self, token: AccessToken) -> None:
            self.token = token
            self.rejections = 0

        async def current_token(self) -> AccessToken:
            return self.token

        async def token_rejected(self, token: AccessToken) -> AccessToken:
            self.rejections += 1
            return self.token

    async with environment() as (sim, session):
        source = StaleSource(session.token)
        _: TokenSource = source
        sim.revoke_tokens()
        ws = TradovateWebSocket(source, url=sim.ws_url, auth_frame=auth_frame, **FAST)  # type: ignore[arg-type]
        with pytest.raises(TokenRejectedError):
            async with ws:
                pass  # pragma: no cover
        assert source.rejections == 2  # three refusals in one attempt, then final
        assert ws.closed
        with pytest.raises(SessionClosedError):
            async with ws:
                pass  # pragma: no cover
        # Through the session, the revoked token is renewed once (the renewal of a revoked
        # token is refused, so that is one login) and the socket connects.
        logins = sim.logins
        async with session.websocket(**FAST) as recovered:
            assert recovered.connected
        assert sim.logins == logins + 1


async def test_a_server_that_never_upgrades_fails_the_connect_in_time() -> None:
    """TCP accepted, then silence: the connect deadline (on the socket's clock) still fires."""

    async def mute(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep(30)

    async with (
        environment() as (sim, session),
        await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(listener.serve, mute)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        url = f"ws://127.0.0.1:{port}/v1/websocket"

        class SlowSource:  # a token source that takes a moment, as a renewal would
            async def current_token(self) -> AccessToken:
                await anyio.sleep(0.05)
                return await session.current_token()

            async def token_rejected(self, token: AccessToken) -> AccessToken:
                return await session.token_rejected(token)

        options: dict[str, Any] = {**FAST, "timeout": Timeouts(5.0, connect=0.3)}
        ws = TradovateWebSocket(SlowSource(), url=url, **options)
        with anyio.fail_after(10), pytest.raises(ConnectFailedError, match="no open/authorize"):
            async with ws:
                pass  # pragma: no cover
        tg.cancel_scope.cancel()


async def test_first_connect_transport_failures_raise() -> None:
    async with environment() as (sim, session):
        url = f"ws://127.0.0.1:{free_port()}/v1/websocket"
        with pytest.raises(ConnectFailedError):
            async with session.websocket(url=url, **FAST):
                pass  # pragma: no cover
        sim.authorize_delay = 1.0
        with pytest.raises(ConnectFailedError, match="no open/authorize"):
            async with session.websocket(**{**FAST, "timeout": Timeouts(5.0, connect=0.3)}):
                pass  # pragma: no cover
        # Let the simulator notice the abandoned socket before it stops (see the report).
        await eventually(lambda: sim.ws_connections() == [])


async def test_invalid_options_are_refused() -> None:
    async with environment() as (sim, session):
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        with pytest.raises(ValueError, match="verification"):
            TradovateWebSocket(session, url=sim.ws_url, verify=insecure)
        with pytest.raises(ValueError):
            TradovateWebSocket(session, url=sim.ws_url, kind="nope")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            TradovateWebSocket(session, url=sim.ws_url, heartbeat_interval=0)


# -- heartbeats and silence ----------------------------------------------------------------


async def test_heartbeats_keep_their_cadence_while_data_streams() -> None:
    async with environment(quote_interval=0.01) as (sim, session):
        async with session.websocket(kind="md", **FAST) as ws:
            await ws.subscribe("md/subscribeQuote", {"symbol": "ESZ5"})
            # The exact cadence (a beat every interval on a fixed schedule, no burst after a
            # blocked loop) is tested on the core with a fake clock; here: beats reach the
            # server while data streams, and the connection stays the first one.
            await eventually(lambda: len(sim.ws_connections("md")[0].heartbeats) >= 5)
            assert ws.stats.heartbeats_sent >= 5
            assert ws.generation == 1 and ws.stats.reconnects == 0


async def test_server_silence_counts_as_a_dead_connection() -> None:
    async with environment(server_heartbeat=60.0, quote_interval=None) as (sim, session):
        async with session.websocket(**{**FAST, "silence_timeout": 0.5}) as ws:
            await ws.wait_connected(after=1, timeout=5)
            assert "silent" in (ws.stats.last_disconnect_reason or "")
            assert ws.stats.reconnects >= 1


# -- requests ------------------------------------------------------------------------------


async def test_thousand_concurrent_requests_are_matched_by_id() -> None:
    async with environment() as (sim, session):
        async with session.websocket(**FAST) as ws:
            results: dict[int, Any] = {}

            async def one(n: int) -> None:
                results[n] = await ws.request("contract/item", params={"id": n})

            async with anyio.create_task_group() as tg:
                for n in range(1, 1001):
                    tg.start_soon(one, n)
            assert all(results[n]["id"] == n for n in range(1, 1001))
            assert ws.stats.requests_sent == 1000


async def test_penalty_is_waited_out_and_resent_with_the_ticket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with environment() as (sim, session):
        async with session.websocket(**FAST) as ws:
            sim.inject("account/list", Fault.penalty(0.2), transport="ws")
            with caplog.at_level(logging.WARNING, logger="tradovate_async._ws"):
                started = time.monotonic()
                accounts = await ws.request("account/list")
            assert time.monotonic() - started >= 0.2
            assert accounts[0]["id"] == 70001
            assert ws.stats.penalties == 1
            assert any("waiting 0.2 s" in r.getMessage() for r in caplog.records)
            records = [r for r in sim.request_log if r.path == "account/list"]
            assert [r.has_p_ticket for r in records] == [False, True]

            sim.inject("position/list", Fault.penalty(0.0, captcha=True), transport="ws")
            with pytest.raises(CaptchaRequiredError):
                await ws.request("position/list")

            sim.inject("fill/list", Fault.penalty(500.0), transport="ws")
            with pytest.raises(PenaltyLimitError, match="more than max_wait"):
                await ws.request("fill/list", timeout=1.0)
            assert ws.connected


async def test_penalty_rounds_are_bounded() -> None:
    async with environment() as (sim, session):
        async with session.websocket(**{**FAST, "penalties": PenaltyPolicy(max_rounds=2)}) as ws:
            sim.inject("cashBalance/list", Fault.penalty(0.0), times=3, transport="ws")
            with pytest.raises(PenaltyLimitError, match="2 round"):
                await ws.request("cashBalance/list")


async def test_failed_requests_raise_typed_errors() -> None:
    async with environment() as (sim, session):
        async with session.websocket(**FAST) as ws:
            with pytest.raises(RequestFailedError) as info:
                await ws.request("nope/list")
            assert info.value.status == 404
            assert info.value.error_text == "Not found: nope/list"
            sim.inject("account/list", Fault.status(429), transport="ws")
            with pytest.raises(RateLimitedError):
                await ws.request("account/list")
            sim.inject("account/list", Fault.delay(2.0), transport="ws")
            with pytest.raises(RequestTimeoutError, match="no answer"):
                await ws.request("account/list", timeout=0.2)
            assert (await ws.request("account/list"))[0]["name"] == "DEMO70001"
            with pytest.raises(ValueError):
                await ws.request("bad\nendpoint")


# -- reconnect and resubscribe -------------------------------------------------------------


async def test_drop_reconnects_reauthorizes_and_resubscribes() -> None:
    async with environment() as (sim, session):
        async with session.websocket(kind="md", **FAST) as ws:
            await ws.subscribe("md/subscribeQuote", {"symbol": "ESZ5"})
            await ws.subscribe("md/subscribeQuote", {"symbol": "NQZ5"})
            await ws.subscribe("md/subscribeDOM", {"symbol": "ESZ5"})
            before = ws.subscriptions
            [conn] = sim.ws_connections("md")
            expected = conn.subscriptions
            assert len(before) == len(expected) == 3
            await next_event(ws, "md")

            assert sim.drop_sockets("md") == 1
            assert await ws.wait_connected(after=1, timeout=5) == 2
            assert ws.subscriptions == before
            [conn] = sim.ws_connections("md")
            assert conn.authorized and conn.subscriptions == expected
            lost = await next_event(ws, EVENT_DISCONNECTED)
            assert isinstance(lost.data, Disconnected) and not lost.data.quota
            back = await next_event(ws, EVENT_RECONNECTED)
            assert isinstance(back.data, Reconnected)
            assert back.data.generation == 2 and len(back.data.replayed) == 3
            assert all(r.error is None for r in back.data.replayed)
            await next_event(ws, "md")
            assert ws.stats.reconnects == 1 and ws.stats.connects == 2
            recovery = ws.stats.last_recovery_seconds
            assert recovery is not None and recovery < 2.0


async def test_syncrequest_is_replayed_after_a_reconnect() -> None:
    async with environment() as (sim, session):
        async with session.websocket(**FAST) as ws:
            snapshot = await ws.request("user/syncrequest", json={"users": [4242]}, replay=True)
            assert snapshot["users"][0]["id"] == 4242
            sim.drop_sockets()
            await ws.wait_connected(after=1, timeout=5)
            [conn] = sim.ws_connections("trading")
            assert conn.synced and conn.requests[:2] == ("authorize", "user/syncrequest")
            back = await next_event(ws, EVENT_RECONNECTED)
            assert back.data.replayed[0].data["users"][0]["id"] == 4242


async def test_unsubscribe_forgets_the_subscription() -> None:
    async with environment() as (sim, session):
        async with session.websocket(kind="md", **FAST) as ws:
            await ws.subscribe("md/subscribeQuote", {"symbol": "ESZ5"})
            await ws.unsubscribe("md/subscribeQuote", {"symbol": "ESZ5"})
            assert ws.subscriptions == frozenset()
            [conn] = sim.ws_connections("md")
            assert conn.subscriptions == frozenset()
            assert conn.requests[-1] == "md/unsubscribequote"
            sim.drop_sockets("md")
            await ws.wait_connected(after=1, timeout=5)
            [conn] = sim.ws_connections("md")
            assert conn.requests == ("authorize",)


async def test_shutdown_is_delivered_and_quota_backs_off_longer() -> None:
    async with environment() as (sim, session):
        options = {**FAST, "quota_wait": 0.6}
        async with session.websocket(kind="md", **options) as ws:
            sim.send_shutdown("Maintenance", kind="md")
            await ws.wait_connected(after=1, timeout=5)
            notice = await next_event(ws, "shutdown")
            assert notice.data == {"reasonCode": "Maintenance"}
            lost = await next_event(ws, EVENT_DISCONNECTED)
            assert lost.data.shutdown_reason == "Maintenance" and not lost.data.quota

            started = time.monotonic()
            sim.send_shutdown("ConnectionQuotaReached", "too many sockets", kind="md")
            await ws.wait_connected(after=2, timeout=5)
            quota = time.monotonic() - started
            lost = await next_event(ws, EVENT_DISCONNECTED)
            assert lost.data.quota and lost.data.shutdown_reason == "ConnectionQuotaReached"
            assert quota >= 0.6  # a lower bound: the exact wait is tested on the core


async def test_token_revoked_while_connected_reconnects_with_a_renewed_token() -> None:
    clock = ShiftedClock()
    async with environment(clock=clock) as (sim, session):
        async with session.websocket(**FAST) as ws:
            await ws.subscribe("user/syncrequest", {"users": [4242]})
            [conn] = sim.ws_connections("trading")
            old_prefix = conn.token_prefix
            clock.offset = dt.timedelta(minutes=5)
            sim.revoke_tokens()
            await ws.wait_connected(after=1, timeout=5)
            [conn] = sim.ws_connections("trading")
            assert conn.token_prefix != old_prefix
            assert conn.token_prefix == session.token.access_token.reveal()[:8]
            assert conn.synced
            assert session.stats.rejected_tokens == 1 and sim.logins == 2


async def test_a_token_the_session_cannot_renew_ends_the_socket_loudly() -> None:
    async with environment() as (sim, session):
        async with session.websocket(**FAST) as ws:
            # Revoked, and the fallback login is refused for its credentials: permanent.
            sim.inject(
                "auth/accesstokenrequest", Fault.error_text("Incorrect username or password.")
            )
            sim.revoke_tokens()
            lost = await next_event(ws, EVENT_DISCONNECTED)
            assert "revoked" in lost.data.reason
            with pytest.raises(InvalidCredentialsError), anyio.fail_after(5):
                async for _ in ws.events():
                    pass
            with pytest.raises(InvalidCredentialsError):
                await ws.request("account/list")
            assert not ws.connected
        assert sim.token_requests == 2


async def test_a_token_revoked_right_after_login_is_renewed_once() -> None:
    async with environment() as (sim, session):
        async with session.websocket(**FAST) as ws:
            sim.revoke_tokens()  # e.g. a quota eviction moments after the login
            back = await next_event(ws, EVENT_RECONNECTED)
            assert back.data.attempts >= 1
            assert await ws.request("account/list")
        assert sim.logins == 2


async def test_garbage_frames_are_counted_and_the_stream_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with environment() as (sim, session):
        async with session.websocket(kind="md", **FAST) as ws:
            await ws.subscribe("md/subscribeQuote", {"symbol": "ESZ5"})
            with caplog.at_level(logging.WARNING, logger="tradovate_async._ws"):
                sim.send_raw("garbage", kind="md")
                sim.send_raw('a[{"x":1}]', kind="md")
                sim.send_raw("a[" + "[" * 50_000, kind="md")
                await eventually(lambda: ws.stats.malformed_frames == 3)
            await next_event(ws, "md")
            assert ws.generation == 1 and ws.connected
            warnings = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
            assert len(warnings) == 3
            assert all(len(w) < 400 for w in warnings)


async def test_an_event_whose_data_is_not_json_is_dropped_and_the_next_one_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The frame is well formed but one event's data is not valid JSON (a number no float
    holds): that event is counted, logged and left out; the socket goes on."""
    async with environment(quote_interval=None) as (sim, session):
        async with session.websocket(kind="md", **FAST) as ws:
            with caplog.at_level(logging.WARNING, logger="tradovate_async._ws_core"):
                sim.send_raw('a[{"e":"md","d":{"quotes":[{"v":1e999}]}}]', kind="md")
                sim.send_raw('a[{"e":"md","d":{"quotes":[{"v":1.5}]}}]', kind="md")
                event = await next_event(ws, "md")
            assert event.data == {"quotes": [{"v": 1.5}]}
            assert ws.stats.malformed_frames == 1
            assert any("not valid JSON" in r.getMessage() for r in caplog.records)
            assert ws.connected and ws.generation == 1


async def test_event_buffer_drops_old_market_data_when_nobody_reads() -> None:
    async with environment(quote_interval=None) as (sim, session):
        async with session.websocket(kind="md", event_buffer=20, **FAST) as ws:
            await ws.subscribe("md/subscribeQuote", {"symbol": "ESZ5"})
            sent = await sim.md_burst(300)
            assert sent == 300
            # every frame of the burst was read: dropped, or kept in the buffer
            await eventually(lambda: ws.stats.dropped_events + len(ws._core.events) >= sent)
            received = []
            stream = ws.events()
            with anyio.fail_after(5):
                while ws._core.events:  # what the buffer kept, taken without waiting for more
                    received.append(await anext(stream))
            # Quotes of one contract supersede each other: what is left is the newest few.
            assert 1 <= len(received) <= 20
            assert all(e.kind == "md" for e in received)
            # The simulator also sends one frame right after the subscription.
            assert ws.stats.dropped_events + len(received) in (sent, sent + 1)


# -- drops, waits and closing --------------------------------------------------------------


async def test_pending_requests_fail_at_once_on_a_drop_but_reads_are_resent() -> None:
    async with environment() as (sim, session):
        async with session.websocket(**FAST) as ws:
            sim.inject("order/placeorder", Fault.delay(3.0), transport="ws")
            sim.inject("account/list", Fault.delay(3.0), transport="ws")
            outcome: dict[str, Any] = {}

            async def place() -> None:
                try:
                    await ws.request("order/placeorder", json=ORDER)
                except OrderOutcomeUnknownError as exc:
                    outcome["order"] = exc

            async def accounts() -> None:
                outcome["accounts"] = await ws.request("account/list")

            async with anyio.create_task_group() as tg:
                tg.start_soon(place)
                tg.start_soon(accounts)
                await eventually(
                    lambda: (
                        {"order/placeorder", "account/list"}
                        <= set(sim.ws_connections("trading")[0].requests)
                    )
                )
                started = time.monotonic()
                sim.drop_sockets()
            assert isinstance(outcome["order"], OrderOutcomeUnknownError)
            assert isinstance(outcome["order"].__cause__, ConnectionLostError)
            assert outcome["accounts"][0]["id"] == 70001
            assert time.monotonic() - started < 2.0
            assert sim.orders() == []  # the order was not sent again


async def test_requests_wait_for_the_reconnect_within_their_timeout() -> None:
    async with environment() as (sim, session):
        async with session.websocket(**FAST) as ws:
            sim.authorize_delay = 0.3
            sim.drop_sockets()
            with pytest.raises(RequestTimeoutError, match="not connected"):
                await ws.request("account/list", timeout=0.1)
            started = time.monotonic()
            accounts = await ws.request("account/list")
            assert accounts[0]["id"] == 70001
            assert ws.generation == 2
            assert time.monotonic() - started < 3.0


async def test_close_is_clean_leaves_no_task_and_refuses_reuse() -> None:
    async with environment() as (sim, session):
        before = asyncio.all_tasks()
        ws = session.websocket(kind="md", **FAST)
        ended = anyio.Event()
        failures: list[BaseException] = []

        async def consume() -> None:
            async for _ in ws.events():
                pass
            ended.set()

        async def pending() -> None:
            try:
                await ws.request("md/subscribeDOM", json={"symbol": "ESZ5"})
            except SessionClosedError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            async with ws:
                await ws.subscribe("md/subscribeQuote", {"symbol": "ESZ5"})
                transport = ws._driver._transport
                assert transport is not None
                tg.start_soon(consume)
                sim.inject("md/subscribeDOM", Fault.delay(3.0), transport="ws")
                tg.start_soon(pending)
                await eventually(lambda: "md/subscribedom" in sim.ws_connections("md")[0].requests)
            with anyio.fail_after(2):
                await ended.wait()
        assert len(failures) == 1
        assert transport.conn.protocol.close_sent is not None
        assert transport.conn.protocol.close_sent.code == 1000
        assert asyncio.all_tasks() == before
        assert ws.closed
        await eventually(lambda: sim.ws_connections("md") == [])
        with pytest.raises(SessionClosedError):
            await ws.request("md/subscribeQuote", json={"symbol": "ESZ5"})
        with pytest.raises(SessionClosedError):
            async with ws:
                pass  # pragma: no cover
        await ws.aclose()  # idempotent


async def test_no_token_in_any_debug_log_record(debug_logs: RecordCollector) -> None:
    clock = ShiftedClock()
    async with environment(clock=clock) as (sim, session):
        seen = {session.token.access_token.reveal(), session.token.market_data_token.reveal()}
        async with session.websocket(kind="md", **FAST) as md:
            await md.subscribe("md/subscribeQuote", {"symbol": "ESZ5"})
            async with session.websocket(auth_frame="json", **FAST) as trading:
                await trading.request("account/list")
                clock.offset = dt.timedelta(minutes=5)
                sim.revoke_tokens()
                await trading.wait_connected(after=1, timeout=5)
                await md.wait_connected(after=1, timeout=5)
                seen |= {
                    session.token.access_token.reveal(),
                    session.token.market_data_token.reveal(),
                }
    frames = [t for t in debug_logs.texts if t.startswith("websockets.client") and "> TEXT" in t]
    assert frames, "websockets frame logging was not captured: the test would prove nothing"
    assert any("authorize" in t for t in frames)
    for token in seen:
        assert debug_logs.find(token, token[8:], token[-16:]) == []


async def test_outer_cancellation_closes_cleanly() -> None:
    async with environment() as (sim, session):
        before = asyncio.all_tasks()
        ws = session.websocket(**FAST)
        with anyio.move_on_after(0.3) as scope:
            async with ws:
                await ws.subscribe("user/syncrequest", {"users": [4242]})
                await anyio.sleep(10)
        assert scope.cancelled_caught and ws.closed
        sim.authorize_delay = 5.0
        slow = session.websocket(**FAST)
        with anyio.move_on_after(0.3) as scope:
            async with slow:
                pass  # pragma: no cover
        assert scope.cancelled_caught and slow.closed
        assert asyncio.all_tasks() == before
        sim.authorize_delay = 0.0
        await eventually(lambda: sim.ws_connections() == [])


async def test_close_from_another_task_stops_the_socket() -> None:
    async with environment() as (sim, session):
        async with session.websocket(**FAST) as ws:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ws.aclose)
            assert ws.closed and not ws.connected
            with pytest.raises(SessionClosedError):
                await ws.request("account/list")
            assert [e async for e in ws.events()] == []
        await eventually(lambda: sim.ws_connections() == [])


async def test_wss_with_a_private_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(ca_file))
    async with SimulatedTradovate(certfile=str(certfile), keyfile=str(keyfile)) as sim:
        assert sim.ws_url.startswith("wss://")
        async with TradovateSession(sim.config(), verify=str(ca_file)) as session:
            async with session.websocket(**FAST) as ws:  # the session's CA context
                assert (await ws.request("auth/me"))["userId"] == 4242
            # Without the CA the certificate is refused: verification is on.
            with pytest.raises(ConnectFailedError, match="SSL|certificate"):
                async with session.websocket(verify=ssl.create_default_context(), **FAST):
                    pass  # pragma: no cover


async def test_close_frame_from_the_server_leads_to_a_reconnect() -> None:
    async with environment() as (sim, session):
        async with session.websocket(kind="md", **FAST) as ws:
            await ws.subscribe("md/subscribeQuote", {"symbol": "ESZ5"})
            sim.send_raw('c[3000,"Go away!"]', kind="md")
            await ws.wait_connected(after=1, timeout=5)
            lost = await next_event(ws, EVENT_DISCONNECTED)
            assert "Go away!" in lost.data.reason
            [conn] = sim.ws_connections("md")
            assert conn.subscriptions == {("md/subscribeQuote", "ESZ5")}


async def test_a_blocked_event_loop_is_not_mistaken_for_server_silence() -> None:
    async with environment() as (sim, session):
        async with session.websocket(**{**FAST, "silence_timeout": 0.5}) as ws:
            time.sleep(0.8)  # noqa: ASYNC251 - a bot that blocks its loop; the server keeps sending
            await anyio.sleep(0.3)
            assert ws.generation == 1 and ws.connected
