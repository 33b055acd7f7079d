"""Token time is the server's time: the estimate, the pacing floor, and sessions on a simulator
whose clock is hours off the host's (issue 9 §1).

Clocks: one :class:`WarpClock` drives everything. The simulator reads ``clock.time`` plus its
``server_clock_offset``; a session reads the host's wall clock ``clock.now`` and its elapsed
clock ``clock.monotonic`` (which no jump moves). A host 2 h fast is a server at −2 h; a host
clock that jumps is ``clock.jump`` with the server's offset moved back by as much.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import email.utils
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest
import redis.asyncio
import websockets.asyncio.client

from tests.test_session import LOGIN, wait_until
from tradovate_async import FileTokenStore, LoginPacedError, MemoryTokenStore, TradovateSession
from tradovate_async._clock import FakeClock
from tradovate_async._models import AccessToken
from tradovate_async._redis_store import RedisTokenStore
from tradovate_async._schedule import LoginPacing
from tradovate_async._secret import Secret
from tradovate_async._server_time import (
    HostClockWatch,
    ServerClock,
    SessionTime,
    parse_http_date,
)
from tradovate_async.sim import SimulatedTradovate, SkewedClock, WarpClock

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

HOUR = 3600.0
T0 = dt.datetime(2026, 12, 1, 6, 0, 0, tzinfo=dt.UTC)
PROBE = "/v1/"  # the path the session reads the server's clock from (GET of the REST base)


# -- the estimate, sans I/O -------------------------------------------------------------------


def test_one_sample_bounds_the_server_time_by_resolution_and_round_trip() -> None:
    clock = ServerClock()
    # Sent at elapsed 100.0, answered at 100.4 with Date 06:00:00: the server's time at 100.4
    # is between 06:00:00 and 06:00:01.4.
    clock.observe(T0, sent=100.0, received=100.4)
    low, high = clock.bounds(100.4) or (0.0, 0.0)
    assert low == pytest.approx(T0.timestamp())
    assert high == pytest.approx(T0.timestamp() + 1.4)
    assert clock.latest(100.4) == dt.datetime.fromtimestamp(high, dt.UTC)


def test_tightest_samples_win_and_the_width_shrinks_below_a_second() -> None:
    clock = ServerClock(drift=0.0)
    true_offset = T0.timestamp() - 1000.3  # server time = elapsed + offset
    for i in range(20):
        sent = 1000.0 + i * 0.37
        received = sent + 0.02
        generated = true_offset + sent + 0.01
        clock.observe(
            dt.datetime.fromtimestamp(int(generated), dt.UTC), sent=sent, received=received
        )
    width = clock.uncertainty(1010.0)
    assert width is not None and width < 0.2
    low, high = clock.bounds(1010.0) or (0.0, 0.0)
    assert low <= true_offset + 1010.0 <= high


def test_a_contradicting_sample_restarts_the_estimate() -> None:
    clock = ServerClock()
    clock.observe(T0, sent=10.0, received=10.1)
    assert clock.observe(T0 + dt.timedelta(hours=2), sent=20.0, received=20.1) is False
    assert clock.restarts == 1
    low, _high = clock.bounds(20.1) or (0.0, 0.0)
    assert low == pytest.approx((T0 + dt.timedelta(hours=2)).timestamp())


def test_widen_covers_a_possible_suspend_until_the_next_sample() -> None:
    clock = ServerClock()
    clock.observe(T0, sent=10.0, received=10.0)
    clock.widen(7200.0)
    assert clock.stale
    _low, high = clock.bounds(10.0) or (0.0, 0.0)
    assert high == pytest.approx(T0.timestamp() + 1 + 7200)
    clock.observe(T0 + dt.timedelta(seconds=5), sent=15.0, received=15.0)  # it was a clock step
    assert not clock.stale
    width = clock.uncertainty(15.0)
    assert width is not None and width <= 1.0


def test_old_bounds_widen_with_drift() -> None:
    clock = ServerClock(drift=1e-4)
    clock.observe(T0, sent=0.0, received=0.0)
    assert clock.uncertainty(0.0) == pytest.approx(1.0)
    assert clock.uncertainty(10_000.0) == pytest.approx(3.0)


def test_a_lease_holds_exactly_while_the_latest_bound_is_before_its_instant() -> None:
    clock = ServerClock(drift=1e-4)
    assert clock.lease(T0.timestamp()) is None  # nothing is promised on an unknown clock
    clock.observe(T0, sent=100.0, received=100.4)
    instant = T0 + dt.timedelta(minutes=90)
    lease = clock.lease(instant.timestamp())
    assert lease is not None and lease.start == 100.4
    for elapsed in (100.4, 1000.0, lease.until - 1e-6):
        latest = clock.latest(elapsed)
        assert latest is not None and latest < instant
    # It ends within a few milliseconds of the moment the latest bound reaches the instant.
    late = clock.latest(lease.until + 0.01)
    assert late is not None and late >= instant


def test_tightening_samples_keep_leases_and_anything_else_voids_them() -> None:
    clock = ServerClock(drift=1e-4)
    clock.observe(T0, sent=10.0, received=10.5)
    lease = clock.lease((T0 + dt.timedelta(hours=1)).timestamp())
    assert lease is not None
    clock.observe(T0, sent=10.6, received=10.7)  # same Date, sent later: a tighter bound
    assert clock.generation == lease.generation
    tighter = clock.lease((T0 + dt.timedelta(hours=1)).timestamp())
    assert tighter is not None and tighter.until >= lease.until  # the old promise still holds
    clock.widen(7200.0)  # a wall-clock jump: maybe a suspend
    assert clock.generation != lease.generation
    widened = clock.generation
    clock.observe(T0 - dt.timedelta(hours=2), sent=20.0, received=20.1)  # stepped back
    assert clock.restarts == 1 and clock.generation != widened


def test_session_time_leases_end_with_a_wall_jump_or_a_new_sample_elsewhere() -> None:
    host = FakeClock(0.0, wall=T0.timestamp())
    time = SessionTime(host)
    assert time.lease(T0 + dt.timedelta(hours=1)) is None  # no server time yet
    time.observe(email.utils.format_datetime(T0, usegmt=True), sent=0.0, received=0.0)
    lease = time.lease(T0 + dt.timedelta(hours=1))
    assert lease is not None and time.holds(lease)
    host._mono += 1800  # both clocks move half an hour
    assert time.holds(lease)
    host._mono += 1800  # and the hour is up
    assert not time.holds(lease)
    lease = time.lease(T0 + dt.timedelta(hours=3))
    assert lease is not None and time.holds(lease)
    host.jump(2 * HOUR)  # the elapsed clock stood still through a suspend, say
    assert not time.holds(lease)
    assert time.now() >= T0 + dt.timedelta(hours=3)  # and the full judgement sees why


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Tue, 01 Dec 2026 06:00:00 GMT", T0),
        ("Tue, 01 Dec 2026 07:00:00 +0100", T0),
        (None, None),
        ("", None),
        ("yesterday", None),
        ("Tue, 01 Dec 2026 06:00:00 GMT" + " " * 80, None),
    ],
)
def test_parse_http_date(header: str | None, expected: dt.datetime | None) -> None:
    assert parse_http_date(header) == expected


def test_host_clock_watch_reports_forward_moves_only() -> None:
    watch = HostClockWatch(tolerance=2.0)
    assert watch.check(1000.0, 0.0) == 0.0
    assert watch.check(1001.5, 0.5) == 0.0  # in step
    assert watch.check(8201.0, 1.0) == pytest.approx(7200.0)  # wall jumped 2 h ahead
    assert watch.check(1002.0, 2.0) == 0.0  # and back: nothing hidden
    assert watch.moves == 2


def test_session_time_falls_back_to_the_host_clock_only_without_a_sample() -> None:
    host = FakeClock(50.0, wall=(T0 + dt.timedelta(hours=2)).timestamp())  # 2 h fast
    time = SessionTime(host)
    assert time.now() == host.now()
    time.observe(email.utils.format_datetime(T0, usegmt=True), sent=50.0, received=50.0)
    assert T0 <= time.now() <= T0 + dt.timedelta(seconds=1)
    offset = time.host_offset()
    assert offset is not None and 7198 < offset < 7201
    host._mono += 60  # both clocks move a minute (FakeClock.advance without the sleepers)
    assert T0 + dt.timedelta(seconds=60) <= time.now() <= T0 + dt.timedelta(seconds=61.1)


def test_session_time_widens_on_a_wall_jump_until_a_sample_settles_it() -> None:
    host = FakeClock(0.0, wall=T0.timestamp())
    time = SessionTime(host)
    time.observe(email.utils.format_datetime(T0, usegmt=True), sent=0.0, received=0.0)
    assert not time.needs_sample()
    host.jump(2 * HOUR)  # a suspend or a step: the host cannot tell
    assert time.needs_sample()
    assert time.now() >= T0 + dt.timedelta(hours=2)  # pessimistic: maybe it was a suspend
    time.observe(email.utils.format_datetime(T0, usegmt=True), sent=0.0, received=0.0)
    assert not time.needs_sample()  # it was a step: the server's clock did not move
    assert time.now() <= T0 + dt.timedelta(seconds=1)
    assert time.steady() == 0.0  # and the pacing clock did not move either


def test_session_time_ignores_implausible_dates() -> None:
    time = SessionTime(FakeClock(wall=T0.timestamp()))
    time.observe("Thu, 01 Jan 1970 00:00:00 GMT", sent=0.0, received=0.0)
    assert not time.known


# -- the login pacing floor -----------------------------------------------------------------------


def test_pacing_first_login_free_second_after_a_pause_then_a_few_an_hour() -> None:
    pacing = LoginPacing(per_hour=4, pause=60.0)
    assert pacing.wait_before_login(0.0) == 0.0
    pacing.record(0.0)
    assert pacing.wait_before_login(1.0) == pytest.approx(59.0)
    for at in (60.0, 120.0, 180.0):
        assert pacing.wait_before_login(at) == 0.0
        pacing.record(at)
    assert pacing.wait_before_login(300.0) == pytest.approx(HOUR - 300.0)
    assert pacing.wait_before_login(HOUR) == 0.0


def test_pacing_merges_logins_seen_twice_once() -> None:
    pacing = LoginPacing(per_hour=2, pause=0.0)
    pacing.record(100.0)
    pacing.record(101.5)  # the same login, read back from the store
    assert pacing.history(200.0) == [100.0]
    assert pacing.wait_before_login(200.0) == 0.0


# -- the simulator's clock ----------------------------------------------------------------------


async def test_sim_dates_every_answer_on_its_own_clock() -> None:
    clock = WarpClock()
    async with SimulatedTradovate(clock=clock.time, server_clock_offset=-2 * HOUR) as sim:
        async with httpx.AsyncClient() as client:
            for path in ("auth/me", "no/such/thing", LOGIN):
                response = await client.post(f"{sim.api_url}/{path}", json={})
                date = parse_http_date(response.headers.get("date"))
                assert date is not None
                assert abs(date.timestamp() - (clock.time() - 2 * HOUR)) < 2
                assert len(response.headers.get_list("date")) == 1
            sim.server_clock_offset = 5 * HOUR  # a jump mid-run
            response = await client.get(f"{sim.api_url}/auth/me")
            date = parse_http_date(response.headers.get("date"))
            assert date is not None and abs(date.timestamp() - (clock.time() + 5 * HOUR)) < 2
        async with websockets.asyncio.client.connect(sim.ws_url) as ws:
            assert ws.response is not None
            date = parse_http_date(ws.response.headers.get("date"))
            assert date is not None and abs(date.timestamp() - (clock.time() + 5 * HOUR)) < 2


# -- sessions on a server whose clock is hours off ---------------------------------------------


@dataclasses.dataclass
class Run:
    logins: int
    token_requests: int
    renewals: int
    expired: int
    failed: int
    late_renewals: int
    requests: int


async def run_session(*, offset: float, jump: float = 0.0, hours: float = 4.0) -> Run:
    """A request every simulated minute for ``hours`` simulated hours, on a fake clock that
    moves only between requests (so no stall of a loaded machine can make anything late); with
    ``jump`` the host's wall clock jumps by it after the first hour (the server's clock and the
    host's elapsed clock do not)."""
    clock = FakeClock(wall=T0.timestamp())
    late = failed = requests = 0
    async with SimulatedTradovate(clock=clock.time, server_clock_offset=offset) as sim:
        previous: list[AccessToken] = []

        def on_token(token: AccessToken) -> None:
            nonlocal late
            server_now = dt.datetime.fromtimestamp(sim.now(), dt.UTC)
            if previous and server_now >= previous[-1].expiration_time:
                late += 1
            previous.append(token)

        host = SkewedClock(clock)
        session = TradovateSession(
            sim.config(), clock=host, check_interval=10.0, renew_before=1800.0
        )
        session.add_token_listener(on_token)
        async with session:
            assert sim.logins == 1
            start = clock.monotonic()
            jumped = jump == 0.0
            while clock.monotonic() < start + hours * HOUR:
                if not jumped and clock.monotonic() >= start + HOUR:
                    host.skew += jump
                    jumped = True
                try:
                    await session.get("account/list")
                    requests += 1
                except Exception:
                    failed += 1
                await clock.advance(60.0)
    return Run(
        logins=sim.logins,
        token_requests=sim.token_requests,
        renewals=sim.renewals,
        expired=sim.expired_token_rejections,
        failed=failed,
        late_renewals=late,
        requests=requests,
    )


