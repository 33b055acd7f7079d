"""The fault table: what goes wrong under an unattended bot, and what tradovate-async does.

Every row provokes one fault against real things — the simulator (a real uvicorn server in a
thread), a real ``redis-server``, real files, real child processes killed with SIGKILL — and
asserts the outcome precisely: request counts and statuses seen by the simulator, error types,
session and socket counters, file contents. ``test_faults.py`` runs the rows.

Print the table for the README::

    python -m tests.reliability.fault_table

Conventions: ``setup`` provokes the fault and lets the library react (bounded polling, no fixed
sleeps); ``check`` asserts the outcome. A row with ``bug`` set documents a known library bug or
weakness: the test runs it as ``xfail(strict=True, raises=AssertionError)``, so it turns red the
day the bug is fixed (then drop ``bug``). Sessions use a :class:`CountingClock`: the renewer reads the wall clock once per cycle,
so "no retry" is proven by waiting for N renewer cycles instead of sleeping.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import random
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from tests.redis_server import RedisServer
from tests.test_session import LOGIN, MINUTE, RENEW, session_on, wait_until
from tests.test_ws import FAST, ORDER, SIM_DEFAULTS, next_event
from tradovate_async import (
    AccessToken,
    Backoff,
    CaptchaRequiredError,
    ConnectionLostError,
    FileTokenStore,
    LockoutWarningError,
    OrderOutcomeUnknownError,
    RateLimitedError,
    RedisTokenStore,
    Secret,
    Timeouts,
    TradovateError,
    TradovateSession,
    TradovateWebSocket,
)
from tradovate_async._ws import EVENT_DISCONNECTED, EVENT_RECONNECTED, Disconnected, Reconnected
from tradovate_async.sim import Fault, SimulatedTradovate, WarpClock

__all__ = ["CASES", "FaultCase", "Lab", "markdown_table"]

ORDER_PATH = "order/placeorder"
ACCOUNT_ID = 70001


class CountingClock(WarpClock):
    """A jumpable wall clock (shared by simulator and session) that counts the session's reads.

    The simulator reads ``time()``, the session ``now()``: the renewer calls ``now()`` once per
    cycle (every ``check_interval``), so ``reads`` growing by N means N renewer cycles ran.
    """

    def __init__(self) -> None:
        super().__init__(speed=1.0)
        self.reads = 0

    def now(self) -> dt.datetime:
        self.reads += 1
        return super().now()


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class Lab:
    """Everything one row needs, all torn down by the row's exit stack (in reverse order)."""

    def __init__(self, stack: contextlib.AsyncExitStack, tmp_path: Path, spawn: Any) -> None:
        self.stack = stack
        self.tmp_path = tmp_path
        self.spawn = spawn
        self.clock = CountingClock()
        self.facts: dict[str, Any] = {}
        self.sim: SimulatedTradovate
        self.session: TradovateSession
        self.ws: TradovateWebSocket
        self._warnings = _Warnings()
        logger = logging.getLogger("tradovate_async")
        logger.addHandler(self._warnings)
        stack.callback(logger.removeHandler, self._warnings)
        if logger.getEffectiveLevel() > logging.WARNING:
            stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.WARNING)

    @property
    def warnings(self) -> list[str]:
        """WARNING-and-above messages of the ``tradovate_async`` loggers so far."""
        return self._warnings.messages

    async def start_sim(self, **options: Any) -> SimulatedTradovate:
        sim = SimulatedTradovate(clock=self.clock.time, **options)
        await self.stack.enter_async_context(sim)
        self.sim = sim
        return sim

    async def open_session(self, **options: Any) -> TradovateSession:
        session = session_on(self.sim, self.clock, **options)
        # Runs after the session's own exit. If a task of the session's group ever crashes,
        # TradovateSession.aclose() re-raises that from the group before closing its httpx
        # client, whose sockets would then leak into later tests as ResourceWarnings.
        self.stack.push_async_callback(_close_leaked_client, session)
        await self.stack.enter_async_context(session)
        if not hasattr(self, "session"):
            self.session = session
        return session

    async def open_socket(self, kind: str = "trading", **options: Any) -> TradovateWebSocket:
        ws = self.session.websocket(kind=kind, **{**FAST, **options})  # type: ignore[arg-type]
        await self.stack.enter_async_context(ws)
        self.ws = ws
        return ws

    async def start_redis(self) -> RedisServer:
        server = RedisServer()
        await anyio.to_thread.run_sync(server.start)
        self.stack.callback(server.close)
        return server

    async def renewer_cycles(self, count: int = 15, timeout: float = 20.0) -> None:
        """Wait until the session's renewer has looked at the clock ``count`` more times."""
        target = self.clock.reads + count
        await wait_until(lambda: self.clock.reads >= target, timeout)


async def _close_leaked_client(session: TradovateSession) -> None:
    client = session._http.client
    if client is not None:
        await client.aclose()


