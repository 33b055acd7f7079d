"""The session: one token, kept fresh in the background, signing every request.

:class:`TradovateSession` owns an ``httpx.AsyncClient`` and an anyio task group holding the
renewer task. All authentication goes through one single-flight path (:meth:`_refresh`): one
call at a time per session, and — through the token store's lock — one at a time per user
across every process sharing the store. Inside the lock the session looks again at its own
token and at the store before it talks to the token endpoint, so a thousand waiters, eight
processes or a fleet of machines make one token request between them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import random
from collections.abc import AsyncGenerator, Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, Unpack

import anyio
import anyio.abc
import httpx

from ._api_hosts import ResolvedEndpoints
from ._budget import BudgetStats, MemoryBudget, RateBudget, RateLimits, budget_backend
from ._calls import CallRunner
from ._clock import SYSTEM_CLOCK, Clock
from ._config import TradovateConfig
from ._errors import (
    InvalidResponseError,
    OrderOutcomeUnknownError,
    SessionClosedError,
    TokenRejectedError,
)
from ._exports import publish
from ._http import REQUEST_BOUNDS, TOKEN_BOUNDS, ExchangeBounds
from ._models import AccessToken, UserInfo
from ._options import (
    DEFAULT_PENALTIES,
    DEFAULT_RENEWAL_BACKOFF,
    DEFAULT_TIMEOUTS,
    Backoff,
    TimeoutsLike,
    Verify,
    check_seconds,
)
from ._orders import OrderDefaults, normalize
from ._penalty import PenaltyPolicy
from ._retry import RetryPolicy
from ._schedule import LoginPacing
from ._server_time import SessionTime
from ._session_http import HttpSettings, SessionHttp
from ._store import MemoryTokenStore, TokenStore
from ._tasks import TaskHost
from ._token_keeper import TokenKeeper, TokenListener, renewal_schedule

if TYPE_CHECKING:
    from ._account_state import AccountState
    from ._market_data import MarketData
    from ._replay import ReplaySession
    from ._ws import SocketKind, TradovateWebSocket, WebSocketOptions
    from .api import Api
    from .api._models import Order

__all__ = ["BearerAuth", "SessionStats", "TradovateSession"]

logger = logging.getLogger(__name__)


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"

    def check_unopened(self) -> None:
        """A session opens once."""
        if self is not _State.UNOPENED:
            raise SessionClosedError(
                "a TradovateSession can be opened once; create a new one"
                if self is _State.CLOSED
                else "this TradovateSession is already open"
            )

    def check_open(self) -> None:
        """Requests need an open session."""
        if self is not _State.OPENED:
            raise SessionClosedError(
                "the session is closed"
                if self is _State.CLOSED
                else "the session is not open: use 'async with TradovateSession(...)'"
            )


@dataclasses.dataclass(slots=True)
class SessionStats:
    """Counters of what the session did with the token endpoint."""

    logins: int = 0
    renewals: int = 0
    adopted_from_store: int = 0
    transient_failures: int = 0
    permanent_failures: int = 0
    store_errors: int = 0
    rejected_tokens: int = 0
    paced_logins: int = 0
    read_retries: int = 0
    outcome_unknown: int = 0
    budget: BudgetStats = dataclasses.field(default_factory=BudgetStats)


class BearerAuth(httpx.Auth):
    """Signs each request with the session's current token.

    It does I/O (it may wait for a renewal), so it implements ``async_auth_flow`` only. On a
    401 from a request signed with the token that is still current it asks the session for a
    renewal (single-flight) and resends once; if the token had already been replaced it simply
    resends with the new one. Transport errors are never retried here.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(self, session: TradovateSession) -> None:
        self._session = session

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("BearerAuth works only with httpx.AsyncClient")
        yield request  # pragma: no cover

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._session.current_token()
        request.headers["Authorization"] = f"Bearer {token.access_token.reveal()}"
        response = yield request
        if not self._session.refuses(response.status_code, token):
            return
        try:
            fresh = await self._session.token_rejected(token)
        except TokenRejectedError:
            return  # the caller sees the 401 as TokenRejectedError
        request.headers["Authorization"] = f"Bearer {fresh.access_token.reveal()}"
        yield request