@pytest.mark.parametrize(
    ("offset", "jump"),
    [(-2 * HOUR, 0.0), (2 * HOUR, 0.0), (0.0, 2 * HOUR), (0.0, -2 * HOUR)],
    ids=["host-2h-fast", "host-2h-slow", "host-jumps-2h-ahead", "host-jumps-2h-back"],
)
async def test_wrong_host_clock_one_login_renewals_on_time_nothing_expired(
    offset: float, jump: float
) -> None:
    run = await run_session(offset=offset, jump=jump)
    assert run.requests > 100
    assert (run.logins, run.token_requests) == (1, 1)
    assert run.renewals >= 2  # 4 h of 90-minute tokens
    assert run.late_renewals == 0
    assert run.expired == 0
    assert run.failed == 0


async def test_suspend_on_a_host_whose_elapsed_clock_stops_renews_at_once() -> None:
    """The host sleeps 86 minutes: wall and server clock move, the elapsed clock does not."""
    clock = WarpClock()
    async with SimulatedTradovate(clock=clock.time, server_clock_offset=-2 * HOUR) as sim:
        session = TradovateSession(sim.config(), clock=clock, check_interval=0.01)
        async with session:
            first = session.token
            clock.jump(86 * 60)
            await wait_until(lambda: session.token is not first)
            await session.get("account/list")
        assert (sim.logins, sim.renewals, sim.expired_token_rejections) == (1, 1, 0)
        assert sim.count(PROBE) == 1  # the jump was checked against the server's clock