Setup = Callable[[Lab], Awaitable[None]]
Check = Callable[[Lab], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class FaultCase:
    """One row: ``name`` is the test id, ``fault`` and ``expected_outcome`` the README text."""

    name: str
    setup: Setup
    expected_outcome: str
    check: Check
    fault: str = ""
    bug: str | None = None


async def error_of(awaitable: Awaitable[object]) -> Exception:
    """The exception ``awaitable`` raises (it must raise)."""
    try:
        await awaitable
    except Exception as exc:
        return exc
    raise AssertionError("expected an exception, got a result")


async def replaced(session: TradovateSession, old: AccessToken) -> None:
    """Wait until the session published a token other than ``old`` (after storing it)."""
    await wait_until(lambda: session.token is not old)


def prefix_of(session: TradovateSession) -> str:
    return session.token.access_token.reveal()[:8]


def last_prefix(sim: SimulatedTradovate, path: str) -> str | None:
    return [r for r in sim.request_log if r.path == path][-1].token_prefix


# ------------------------------------------------------------------ token endpoint (REST)


def renewal_outage(fault: Fault, error: str) -> tuple[Setup, Check]:
    """The renewal endpoint fails until the fault is cleared; the old token keeps serving."""

    async def setup(lab: Lab) -> None:
        sim = await lab.start_sim()
        session = await lab.open_session()
        old = session.token
        lab.facts["first"] = prefix_of(session)
        sim.inject(RENEW, fault, times=10_000)
        lab.clock.jump(86 * MINUTE)  # renewal due at 85 of 90 minutes
        await wait_until(lambda: session.stats.transient_failures >= 2)
        lab.facts["accounts"] = await session.get("account/list")  # mid-outage
        lab.facts["served_with"] = last_prefix(sim, "account/list")
        sim.clear_faults()
        await replaced(session, old)  # published (and stored)
        assert session.stats.renewals == 1

    async def check(lab: Lab) -> None:
        sim, session = lab.sim, lab.session
        assert lab.facts["accounts"][0]["id"] == ACCOUNT_ID
        assert lab.facts["served_with"] == lab.facts["first"]  # the old token kept serving
        failed = session.stats.transient_failures
        assert failed >= 2 and session.stats.permanent_failures == 0
        renewals = [r for r in sim.request_log if r.path == RENEW]
        assert len(renewals) == failed + 1 and [r.fault for r in renewals].count(None) == 1
        assert sim.token_requests == 1 and sim.logins == 1 and sim.renewals == 1
        assert sim.expired_token_rejections == 0
        assert prefix_of(session) != lab.facts["first"]
        await session.get("account/list")
        assert any(f"authentication failed ({error}" in m for m in lab.warnings)

    return setup, check


async def renewal_timeout_setup(lab: Lab) -> None:
    sim = await lab.start_sim()
    session = await lab.open_session(timeout=0.3)
    old = session.token
    lab.facts["first"] = prefix_of(session)
    sim.inject(RENEW, Fault.delay(2.0))
    lab.clock.jump(86 * MINUTE)
    await replaced(session, old)  # published (and stored)
    assert session.stats.renewals == 1
    # the late request reaches the server's renewal code 2 s after it was sent
    await wait_until(lambda: sim.count(RENEW) == 2)


async def renewal_timeout_check(lab: Lab) -> None:
    sim, session = lab.sim, lab.session
    assert any("authentication failed (RequestTimeoutError:" in m for m in lab.warnings)
    assert session.stats.transient_failures == 1 and session.stats.logins == 1
    assert sim.count(RENEW, status=200) == 1  # the retry
    assert sim.count(RENEW, status=401) == 1  # the late original: its token was superseded
    assert sim.renewals == 1 and sim.logins == 1
    assert prefix_of(session) != lab.facts["first"]
    await session.get("account/list")
    assert sim.expired_token_rejections == 0


async def renewal_reset_setup(lab: Lab) -> None:
    sim = await lab.start_sim()
    session = await lab.open_session()
    old = session.token
    sim.inject(RENEW, Fault.drop())  # the server renews, then the answer is cut off
    lab.clock.jump(86 * MINUTE)
    await replaced(session, old)  # published (and stored)
    assert session.stats.logins == 2


async def renewal_reset_check(lab: Lab) -> None:
    sim, session = lab.sim, lab.session
    assert any("authentication failed (ConnectionLostError:" in m for m in lab.warnings)
    assert session.stats.transient_failures == 1
    assert sim.count(RENEW, status=200) == 1  # renewed on the server, answer lost
    assert sim.count(RENEW, status=401) == 1  # the retry with the superseded token
    assert sim.renewals == 1 and sim.logins == 2 and sim.token_requests == 2
    assert session.stats.logins == 2 and session.stats.renewals == 0
    await session.get("account/list")
    assert last_prefix(sim, "account/list") == prefix_of(session)


async def login_truncated_setup(lab: Lab) -> None:
    sim = await lab.start_sim()
    session = await lab.open_session()
    old = session.token
    sim.inject(LOGIN, Fault.truncated_json())  # the login happens, its answer is cut in half
    lab.clock.jump(100 * MINUTE)  # token expired: the renewer must log in
    await replaced(session, old)  # published (and stored)
    assert session.stats.logins == 2


async def login_truncated_check(lab: Lab) -> None:
    sim, session = lab.sim, lab.session
    assert any("authentication failed (InvalidResponseError:" in m for m in lab.warnings)
    assert session.stats.transient_failures == 1
    assert sim.count(LOGIN) == 3 and sim.logins == 3  # start, the cut answer, the retry
    assert sim.count(RENEW) == 0
    await session.get("account/list")
    assert sim.expired_token_rejections == 0


async def login_penalty_setup(lab: Lab) -> None:
    sim = await lab.start_sim()  # strict penalties: resending early earns a new ticket
    sim.inject(LOGIN, Fault.penalty(0.2))
    await lab.open_session()


async def login_penalty_check(lab: Lab) -> None:
    sim, session = lab.sim, lab.session
    tickets = [r.has_p_ticket for r in sim.request_log if r.path == LOGIN]
    assert tickets == [False, True]
    assert sim.logins == 1 and session.stats.logins == 1
    await session.get("account/list")


def permanent_login_failure(fault: Fault, error: type[Exception]) -> tuple[Setup, Check]:
    """The token expired (suspended machine) and the login needed now is refused for good."""

    async def setup(lab: Lab) -> None:
        sim = await lab.start_sim()
        session = await lab.open_session()
        sim.inject(LOGIN, fault)
        lab.clock.jump(100 * MINUTE)
        await wait_until(lambda: session.stats.permanent_failures == 1)
        lab.facts["errors"] = [await error_of(session.get("account/list")) for _ in range(3)]
        await lab.renewer_cycles(15)  # give a retry every chance to happen

    async def check(lab: Lab) -> None:
        sim, session = lab.sim, lab.session
        assert [type(e) for e in lab.facts["errors"]] == [error] * 3
        assert sim.count(LOGIN) == 2 and sim.logins == 1  # start + the refused one, no retry
        assert sim.count("account/list") == 0  # requests failed without going out
        assert session.stats.permanent_failures == 1 and session.stats.transient_failures == 0

    return setup, check


async def renewal_refused_setup(lab: Lab) -> None:
    sim = await lab.start_sim()
    session = await lab.open_session()
    old = session.token
    sim.inject(RENEW, Fault.status(401))
    lab.clock.jump(86 * MINUTE)
    await replaced(session, old)  # published (and stored)
    assert session.stats.logins == 2


async def renewal_refused_check(lab: Lab) -> None:
    sim, session = lab.sim, lab.session
    assert sim.count(RENEW) == 1 and sim.count(RENEW, status=401) == 1
    assert sim.token_requests == 2 and sim.logins == 2
    assert session.stats.renewals == 0 and session.stats.transient_failures == 0
    await session.get("account/list")
    assert last_prefix(sim, "account/list") == prefix_of(session)


async def clock_jump_setup(lab: Lab) -> None:
    await lab.start_sim()
    session = await lab.open_session()
    old = session.token
    lab.clock.jump(100 * MINUTE)  # a laptop wakes up 100 minutes later
    await replaced(session, old)  # published (and stored)
    assert session.stats.logins == 2


async def clock_jump_check(lab: Lab) -> None:
    sim, session = lab.sim, lab.session
    assert sim.token_requests == 2  # two logins
    # One read of the server's clock (GET of the API base): the jump might be a clock step.
    assert sim.count("*") == 3 and sim.count("/v1/") == 1
    assert sim.count(RENEW) == 0
    await session.get("account/list")
    assert sim.expired_token_rejections == 0 and sim.count("account/list", status=200) == 1


async def rest_revoked_setup(lab: Lab) -> None:
    sim = await lab.start_sim()
    session = await lab.open_session(check_interval=30.0)
    lab.clock.jump(10 * MINUTE)
    sim.revoke_tokens()  # e.g. a third login elsewhere evicted this session
    lab.facts["accounts"] = await session.get("account/list")


async def rest_revoked_check(lab: Lab) -> None:
    sim, session = lab.sim, lab.session
    assert lab.facts["accounts"][0]["id"] == ACCOUNT_ID
    assert sim.count("account/list", status=401) == 1
    assert sim.count("account/list", status=200) == 1  # resent once, with the new token
    assert sim.count(RENEW, status=401) == 1 and sim.logins == 2
    assert session.stats.rejected_tokens == 1


async def rest_order_lost_setup(lab: Lab) -> None:
    sim = await lab.start_sim()
    session = await lab.open_session()
    sim.inject(ORDER_PATH, Fault.drop())  # the order executes, its answer is cut off
    lab.facts["error"] = await error_of(session.post(ORDER_PATH, json=ORDER))


async def rest_order_lost_check(lab: Lab) -> None:
    sim = lab.sim
    assert isinstance(lab.facts["error"], OrderOutcomeUnknownError)
    assert sim.count(ORDER_PATH) == 1
    assert len(sim.orders()) == 1  # executed once, never resent


# -------------------------------------------------------------------------- WebSockets


async def ws_drop_read_setup(lab: Lab) -> None:
    sim = await lab.start_sim(**SIM_DEFAULTS)
    await lab.open_session()
    ws = await lab.open_socket()
    sim.inject("account/list", Fault.delay(3.0), transport="ws")
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            lab.facts["accounts"] = await ws.request("account/list")

        tg.start_soon(read)
        await wait_until(lambda: "account/list" in sim.ws_connections("trading")[0].requests)
        [lab.facts["old"]] = sim.ws_connections("trading")
        sim.drop_sockets()


async def ws_drop_read_check(lab: Lab) -> None:
    sim, ws = lab.sim, lab.ws
    assert lab.facts["accounts"][0]["id"] == ACCOUNT_ID
    assert ws.generation == 2 and ws.stats.reconnects == 1
    assert lab.facts["old"].requests == ("authorize", "account/list")
    [new] = sim.ws_connections("trading")
    assert new.requests == ("authorize", "account/list")  # resent exactly once


async def ws_drop_order_setup(lab: Lab) -> None:
    sim = await lab.start_sim(**SIM_DEFAULTS)
    await lab.open_session()
    ws = await lab.open_socket()
    sim.inject(ORDER_PATH, Fault.delay(3.0), transport="ws")
    async with anyio.create_task_group() as tg:

        async def place() -> None:
            lab.facts["error"] = await error_of(ws.request(ORDER_PATH, json=ORDER))

        tg.start_soon(place)
        await wait_until(lambda: ORDER_PATH in sim.ws_connections("trading")[0].requests)
        [lab.facts["old"]] = sim.ws_connections("trading")
        sim.drop_sockets()
    await ws.wait_connected(after=1, timeout=10)
    await ws.request("account/list")


async def ws_drop_order_check(lab: Lab) -> None:
    sim, ws = lab.sim, lab.ws
    assert isinstance(lab.facts["error"], OrderOutcomeUnknownError)
    assert isinstance(lab.facts["error"].__cause__, ConnectionLostError)
    assert lab.facts["old"].requests == ("authorize", ORDER_PATH)
    [new] = sim.ws_connections("trading")
    assert ORDER_PATH not in new.requests  # never resent
    assert sim.orders() == []  # the server dropped it before executing
    assert ws.generation == 2


def shutdown_notice(reason: str) -> tuple[Setup, Check]:
    quota = reason == "ConnectionQuotaReached"

    async def setup(lab: Lab) -> None:
        sim = await lab.start_sim(**SIM_DEFAULTS)
        await lab.open_session()
        ws = await lab.open_socket("md", quota_wait=1.0)
        await ws.subscribe("md/subscribeQuote", {"symbol": "ESZ5"})
        [lab.facts["old"]] = sim.ws_connections("md")
        sim.send_shutdown(reason, kind="md")
        await ws.wait_connected(after=1, timeout=15)
        lab.facts["notice"] = await next_event(ws, "shutdown")
        lab.facts["lost"] = await next_event(ws, EVENT_DISCONNECTED)
        lab.facts["back"] = await next_event(ws, EVENT_RECONNECTED)
        lab.facts["md"] = await next_event(ws, "md")

    async def check(lab: Lab) -> None:
        sim, ws = lab.sim, lab.ws
        assert lab.facts["notice"].data == {"reasonCode": reason}
        lost, back = lab.facts["lost"].data, lab.facts["back"].data
        assert isinstance(lost, Disconnected) and lost.shutdown_reason == reason
        assert lost.quota is quota
        assert isinstance(back, Reconnected) and back.generation == 2
        assert [r.error for r in back.replayed] == [None]
        [new] = sim.ws_connections("md")
        assert new.subscriptions == lab.facts["old"].subscriptions != frozenset()
        recovery = ws.stats.last_recovery_seconds
        assert recovery is not None
        if quota:
            assert recovery >= 1.0  # waited quota_wait before reconnecting

    return setup, check


async def ws_silent_setup(lab: Lab) -> None:
    await lab.start_sim(server_heartbeat=60.0, quote_interval=None)  # no "h" when idle
    await lab.open_session()
    ws = await lab.open_socket(silence_timeout=0.5)
    await ws.wait_connected(after=1, timeout=10)
    lab.facts["lost"] = await next_event(ws, EVENT_DISCONNECTED)
    lab.facts["accounts"] = await ws.request("account/list")


async def ws_silent_check(lab: Lab) -> None:
    ws = lab.ws
    assert lab.facts["lost"].data.reason.startswith("server silent")
    assert ws.stats.reconnects >= 1
    assert lab.facts["accounts"][0]["id"] == ACCOUNT_ID


async def ws_unanswered_setup(lab: Lab) -> None:
    sim = await lab.start_sim(**SIM_DEFAULTS)
    await lab.open_session()
    ws = await lab.open_socket(
        timeout=Timeouts(5.0, connect=0.5), reconnect_backoff=Backoff(0.1, 0.2)
    )
    sim.authorize_delay = 3.0  # the server accepts sockets but no longer answers authorize
    sim.drop_sockets()
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            lab.facts["accounts"] = await ws.request("account/list", timeout=30)

        tg.start_soon(read)
        await wait_until(lambda: ws.stats.connect_failures >= 2, 20)
        lab.facts["failures_while_down"] = ws.stats.connect_failures
        sim.authorize_delay = 0.0


async def ws_unanswered_check(lab: Lab) -> None:
    ws = lab.ws
    assert lab.facts["failures_while_down"] >= 2
    assert lab.facts["accounts"][0]["id"] == ACCOUNT_ID  # the request waited for the socket
    assert ws.connected and ws.stats.reconnects == 1 and ws.generation == 2


async def ws_garbage_setup(lab: Lab) -> None:
    sim = await lab.start_sim(**{**SIM_DEFAULTS, "quote_interval": None})  # md on demand only
    await lab.open_session()
    ws = await lab.open_socket("md")
    await ws.subscribe("md/subscribeQuote", {"symbol": "ESZ5"})
    await next_event(ws, "md")  # the snapshot sent on subscribe
    for frame in ("garbage", 'a[{"x":1}]', "c[oops", "a[" + "[" * 50_000):
        sim.send_raw(frame, kind="md")
    assert await sim.md_burst(3) == 3  # sent after the garbage, on the same socket
    lab.facts["after"] = [await next_event(ws, "md") for _ in range(3)]


async def ws_garbage_check(lab: Lab) -> None:
    ws = lab.ws
    assert ws.stats.malformed_frames == 4
    assert all(event.data["quotes"][0]["contractId"] for event in lab.facts["after"])
    assert ws.generation == 1 and ws.connected and ws.stats.reconnects == 0


async def ws_revoked_setup(lab: Lab) -> None:
    sim = await lab.start_sim(**SIM_DEFAULTS)
    session = await lab.open_session()
    ws = await lab.open_socket()
    await ws.subscribe("user/syncrequest", {"users": [4242]})
    lab.facts["first"] = prefix_of(session)
    lab.clock.jump(5 * MINUTE)
    sim.revoke_tokens()  # closes the socket with c[1008,"Access token revoked"]
    await ws.wait_connected(after=1, timeout=10)


async def ws_revoked_check(lab: Lab) -> None:
    sim, session, ws = lab.sim, lab.session, lab.ws
    [conn] = sim.ws_connections("trading")
    assert conn.token_prefix == prefix_of(session) != lab.facts["first"]
    assert conn.synced and conn.requests == ("authorize", "user/syncrequest")
    assert session.stats.rejected_tokens == 1
    assert sim.count(RENEW, status=401) == 1 and sim.logins == 2  # renewal refused -> login
    assert ws.generation == 2


# ------------------------------------------------------------------------- token stores


def token_file(lab: Lab) -> Path:
    return lab.tmp_path / "tokens" / "tokens.json"


def stored_prefix(path: Path) -> str:
    """The access token prefix in a token file (which must be whole, valid JSON)."""
    document = json.loads(path.read_bytes())
    [record] = document["tokens"].values()
    return str(record["accessToken"])[:8]


def corrupt_file(content: bytes) -> tuple[Setup, Check]:
    async def setup(lab: Lab) -> None:
        path = token_file(lab)
        path.parent.mkdir()
        path.write_bytes(content)
        await lab.start_sim()
        await lab.open_session(store=FileTokenStore(path))

    async def check(lab: Lab) -> None:
        sim, session = lab.sim, lab.session
        assert sim.logins == 1 and session.stats.store_errors == 0
        assert stored_prefix(token_file(lab)) == prefix_of(session)  # replaced by a good file
        assert any("ignoring the token file" in m for m in lab.warnings)
        await session.get("account/list")

    return setup, check


async def unreadable_file_setup(lab: Lab) -> None:
    # Tests run as root, for whom chmod 000 blocks nothing: a directory at the file's path
    # makes every read and write fail with a real OSError (EISDIR), for any user.
    path = token_file(lab)
    path.mkdir(parents=True)
    await lab.start_sim()
    session = await lab.open_session(store=FileTokenStore(path))
    old = session.token
    lab.facts["accounts"] = await session.get("account/list")
    lab.facts["errors_while_unreadable"] = session.stats.store_errors
    path.rmdir()  # readable (absent) again: the next renewal writes it
    lab.clock.jump(86 * MINUTE)
    await replaced(session, old)  # published (and stored)
    assert session.stats.renewals == 1


async def unreadable_file_check(lab: Lab) -> None:
    sim, session = lab.sim, lab.session
    assert lab.facts["accounts"][0]["id"] == ACCOUNT_ID
    assert lab.facts["errors_while_unreadable"] == 1  # the save after the login
    assert any("cannot read the token file" in m for m in lab.warnings)
    assert any("token store write failed" in m for m in lab.warnings)
    assert sim.logins == 1 and sim.renewals == 1 and session.stats.store_errors == 1
    assert stored_prefix(token_file(lab)) == prefix_of(session)


async def deleted_file_setup(lab: Lab) -> None:
    path = token_file(lab)
    await lab.start_sim()
    session = await lab.open_session(store=FileTokenStore(path))
    old = session.token
    assert stored_prefix(path) == prefix_of(session)
    shutil.rmtree(path.parent)  # file, lock file and directory gone
    lab.facts["accounts"] = await session.get("account/list")
    lab.clock.jump(86 * MINUTE)
    await replaced(session, old)  # published (and stored)
    assert session.stats.renewals == 1


async def deleted_file_check(lab: Lab) -> None:
    sim, session = lab.sim, lab.session
    assert lab.facts["accounts"][0]["id"] == ACCOUNT_ID
    assert sim.logins == 1 and sim.renewals == 1 and session.stats.store_errors == 0
    path = token_file(lab)
    assert stored_prefix(path) == prefix_of(session)  # recreated with the renewed token
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert not any("token file" in m or "token store" in m for m in lab.warnings)


async def redis_restart_setup(lab: Lab) -> None:
    server = await lab.start_redis()
    sim = await lab.start_sim()

    def store() -> RedisTokenStore:
        made = RedisTokenStore(server.url, prefix="fleet", lock_ttl=1.0, lock_wait=5.0)
        lab.stack.push_async_callback(made.aclose)
        return made

    fleet = [await lab.open_session(store=store()) for _ in range(3)]
    lab.facts["fleet_logins"] = sim.logins
    await anyio.to_thread.run_sync(server.stop)  # SIGKILL: a crash, nothing persisted
    lab.facts["during"] = [await s.get("account/list") for s in fleet]
    newcomer = await lab.open_session(store=store())  # a bot (re)started during the outage
    lab.facts["newcomer_errors"] = newcomer.stats.store_errors
    fleet.append(newcomer)
    await anyio.to_thread.run_sync(server.start)  # same port, empty
    lab.clock.jump(86 * MINUTE)  # everybody's renewal is due at once
    await wait_until(lambda: len({prefix_of(s) for s in fleet}) == 1 and sim.renewals >= 1)
    lab.facts["fleet"] = fleet
    lab.facts["reader"] = store()


async def redis_restart_check(lab: Lab) -> None:
    sim = lab.sim
    fleet: list[TradovateSession] = lab.facts["fleet"]
    assert lab.facts["fleet_logins"] == 1  # one login for the fleet before the crash
    assert all(accounts[0]["id"] == ACCOUNT_ID for accounts in lab.facts["during"])
    assert lab.facts["newcomer_errors"] == 3  # lock, load and save failed; it logged in alone
    assert sim.logins == 2 and sim.renewals == 1  # one renewal for all four after the restart
    stored = await lab.facts["reader"].load(fleet[0].config.token_key)
    assert stored is not None and stored.access_token == fleet[0].token.access_token
    assert [s.stats.store_errors for s in fleet] == [0, 0, 0, 3]
    for session in fleet:
        await session.get("account/list")


async def redis_down_at_renewal_setup(lab: Lab) -> None:
    server = await lab.start_redis()
    await lab.start_sim()  # renewal retires the old token (strict reading)

    def store() -> RedisTokenStore:
        made = RedisTokenStore(server.url, prefix="fleet", lock_ttl=1.0, lock_wait=5.0)
        lab.stack.push_async_callback(made.aclose)
        return made

    fleet = [await lab.open_session(store=store()) for _ in range(3)]
    old = fleet[0].token
    await anyio.to_thread.run_sync(server.stop)
    lab.clock.jump(86 * MINUTE)  # the fleet's renewal falls due while Redis is down
    await wait_until(lambda: all(s.stats.store_errors >= 2 for s in fleet))
    failures: list[Exception] = []
    for session in fleet:
        try:
            await session.get("account/list")
        except TradovateError as exc:
            failures.append(exc)
    lab.facts["during"] = {
        "renewals": lab.sim.renewals,
        "logins": lab.sim.logins,
        "still_old": all(s.token.access_token == old.access_token for s in fleet),
    }
    await anyio.to_thread.run_sync(server.start)
    await wait_until(lambda: all(s.token.access_token != old.access_token for s in fleet))
    for session in fleet:
        try:
            await session.get("account/list")
        except TradovateError as exc:
            failures.append(exc)
    lab.facts["failures"] = failures
    lab.facts["tokens"] = {s.token.access_token.reveal() for s in fleet}


async def redis_down_at_renewal_check(lab: Lab) -> None:
    assert lab.facts["failures"] == []
    assert lab.facts["during"] == {"renewals": 0, "logins": 1, "still_old": True}, lab.facts
    assert lab.sim.renewals == 1 and lab.sim.logins == 1
    assert len(lab.facts["tokens"]) == 1  # shared through Redis again
    assert lab.sim.count("account/list", status=401) == 0  # no session lost its server session


MIN_KILLS, MAX_KILLS = 8, 40
WRITER_CHILD = """
import datetime as dt, os, sys
import anyio
from tradovate_async._file_store import FileTokenStore
from tradovate_async._models import AccessToken
from tradovate_async._secret import Secret

path, key, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
# a big file: a long write (~25 ms), easy to interrupt (above the default 1 MiB read cap)
store = FileTokenStore(path, lock_wait=20, max_file_size=8 << 20)
padding = "x" * 2_000_000

async def main():
    n = first
    while True:
        now = dt.datetime.now(dt.UTC)
        token = AccessToken(access_token=Secret(f"tok-{n}"), user_id=n, name=padding,
                            expiration_time=now + dt.timedelta(minutes=n), issued_at=now)
        print(f"saving {n}", flush=True)
        await store.save(key, token)
        print(f"saved {n}", flush=True)
        n += 1

anyio.run(main)
"""


async def sigkill_writer_setup(lab: Lab) -> None:
    path = lab.tmp_path / "tokens.json"
    reader = FileTokenStore(path, max_file_size=8 << 20)
    rng = random.Random(20240611)
    rounds: list[dict[str, Any]] = []
    reads = 0
    # Kill at random points until at least one kill interrupted a write (its temporary file
    # is left behind), which happens in about one round in five.
    while len(rounds) < MIN_KILLS or (
        not any(r["torn_write"] for r in rounds) and len(rounds) < MAX_KILLS
    ):
        first = 1000 * (len(rounds) + 1)  # later rounds save tokens that expire later
        child = await lab.spawn(WRITER_CHILD, str(path), "key", str(first))
        lines = [await child.readline()]
        while lines[-1] != f"saved {first}":  # its first save also swept old temporary files
            lines.append(await child.readline())
        until = anyio.current_time() + rng.uniform(0.0, 0.06)
        while anyio.current_time() < until:  # read without lock while it writes
            json.loads(path.read_bytes())
            reads += 1
            await anyio.lowlevel.checkpoint()
        await child.kill()  # SIGKILL at a random point of its save loop
        with contextlib.suppress(Exception):
            while True:  # whatever it printed before dying
                lines.append(await child.readline(within=2))
        saved = [int(x.split()[1]) for x in lines if x.startswith("saved ")]
        saving = [int(x.split()[1]) for x in lines if x.startswith("saving ")]
        document = json.loads(path.read_bytes())  # whole, valid JSON
        token = await reader.load("key")
        assert token is not None and document["tokens"]["key"]["userId"] == token.user_id
        rounds.append(
            {
                "allowed": {saved[-1], saving[-1]},  # the old or the one being written
                "found": token.user_id,
                "torn_write": any(lab.tmp_path.glob(".tokens.json.*.tmp")),
            }
        )
    lab.facts.update(rounds=rounds, reader=reader, reads=reads)


async def sigkill_writer_check(lab: Lab) -> None:
    rounds = lab.facts["rounds"]
    assert len(rounds) >= MIN_KILLS and lab.facts["reads"] > 0
    assert any(r["torn_write"] for r in rounds)  # some kills landed in the middle of a write
    for outcome in rounds:
        assert outcome["found"] in outcome["allowed"]  # old or new token, nothing else
    assert not any("ignoring" in m for m in lab.warnings)  # never a broken file
    await lab.facts["reader"].save("key", _far_token())  # sweeps killed writers' temp files
    assert sorted(p.name for p in lab.tmp_path.iterdir()) == ["tokens.json", "tokens.json.lock"]


def _far_token() -> AccessToken:
    now = dt.datetime.now(dt.UTC)
    return AccessToken(
        access_token=Secret("final"),
        user_id=1,
        expiration_time=now + dt.timedelta(days=3650),
        issued_at=now,
    )


# ------------------------------------------------- hostile token answers and known bugs


def renewal_answer_then_recovery(body: bytes) -> tuple[Setup, Check]:
    """The renewal endpoint answers 200 with ``body`` once; it should count as a transient
    InvalidResponseError (retried, the old token serving meanwhile)."""

    async def setup(lab: Lab) -> None:
        sim = await lab.start_sim()
        session = await lab.open_session()
        old = session.token
        sim.inject(RENEW, Fault.status(200, body, content_type="application/json"))
        lab.clock.jump(86 * MINUTE)
        await replaced(session, old)  # published (and stored)
        assert session.stats.renewals == 1

    async def check(lab: Lab) -> None:
        sim, session = lab.sim, lab.session
        assert session.stats.transient_failures == 1
        assert any("authentication failed (InvalidResponseError:" in m for m in lab.warnings)
        assert sim.count(RENEW) == 2 and sim.renewals == 1 and sim.logins == 1
        await session.get("account/list")

    return setup, check


HUGE_P_TIME = 10**400  # an integer JSON number beyond float's range


async def login_huge_penalty_setup(lab: Lab) -> None:
    sim = await lab.start_sim()
    sim.inject(LOGIN, Fault.penalty(HUGE_P_TIME))  # type: ignore[arg-type]
    lab.facts["error"] = await error_of(lab.open_session())


async def login_huge_penalty_check(lab: Lab) -> None:
    assert isinstance(lab.facts["error"], TradovateError), repr(lab.facts["error"])
    assert lab.sim.token_requests == 1  # fail fast at start-up, no retry


async def ws_huge_penalty_setup(lab: Lab) -> None:
    sim = await lab.start_sim(**SIM_DEFAULTS)
    await lab.open_session()
    ws = await lab.open_socket()
    sim.inject("account/list", Fault.penalty(HUGE_P_TIME), transport="ws")  # type: ignore[arg-type]
    lab.facts["error"] = await error_of(ws.request("account/list"))
    sim.reset_limits()  # forget the outstanding ticket (strict penalties would repeat it)
    lab.facts["accounts"] = await ws.request("account/list")


async def ws_huge_penalty_check(lab: Lab) -> None:
    assert isinstance(lab.facts["error"], TradovateError), repr(lab.facts["error"])
    assert lab.facts["accounts"][0]["id"] == ACCOUNT_ID
    assert lab.ws.generation == 1 and lab.ws.connected


OUT_OF_RANGE_EXPIRY = json.dumps(
    {"accessToken": "x" * 40, "expirationTime": "0001-01-01T00:00:00+01:00", "userId": 4242}
).encode()
NAN_PENALTY = b'{"p-ticket": "ticket-123", "p-time": NaN}'


# ------------------------------------------------------------------------------- the table

_renew_500 = renewal_outage(Fault.status(500), "APIError: renew failed (HTTP 500)")
_renew_html = renewal_outage(Fault.html(502), "APIError: renew failed (HTTP 502)")
_renew_html_200 = renewal_outage(
    Fault.status(200, b"<html><body>Please sign in to the Wi-Fi</body></html>", "text/html"),
    "InvalidResponseError: body is not JSON (HTTP 200): '<html>",
)
_captcha = permanent_login_failure(Fault.penalty(1, captcha=True), CaptchaRequiredError)
_423 = permanent_login_failure(Fault.status(423), LockoutWarningError)
_429 = permanent_login_failure(Fault.status(429), RateLimitedError)
_maintenance = shutdown_notice("Maintenance")
_quota = shutdown_notice("ConnectionQuotaReached")
_corrupt = corrupt_file(b'{"format": "tradovate-async/tokens", "version": 1, "tok')
_nested = corrupt_file(b"[" * 100_000)
_bad_expiry = renewal_answer_then_recovery(OUT_OF_RANGE_EXPIRY)
_nan_penalty = renewal_answer_then_recovery(NAN_PENALTY)

CASES: list[FaultCase] = [
    FaultCase(
        "token-500",
        fault="Token endpoint answers 500 (renewal, until it recovers)",
        setup=_renew_500[0],
        expected_outcome=(
            "Retried with backoff; the old token keeps serving requests meanwhile; one renewal "
            "once the endpoint is back; no login."
        ),
        check=_renew_500[1],
    ),
    FaultCase(
        "token-timeout",
        fault="Token endpoint times out (renewal answered after 2 s, timeout 0.3 s)",
        setup=renewal_timeout_setup,
        expected_outcome=(
            "RequestTimeoutError counted as transient, retried at once; one renewal; the late "
            "original "
            "is refused by the server (superseded token) and changes nothing."
        ),
        check=renewal_timeout_check,
    ),
    FaultCase(
        "token-reset",
        fault="Connection reset while the renewal answer is read",
        setup=renewal_reset_setup,
        expected_outcome=(
            "The server renewed but the answer was lost: the retry with the old token is refused, "
            "so exactly one login follows; requests go on with the new token."
        ),
        check=renewal_reset_check,
    ),
    FaultCase(
        "token-html",
        fault="Token endpoint answers an HTML 502 page (renewal, until it recovers)",
        setup=_renew_html[0],
        expected_outcome=(
            "Typed APIError(502), retried with backoff; the old token keeps serving; one renewal."
        ),
        check=_renew_html[1],
    ),
    FaultCase(
        "token-html-200",
        fault="Token endpoint answers an HTML page with status 200 (captive portal, proxy)",
        setup=_renew_html_200[0],
        expected_outcome=(
            "Typed InvalidResponseError, retried with backoff; the old token keeps serving; one "
            "renewal."
        ),
        check=_renew_html_200[1],
    ),
    FaultCase(
        "token-truncated-json",
        fault="Token endpoint answers truncated JSON (login after expiry)",
        setup=login_truncated_setup,
        expected_outcome=(
            "InvalidResponseError counted as transient; one more login; requests work; no token "
            "used after its expiry."
        ),
        check=login_truncated_check,
    ),
    FaultCase(
        "token-p-ticket",
        fault="Login answered with a penalty ticket (p-ticket, p-time 0.2 s)",
        setup=login_penalty_setup,
        expected_outcome=(
            "Waited p-time, resent once with the p-ticket (a premature resend would earn a new "
            "ticket): two requests, one login."
        ),
        check=login_penalty_check,
    ),
    FaultCase(
        "token-captcha",
        fault="Login answered with p-captcha",
        setup=_captcha[0],
        expected_outcome=(
            "CaptchaRequiredError; never retried (no request for the next 15 renewer cycles); "
            "requests raise it without going out."
        ),
        check=_captcha[1],
    ),
    FaultCase(
        "token-423",
        fault="Token endpoint answers 423 (lockout warning)",
        setup=_423[0],
        expected_outcome="LockoutWarningError; never retried; requests raise it without going out.",
        check=_423[1],
    ),
    FaultCase(
        "token-429",
        fault="Token endpoint answers 429 (rate limited)",
        setup=_429[0],
        expected_outcome=(
            "RateLimitedError; never retried (a retry would extend the lockout); requests raise it "
            "without going out."
        ),
        check=_429[1],
    ),
    FaultCase(
        "renewal-refused",
        fault="Renewal refused with 401",
        setup=renewal_refused_setup,
        expected_outcome="Exactly one login, no retry of the renewal; requests use the new token.",
        check=renewal_refused_check,
    ),
    FaultCase(
        "clock-jump",
        fault="Wall clock jumps past the token's expiry (suspend/resume)",
        setup=clock_jump_setup,
        expected_outcome=(
            "The background task reads the server's clock once (the jump could be a clock step), "
            "then logs in at once, before any request needs it (no renewal of the dead token, no "
            "request sent with it)."
        ),
        check=clock_jump_check,
    ),
    FaultCase(
        "rest-token-revoked",
        fault="Token revoked between two REST requests",
        setup=rest_revoked_setup,
        expected_outcome=(
            "The 401 triggers one renewal attempt (refused), one login, and one resend: the caller "
            "gets its answer."
        ),
        check=rest_revoked_check,
    ),
    FaultCase(
        "rest-order-answer-lost",
        fault="Connection reset while an order's answer is read (REST)",
        setup=rest_order_lost_setup,
        expected_outcome=(
            "ConnectionLostError (a TransportError) to the caller; the order is never resent (the "
            "server executed it once)."
        ),
        check=rest_order_lost_check,
    ),
    FaultCase(
        "ws-drop-read-only",
        fault="Socket dropped while a read-only request waits",
        setup=ws_drop_read_setup,
        expected_outcome=(
            "The socket reconnects and the read-only request is resent once: the caller gets its "
            "answer."
        ),
        check=ws_drop_read_check,
    ),
    FaultCase(
        "ws-drop-order",
        fault="Socket dropped while an order waits for its answer",
        setup=ws_drop_order_setup,
        expected_outcome=(
            "ConnectionLostError at once; the order is not resent (the server saw it once); the "
            "socket reconnects."
        ),
        check=ws_drop_order_check,
    ),
    FaultCase(
        "ws-shutdown-maintenance",
        fault="Server sends shutdown (Maintenance) and closes",
        setup=_maintenance[0],
        expected_outcome=(
            "The shutdown event is delivered, then a typed Disconnected event, a reconnect and the "
            "subscriptions replayed (Reconnected event); market data flows again."
        ),
        check=_maintenance[1],
    ),
    FaultCase(
        "ws-shutdown-quota",
        fault="Server sends shutdown (ConnectionQuotaReached)",
        setup=_quota[0],
        expected_outcome=(
            "Disconnected(quota=True); the reconnect waits quota_wait (longer backoff) so no "
            "other connection is evicted; subscriptions replayed."
        ),
        check=_quota[1],
    ),
    FaultCase(
        "ws-server-silent",
        fault="Server stops sending anything (no heartbeats)",
        setup=ws_silent_setup,
        expected_outcome=(
            "After silence_timeout without any frame the connection counts as dead: reconnect; "
            "requests keep working."
        ),
        check=ws_silent_check,
    ),
    FaultCase(
        "ws-authorize-unanswered",
        fault="Server stops answering authorize while the socket reconnects",
        setup=ws_unanswered_setup,
        expected_outcome=(
            "Each reconnect attempt times out (Timeouts.connect) and is retried with backoff; a "
            "request made meanwhile waits and is answered once the server answers again."
        ),
        check=ws_unanswered_check,
    ),
    FaultCase(
        "ws-garbage-frames",
        fault="Garbage frames (not a frame, bad JSON, bad close, 50k nesting)",
        setup=ws_garbage_setup,
        expected_outcome=(
            "Each frame is counted in malformed_frames and skipped; the same connection goes on "
            "streaming."
        ),
        check=ws_garbage_check,
    ),
    FaultCase(
        "ws-token-revoked",
        fault="Token revoked while a trading socket is open",
        setup=ws_revoked_setup,
        expected_outcome=(
            "The socket reconnects; authorize is refused, the token is renewed once (refused: "
            "login), the socket authorizes with the new token and replays user/syncrequest."
        ),
        check=ws_revoked_check,
    ),
    FaultCase(
        "token-file-corrupt",
        fault="Token file corrupt (truncated JSON)",
        setup=_corrupt[0],
        expected_outcome="WARNING, read as empty, one login, the file is replaced by a valid one.",
        check=_corrupt[1],
    ),
    FaultCase(
        "token-file-unreadable",
        fault="Token file unreadable",
        setup=unreadable_file_setup,
        expected_outcome=(
            "WARNING, login, the failed save is counted (store_errors) and the token kept in "
            "memory; the next renewal writes the file once it is usable again. (A directory at the "
            "path, since chmod 000 does not stop root.)"
        ),
        check=unreadable_file_check,
    ),
    FaultCase(
        "token-file-deleted",
        fault="Token file and its directory deleted while running",
        setup=deleted_file_setup,
        expected_outcome=(
            "Requests go on; the next renewal recreates directory (mode 0700) and file with the "
            "renewed token; no store error."
        ),
        check=deleted_file_check,
    ),
    FaultCase(
        "redis-restart",
        fault="Redis crashes (SIGKILL) and restarts empty while a fleet of sessions runs",
        setup=redis_restart_setup,
        expected_outcome=(
            "Requests go on during the outage; a session started meanwhile logs in alone (3 store "
            "errors counted); after the restart the four sessions make one renewal between them "
            "and share its token through Redis again."
        ),
        check=redis_restart_check,
    ),
    FaultCase(
        "redis-down-at-renewal",
        fault="Redis down at the moment a fleet of three sessions (one shared token) renews",
        setup=redis_down_at_renewal_setup,
        expected_outcome=(
            "While the token has more than half its renewal margin left, the renewal is "
            "deferred (WARNING, backoff) instead of made without the lock: every session keeps "
            "serving requests with the valid token, no server session is lost (no 401). Once "
            "Redis is back, one renewal between the three, shared through Redis."
        ),
        check=redis_down_at_renewal_check,
    ),
    FaultCase(
        "sigkill-file-writer",
        fault="Process killed (SIGKILL) while writing the token file, again and again",
        setup=sigkill_writer_setup,
        expected_outcome=(
            "At least 8 kills at random points, some in the middle of a write: after each one "
            "the file holds the old or the new token, never a broken file; readers (no lock) "
            "never see a torn file; the next save sweeps the killed writers' temporary files."
        ),
        check=sigkill_writer_check,
    ),
    FaultCase(
        "token-expiry-out-of-range",
        fault="Token endpoint answers an expirationTime out of datetime's range",
        setup=_bad_expiry[0],
        expected_outcome="InvalidResponseError counted as transient, retried; one renewal.",
        check=_bad_expiry[1],
    ),
    FaultCase(
        "token-penalty-nan",
        fault=('Token endpoint answers a penalty with "p-time": NaN'),
        setup=_nan_penalty[0],
        expected_outcome=(
            "InvalidResponseError (penalty without a usable p-time), retried; one renewal."
        ),
        check=_nan_penalty[1],
    ),
    FaultCase(
        "token-file-deeply-nested",
        fault="Token file corrupt (100,000 nested brackets)",
        setup=_nested[0],
        expected_outcome="WARNING, read as empty, one login, the file is replaced by a valid one.",
        check=_nested[1],
    ),
    FaultCase(
        "login-huge-p-time",
        fault="Login at start-up answered with a penalty whose p-time is a 400-digit integer",
        setup=login_huge_penalty_setup,
        expected_outcome="A typed error from `async with` (fail fast), no retry.",
        check=login_huge_penalty_check,
    ),
    FaultCase(
        "ws-huge-p-time",
        fault="WebSocket request answered with a penalty whose p-time is a 400-digit integer",
        setup=ws_huge_penalty_setup,
        expected_outcome=(
            "A typed error to the caller; the socket stays up and serves the next request."
        ),
        check=ws_huge_penalty_check,
    ),
]


def markdown_table(cases: list[FaultCase] = CASES) -> str:
    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    lines = ["| fault | expected outcome |", "| --- | --- |"]
    for case in cases:
        outcome = case.expected_outcome
        if case.bug:
            outcome += f" **Known issue (test marked xfail):** {case.bug}."
        lines.append(f"| {cell(case.fault or case.name)} | {cell(outcome)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    from tests.reliability.hostile_faults import HOSTILE_CASES

    print(markdown_table([*CASES, *HOSTILE_CASES]))