class TradovateSession:
    """An authenticated connection to one Tradovate environment.

    ``async with TradovateSession(config) as session:`` returns once a usable token is held:
    from the store when one is still fresh, else by renewing the stored one, else by a login.
    A background task renews it at ``expiration − renew_before`` (with a little jitter), falls
    back to a login only when renewal is refused or the token has expired, backs off on
    transient failures while the old token keeps serving, and stops on permanent failures
    (bad credentials, captcha, lockout) so that requests raise that error instead of hammering
    the token endpoint.

    Args:
        config: credentials and endpoints.
        store: where the token is shared (default: a new :class:`MemoryTokenStore`). The session
            does not close a store it was given.
        renew_before: renewal margin before expiry, seconds (default 300: 85 of 90 minutes).
        jitter: fraction of the margin added at random so a fleet does not renew at once.
        renewal_backoff: retry delays after a transient renewal failure (default 1 s to 60 s).
        renewals_per_hour: the renewal budget (the server allows 15 an hour).
        check_interval: longest sleep of the renewer between looks at the wall clock, so a
            suspended machine renews at once on wake-up.
        penalties: how far a login or renewal waits out ``p-ticket`` penalties.
        timeout: :class:`Timeouts` (or seconds) for every HTTP exchange.
        verify: ``True`` (system CAs), a CA bundle path, or an ``ssl.SSLContext``. ``False``
            is refused: TLS verification is never turned off. Sockets inherit it.
        limits: the HTTP connection pool's limits.
        token_bounds, request_bounds: total deadline and body cap of each token exchange
            (default 30 s, 64 KiB) and each REST call (60 s, 64 MiB); see
            :class:`ExchangeBounds`. ``timeout`` bounds each network operation within them.
        rate_limits: the user's request budget, shared through ``store`` by every session,
            socket and process of the user (``None``: no local budget).
        retry: how reads are retried (commands never are).
        order_defaults: ``isAutomated`` and client order ids added to order commands.
        clock: the :class:`~tradovate_async._clock.Clock` for wall time and sleeps (tests pass a
            fake or a warped one).
        rng: random source for jitter (tests seed it).
        use_api_hosts: build REST and WebSocket URLs from the ``apiHosts`` of token answers
            (the server's per-user hosts; see :attr:`endpoints`). ``False`` keeps the
            configured URLs whatever the server says.
        max_logins_per_hour, login_pause: the login pacing floor: at most this many successful
            logins of the user in any rolling hour, and this many seconds between two, whatever
            asks for them (beyond it: :class:`LoginPacedError` and a WARNING).

    Token time is the server's time: every answer's ``Date`` header keeps an estimate of the
    server's clock on the host's elapsed time, and expiry, renewal and stored tokens are judged
    on it (see the README, "How time is handled").
    """

    budget: RateBudget | None  # set by _call_runner in __init__

    def __init__(
        self,
        config: TradovateConfig,
        *,
        store: TokenStore | None = None,
        renew_before: float = 300.0,
        jitter: float = 0.1,
        renewal_backoff: Backoff = DEFAULT_RENEWAL_BACKOFF,
        renewals_per_hour: int = 15,
        check_interval: float = 5.0,
        penalties: PenaltyPolicy = DEFAULT_PENALTIES,
        timeout: TimeoutsLike = DEFAULT_TIMEOUTS,
        verify: Verify = True,
        limits: httpx.Limits | None = None,
        token_bounds: ExchangeBounds = TOKEN_BOUNDS,
        request_bounds: ExchangeBounds = REQUEST_BOUNDS,
        rate_limits: RateLimits | None = RateLimits(),  # noqa: B008 - frozen
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen
        order_defaults: OrderDefaults = OrderDefaults(),  # noqa: B008 - frozen
        clock: Clock = SYSTEM_CLOCK,
        max_logins_per_hour: int = 4,
        login_pause: float = 60.0,
        rng: random.Random | None = None,
        use_api_hosts: bool = True,
        http_backend: Literal["aiohttp", "httpx"] = "aiohttp",
    ) -> None:
        self.config = config
        self._owns_store = store is None
        self._store: TokenStore = store if store is not None else MemoryTokenStore()
        net = HttpSettings.of(timeout, verify, limits, http_backend, request_bounds)
        self._time = SessionTime(clock)  # server time (issue 9): every decision reads it
        self.stats = SessionStats()
        self._state = _State.UNOPENED
        self._tasks = TaskHost()
        self._api: Api | None = None
        self.order_defaults = order_defaults
        self._keeper = TokenKeeper(
            config,
            self._store,
            self._time,
            self.stats,
            check_interval=check_seconds("check_interval", check_interval),
            schedule=renewal_schedule(
                renew_before, jitter, renewal_backoff, renewals_per_hour, rng
            ),
            pacing=LoginPacing(max_logins_per_hour, login_pause),
            use_api_hosts=use_api_hosts,
            penalty_policy=penalties,
            token_bounds=token_bounds,
            check_open=self._check_open,
        )
        self._http = SessionHttp(
            net,
            self._time,
            self._keeper,
            _call_runner(self, rate_limits, retry, penalties, check_interval, rng),
            check_open=self._check_open,
            closed=lambda: self._state is _State.CLOSED,
        )

    def __repr__(self) -> str:
        token = self._keeper.token
        expiry = token.expiration_time.isoformat() if token else None
        return (
            f"TradovateSession(user={self.config.username!r}, api_url={self.config.api_url!r}, "
            f"state={self._state.value}, token_expires={expiry!r})"
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._state.check_unopened()
        self._state = _State.OPENED
        await self._http.open(self.config.api_url + "/", BearerAuth(self))
        try:
            await self._tasks.open(self._keeper.renew_forever)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._shutdown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the renewer, fail requests in flight with :class:`SessionClosedError`, close the
        HTTP client. Idempotent; the session cannot reopen.

        Safe from any task: the renewer is stopped and awaited whoever calls; the task group is
        released by the opener when it leaves ``async with`` (at once if it is the caller).
        """
        if self._state is _State.CLOSED:
            await self._tasks.stop()  # the opener leaving after another task closed
            return
        self._state = _State.CLOSED
        self._http.cancel_in_flight()
        try:
            await self._tasks.stop()
        finally:
            with anyio.CancelScope(shield=True):
                await self._shutdown()

    async def _shutdown(self) -> None:
        self._state = _State.CLOSED
        await self._http.aclose()
        if self._owns_store:
            await self._store.aclose()

    def _check_open(self) -> None:
        self._state.check_open()

    # -- public API -------------------------------------------------------------------------

    @property
    def token(self) -> AccessToken:
        """The current token (it may be due for renewal; requests wait for a usable one)."""
        self._check_open()
        token = self._keeper.token
        assert token is not None
        return token

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying client, bearer-signed, with ``base_url`` set to the REST base."""
        return self._http.open_client()

    @property
    def endpoints(self) -> ResolvedEndpoints:
        """The URLs in use: the configured ones, or the hosts the server named in the
        ``apiHosts`` of its token answers (kept when a later answer names none)."""
        return self._keeper.endpoints

    @property
    def store(self) -> TokenStore:
        """The token store this session shares its token through."""
        return self._store

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send a bearer-signed request and return its parsed JSON.

        A 200 with ``errorText``, an order result whose ``failureReason`` is not ``Success``,
        ``violations``, and every non-2xx answer raise typed errors. List parameters go out as
        the documentation writes them (``ids=1,2,3``). A time penalty (``p-ticket``) is waited
        out and the identical request resent with the ticket, within the same bounds as a login
        (the penalised request was not executed); ``p-captcha`` raises
        :class:`CaptchaRequiredError`.

        Every request first takes its place in the user's request budget (``rate_limits``).
        Reads (``*/list``, ``*/item``, ``auth/me``...) are retried on transport errors, 408 and
        5xx as ``retry`` says. Anything else is a command and is never sent twice: a transport
        failure raises :class:`TransportError`; an order command is validated and labelled
        (``isAutomated``, ``clOrdId``) first, and a lost answer raises
        :class:`OrderOutcomeUnknownError` — see :meth:`reconcile_order`.
        """
        relative = path.lstrip("/")
        return await self._http.call(method, relative, params, json, raw_lists=False)

    async def reconcile_order(self, lost: OrderOutcomeUnknownError | str) -> Order | None:
        """Find out what became of an order command whose answer was lost.

        ``lost`` is the :class:`OrderOutcomeUnknownError` (or its ``cl_ord_id``). Returns the
        :class:`~tradovate_async.api.Order` the command created or changed, or ``None`` if
        Tradovate has no command with that client order id (it never arrived: placing it again
        is safe). Two reads: ``command/list`` and ``order/item``.
        """
        return await self._http.reconcile_order(lost)

    # -- hooks for the sockets of this session ---------------------------------------------

    async def spend_request(self, endpoint: str, *, command: bool) -> None:
        """Take a socket request from the user's budget (see ``rate_limits``)."""
        if self.budget is not None:
            await self.budget.acquire(normalize(endpoint), command=command)

    @property
    def api(self) -> Api:
        """The typed API over REST: ``await session.api.account.list()``."""
        if self._api is None:  # the generated API loads with the first session that uses it
            from .api import Api
            from .api._base import BoundTransport

            self._api = Api(BoundTransport(self._http.api_send))
        return self._api

    async def get(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        """``GET path`` with the bearer token; the decoded JSON answer."""
        return await self.request("GET", path, params=params)

    async def post(
        self, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """``POST path`` with a JSON body and the bearer token; the decoded answer."""
        return await self.request("POST", path, params=params, json=json)

    async def me(self) -> UserInfo:
        """``GET /auth/me`` as a :class:`UserInfo`."""
        data = await self.get("auth/me")
        if not isinstance(data, dict):
            raise InvalidResponseError("/auth/me answer is not a JSON object")
        try:
            return UserInfo.from_response(data)
        except ValueError as exc:
            raise InvalidResponseError(f"/auth/me answer unusable ({exc})") from None

    def websocket(
        self,
        kind: SocketKind = "trading",
        *,
        url: str | None = None,
        **options: Unpack[WebSocketOptions],
    ) -> TradovateWebSocket:
        """A WebSocket bound to this session's token (use it with ``async with``).

        ``kind="trading"`` connects to ``config.ws_url``, ``"md"`` to ``config.md_url`` (with the
        market-data token), ``"replay"`` to ``config.replay_url``; ``url=`` overrides. The
        options are :class:`TradovateWebSocket`'s (typed: a misspelt one fails type checking);
        ``verify`` defaults to the session's. The socket's ``clock`` is not inherited: heartbeats
        and silence are real-time rules of the server, while a session's clock may be warped.
        """
        from ._ws import TradovateWebSocket

        self._check_open()
        if url is None:
            urls = self._keeper.endpoints
            url = {"md": urls.md_url, "replay": urls.replay_url}.get(kind, urls.ws_url)
        options.setdefault("verify", self._http.settings.verify)
        return TradovateWebSocket(self, url=url, kind=kind, **options)

    def market_data(self, **options: Unpack[WebSocketOptions]) -> MarketData:
        """Typed market data over a new market-data socket (use it with ``async with``).

        Symbols are resolved with ``contract/find`` over REST; ``options`` go to the socket
        (see :meth:`websocket`). See :class:`~tradovate_async.MarketData`.
        """
        from ._market_data import MarketData, session_resolver

        return MarketData(
            self.websocket(kind="md", **options), resolve=session_resolver(self), own_socket=True
        )

    def replay(
        self,
        *,
        start: dt.datetime | str,
        speed: float = 100,
        initial_balance: float = 50_000,
        **options: Unpack[WebSocketOptions],
    ) -> ReplaySession:
        """A market replay from ``start`` at ``speed`` percent of real time (``async with``):
        ``replay.md`` and ``replay.account_state()`` work as live. See
        :class:`~tradovate_async.ReplaySession`."""
        from ._replay import ReplaySession

        self._check_open()
        return ReplaySession(
            self, start=start, speed=speed, initial_balance=initial_balance, **options
        )

    def account_state(
        self, *, market_data: MarketData | None = None, **options: Any
    ) -> AccountState:
        """A live mirror of the user's accounts over a new trading socket (``async with``).

        With ``market_data``, open P&L follows live quotes. ``options`` go to the socket. See
        :class:`~tradovate_async.AccountState`.
        """
        from ._account_state import AccountState

        self._check_open()
        return AccountState(
            self.websocket(kind="trading", **options),
            sync_body={"users": [self.token.user_id]},
            own_socket=True,
            market_data=market_data,
        )

    def add_token_listener(self, listener: TokenListener) -> Callable[[], None]:
        """Call ``listener(token)`` for every new token (login, renewal, adoption from the store).

        Listeners are plain functions, called in the renewing task; they must not block. A
        coroutine function is refused with ``TypeError`` (its coroutine would never be
        awaited): to do async work, start a task from the listener or read ``session.token``.
        Returns a function that removes the listener. Exceptions in listeners are logged.
        """
        return self._keeper.add_listener(listener)

    # -- TokenSource (used by BearerAuth and WebSockets): the keeper's ---------------------

    async def current_token(self) -> AccessToken:
        """A token usable right now, waiting for (or doing) the single-flight refresh if needed.

        Raises the standing permanent error (bad credentials, captcha, lockout) if there is one.
        """
        return await self._keeper.current_token()

    def refuses(self, status: int, token: AccessToken) -> bool:
        """Whether an answer with ``status`` to a request signed with ``token`` refuses the
        token: a 401, or a 400 once that token is spent (Tradovate answers an expired token
        with either; any other 400 is the request's own fault)."""
        return self._keeper.refuses(status, token)

    def token_spent(self, token: AccessToken) -> bool:
        """Whether ``token`` had expired (or was within the safety margin) by now.

        The documentation says an expired token gets "400 or 401". A 400 is also the answer to a
        malformed request, and no public recording shows the body of the expired-token 400, so
        a 400 counts as a refused token only when the token that signed the request was spent;
        any other 400 is the request's own fault and is never answered with a renewal.
        """
        return self._keeper.token_spent(token)

    async def token_rejected(self, token: AccessToken) -> AccessToken:
        """The server refused ``token``: renew it once (single-flight) and return the current one.

        If the token was already replaced, the current one is returned at once. If the refused
        token is the very one such a renewal produced, less than ``min(60 s, lifetime / 10)``
        ago, the refusal points to permissions or the wrong environment, not to expiry: this
        raises :class:`TokenRejectedError` instead of burning the renewal budget.
        """
        return await self._keeper.token_rejected(token)

    # -- server time (issue 9) --------------------------------------------------------------

    def elapsed_stamp(self) -> float:
        """The host's elapsed time, for a socket to date its handshake (:meth:`observe_date`)."""
        return self._time.elapsed()

    def observe_date(self, header: str | None, *, sent: float) -> None:
        """A ``Date`` header received now, in answer to something sent at ``sent``
        (:meth:`elapsed_stamp`): the WebSocket handshake feeds the server-clock estimate too."""
        self._time.observe(header, sent=sent, received=self._time.elapsed())


def _call_runner(
    session: TradovateSession,
    rate_limits: RateLimits | None,
    retry: RetryPolicy,
    penalties: PenaltyPolicy,
    check_interval: float,
    rng: random.Random | None,
) -> CallRunner:
    """The REST call runner of a new ``session``, with the user's request budget (if any):
    sets ``session.budget`` and ``session.stats.budget``."""
    budget = None
    if rate_limits is not None:
        budget = RateBudget(
            rate_limits,
            budget_backend(session._store) or MemoryBudget(),
            f"{session.config.api_url}|{session.config.username}",
            clock=lambda: session._time.now().timestamp(),
            sleep=session._time.sleep,
            poll=min(check_interval, 1.0),
        )
        session.stats.budget = budget.stats
    session.budget = budget
    return CallRunner(
        budget=budget,
        retry=retry,
        penalty_policy=penalties,
        order_defaults=session.order_defaults,
        stats=session.stats,
        clock=session._time,
        rng=rng or random.Random(),
        closed=lambda: session._state is _State.CLOSED,
    )


publish(globals())  # its public classes show tradovate_async.X (see _exports)