async def test_suspend_past_expiry_logs_in_without_using_the_dead_token() -> None:
    clock = WarpClock()
    async with SimulatedTradovate(clock=clock.time) as sim:
        session = TradovateSession(sim.config(), clock=clock, check_interval=0.01)
        async with session:
            clock.jump(100 * 60)
            await session.get("account/list")
        assert (sim.logins, sim.renewals, sim.expired_token_rejections) == (2, 0, 0)


# -- the storm cannot happen -------------------------------------------------------------------


async def test_no_storm_with_a_host_2h_fast_and_many_concurrent_requests() -> None:
    clock = WarpClock()
    async with SimulatedTradovate(clock=clock.time, server_clock_offset=-2 * HOUR) as sim:
        session = TradovateSession(sim.config(), clock=clock)
        async with session, anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(session.get, "account/list")
        assert sim.token_requests == 1
        assert sim.count("account/list", status=200) == 200


async def test_pacing_floor_holds_when_every_token_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server (or a bug) that ends the session again and again: logins stay paced, the cap
    is a typed error and a WARNING, requests keep failing fast without token requests."""
    clock = WarpClock()
    async with SimulatedTradovate(clock=clock.time) as sim:
        session = TradovateSession(sim.config(), clock=clock, check_interval=0.01)
        async with session:
            errors: list[BaseException] = []
            for _ in range(50):
                sim.revoke_tokens()
                try:
                    await session.get("account/list")
                except Exception as exc:
                    errors.append(exc)
            assert sim.logins == 1  # the second login only after the pause
            assert sim.token_requests == 1
            assert errors and all(isinstance(e, LoginPacedError) for e in errors)
            assert session.stats.paced_logins >= 1
            # After the pause one more login is allowed, and it works.
            clock.jump(61)
            await session.get("account/list")
            assert sim.logins == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("pacing floor" in r.getMessage() for r in warnings)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_pacing_is_shared_through_the_token_store(tmp_path: Path) -> None:
    """A second process of the user (its own session, same store) sees the first one's login
    in the shared record: its own login, asked for at once, is paced."""
    clock = WarpClock()
    store = FileTokenStore(tmp_path / "tokens.json")
    async with SimulatedTradovate(clock=clock.time) as sim:
        options = {"clock": clock, "store": store}
        async with TradovateSession(sim.config(), **options):  # type: ignore[arg-type]
            pass
        stored = await store.load(sim.config().token_key)
        assert stored is not None and len(stored.login_times) == 1
        sim.revoke_tokens()  # the stored token looks fresh but is refused
        async with TradovateSession(sim.config(), **options) as other:  # type: ignore[arg-type]
            with pytest.raises(LoginPacedError):
                await other.get("account/list")
        assert sim.logins == 1


# -- stored tokens judged on the server's clock ----------------------------------------------------


async def test_stored_token_judged_on_server_clock_across_hosts(tmp_path: Path) -> None:
    """Written by a host 2 h fast, read by a host 2 h slow: adopted while fresh, never kept
    once expired, whatever either host's clock says."""
    clock = WarpClock()
    store = FileTokenStore(tmp_path / "tokens.json")
    async with SimulatedTradovate(clock=clock.time) as sim:

        def host(skew: float) -> TradovateSession:
            return TradovateSession(sim.config(), store=store, clock=SkewedClock(clock, skew))

        async with host(+2 * HOUR) as writer:
            written = writer.token
        stored = await store.load(sim.config().token_key)
        assert stored is not None and stored.issued_on_server_clock
        assert stored.host_clock_offset is not None
        assert 2 * HOUR - 5 < stored.host_clock_offset < 2 * HOUR + 5
        async with host(-2 * HOUR) as reader:
            assert reader.token.access_token == written.access_token
        assert (sim.logins, sim.count(PROBE)) == (1, 1)

        clock.jump(100 * 60)  # the stored token has expired on the server's clock
        sim.server_clock_offset = 0.0
        async with host(-2 * HOUR) as late_reader:
            await late_reader.get("account/list")
        async with host(+2 * HOUR) as fast_reader:  # and the fresh one is not "expired"
            await fast_reader.get("account/list")
        assert (sim.logins, sim.expired_token_rejections) == (2, 0)


