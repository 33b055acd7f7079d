"""Every HTTP exchange is bounded in time and size, against a hostile server on loopback."""

from __future__ import annotations

import gc
import tracemalloc

import anyio
import httpx
import pytest

from tests.hostile_http import HostileServer, announced, endless_chunked, trickle
from tradovate_async import (
    ExchangeBounds,
    ExchangeDeadlineError,
    ResponseTooLargeError,
    TradovateSession,
    TransportError,
)

LOGIN = "auth/accesstokenrequest"
SAFETY = 30.0  # a hang shows as a failure, never as a stuck suite


async def test_trickling_token_endpoint_cannot_keep_a_login_past_its_deadline() -> None:
    async with HostileServer({LOGIN: trickle(0.5)}) as server:
        session = TradovateSession(
            server.config(), timeout=10.0, token_bounds=ExchangeBounds(2.0, 64 * 1024)
        )
        with anyio.fail_after(SAFETY):
            with pytest.raises(ExchangeDeadlineError) as info:
                async with session:
                    pass
    assert isinstance(info.value, TransportError)
    assert "deadline" in str(info.value)
    # Per-read timeouts alone (10 s) never fire: a byte came every 0.5 s.
    assert server.stats.body_bytes_sent >= 1


async def test_endless_chunked_rest_answer_is_cut_at_max_body() -> None:
    cap = 1 << 20
    async with HostileServer({"account/list": endless_chunked()}) as server:
        async with TradovateSession(
            server.config(), request_bounds=ExchangeBounds(60.0, cap)
        ) as session:
            gc.collect()
            tracemalloc.start()
            try:
                with anyio.fail_after(SAFETY):
                    with pytest.raises(ResponseTooLargeError) as info:
                        await session.get("account/list")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            # and the session goes on working
            assert await session.get("position/list") == []
    assert "max_body" in str(info.value)
    assert peak < 4 * cap, f"peak {peak}"
    assert server.stats.body_bytes_sent < 64 * cap  # the client hung up early


async def test_announced_huge_body_is_refused_before_reading() -> None:
    async with HostileServer({LOGIN: announced(1_500_000_000)}) as server:
        session = TradovateSession(server.config())
        with anyio.fail_after(SAFETY):
            with pytest.raises(ResponseTooLargeError, match="announces 1500000000 bytes"):
                async with session:
                    pass
    assert server.stats.body_bytes_sent < 64 << 20


async def test_token_answers_are_capped_at_64_kib_by_default() -> None:
    async with HostileServer({LOGIN: endless_chunked(4096)}) as server:
        with anyio.fail_after(SAFETY):
            with pytest.raises(ResponseTooLargeError, match="65536 bytes"):
                async with TradovateSession(server.config()):
                    pass


async def test_transport_errors_do_not_carry_the_login_request() -> None:
    # Nothing listens on the port: connect fails.
    async with HostileServer({}) as server:
        config = server.config()
    session = TradovateSession(config)
    with pytest.raises(TransportError) as info:
        async with session:
            pass
    seen: list[BaseException] = []
    error: BaseException | None = info.value
    while error is not None and len(seen) < 10:
        seen.append(error)
        error = error.__cause__ or error.__context__
    for error in seen:
        if isinstance(error, httpx.HTTPError):
            with pytest.raises(RuntimeError):
                error.request  # noqa: B018 - the property raises when no request is kept
        assert "pw-hostile" not in repr(error) and "sec-hostile" not in str(error)
    assert any(isinstance(e, httpx.ConnectError) for e in seen)


def test_bounds_are_validated() -> None:
    with pytest.raises(ValueError):
        ExchangeBounds(0, 65536)
    with pytest.raises(ValueError):
        ExchangeBounds(1.0, 10)
