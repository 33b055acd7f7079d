"""The session's own REST calls over aiohttp (the default ``http_backend``): the same bounds,
errors, TLS verification and bearer handling as the httpx path, against real servers."""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from pathlib import Path
from typing import Literal

import anyio
import httpx
import pytest
import trustme

from tests.hostile_http import (
    HostileServer,
    announced,
    endless_chunked,
    gzip_bomb,
    silent,
    silent_after_head,
    steady,
    token_answer,
    trickle,
)
from tradovate_async import (
    ConnectFailedError,
    ExchangeBounds,
    ExchangeDeadlineError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TokenRejectedError,
    TradovateConfig,
    TradovateSession,
)
from tradovate_async._aiohttp_exchange import AiohttpExchanger
from tradovate_async._http import REQUEST_BOUNDS
from tradovate_async._options import Timeouts
from tradovate_async.sim import Fault, SimulatedTradovate

SAFETY = 30.0
Backend = Literal["aiohttp", "httpx"]
BACKENDS = pytest.mark.parametrize("backend", ["aiohttp", "httpx"])


@BACKENDS
async def test_a_trickling_rest_answer_ends_at_the_deadline(backend: Backend) -> None:
    async with HostileServer({"userPlugin/create": trickle(0.3)}) as server:
        async with TradovateSession(
            server.config(), request_bounds=ExchangeBounds(1.5, 1 << 20), http_backend=backend
        ) as session:
            with anyio.fail_after(SAFETY), pytest.raises(ExchangeDeadlineError):
                await session.post("userPlugin/create", json={})  # a command: never retried


@BACKENDS
async def test_a_silent_server_is_a_read_timeout_not_the_deadline(backend: Backend) -> None:
    """``Timeouts.request`` bounds the wait for an answer (the deadline is far away)."""
    routes = {"userPlugin/create": silent(), "position/list": silent_after_head()}
    async with HostileServer(routes) as server:
        async with TradovateSession(
            server.config(), timeout=Timeouts(0.5), http_backend=backend
        ) as session:
            for path in routes:  # POSTed: commands are never retried
                with anyio.fail_after(SAFETY), pytest.raises(RequestTimeoutError) as caught:
                    await session.post(path, json={})
                assert not isinstance(caught.value, ExchangeDeadlineError)
                assert path in str(caught.value)
            assert await session.get("account/list") == []  # the session goes on
            assert _watched(session) == 0


@BACKENDS
async def test_an_answer_that_keeps_coming_outlasts_the_read_timeout(backend: Backend) -> None:
    """The read timeout starts again with every piece: a slow, steady body is read whole."""
    async with HostileServer({"account/list": steady(16, 0.1)}) as server:
        async with TradovateSession(
            server.config(), timeout=Timeouts(1.0), http_backend=backend
        ) as session:
            with anyio.fail_after(SAFETY):
                assert await session.get("account/list") == []
    assert server.stats.body_bytes_sent == 16


async def test_a_cancelled_exchange_is_a_cancellation_and_leaves_nothing_behind() -> None:
    """A cancellation from outside is not taken for the watch's: it propagates, the exchange
    leaves the watch, and the next read timeout still fires for the next call."""
    async with HostileServer({"userPlugin/create": silent()}) as server:
        async with TradovateSession(server.config(), timeout=Timeouts(0.5)) as session:
            with anyio.move_on_after(0.1) as scope:
                await session.post("userPlugin/create", json={})
            assert scope.cancelled_caught
            assert _watched(session) == 0
            with anyio.fail_after(SAFETY), pytest.raises(RequestTimeoutError):
                await session.post("userPlugin/create", json={})
            assert _watched(session) == 0


