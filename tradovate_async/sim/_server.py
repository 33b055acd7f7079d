"""``SimulatedTradovate``: the REST and WebSocket simulator running in its own thread.

The server gets its own thread and event loop (like httpx's test server) so that it behaves as
an independent process would: a client that blocks its own loop cannot stall the server, and
the server's timers (auth timeout, heartbeats) keep running whatever the test does. Control
methods are called from other threads; they take the state lock for data and hand socket work
to the server loop with ``asyncio.run_coroutine_threadsafe``, returning once it is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .._config import TradovateConfig
from ._clock import DateHeader
from ._market import contract_id
from ._md import MarketSim
from ._orders import MarketPrices
from ._prices import PricePath
from ._rest import RestFrontEnd
from ._state import SimState
from ._types import ConnectionInfo, Fault, RequestRecord, SimUser
from ._ws import SocketHub

__all__ = ["SimulatedTradovate"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_CONTROL_TIMEOUT = 10.0
_GRACEFUL = 0.5  # seconds in-flight requests get to finish when the simulator stops


class _QuietWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol without per-frame DEBUG logs.

    With DEBUG logging on, the websockets protocol logs the start and end of every frame,
    which for ``authorize`` is most of a token; the simulator keeps to 8 characters.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.debug = False


def _listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket.

    Created with an explicit ``IPPROTO_TCP``: asyncio turns on ``TCP_NODELAY`` only for
    sockets whose ``proto`` says TCP, and ``socket.create_server`` leaves it 0. Without
    NODELAY uvicorn's separate header and body writes meet delayed ACKs: 40 ms per request.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let another process share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
    except BaseException:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, telling the starting thread when it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

        self._wake: asyncio.Event | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._wake = asyncio.Event()
        await super().startup(sockets=sockets)
        self._on_ready()

    async def main_loop(self) -> None:
        # uvicorn polls ``should_exit`` every 0.1 s; waking on an event makes stop() prompt.
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's own shutdown always sleeps 0.1 s; every test starts and stops a simulator,
        # so poll instead. Same steps: stop listening, ask connections to close, wait for them
        # and for request tasks (bounded by the graceful timeout), then cancel stragglers.
        loop = asyncio.get_running_loop()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        deadline = loop.time() + _GRACEFUL
        state = self.server_state
        while (state.connections or state.tasks) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        for task in list(state.tasks):
            task.cancel()
        for connection in list(state.connections):  # e.g. a request still in a Fault.delay
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await asyncio.sleep(0)  # let connection_lost() run
        for server in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        await self.lifespan.shutdown()

    def request_exit(self) -> None:
        """Ask the server to stop; call on its loop."""
        self.should_exit = True
        if self._wake is not None:
            self._wake.set()


class SimulatedTradovate:
    """An offline Tradovate server: token endpoints, every entity and command of the REST
    catalogue (see ``entities``), trading and market-data WebSockets, with scriptable faults.

    Use it as ``async with SimulatedTradovate() as sim:`` or with ``start()``/``stop()``.
    Behaviour follows the project's protocol reference; where the reference leaves a question
    open the simulator picks one answer and says so:

    * Renewal keeps the session and issues new ``accessToken``/``mdAccessToken``; with
      ``renew_invalidates_old`` (default) the previous tokens stop working at once, which is the
      strictest reading and catches clients that keep using a stale token. Sockets authorized
      with the old token stay open (renewal extends the session).
    * Tokens are judged by the simulator's wall clock (``clock`` plus ``advance_clock``);
      socket timeouts use real monotonic time.
    * An expired token does not close its sockets unless ``close_sockets_on_expiry``; revoked
      sessions (``revoke_tokens``, or eviction by a login beyond ``max_sessions_per_user``) do.
    * Only ``[]`` frames count as client heartbeats. ``props`` events go to trading sockets that
      sent ``user/syncrequest``. A captcha ticket can never be redeemed. With
      ``strict_penalties`` a request that ignores an outstanding ticket is penalised again.
    * Server-initiated closes send ``c[code,"reason"]`` and close with the same code: 1008 for
      authorization/heartbeat timeouts, revocation and expiry, 1001 after ``shutdown``.

    Arguments:
        users: who may log in; account ids must be unique across users.
        token_lifetime: seconds from issue (or renewal) to expiry.
        host, port: where to listen; port 0 picks a free port (see ``port``).
        certfile, keyfile: PEM files; both given means https/wss.
        clock: the wall clock in epoch seconds (default ``time.time``).
        auth_timeout: seconds a socket may stay unauthorized.
        heartbeat_timeout: seconds without a client ``[]`` before the socket is closed
            (None: never).
        server_heartbeat: idle seconds before the server sends ``h``.
        quote_interval: seconds between md frames per subscribed socket (None: no timer,
            only the snapshot sent on subscribe and ``md_burst``).
        max_sessions_per_user: a login beyond this evicts the oldest session.
        md_access_token: include ``mdAccessToken`` in token responses.
        renew_invalidates_old: renewal revokes the previous tokens of the session.
        max_failed_logins: failed logins per rolling hour before 429 (None: no lockout).
        max_renewals_per_hour: renewals per rolling hour before 429 (None: unlimited).
        strict_penalties: see above.
        close_sockets_on_expiry: close sockets whose session's token has expired.
        request_log_limit: how many requests ``request_log`` keeps (the newest); counters are
            unaffected. Long soaks lower it so the log does not weigh on memory figures.
        market_speed: how fast market time runs against the simulator's wall clock (600: a
            one-minute bar every 0.1 s), from the moment of creation. Token time is unaffected.
        price_seed: seed of the price path every quote, DOM, histogram and bar comes from,
            and that orders fill against.
        cancel_chart_by: which ``md/getChart`` id ``md/cancelChart`` accepts (``"realtime"`` or
            ``"historical"``; sources disagree, so a client must cope with both).
        server_clock_offset: seconds the server's clock runs ahead of ``clock`` (see the
            property of that name).
        max_requests_per_hour, max_syncrequests_per_hour: a user's API requests (REST and
            socket) and ``user/syncrequest`` calls per rolling hour before every request gets
            429 for a rolling hour, extended by each request made meanwhile. Tradovate's
            figures are 5,000 and 300; None (default) turns the limit off.
        market_interval: real seconds between two looks of the order engine at the price
            path (resting orders fill, their events are pushed); None: only on requests.

    Every HTTP answer and the WebSocket handshake carry a ``Date`` header on the server's
    clock, whole seconds rounded down, as a real HTTP server sends it.
    """

    def __init__(
        self,
        *,
        users: Iterable[SimUser] = (SimUser(),),
        token_lifetime: float = 5400.0,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: str | None = None,
        keyfile: str | None = None,
        clock: Callable[[], float] | None = None,
        auth_timeout: float = 5.0,
        heartbeat_timeout: float | None = 10.0,
        server_heartbeat: float = 2.5,
        quote_interval: float | None = 0.05,
        max_sessions_per_user: int = 2,
        md_access_token: bool = True,
        renew_invalidates_old: bool = True,
        max_failed_logins: int | None = 5,
        max_renewals_per_hour: int | None = 15,
        strict_penalties: bool = True,
        close_sockets_on_expiry: bool = False,
        request_log_limit: int = 100_000,
        market_speed: float = 1.0,
        price_seed: int = 0,
        cancel_chart_by: Literal["realtime", "historical"] = "realtime",
        server_clock_offset: float = 0.0,
        max_requests_per_hour: int | None = None,
        max_syncrequests_per_hour: int | None = None,
        market_interval: float | None = 0.05,
    ) -> None:
        if (certfile is None) != (keyfile is None):
            raise ValueError("give both certfile and keyfile, or neither")
        self._state = SimState(
            users=users,
            token_lifetime=token_lifetime,
            clock=clock or time.time,
            max_sessions_per_user=max_sessions_per_user,
            md_access_token=md_access_token,
            renew_invalidates_old=renew_invalidates_old,
            max_failed_logins=max_failed_logins,
            max_renewals_per_hour=max_renewals_per_hour,
            strict_penalties=strict_penalties,
            request_log_limit=request_log_limit,
            max_requests_per_hour=max_requests_per_hour,
            max_syncrequests_per_hour=max_syncrequests_per_hour,
        )
        self._state.set_offset(float(server_clock_offset))
        self._market_interval = market_interval
        self._host = host
        self._port = port
        self._certfile = certfile
        self._keyfile = keyfile
        if not market_speed > 0:
            raise ValueError("market_speed must be positive")
        self.market_speed = market_speed
        self._market_epoch = self._state.now()
        self._market = MarketSim(PricePath(price_seed), cancel_chart_by=cancel_chart_by)
        # Orders fill against the same prices the market-data side quotes and charts.
        self._state.engine.prices = MarketPrices(self._market, self._market_epoch, market_speed)
        self._hub = SocketHub(
            self._state,
            auth_timeout=auth_timeout,
            heartbeat_timeout=heartbeat_timeout,
            server_heartbeat=server_heartbeat,
            quote_interval=quote_interval,
            close_on_expiry=close_sockets_on_expiry,
            abort_client=self._abort_client,
            market=self._market,
            market_clock=self.market_time,
        )
        self._rest = RestFrontEnd(self._state, self._hub, self._abort_client)
        self._app = DateHeader(
            Starlette(
                routes=[
                    WebSocketRoute("/v1/websocket", self._hub.trading_endpoint),
                    WebSocketRoute("/md/v1/websocket", self._hub.md_endpoint),
                    WebSocketRoute("/replay/v1/websocket", self._hub.replay_endpoint),
                    Route("/v1/{path:path}", self._rest.endpoint, methods=_METHODS),
                ]
            ),
            self._state.now,
        )
        self._sock: socket.socket | None = None
        self._bound_port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _Server | None = None
        self._ready = threading.Event()
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind, start the server thread and return once it accepts connections."""
        if self._thread is not None or self._stopped:
            raise RuntimeError("a SimulatedTradovate can be started only once")
        sock = _listening_socket(self._host, self._port)
        self._sock = sock
        self._bound_port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            log_config=None,
            access_log=False,
            lifespan="off",
            http="h11",
            ws=_QuietWebSocketProtocol,
            ws_ping_interval=None,
            ws_ping_timeout=None,
            proxy_headers=False,
            server_header=False,
            date_header=False,  # uvicorn's Date is the host's clock; ours is the server's
            ssl_certfile=self._certfile,
            ssl_keyfile=self._keyfile,
        )
        try:
            config.load()  # surfaces TLS file errors here, in the caller's thread
        except BaseException:
            sock.close()
            self._sock = None
            raise
        self._server = _Server(config, self._ready.set)
        self._thread = threading.Thread(
            target=self._thread_main, name=f"tradovate-sim-{self.port}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            sock.close()
            raise RuntimeError("the simulator failed to start") from self._error
        logger.info("simulator listening on %s", self.api_url)

    def stop(self) -> None:
        """Close every socket, stop the server and join its thread. Safe to call twice."""
        thread, loop, server = self._thread, self._loop, self._server
        self._stopped = True
        # ``_finished`` rather than ``thread.is_alive()``: on Python 3.11 a KeyboardInterrupt
        # inside ``Thread.join`` can leave ``is_alive()`` False while the thread still runs.
        if thread is None or self._finished.is_set():
            if thread is not None:
                thread.join(_CONTROL_TIMEOUT)
            self._close_socket()
            return
        if threading.current_thread() is thread:
            raise RuntimeError("stop() cannot be called from the simulator's own thread")
        if loop is not None and server is not None:
            with_sockets = asyncio.run_coroutine_threadsafe(self._hub.close_all(), loop)
            try:
                with_sockets.result(_CONTROL_TIMEOUT)
            except (concurrent.futures.TimeoutError, RuntimeError):
                logger.warning("simulator sockets did not close in time")
            loop.call_soon_threadsafe(server.request_exit)
        if self._finished.wait(_CONTROL_TIMEOUT):
            thread.join(_CONTROL_TIMEOUT)
        else:  # pragma: no cover - uvicorn's graceful timeout bounds this
            logger.warning("simulator thread did not stop in time")
        self._close_socket()
        logger.info("simulator stopped")

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> Self:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start if needed and block until interrupted (Ctrl+C), then stop. For the CLI."""
        if self._thread is None:
            self.start()
        try:
            while not self._finished.wait(0.5):
                pass
        finally:
            self.stop()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            logger.exception("simulator thread failed")
        finally:
            self._ready.set()
            self._finished.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        server = self._server
        assert server is not None and self._sock is not None
        market = (
            asyncio.create_task(self._hub.run_market(self._market_interval))
            if self._market_interval is not None
            else None
        )
        try:
            await server.serve(sockets=[self._sock])
        finally:
            if market is not None:
                market.cancel()
                await asyncio.gather(market, return_exceptions=True)

    def _abort_client(self, client: tuple[str, int] | None) -> bool:
        """Abort the TCP connection of a peer address (runs on the server loop)."""
        server = self._server
        if server is None or client is None:
            return False
        found = False
        for protocol in list(server.server_state.connections):
            transport = getattr(protocol, "transport", None)
            if getattr(protocol, "client", None) == client and transport is not None:
                transport.abort()
                found = True
        return found

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server loop from another thread and wait for its result."""
        loop = self._loop
        if loop is None or self._thread is None or self._finished.is_set():
            coro.close()
            raise RuntimeError("the simulator is not running")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("control methods cannot be called from the simulator's thread")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(_CONTROL_TIMEOUT)

    # ----------------------------------------------------------------------- URLs

    @property
    def port(self) -> int:
        """The bound port (known once started; kept after stop)."""
        if self._bound_port is None:
            raise RuntimeError("the simulator is not started")
        return self._bound_port

    @property
    def _netloc(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self.port}"

    @property
    def tls(self) -> bool:
        """Whether the simulator serves https/wss."""
        return self._certfile is not None

    @property
    def api_url(self) -> str:
        """REST base including ``/v1``."""
        return f"{'https' if self.tls else 'http'}://{self._netloc}/v1"

    @property
    def ws_url(self) -> str:
        """Trading WebSocket."""
        return f"{'wss' if self.tls else 'ws'}://{self._netloc}/v1/websocket"

    @property
    def md_url(self) -> str:
        """Market-data WebSocket."""
        return f"{'wss' if self.tls else 'ws'}://{self._netloc}/md/v1/websocket"

    @property
    def replay_url(self) -> str:
        """Market-replay WebSocket."""
        return f"{'wss' if self.tls else 'ws'}://{self._netloc}/replay/v1/websocket"

    @property
    def users(self) -> tuple[SimUser, ...]:
        """The users who may log in."""
        return tuple(self._state.users.values())

    def config(self, user: SimUser | None = None, **overrides: Any) -> TradovateConfig:
        """A ``TradovateConfig`` with ``user``'s (default: the first user's) credentials and
        this simulator's URLs; ``overrides`` replace any field."""
        user = user or next(iter(self._state.users.values()))
        fields: dict[str, Any] = {
            "username": user.username,
            "password": user.password,
            "app_id": user.app_id,
            "app_version": user.app_version,
            "cid": user.cid,
            "sec": user.sec,
            "device_id": "sim-device-0001",
            "api_url": self.api_url,
            "ws_url": self.ws_url,
            "md_url": self.md_url,
            "replay_url": self.replay_url,
        }
        fields.update(overrides)
        return TradovateConfig(**fields)

    # ------------------------------------------------------------------ clock, counters

    def now(self) -> float:
        """The simulator's wall clock (epoch seconds)."""
        return self._state.now()

    def market_time(self) -> float:
        """Market time in epoch seconds: the wall clock, ``market_speed`` times faster."""
        epoch = self._market_epoch
        return epoch + (self._state.now() - epoch) * self.market_speed

    def price(self, symbol: str | int, at: float | None = None) -> float:
        """The simulated last trade price of ``symbol`` at market time ``at`` (default now)."""
        return self._market.price(contract_id(symbol), self.market_time() if at is None else at)

    @property
    def cancelled_charts(self) -> list[int]:
        """Realtime ids of charts cancelled by ``md/cancelChart`` (in order)."""
        return list(self._market.cancelled)

    def advance_clock(self, seconds: float) -> None:
        """Move the simulator's wall clock; token expiry and rolling limits follow it."""
        self._state.advance(seconds)

    @property
    def server_clock_offset(self) -> float:
        """Seconds the server's clock is ahead of ``clock`` (negative: behind); every
        ``advance_clock`` adds to it. Set it to put the server's clock off the host's, or
        change it mid-run to make one of the two clocks jump: a host whose clock is two hours
        fast is a server at ``-7200``. Every answer's ``Date`` header follows it."""
        return self._state.offset

    @server_clock_offset.setter
    def server_clock_offset(self, seconds: float) -> None:
        self._state.set_offset(float(seconds))

    def count(self, path: str, *, status: int | None = None) -> int:
        """Requests answered for ``path`` (any casing, with or without ``/v1``; ``*`` = all)."""
        return self._state.count(path, status)

    @property
    def token_requests(self) -> int:
        """``auth/accesstokenrequest`` calls, whatever their outcome."""
        return self.count("auth/accesstokenrequest")

    @property
    def logins(self) -> int:
        """Successful logins (each one a new server session)."""
        with self._state.lock:
            return self._state.logins

    @property
    def renewals(self) -> int:
        """Successful ``/auth/renewaccesstoken`` calls."""
        with self._state.lock:
            return self._state.renewals

    @property
    def expired_token_rejections(self) -> int:
        """Requests and authorizations refused because the token had expired."""
        with self._state.lock:
            return self._state.expired_rejections

    @property
    def invalid_token_rejections(self) -> int:
        """Refusals for any other token reason: missing, unknown, revoked, superseded."""
        with self._state.lock:
            return self._state.rejected_tokens

    @property
    def request_log(self) -> list[RequestRecord]:
        """The requests answered (the newest ``request_log_limit``)."""
        with self._state.lock:
            return list(self._state.log)

    def reset_counters(self) -> None:
        """Clear the request log and all counters (sessions, limits and faults stay)."""
        self._state.reset_counters()
        with self._state.lock:
            self._hub.total = 0
            self._hub.authorizations = 0

    def reset_limits(self) -> None:
        """Forget failed logins, renewals and penalty tickets (lift every lockout)."""
        self._state.reset_limits()

    # ------------------------------------------------------------------------- faults

    def inject(
        self,
        path: str,
        fault: Fault,
        times: int = 1,
        *,
        transport: Literal["rest", "ws"] | None = None,
    ) -> None:
        """Apply ``fault`` to the next ``times`` requests to ``path`` (``*``: any path),
        first-in first-out per path; an exact path is served before ``*``. WebSocket requests
        match by endpoint (``authorize`` included); ``transport`` limits a fault to REST or
        WebSocket requests."""
        self._state.inject(path, fault, times, transport)

    def clear_faults(self) -> None:
        """Forget every fault not yet served."""
        self._state.clear_faults()

    # ----------------------------------------------------------------------- sessions

    def revoke_tokens(self, username: str | None = None) -> None:
        """End every session of ``username`` (or of everyone): tokens get 401, their open
        sockets are closed. Returns once the sockets are closed."""
        ended = self._state.revoke(username)
        if ended and self._loop is not None and self._thread is not None:
            self._run(self._hub.close_sessions(ended))

    def user_sessions(self, username: str) -> int:
        """Sessions of ``username`` that are neither revoked nor expired."""
        return self._state.user_sessions(username)

    def orders(self, username: str | None = None) -> list[dict[str, Any]]:
        """Orders placed by ``username`` (default: the first user)."""
        return self.entities("order", username)

    def cash_balance(self, account_id: int) -> dict[str, Any]:
        """The ``cashBalance`` record of an account (fills book realized profit into it)."""
        with self._state.lock:
            record = self._state.store.get("cashBalance", account_id)
            if record is None:
                raise KeyError(f"no cash balance for account {account_id}")
            return dict(record)

    @property
    def rate_limited(self) -> int:
        """Requests refused with 429 by ``max_requests_per_hour``/``max_syncrequests_per_hour``."""
        with self._state.lock:
            return self._state.rate_limited

    def entities(self, entity: str, username: str | None = None) -> list[dict[str, Any]]:
        """Copies of the records of ``entity`` (a catalogue name: ``position``,
        ``cashBalance``...) that ``username`` (default: the first user) may see."""
        name = username or next(iter(self._state.users))
        user = self._state.users[name]
        with self._state.lock:
            return [dict(r) for r in self._state.store.visible(user, entity)]

    # ---------------------------------------------------------------------- WebSockets

    @property
    def api_hosts(self) -> dict[str, str] | None:
        """The ``apiHosts`` object token answers carry (bare ``host[:port]`` values per purpose:
        ``live``, ``demo``, ``mdLive`` ...), or None for answers without one."""
        with self._state.lock:
            hosts = self._state.api_hosts
            return dict(hosts) if hosts is not None else None

    @api_hosts.setter
    def api_hosts(self, hosts: dict[str, str] | None) -> None:
        with self._state.lock:
            self._state.api_hosts = dict(hosts) if hosts is not None else None

    @property
    def authorize_delay(self) -> float:
        """Seconds to wait before answering ``authorize`` (to test client timeouts)."""
        return self._hub.authorize_delay

    @authorize_delay.setter
    def authorize_delay(self, value: float) -> None:
        self._hub.authorize_delay = float(value)

    def ws_connections(self, kind: str | None = None) -> list[ConnectionInfo]:
        """Snapshots of the open sockets (of ``kind``, if given)."""
        with self._state.lock:
            return [
                c.info()
                for c in sorted(self._hub.conns.values(), key=lambda c: c.id)
                if kind is None or c.kind == kind
            ]

    @property
    def ws_total_connections(self) -> int:
        """Sockets accepted since start (or the last ``reset_counters``)."""
        with self._state.lock:
            return self._hub.total

    @property
    def ws_authorizations(self) -> int:
        """Successful socket ``authorize`` requests."""
        with self._state.lock:
            return self._hub.authorizations

    def drop_sockets(self, kind: str | None = None) -> int:
        """Abort open sockets without a close frame; how many were dropped."""
        return self._run(self._hub.drop(kind))

    def send_shutdown(
        self, reason_code: str = "Maintenance", reason: str | None = None, kind: str | None = None
    ) -> int:
        """Send a ``shutdown`` event, then close (``c[1001,...]`` and close code 1001)."""
        return self._run(self._hub.shutdown(reason_code, reason, kind))

    def send_raw(self, frame: str, kind: str | None = None) -> int:
        """Send any text frame to every open socket (of ``kind``); how many got it."""
        return self._run(self._hub.send_raw(frame, kind))

    async def push_props(
        self,
        username: str,
        events: Iterable[tuple[str, str, dict[str, Any]]],
        *,
        per_frame: int = 50,
    ) -> int:
        """Apply ``(entityType, eventType, entity)`` events to the user's account state (later
        snapshots include them) and push them as ``props`` events, ``per_frame`` to an ``a``
        frame, to the user's synced trading sockets connected now. Returns frames sent."""
        props = self._state.scripted.apply(username, events)
        frames = [
            "a" + json.dumps([{"e": "props", "d": d} for d in props[i : i + per_frame]])
            for i in range(0, len(props), per_frame)
        ]
        loop = self._loop
        if loop is None:
            raise RuntimeError("the simulator is not running")
        future = asyncio.run_coroutine_threadsafe(self._hub.send_to_user(username, frames), loop)
        return await asyncio.wrap_future(future)

    def start_md_burst(self, count: int, batch: int = 1) -> concurrent.futures.Future[int]:
        """Start sending ``count`` md frames of ``batch`` quotes to every authorized md socket
        as fast as the sockets take them. Returns at once with a future of the frames sent:
        waiting in the thread that also reads the sockets would deadlock."""
        if count < 0 or batch < 1:
            raise ValueError("count must be >= 0 and batch >= 1")
        loop = self._loop
        if loop is None:
            raise RuntimeError("the simulator is not running")
        return asyncio.run_coroutine_threadsafe(self._hub.burst(count, batch), loop)

    async def md_burst(self, count: int, batch: int = 1) -> int:
        """``start_md_burst`` for async code: waits without blocking the caller's loop."""
        return await asyncio.wrap_future(self.start_md_burst(count, batch))

    def __repr__(self) -> str:
        where = self.api_url if self._bound_port is not None else "not started"
        return f"<SimulatedTradovate {where}>"
