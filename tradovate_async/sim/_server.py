"""``SimulatedTradovate``: the REST and WebSocket simulator running in its own thread.

The server gets its own thread and event loop (like httpx's test server) so that it behaves as
an independent process would: a client that blocks its own loop cannot stall the server, and
the server's timers (auth timeout, heartbeats) keep running whatever the test does. Control
methods are called from other threads; they take the state lock for data and hand socket work
to the server loop with ``asyncio.run_coroutine_threadsafe``, returning once it is done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Literal, Self

import anyio.to_thread
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from .._config import TradovateConfig
from ._clock import DateHeader
from ._controls import SimControls
from ._market import contract_id
from ._md import MarketSim
from ._orders import MarketPrices
from ._prices import PricePath
from ._rest import RestFrontEnd
from ._serving import ServerThread
from ._sessions import SessionRules
from ._state import SimState
from ._types import SimUser
from ._ws import SocketHub

__all__ = ["SimulatedTradovate"]

logger = logging.getLogger(__name__)

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class SimulatedTradovate(SimControls):
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
        self._serving = ServerThread(host, port, certfile, keyfile)
        self._state = SimState(
            users=users,
            rules=SessionRules(
                token_lifetime,
                max_sessions_per_user,
                md_access_token,
                renew_invalidates_old,
                max_failed_logins,
                max_renewals_per_hour,
                strict_penalties,
            ),
            clock=clock or time.time,
            request_log_limit=request_log_limit,
            max_requests_per_hour=max_requests_per_hour,
            max_syncrequests_per_hour=max_syncrequests_per_hour,
        )
        self._state.set_offset(float(server_clock_offset))
        self._market_interval = market_interval
        self._open_market(market_speed, price_seed, cancel_chart_by)
        self._hub = self._open_hub(
            auth_timeout,
            heartbeat_timeout,
            server_heartbeat,
            quote_interval,
            close_sockets_on_expiry,
        )
        self._app = _app(self._state, self._hub, self._serving.abort_client)

    def _open_hub(
        self,
        auth_timeout: float,
        heartbeat_timeout: float | None,
        server_heartbeat: float,
        quote_interval: float | None,
        close_on_expiry: bool,
    ) -> SocketHub:
        """The WebSocket side, on this simulator's state, market and server thread."""
        return SocketHub(
            self._state,
            auth_timeout=auth_timeout,
            heartbeat_timeout=heartbeat_timeout,
            server_heartbeat=server_heartbeat,
            quote_interval=quote_interval,
            close_on_expiry=close_on_expiry,
            abort_client=self._serving.abort_client,
            market=self._market,
            market_clock=self.market_time,
        )

    def _open_market(
        self, speed: float, seed: int, cancel_chart_by: Literal["realtime", "historical"]
    ) -> None:
        """The price path and market clock, from now (``market_speed``, ``price_seed``)."""
        if not speed > 0:
            raise ValueError("market_speed must be positive")
        self.market_speed = speed
        self._market_epoch = self._state.now()
        self._market = MarketSim(PricePath(seed), cancel_chart_by=cancel_chart_by)
        # Orders fill against the same prices the market-data side quotes and charts.
        self._state.engine.prices = MarketPrices(self._market, self._market_epoch, speed)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind, start the server thread and return once it accepts connections."""
        interval = self._market_interval
        self._serving.start(
            self._app,
            background=None if interval is None else lambda: self._hub.run_market(interval),
            closing=self._hub.close_all,
        )
        logger.info("simulator listening on %s", self.api_url)

    def stop(self) -> None:
        """Close every socket, stop the server and join its thread. Safe to call twice."""
        if self._serving.stop():
            logger.info("simulator stopped")

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
        if not self._serving.thread_started:
            self.start()
        try:
            self._serving.wait()
        finally:
            self.stop()

    # ----------------------------------------------------------------------- URLs

    @property
    def port(self) -> int:
        """The bound port (known once started; kept after stop)."""
        return self._serving.port

    @property
    def _netloc(self) -> str:
        host = self._serving.host
        return f"{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def tls(self) -> bool:
        """Whether the simulator serves https/wss."""
        return self._serving.certfile is not None

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

    # --------------------------------------------- clock (counters and controls: SimControls)

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

    def __repr__(self) -> str:
        where = self.api_url if self._serving.bound_port is not None else "not started"
        return f"<SimulatedTradovate {where}>"


def _app(
    state: SimState, hub: SocketHub, abort_client: Callable[[tuple[str, int] | None], bool]
) -> DateHeader:
    """The ASGI app: the three sockets and the REST front end, every answer dated."""
    rest = RestFrontEnd(state, hub, abort_client)
    return DateHeader(
        Starlette(
            routes=[
                WebSocketRoute("/v1/websocket", hub.trading_endpoint),
                WebSocketRoute("/md/v1/websocket", hub.md_endpoint),
                WebSocketRoute("/replay/v1/websocket", hub.replay_endpoint),
                Route("/v1/{path:path}", rest.endpoint, methods=_METHODS),
            ]
        ),
        state.now,
    )