class _HeldAnswers(http.server.ThreadingHTTPServer):
    """In threads of its own: answers ``userPlugin/create`` only once the test says ``go``
    (each server its own events, so no run sees another's)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HeldAnswerHandler)
        self.received = threading.Event()
        self.go = threading.Event()


class _HeldAnswerHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HeldAnswers

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = token_answer() if "accesstoken" in self.path else b"[]"
        if "userPlugin" in self.path:
            self.server.received.set()
            self.server.go.wait(SAFETY)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


async def test_an_answer_that_came_while_the_loop_was_blocked_is_read() -> None:
    """The event loop blocked past the read timeout while the answer arrived: the answer is
    taken, not a timeout (the watch looks again once the waiting task had its turn)."""
    server = _HeldAnswers()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    config = HostileServer({}).config(api_url=url)
    try:
        async with TradovateSession(config, timeout=Timeouts(0.5)) as session:
            answers: list[object] = []

            async def command() -> None:
                answers.append(await session.post("userPlugin/create", json={}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(command)
                assert await anyio.to_thread.run_sync(server.received.wait, SAFETY)
                server.go.set()
                time.sleep(0.8)  # noqa: ASYNC251 (blocking the loop is the point)
            assert answers == [[]]
    finally:
        server.shutdown()
        server.server_close()


def _watched(session: TradovateSession) -> int:
    exchanger = session._http._exchanger
    watch = None if exchanger is None else exchanger._watch
    return 0 if watch is None else len(watch)


@BACKENDS
async def test_rest_bodies_are_capped(backend: Backend) -> None:
    cap = 1 << 20
    routes = {"account/list": endless_chunked(), "position/list": announced(10 * cap)}
    async with HostileServer(routes) as server:
        async with TradovateSession(
            server.config(), request_bounds=ExchangeBounds(60.0, cap), http_backend=backend
        ) as session:
            with anyio.fail_after(SAFETY):
                with pytest.raises(ResponseTooLargeError, match="max_body"):
                    await session.get("account/list")
                with pytest.raises(ResponseTooLargeError, match="announces"):
                    await session.get("position/list")
    assert server.stats.body_bytes_sent < 64 * cap


@BACKENDS
async def test_the_cap_holds_for_the_decoded_body_of_a_compressed_answer(backend: Backend) -> None:
    """64 MiB of gzip-inflated spaces in a body of about 64 KiB with a true Content-Length:
    the cap is on what the client would hold, so the answer is refused all the same."""
    cap = 1 << 20
    async with HostileServer({"account/list": gzip_bomb(64 * cap)}) as server:
        async with TradovateSession(
            server.config(), request_bounds=ExchangeBounds(60.0, cap), http_backend=backend
        ) as session:
            with anyio.fail_after(SAFETY), pytest.raises(ResponseTooLargeError, match="max_body"):
                await session.get("account/list")
    assert server.stats.body_bytes_sent < cap


@BACKENDS
async def test_a_refused_token_is_renewed_once_and_the_request_resent(
    sim: SimulatedTradovate, backend: Backend
) -> None:
    async with TradovateSession(sim.config(), http_backend=backend) as session:
        first = session.token
        sim.inject("account/list", Fault.status(401, "Unauthorized"), transport="rest")
        assert [a["id"] for a in await session.get("account/list")] == [70001]
        assert session.token is not first
        sim.inject("account/list", Fault.status(401, "Unauthorized"), transport="rest", times=5)
        with pytest.raises(TokenRejectedError):
            await session.get("account/list")


async def test_nothing_listening_is_connect_failed(sim: SimulatedTradovate) -> None:
    async with TradovateSession(sim.config()) as session:
        token = session.token.access_token.reveal()
        session.http.base_url = "http://127.0.0.1:1/v1/"
        with pytest.raises(ConnectFailedError) as info:
            await session.get("account/list")
    assert info.value.__cause__ is None and info.value.__context__ is None  # no request kept
    assert token not in repr(info.value)


async def test_tls_is_verified_with_the_trust_the_session_was_given(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    async with SimulatedTradovate(certfile=str(certfile), keyfile=str(keyfile)) as sim:
        url = sim.api_url + "/auth/me"
        for context, trusted in ((None, False), (ssl.create_default_context(cafile=cafile), True)):
            exchanger = AiohttpExchanger(
                ssl_context=context, limits=httpx.Limits(), timeouts=Timeouts(5.0)
            )
            await exchanger.open()
            try:
                if trusted:
                    answer = await exchanger.exchange("GET", url, bounds=REQUEST_BOUNDS)
                    assert answer.status_code == 401  # no token: but TLS went through
                else:
                    with pytest.raises(ConnectFailedError):
                        await exchanger.exchange("GET", url, bounds=REQUEST_BOUNDS)
            finally:
                await exchanger.aclose()
        async with TradovateSession(sim.config(), verify=str(cafile)) as session:
            assert (await session.me()).user_id == sim.users[0].user_id


async def test_the_backend_is_checked(config: TradovateConfig) -> None:
    with pytest.raises(ValueError, match="http_backend"):
        TradovateSession(config, http_backend="curl")  # type: ignore[arg-type]