async def test_records_of_older_versions_are_still_read() -> None:
    store = MemoryTokenStore()
    record = {
        "accessToken": "older-version-token",
        "mdAccessToken": None,
        "expirationTime": "2026-12-01T07:30:00+00:00",
        "userId": 7,
        "name": "bot",
        "userStatus": "Active",
        "hasLive": False,
        "issuedAt": "2026-12-01T08:00:00+00:00",  # a writer 2 h fast: implausible lifetime
    }
    token = AccessToken.from_record(record)
    assert token.issued_at is None and not token.issued_on_server_clock
    assert token.login_times == () and token.host_clock_offset is None
    record["issuedAt"] = "2026-12-01T06:00:00+00:00"
    assert AccessToken.from_record(record).lifetime == dt.timedelta(minutes=90)
    await store.save("k", token)
    assert await store.load("k") == token


async def test_the_socket_handshake_samples_the_server_clock_too() -> None:
    clock = WarpClock()
    async with SimulatedTradovate(clock=clock.time, server_clock_offset=-2 * HOUR) as sim:
        async with TradovateSession(sim.config(), clock=clock) as session:
            samples = session._time.server.samples
            rest = [r for r in sim.request_log if r.transport == "rest"]
            async with session.websocket() as ws:
                assert ws.connected
            assert [r for r in sim.request_log if r.transport == "rest"] == rest
            assert session._time.server.samples == samples + 1


