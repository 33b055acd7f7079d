"""TradovateSession against the simulator: renewal, failures, single flight, lifecycle."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
from collections.abc import AsyncIterator, Callable

import anyio
import pytest

from tradovate_async._clock import Clock, FakeClock
from tradovate_async._errors import (
    CaptchaRequiredError,
    InvalidCredentialsError,
    OrderOutcomeUnknownError,
    OrderRejectedError,
    RateLimitedError,
    RequestFailedError,
    SessionClosedError,
)
from tradovate_async._models import AccessToken
from tradovate_async._options import Backoff
from tradovate_async._session import TradovateSession
from tradovate_async.sim import Fault, SimulatedTradovate, WarpClock

LOGIN = "auth/accesstokenrequest"
RENEW = "auth/renewaccesstoken"
MINUTE = 60.0


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition (bounded): the only waiting these tests do."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


@pytest.fixture
def clock() -> WarpClock:
    return WarpClock(speed=1.0)


@pytest.fixture
async def warped(clock: WarpClock) -> AsyncIterator[SimulatedTradovate]:
    """A simulator on a clock the test can jump, with real 90-minute tokens."""
    async with SimulatedTradovate(clock=clock.time) as server:
        yield server


def _renewal_in_flight(session: TradovateSession) -> bool:
    lock = session._keeper.auth_lock
    return lock is not None and lock.locked()


def session_on(sim: SimulatedTradovate, clock: Clock, **kwargs: object) -> TradovateSession:
    options: dict[str, object] = {
        "check_interval": 0.02,
        "renewal_backoff": Backoff(0.02, 0.2),
    }
    options.update(kwargs)
    return TradovateSession(sim.config(), clock=clock, **options)  # type: ignore[arg-type]


def _idle(session: TradovateSession, clock: FakeClock) -> bool:
    """The renewer sleeps on the fake clock again and no authentication is running."""
    return clock.sleepers >= 1 and not _renewal_in_flight(session)


async def test_many_lifetimes_one_login_no_expired_requests() -> None:
    # Eight 90-minute lifetimes on a fake clock shared by simulator and session, moved in
    # 5-minute steps with a request after each: exact counts, no wall-clock thresholds.
    clock = FakeClock()
    async with SimulatedTradovate(clock=clock.time) as sim:
        async with session_on(sim, clock, check_interval=5.0, jitter=0.0) as session:
            for _ in range(8 * 18):
                await clock.advance(5 * MINUTE)
                await wait_until(lambda: _idle(session, clock))
                await session.get("account/list")
        assert sim.expired_token_rejections == 0
        assert sim.logins == 1
        assert sim.renewals == 8  # at 85, 170, ... 680 minutes; the ninth would be at 765
        assert session.stats.logins == 1 and session.stats.renewals == 8
        assert sim.count("account/list") == 8 * 18


async def test_renews_at_expiration_minus_margin(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    seen: list[AccessToken] = []
    async with session_on(warped, clock, jitter=0.0) as session:
        session.add_token_listener(seen.append)
        first = session.token
        clock.jump(84 * MINUTE)
        await anyio.sleep(0.1)
        assert warped.renewals == 0 and session.token is first
        clock.jump(1 * MINUTE + 1)
        await wait_until(lambda: session.stats.renewals == 1)
        assert warped.renewals == 1
        assert session.token.expiration_time > first.expiration_time
        assert seen == [session.token]
    assert warped.token_requests == 1


async def test_renewal_500_once_is_retried_while_the_old_token_serves(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    async with session_on(warped, clock) as session:
        warped.inject(RENEW, Fault.status(500, b"Internal Server Error, error id: 42"))
        first = session.token
        clock.jump(86 * MINUTE)
        await wait_until(lambda: session.stats.renewals == 1)
        assert warped.count(RENEW) == 2
        assert session.token is not first
        assert session.stats.transient_failures == 1
        await session.get("account/list")
    assert warped.token_requests == 1


@pytest.mark.parametrize("fault", [Fault.delay(2.0), Fault.drop()], ids=["timeout", "reset"])
async def test_renewal_lost_on_the_way_back_recovers_with_one_login(
    warped: SimulatedTradovate, clock: WarpClock, fault: Fault
) -> None:
    # The answer never arrived. If the server did renew (and retired the old token), the
    # retry with the old token is refused and the session falls back to exactly one login;
    # if it did not, the retry renews. Either way: one new token, no login storm.
    async with session_on(warped, clock, timeout=0.3) as session:
        warped.inject(RENEW, fault)
        clock.jump(86 * MINUTE)
        await wait_until(lambda: session.stats.logins + session.stats.renewals == 2)
        assert session.stats.transient_failures == 1
        assert warped.token_requests <= 2
        await session.get("account/list")
    assert warped.expired_token_rejections == 0


async def test_renewal_html_502_is_retried(warped: SimulatedTradovate, clock: WarpClock) -> None:
    async with session_on(warped, clock) as session:
        warped.inject(RENEW, Fault.html(502), times=2)
        clock.jump(86 * MINUTE)
        await wait_until(lambda: session.stats.renewals == 1)
        assert session.stats.transient_failures == 2
        assert warped.count(RENEW) == 3
    assert warped.token_requests == 1


async def test_connection_refused_then_server_back_without_state(clock: WarpClock) -> None:
    async with SimulatedTradovate(clock=clock.time) as first:
        port = first.port
        session = session_on(first, clock)
        await session.__aenter__()
    try:
        clock.jump(86 * MINUTE)
        await wait_until(lambda: session.stats.transient_failures >= 2)
        # the old token still serves nobody (server down) but the session is alive
        async with SimulatedTradovate(clock=clock.time, port=port) as second:
            await wait_until(lambda: session.stats.logins == 2)
            assert second.token_requests == 1  # one fallback login after the refused renewal
            await session.get("account/list")
    finally:
        await session.aclose()


async def test_renewal_refused_falls_back_to_one_login(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    async with session_on(warped, clock) as session:
        warped.inject(RENEW, Fault.status(401))
        clock.jump(86 * MINUTE)
        await wait_until(lambda: session.stats.logins == 2)
        assert warped.token_requests == 2
        await session.get("account/list")


async def test_expired_token_logs_in_without_renewing(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    async with session_on(warped, clock) as session:
        clock.jump(100 * MINUTE)  # a suspended laptop wakes after the expiry
        await wait_until(lambda: session.stats.logins == 2)
        assert warped.count(RENEW) == 0
        await session.get("account/list")
    assert warped.expired_token_rejections == 0


async def test_penalty_on_the_fallback_login_is_served(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    async with session_on(warped, clock) as session:
        warped.inject(LOGIN, Fault.penalty(0.1))
        clock.jump(100 * MINUTE)
        await wait_until(lambda: session.stats.logins == 2)
        assert warped.token_requests == 3
        await session.get("account/list")


@pytest.mark.parametrize(
    ("path", "fault", "error"),
    [
        (LOGIN, Fault.penalty(1, captcha=True), CaptchaRequiredError),
        (LOGIN, Fault.error_text("Incorrect username or password."), InvalidCredentialsError),
        (LOGIN, Fault.status(429), RateLimitedError),
        (RENEW, Fault.status(429), RateLimitedError),
    ],
)
async def test_permanent_failures_stop_and_surface(
    warped: SimulatedTradovate,
    clock: WarpClock,
    path: str,
    fault: Fault,
    error: type[Exception],
) -> None:
    async with session_on(warped, clock) as session:
        warped.inject(path, fault)
        clock.jump(86 * MINUTE if path == RENEW else 100 * MINUTE)
        await wait_until(lambda: session.stats.permanent_failures == 1)
        before = warped.count(LOGIN) + warped.count(RENEW)
        for _ in range(3):
            with pytest.raises(error):
                await session.get("account/list")
        await anyio.sleep(0.2)  # the renewer keeps still: no spinning
        assert warped.count(LOGIN) + warped.count(RENEW) == before


async def test_a_standing_failure_stops_requests_while_the_token_is_still_usable(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    """Requests hold "the token is usable" as a lease between calls; a permanent failure
    recorded meanwhile (here without any clock moving) must still stop the next one."""
    async with session_on(warped, clock) as session:
        await session.get("account/list")
        keeper = session._keeper
        keeper.schedule.on_permanent_failure(InvalidCredentialsError("refused"), clock.now())
        with pytest.raises(InvalidCredentialsError):
            await session.get("account/list")


async def test_thousand_concurrent_requests_at_expiry_make_one_token_request(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    async with session_on(warped, clock, check_interval=30.0) as session:
        warped.reset_counters()
        clock.jump(95 * MINUTE)
        results = []

        async def call() -> None:
            results.append(await session.get("account/list"))

        async with anyio.create_task_group() as tg:
            for _ in range(1000):
                tg.start_soon(call)
        assert len(results) == 1000
        assert warped.token_requests == 1
        assert warped.count(RENEW) == 0
        assert warped.expired_token_rejections == 0


async def test_401_on_a_current_token_renews_once_and_resends(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    async with session_on(warped, clock, check_interval=30.0) as session:
        clock.jump(10 * MINUTE)
        old = session.token
        warped.revoke_tokens()
        assert await session.get("account/list")
        assert session.token is not old
        # renewal of a revoked token is refused, so the fallback is one login
        assert warped.count(RENEW) == 1 and warped.token_requests == 2
        assert warped.count("account/list") == 2


async def test_transport_error_on_an_order_is_never_resent(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    async with session_on(warped, clock) as session:
        account = (await session.get("account/list"))[0]
        order = {
            "accountSpec": account["name"],
            "accountId": account["id"],
            "action": "Buy",
            "symbol": "ESZ6",
            "orderQty": 1,
            "orderType": "Market",
            "isAutomated": True,
        }
        warped.inject("order/placeorder", Fault.drop())
        with pytest.raises(OrderOutcomeUnknownError) as lost:
            await session.post("order/placeorder", json=order)
        assert warped.count("order/placeorder") == 1
        assert lost.value.cl_ord_id
        result = await session.post("order/placeorder", json=order)
        assert isinstance(result["orderId"], int)
        with pytest.raises(OrderRejectedError) as info:
            await session.post("order/placeorder", json={**order, "accountId": 999_999})
        assert info.value.failure_reason != "Success"


async def test_error_text_on_200_raises(warped: SimulatedTradovate, clock: WarpClock) -> None:
    async with session_on(warped, clock) as session:
        warped.inject("account/list", Fault.error_text("Access is denied"))
        with pytest.raises(RequestFailedError, match="Access is denied"):
            await session.get("account/list")


async def test_stored_token_is_reused_across_sessions(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    from tradovate_async._store import MemoryTokenStore

    store = MemoryTokenStore()
    async with session_on(warped, clock, store=store):
        pass
    async with session_on(warped, clock, store=store) as second:
        await second.get("account/list")
    assert warped.token_requests == 1
    clock.jump(87 * MINUTE)  # inside the margin: renewed, not logged in
    async with session_on(warped, clock, store=store):
        pass
    assert warped.token_requests == 1 and warped.renewals == 1


async def test_closed_session_refuses_use_and_reopen(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    session = session_on(warped, clock)
    with pytest.raises(SessionClosedError):
        await session.get("account/list")
    async with session:
        with pytest.raises(SessionClosedError):
            async with session:
                pass
    with pytest.raises(SessionClosedError):
        await session.get("account/list")
    with pytest.raises(SessionClosedError):
        async with session:
            pass
    await session.aclose()  # idempotent


async def test_aclose_during_a_renewal_leaves_nothing_behind(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    before = {t for t in asyncio.all_tasks() if not t.done()}
    session = session_on(warped, clock)
    await session.__aenter__()
    warped.inject(RENEW, Fault.delay(5.0))
    clock.jump(86 * MINUTE)
    await wait_until(lambda: session.stats.renewals == 0 and _renewal_in_flight(session))
    await session.aclose()  # cancels the renewal that is waiting for its answer
    gc.collect()
    await anyio.sleep(0.05)
    after = {t for t in asyncio.all_tasks() if not t.done()}
    assert after - before == set()
    assert session.stats.renewals == 0


async def test_renew_margin_defaults_to_85_of_90_minutes(warped: SimulatedTradovate) -> None:
    session = TradovateSession(warped.config())
    assert session._keeper.schedule.renew_before == dt.timedelta(minutes=5)


async def test_aclose_from_another_task_closes_cleanly_and_fails_requests_in_flight(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    outcome: dict[str, BaseException] = {}
    session = session_on(warped, clock)
    async with session:
        warped.inject("account/list", Fault.delay(30.0))

        async def in_flight() -> None:
            try:
                await session.get("account/list")
            except BaseException as exc:
                outcome["error"] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(in_flight)
            await wait_until(lambda: len(session._http.in_flight) == 1)
            tg.start_soon(session.aclose)  # neither the opener nor the requester
        assert isinstance(outcome["error"], SessionClosedError)
        with pytest.raises(SessionClosedError):
            await session.get("account/list")
    # Reaching this line means the opener was not cancelled, and leaving the block after the
    # close released the task group without a cancel-scope error.
    assert session.stats.logins == 1


async def test_token_listeners_must_be_plain_functions(
    warped: SimulatedTradovate, clock: WarpClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def coroutine_listener(token: AccessToken) -> None:
        raise AssertionError("never called")

    class AsyncCallable:
        async def __call__(self, token: AccessToken) -> None:
            raise AssertionError("never called")

    async with session_on(warped, clock) as session:
        with pytest.raises(TypeError, match="coroutine function"):
            session.add_token_listener(coroutine_listener)
        with pytest.raises(TypeError, match="coroutine function"):
            session.add_token_listener(AsyncCallable())
        # A plain function that returns a coroutine anyway: closed (no "never awaited"
        # warning, which the suite turns into an error) and reported.
        session.add_token_listener(lambda token: coroutine_listener(token))
        clock.jump(86 * MINUTE)
        await wait_until(lambda: session.stats.renewals == 1)
    assert any("returned an awaitable" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
@pytest.mark.parametrize("where", ["exchange", "retry pause"])
async def test_aclose_ends_a_call_wherever_it_waits(
    warped: SimulatedTradovate, clock: WarpClock, backend: str, where: str
) -> None:
    """Over aiohttp a call has no cancel scope of its own: its exchange is cancelled by
    aclose() directly and each wait gets a scope. Either way the call ends at once."""
    outcome: dict[str, BaseException] = {}
    session = session_on(warped, clock, http_backend=backend)
    async with session:
        if where == "exchange":
            warped.inject("account/list", Fault.delay(30.0))
        else:
            warped.inject("account/list", Fault.status(503, retry_after=20))

        async def in_flight() -> None:
            try:
                await session.get("account/list")
            except BaseException as exc:
                outcome["error"] = exc

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(in_flight)
                if where == "exchange":
                    await wait_until(lambda: len(session._http.in_flight) == 1)
                else:
                    await wait_until(lambda: warped.count("account/list", status=503) == 1)
                await anyio.sleep(0.2)  # well into the exchange or the pause
                tg.start_soon(session.aclose)  # from a task of its own, as above
        assert isinstance(outcome["error"], SessionClosedError)
        assert session._http.in_flight == {}


async def test_a_call_cancelled_by_its_caller_is_a_cancellation_and_the_session_goes_on(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    async with session_on(warped, clock) as session:
        warped.inject("account/list", Fault.delay(30.0))
        with anyio.move_on_after(0.3) as scope:
            await session.get("account/list")
        assert scope.cancelled_caught
        assert session._http.in_flight == {}
        assert await session.get("account/list") is not None


async def test_aclose_meeting_the_callers_own_cancellation_leaves_it_a_cancellation(
    warped: SimulatedTradovate, clock: WarpClock
) -> None:
    """The caller cancels and aclose() ends the call in the same instant: the caller's
    cancellation is not turned into SessionClosedError (nor lost)."""
    session = session_on(warped, clock)
    caught: list[BaseException] = []
    scopes: list[anyio.CancelScope] = []
    async with session:
        warped.inject("account/list", Fault.delay(30.0))

        async def call() -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                try:
                    await session.get("account/list")
                except BaseException as exc:
                    caught.append(exc)
                    raise

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await wait_until(lambda: len(session._http.in_flight) == 1)
                await anyio.sleep(0.1)
                scopes[0].cancel()
                session._http.cancel_in_flight()  # what aclose() does first
        assert len(caught) == 1 and isinstance(caught[0], asyncio.CancelledError)
        assert scopes[0].cancelled_caught