async def test_floor_caps_logins_when_the_server_hands_out_short_lived_tokens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """30-second tokens for a simulated hour: the 15 renewals are spent within minutes, after
    which every expiry asks for a login. The floor holds: at most 4 logins in any rolling
    hour, a minute apart at least."""
    clock = FakeClock(wall=T0.timestamp())
    async with SimulatedTradovate(clock=clock.time, token_lifetime=30.0) as sim:
        session = TradovateSession(sim.config(), clock=clock, check_interval=1.0)
        async with session:
            for _ in range(360):  # one simulated hour, ten seconds at a time
                await clock.advance(10.0)
                await anyio.sleep(0.005)
                with contextlib.suppress(Exception):
                    await session.get("account/list")
        logins = [r.time for r in sim.request_log if r.path == LOGIN and r.status == 200]
        assert sim.token_requests == sim.logins == len(logins) >= 3
        assert all(b - a >= 60 for a, b in zip(logins, logins[1:], strict=False))
        assert all(sum(1 for t in logins if start <= t < start + HOUR) <= 4 for start in logins)
        assert sim.renewals <= 16  # 15 in any rolling hour
        assert session.stats.paced_logins >= 1
    paced = [r for r in caplog.records if "pacing floor" in r.getMessage()]
    assert paced and all(r.levelno == logging.WARNING for r in paced)


async def test_redis_record_of_a_host_2h_fast_is_kept_for_the_token_lifetime(
    redis_server: RedisServer,
) -> None:
    """The key's TTL is counted on the server's clock: a writer 2 h fast does not drop its
    fresh token (by its own clock it expired 30 minutes ago), and a reader 2 h slow adopts it."""
    clock = WarpClock()
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    store = RedisTokenStore(redis_server.url, prefix=prefix)
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        async with SimulatedTradovate(clock=clock.time) as sim:
            options: dict[str, object] = {"store": store}
            async with TradovateSession(
                sim.config(),
                clock=SkewedClock(clock, 2 * HOUR),
                **options,  # type: ignore[arg-type]
            ):
                pass
            keys = [k async for k in raw.scan_iter(f"{prefix}:token:*")]
            assert len(keys) == 1
            ttl_ms = await raw.pttl(keys[0])
            assert 5400_000 - 60_000 < ttl_ms <= 5400_000
            async with TradovateSession(
                sim.config(),
                clock=SkewedClock(clock, -2 * HOUR),
                **options,  # type: ignore[arg-type]
            ) as reader:
                await reader.get("account/list")
            assert (sim.logins, sim.expired_token_rejections) == (1, 0)
    finally:
        await raw.aclose()
        await store.aclose()


async def test_redis_ttl_is_counted_on_the_server_clock(redis_server: RedisServer) -> None:
    """This machine's clock plays a host 3 h fast: by it, the token expired 90 minutes ago;
    by the server's clock it was issued just now and lives 90 minutes. It is stored, with a
    90-minute TTL."""
    host_now = dt.datetime.now(dt.UTC)
    server_now = host_now - dt.timedelta(hours=3)
    token = AccessToken(
        access_token=Secret("token-of-a-fast-host"),
        expiration_time=server_now + dt.timedelta(minutes=90),
        user_id=1,
        issued_at=server_now,
        issued_on_server_clock=True,
        host_clock_offset=3 * HOUR,
    )
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    store = RedisTokenStore(redis_server.url, prefix=prefix)
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        await store.save("k", token)
        keys = [k async for k in raw.scan_iter(f"{prefix}:token:*")]
        assert len(keys) == 1
        assert 5400_000 - 60_000 < await raw.pttl(keys[0]) <= 5400_000
        loaded = await store.load("k")
        assert loaded is not None and loaded.host_clock_offset == 3 * HOUR
    finally:
        await raw.aclose()
        await store.aclose()
